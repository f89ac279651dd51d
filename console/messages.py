"""Messages of the console (toolong / harlequin style).

Screens post their workers' results to themselves (the `*Loaded` messages). What the app must act on (a
worker's outcome, an announcement to open, cancel or resend) bubbles from the screen up to the app, so that
no screen needs to know the app. Periodic refresh results define `can_replace`, so when refreshes pile up
only the newest one is handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message
from textual.worker import Worker

from bot import contracts


@dataclass
class AnnouncementsLoaded(Message):
    """A fresh page of announcements arrived (asked for with `cursor`: an answer for another page is stale)."""

    page: contracts.Page[contracts.Announcement]
    cursor: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AnnouncementsLoaded)


@dataclass
class AnnouncementLoaded(Message):
    """One announcement, a page of its deliveries (asked for with `cursor`) and its timeline arrived.

    `timeline` is None from a server without the timeline endpoint; `names` are the employees its audience
    names by id, as far as they are known.
    """

    announcement: contracts.Announcement
    deliveries: contracts.Page[contracts.Delivery]
    cursor: str | None = None
    timeline: contracts.Timeline | None = None
    names: dict[int, str] = field(default_factory=dict)

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AnnouncementLoaded)


@dataclass
class EmployeesLoaded(Message):
    """A page of employees (with the total matching) arrived, asked for with `cursor`."""

    page: contracts.TotalPage[contracts.Employee]
    cursor: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EmployeesLoaded)


@dataclass
class MessagesLoaded(Message):
    """A page of inbound messages arrived, asked for with `cursor`."""

    page: contracts.Page[contracts.InboundMessage]
    cursor: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MessagesLoaded)


@dataclass
class AudienceCounted(Message):
    """The recipient preview for the compose form: how many `audience` reaches."""

    count: int
    audience: contracts.Audience | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AudienceCounted)


@dataclass
class EmployeesFound(Message):
    """The compose form's employee search answered `q` with these employees."""

    q: str
    employees: list[contracts.Employee]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EmployeesFound)


@dataclass
class WorkerFinished(Message):
    """A screen's worker succeeded or failed; the app turns that into the connection state or a notice.

    Textual's Worker.StateChanged does not bubble, so screens restate the final state as this message, which does.
    """

    worker: Worker[Any]


@dataclass
class AnnouncementSelected(Message):
    """The operator chose an announcement: show its deliveries."""

    announcement_id: int


@dataclass
class CancelRequested(Message):
    """The operator asked to cancel this announcement; the app asks for confirmation first."""

    announcement: contracts.Announcement


@dataclass
class ResendUnknownRequested(Message):
    """The operator asked to resend this announcement's unknown deliveries; the app asks for confirmation first."""

    announcement: contracts.Announcement


@dataclass
class TemplatesLoaded(Message):
    """The compose form's templates arrived (one item per translation); `synced` is POST /templates/sync's count
    when the operator asked to sync first."""

    templates: list[contracts.Template]
    synced: int | None = None


@dataclass
class ConversationLoaded(Message):
    """One employee's conversation (oldest first) and the state of their 24-hour window arrived."""

    conversation: contracts.Conversation

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ConversationLoaded)


@dataclass
class ConversationRequested(Message):
    """The operator chose a message in the inbox: show the conversation with the employee who wrote it."""

    employee_id: int
    name: str

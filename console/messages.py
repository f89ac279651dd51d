"""Messages the console's workers post with their results (toolong / harlequin style).

Periodic refresh results define `can_replace`, so when refreshes pile up only the newest one is handled.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from bot import contracts


@dataclass
class AnnouncementsLoaded(Message):
    """A fresh page of announcements arrived."""

    page: contracts.Page[contracts.Announcement]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AnnouncementsLoaded)


@dataclass
class AnnouncementLoaded(Message):
    """One announcement and a page of its deliveries arrived."""

    announcement: contracts.Announcement
    deliveries: contracts.Page[contracts.Delivery]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AnnouncementLoaded)


@dataclass
class EmployeesLoaded(Message):
    """A page of employees (with the total matching) arrived."""

    page: contracts.TotalPage[contracts.Employee]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EmployeesLoaded)


@dataclass
class MessagesLoaded(Message):
    """A page of inbound messages arrived."""

    page: contracts.Page[contracts.InboundMessage]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MessagesLoaded)


@dataclass
class AudienceCounted(Message):
    """The recipient preview for the compose form."""

    count: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AudienceCounted)


@dataclass
class AnnouncementCreated(Message):
    """The compose form's announcement was accepted by the API."""

    announcement: contracts.Announcement


@dataclass
class ActionDone(Message):
    """A cancel or resend-unknown finished; `summary` is what to tell the operator."""

    summary: str

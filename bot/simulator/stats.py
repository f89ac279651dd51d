"""What the simulator counts; `GET /_simulator/stats` answers `Stats.snapshot()`."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# `GET /_simulator/sends` shows this much of each accepted message's text: enough to tell an announcement from
# a bot reply, never a whole 4,096-character message per send kept in memory.
TEXT_SHOWN = 200


@dataclass
class Accepted:
    """One accepted send, as `GET /_simulator/sends` lists it."""

    at: float  # wall clock (time.time()), comparable with the clock of any process on the same machine
    kind: str  # the message `type`: text, template, ...
    key: str  # biz_opaque_callback_data, or the text when there is none (what `duplicates` counts by)
    text: str | None  # what the employee reads (a template: header and body filled in), cut to TEXT_SHOWN
    via: str = "phone"  # how the send named the recipient: "phone" (`to`) or "bsuid" (`recipient`)
    wamid: str | None = None  # what the answer named it: a test quotes it as `context.id` to reply to it
    phone_number_id: str | None = None  # the business number it was sent from (the id in the send's URL)
    template: str | None = None  # a template send's template name and language code
    language: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "type": self.kind, "key": self.key, "text": self.text, "via": self.via,
                "wamid": self.wamid, "phone_number_id": self.phone_number_id, "template": self.template,
                "language": self.language}  # fmt: skip


@dataclass
class NumberStats:
    """One business number's sends: accepted, rejected (token or validation) and faults by kind."""

    accepted: int = 0
    rejected: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected, "faults": dict(self.faults)}


@dataclass
class Stats:
    accepted: int = 0
    rejected: int = 0
    # Graph error code -> sends refused with it (validation, templates, the window; not injected faults).
    rejections: Counter[int] = field(default_factory=Counter)
    # (recipient digits, callback data or message text) -> times accepted. More than once is the one
    # failure the product must never have: the same announcement delivered twice to one person. A send to a
    # BSUID counts under the phone behind it: one person, whichever id named them.
    sends: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    callbacks_posted: int = 0
    callbacks_failed: int = 0
    callback_retries: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    outages: int = 0
    # Sends whose client hung up before the simulator read them (it timed out waiting): never accepted.
    abandoned: int = 0
    # recipient digits -> every send accepted for them, in order of acceptance.
    accepted_log: dict[str, list[Accepted]] = field(default_factory=dict)
    # phone_number_id -> its counts: every configured number from the start, any other once a send named it.
    numbers: dict[str, NumberStats] = field(default_factory=dict)

    def number(self, phone_number_id: str) -> NumberStats:
        return self.numbers.setdefault(phone_number_id, NumberStats())

    def reject(self, phone_number_id: str | None, code: int | None = None) -> None:
        """A send refused for its token or its body; counted under its number when it named a known one."""
        self.rejected += 1
        if code is not None:
            self.rejections[code] += 1
        if phone_number_id is not None:
            self.number(phone_number_id).rejected += 1

    def fault(self, kind: str, phone_number_id: str) -> None:
        self.faults[kind] += 1
        self.number(phone_number_id).faults[kind] += 1

    def record_send(
        self,
        recipient: str,
        key: str,
        *,
        kind: str = "text",
        text: str | None = None,
        via: str = "phone",
        wamid: str | None = None,
        phone_number_id: str | None = None,
        template: str | None = None,
        language: str | None = None,
    ) -> None:
        self.accepted += 1
        self.sends[(recipient, key)] += 1
        if phone_number_id is not None:
            self.number(phone_number_id).accepted += 1
        shown = text[:TEXT_SHOWN] if text is not None else None
        entry = Accepted(time.time(), kind, key, shown, via, wamid, phone_number_id, template, language)
        self.accepted_log.setdefault(recipient, []).append(entry)

    def sends_listing(self) -> list[dict[str, Any]]:
        """Each recipient with the count and first/last time of their accepted sends, and the sends themselves."""
        return [
            {
                "recipient": who,
                "accepted": len(log),
                "first_at": log[0].at,
                "last_at": log[-1].at,
                "messages": [entry.as_dict() for entry in log],
            }
            for who, log in self.accepted_log.items()
        ]

    @property
    def duplicates(self) -> int:
        return sum(1 for count in self.sends.values() if count > 1)

    def snapshot(self) -> dict[str, Any]:
        return {
            "messages_accepted": self.accepted,
            "messages_rejected": self.rejected,
            "rejections": {str(code): count for code, count in sorted(self.rejections.items())},
            "recipients": len({recipient for recipient, _ in self.sends}),
            "duplicates": self.duplicates,
            "duplicate_sends": sum(count - 1 for count in self.sends.values() if count > 1),
            "faults": dict(self.faults),
            "callbacks_posted": self.callbacks_posted,
            "callbacks_failed": self.callbacks_failed,
            "callback_retries": self.callback_retries,
            "replies_sent": sum(self.replies.values()),
            "replies": dict(self.replies),
            "outages": self.outages,
            "abandoned": self.abandoned,
            "numbers": {number: counts.as_dict() for number, counts in self.numbers.items()},
        }

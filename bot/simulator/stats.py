"""What the simulator counts; `GET /_simulator/stats` answers `Stats.snapshot()`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    accepted: int = 0
    rejected: int = 0
    # (recipient digits, callback data or message text) -> times accepted. More than once is the one
    # failure the product must never have: the same announcement delivered twice to one person.
    sends: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    callbacks_posted: int = 0
    callbacks_failed: int = 0
    callback_retries: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    outages: int = 0

    def record_send(self, recipient: str, key: str) -> None:
        self.accepted += 1
        self.sends[(recipient, key)] += 1

    @property
    def duplicates(self) -> int:
        return sum(1 for count in self.sends.values() if count > 1)

    def snapshot(self) -> dict[str, Any]:
        return {
            "messages_accepted": self.accepted,
            "messages_rejected": self.rejected,
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
        }

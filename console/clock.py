"""Times as the operator reads them: on the employer's clock, labelled with its zone, so one zone is on screen."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def utc_now() -> datetime:
    """The real clock (tests give the console a fixed one instead)."""
    return datetime.now(UTC)


def zone_label(timezone: str, when: datetime) -> str:
    """'SAST' for Africa/Johannesburg at `when`; the zone's name where it has no lettered abbreviation ('+04')."""
    abbreviation = when.astimezone(ZoneInfo(timezone)).tzname() or ""
    return abbreviation if abbreviation.isalpha() else timezone


def clock_text(when: datetime, timezone: str) -> str:
    """'14:05 SAST': `when` to the minute on the employer's clock, with the zone it is in."""
    return f"{when.astimezone(ZoneInfo(timezone)):%H:%M} {zone_label(timezone, when)}"

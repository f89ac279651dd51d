"""Never twice through PgBouncer: the scenario of test_never_twice.py with PgBouncer in transaction mode in between.

Every jem-bot process (serve --no-dispatcher, the workers SIGKILLed mid-batch and their replacements) has
DATABASE_URL pointing at a PgBouncer in `pool_mode = transaction` (tests/acceptance/pgbouncer.py) and
JEM_PGBOUNCER=true: no prepared statement reused, no LISTEN, the webhook's status fast path in an explicit
transaction. The checks are the scenario's own (no duplicates, every delivery terminal, the accounting), and
PgBouncer's SHOW STATS shows that the API's and the status callbacks' transactions went through it. The test
itself reads and prepares the database directly.

Skipped when the `pgbouncer` binary is not installed; .ci/run installs it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.acceptance.pgbouncer import BINARY, SKIP_REASON, PgBouncer, running_pgbouncer
from tests.acceptance.test_never_twice import ANNOUNCEMENTS, Fleet, never_twice, running_fleet
from tests.conftest import Tenant

pytestmark = [pytest.mark.slow, pytest.mark.pgbouncer, pytest.mark.skipif(BINARY is None, reason=SKIP_REASON)]


@pytest.fixture(scope="module")
def pgbouncer(database_url: str) -> Iterator[PgBouncer]:
    with running_pgbouncer(database_url) as bouncer:
        yield bouncer


@pytest.fixture
async def fleet(tmp_path: Path, database_url: str, pgbouncer: PgBouncer) -> AsyncIterator[Fleet]:
    with running_fleet(tmp_path, pgbouncer.url(database_url), JEM_PGBOUNCER="true") as running:
        yield running


async def test_never_twice_through_pgbouncer_in_transaction_mode(
    pgbouncer: PgBouncer,
    fleet: Fleet,
    database_url: str,
    db: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # serve and every worker get only this URL: PgBouncer's port, never the server's.
    url = make_url(fleet.env["DATABASE_URL"])
    assert (url.host, url.port, url.database) == ("127.0.0.1", pgbouncer.port, make_url(database_url).database)
    assert fleet.env["JEM_PGBOUNCER"] == "true"
    database = str(url.database)
    before = pgbouncer.stats(database).get("total_xact_count", 0)

    try:
        stats = await never_twice(fleet, db, tenant, capsys, label="never-twice through pgbouncer")
    except BaseException:
        print(f"pgbouncer (port {pgbouncer.port}) log:\n{pgbouncer.log_tail()}")
        raise

    # The status callbacks were answered 200 by serve, whose only database is PgBouncer: the webhook's fast path
    # (the plain asyncpg pool) works through it, as the API did (the announcements were created with 201).
    callbacks = int(stats["callbacks_posted"])
    assert callbacks > 0, stats
    # PgBouncer counted those transactions: each status callback is one, each POST /announcements at least one.
    # Its totals are refreshed every stats_period (1 s), so wait for them.
    deadline = time.monotonic() + 5
    while (xacts := pgbouncer.stats(database).get("total_xact_count", 0) - before) < callbacks + ANNOUNCEMENTS:
        assert time.monotonic() < deadline, f"pgbouncer counted {xacts} transactions, fewer than {callbacks} callbacks"
        await asyncio.sleep(0.2)
    with capsys.disabled():
        print(f"pgbouncer: port={pgbouncer.port} transactions={xacts} status_callbacks={callbacks}")

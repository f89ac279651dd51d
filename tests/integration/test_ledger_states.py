"""A stateful property test of the delivery ledger against real PostgreSQL (hypothesis RuleBasedStateMachine).

Hypothesis plays workers, Meta and the operator in any order: claims, Meta accepting or refusing a send, the
worker recording the answer (now, or later because the database was down), timeouts after acceptance,
crashes that forget claims, leases expiring, Meta's statuses in any order, resend-unknown and opt-outs. A
model keeps the truth the ledger cannot see (what Meta accepted); after every step the invariants of the status
machine (docs/architecture.md#the-delivery-status-machine) are checked against the rows.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bot.ledger import claim, outcome, reaper
from bot.ledger.resend import resend_unknown
from bot.ledger.statuses import StatusEvent, apply_statuses, status_key, timestamp
from bot.ledger.tracker import Tracker, load_tracker
from tests.conftest import TABLES

T = TypeVar("T")
EMPLOYEES = 3
PHONE = "p1"
META_ORDER = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}
SETTLED = {"sent", "delivered", "read", "failed"}


@dataclass
class Flight:
    """One claim of one row, as its worker holds it: what Meta did with the request is the model's truth."""

    id: int
    claim: int
    worker: str
    meta: str | None = None  # None (not decided yet), "accepted", "refused"
    wamid: str | None = None


class LedgerMachine(RuleBasedStateMachine):
    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = create_async_engine(self.url, poolclass=NullPool)
        self.sm = async_sessionmaker(self.engine, expire_on_commit=False)
        self.flights: list[Flight] = []
        self.deferred: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        self.accepted: Counter[int] = Counter()  # sends Meta accepted, per delivery
        self.allowance: Counter[int] = Counter()  # resends the operator asked for, per delivery
        self.wamids: dict[int, list[str]] = {}
        self.evidence: set[int] = set()  # deliveries whose acceptance reached the ledger
        self.opted_out: set[int] = set()  # deliveries whose employee opted out before their next claim
        self.last: dict[int, str] = {}
        self.sends = 0
        self.tracker: Tracker | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()

    # --- set-up ---------------------------------------------------------------------------------------------

    @initialize()
    def seed(self) -> None:
        async def go() -> None:
            async with self.sm() as s, s.begin():
                await s.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
                e = (await s.execute(text("INSERT INTO employer (slug, name) VALUES ('m', 'M') RETURNING id"))).scalar()
                await s.execute(
                    text(
                        "INSERT INTO employee (employer_id, phone, name) "
                        "SELECT :e, '+2782000000' || g, 'E' || g FROM generate_series(1, :n) g"
                    ),
                    {"e": e, "n": EMPLOYEES},
                )
                a = (
                    await s.execute(
                        text(
                            "INSERT INTO announcement (employer_id, message, send_at, audience, status) "
                            "VALUES (:e, 'hi', now(), '{\"all\": true}', 'dispatching') RETURNING id"
                        ),
                        {"e": e},
                    )
                ).scalar()
                await s.execute(
                    text(
                        "INSERT INTO delivery (employer_id, announcement_id, employee_id) "
                        "SELECT employer_id, :a, id FROM employee ORDER BY id"
                    ),
                    {"a": a},
                )
                await s.execute(
                    text("INSERT INTO send_budget (phone_number_id, tokens) VALUES (:p, 1e9)"), {"p": PHONE}
                )
            self.tracker = await load_tracker(self.sm)

        self.run(go())

    # --- workers --------------------------------------------------------------------------------------------

    @rule(worker=st.sampled_from(["w1", "w2"]), n=st.integers(1, EMPLOYEES))
    def worker_claims(self, worker: str, n: int) -> None:
        batch = self.run(claim.claim_within_budget(self.sm, me=worker, n=n, phone_number_id=PHONE, rate=1e6, lease=60))
        for row in batch.rows:
            assert row.id not in self.opted_out, f"delivery {row.id} claimed after its employee opted out"
            self.flights.append(Flight(row.id, row.claim, worker))

    @precondition(lambda self: any(f.meta is None for f in self.flights))
    @rule(data=st.data(), accepts=st.booleans())
    def meta_answers(self, data: st.DataObject, accepts: bool) -> None:
        flight = data.draw(st.sampled_from([f for f in self.flights if f.meta is None]))
        if accepts:
            self.sends += 1
            flight.meta, flight.wamid = "accepted", f"wamid.{flight.id}.{self.sends}"
            self.accepted[flight.id] += 1
            self.wamids.setdefault(flight.id, []).append(flight.wamid)
        else:
            flight.meta = "refused"  # connection refused: nothing left, a sender-wide condition

    @precondition(lambda self: any(f.meta is not None for f in self.flights))
    @rule(data=st.data(), database_up=st.booleans())
    def worker_records_the_answer(self, data: st.DataObject, database_up: bool) -> None:
        flight = data.draw(st.sampled_from([f for f in self.flights if f.meta is not None]))
        self.flights.remove(flight)
        if flight.meta == "accepted":
            assert flight.wamid is not None
            wamid = flight.wamid

            async def write() -> None:
                await outcome.record_sent_many(
                    self.sm, sent=[outcome.Accepted(flight.id, wamid, phone_number_id=PHONE)]
                )
                self.evidence.add(flight.id)

        else:

            async def write() -> None:
                await outcome.record_retry(
                    self.sm, id=flight.id, claim=flight.claim, delay=0, spent=False, code=None, title="refused"
                )

        self._write(f"outcome of {flight}", write, now=database_up)

    @precondition(lambda self: bool(self.flights))
    @rule(data=st.data(), database_up=st.booleans())
    def worker_times_out(self, data: st.DataObject, database_up: bool) -> None:
        """The request left; no answer came in time. Meta may or may not have accepted it."""
        flight = data.draw(st.sampled_from(self.flights))
        self.flights.remove(flight)
        if flight.meta is None and data.draw(st.booleans(), label="accepted anyway"):
            self.sends += 1
            self.accepted[flight.id] += 1
            self.wamids.setdefault(flight.id, []).append(f"wamid.{flight.id}.{self.sends}")

        async def write() -> None:
            await outcome.record_unknown(self.sm, id=flight.id, claim=flight.claim, title="read timeout")

        self._write(f"timeout of {flight}", write, now=database_up)

    @rule(worker=st.sampled_from(["w1", "w2"]))
    def worker_crashes(self, worker: str) -> None:
        """SIGKILL: every claim it held is forgotten; what Meta did with them stays the truth."""
        self.flights = [f for f in self.flights if f.worker != worker]

    @rule()
    def leases_expire(self) -> None:
        async def go() -> None:
            async with self.sm() as s, s.begin():
                await s.execute(text("UPDATE delivery SET lease_until = now() - interval '1 s' WHERE status='sending'"))
            await reaper.reap(self.sm)

        self.run(go())

    @precondition(lambda self: bool(self.deferred))
    @rule(data=st.data())
    def database_comes_back(self, data: st.DataObject) -> None:
        pending = data.draw(st.permutations(self.deferred))
        self.deferred = []
        for _, write in pending:
            self.run(write())  # type: ignore[arg-type]

    # --- Meta's webhooks --------------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.wamids))
    @rule(data=st.data(), status=st.sampled_from(sorted(META_ORDER)))
    def meta_reports_a_status(self, data: st.DataObject, status: str) -> None:
        delivery_id = data.draw(st.sampled_from(sorted(self.wamids)))
        wamid = data.draw(st.sampled_from(self.wamids[delivery_id]))
        assert self.tracker is not None
        event = StatusEvent(status_key(wamid, status), "{}", wamid, status, timestamp(None), tracked_id=delivery_id)

        async def go() -> int:
            async with self.sm() as s, s.begin():
                return (await apply_statuses(s, [event])).matched

        if self.run(go()):
            self.evidence.add(delivery_id)

    # --- the operator -----------------------------------------------------------------------------------------

    @rule()
    def operator_resends_unknown(self) -> None:
        async def go() -> list[int]:
            async with self.sm() as s, s.begin():
                resendable = list(
                    (
                        await s.execute(text("SELECT id FROM delivery WHERE status = 'unknown' AND wamid IS NULL"))
                    ).scalars()
                )
                await resend_unknown(s, 1, 1, None)
            return resendable

        for delivery_id in self.run(go()):
            self.allowance[delivery_id] += 1  # the operator knowingly accepted one more possible send

    @rule(employee=st.integers(1, EMPLOYEES))
    def employee_opts_out(self, employee: int) -> None:
        async def go() -> int:
            async with self.sm() as s, s.begin():
                await s.execute(text("UPDATE employee SET opted_out_at = now() WHERE id = :i"), {"i": employee})
                return int(
                    (await s.execute(text("SELECT id FROM delivery WHERE employee_id = :i"), {"i": employee})).scalar()
                )

        self.opted_out.add(self.run(go()))

    # --- invariants -------------------------------------------------------------------------------------------

    def _write(self, what: str, write: Callable[[], Awaitable[Any]], *, now: bool) -> None:
        if now:
            self.run(write())  # type: ignore[arg-type]
        else:
            self.deferred.append((what, write))

    def _rows(self) -> list[Any]:
        async def go() -> list[Any]:
            async with self.sm() as s:
                return list(
                    (
                        await s.execute(
                            text("SELECT id, status, wamid, attempts, lease_until, claims FROM delivery ORDER BY id")
                        )
                    ).all()
                )

        return self.run(go())

    @invariant()
    def never_twice_unless_the_operator_risked_it(self) -> None:
        for delivery_id, count in self.accepted.items():
            assert count <= 1 + self.allowance[delivery_id], (delivery_id, count, self.allowance[delivery_id])

    @invariant()
    def the_rows_obey_the_status_machine(self) -> None:
        for row in self._rows():
            assert row.attempts >= 0, row
            if row.status == "sending":
                assert row.lease_until is not None, row
            if row.wamid is not None:
                # A row with a wamid is never sent again: it is settled.
                assert row.status in SETTLED, row
                assert row.wamid in self.wamids.get(row.id, []), row
            if row.id in self.evidence:
                assert row.status in SETTLED, row
            before = self.last.get(row.id)
            if before in SETTLED:
                assert row.status in SETTLED, (before, row)
                assert META_ORDER[row.status] >= META_ORDER[before], (before, row)
            self.last[row.id] = row.status


@pytest.mark.slow
def test_the_ledger_keeps_its_promises_under_any_interleaving_of_faults(database_url: str) -> None:
    LedgerMachine.url = database_url
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )

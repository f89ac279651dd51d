"""Health and metrics endpoints (public: no token)."""

from __future__ import annotations

import logging

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy.exc import SQLAlchemyError

from bot import contracts
from bot.db.engine import DatabaseUnavailableError, ping
from bot.db.migrate import current_revision
from bot.db.queries import query
from bot.errors import ProblemOperation, problems
from bot.ledger import budget
from bot.state import AppState

log = logging.getLogger("jem.health")


@get(
    "/health",
    operation_id="Health",
    tags=["Operations"],
    # Public. `[{}]`, one requirement that asks for nothing: an empty list would leave the document-wide bearer one.
    security=[{}],
    summary="Liveness and database reachability",
    description="200 when the database answers, 503 when it does not.",
    responses={
        503: ResponseSpec(contracts.Health, description="The database is unreachable: `status` is `degraded`"),
        **problems(),
    },
    operation_class=ProblemOperation,
)
async def health(state: AppState) -> Response[contracts.Health]:
    phone = state.settings.whatsapp_phone_number_id or "default"
    try:
        # The embedded server has no setting to fix; a DATABASE_URL one is named with what is wrong with it.
        await ping(state.engine, source=None if state.embedded else "DATABASE_URL")
        revision = await current_revision(state.engine)
        async with state.sessionmaker() as session:
            sender = await budget.state(session, phone_number_id=phone)
            alive = (await session.execute(query("dispatchers_alive"))).scalar_one()
    except (DatabaseUnavailableError, SQLAlchemyError, OSError) as exc:
        log.warning("health: database unavailable: %s", exc)
        body = contracts.Health(status="degraded", database="unavailable", detail=str(exc).splitlines()[0][:200])
        return Response(body, status_code=503)
    dispatcher = state.dispatcher
    return Response(
        contracts.Health(
            status="ok",
            database="ok",
            schema=revision,
            dispatcher=None if dispatcher is None else dispatcher.describe(),
            dispatchers_alive=int(alive),
            # A paused or backed-off sender is healthy software that cannot send: 200, with the reason in view.
            sender=contracts.SenderState(
                phone_number_id=sender.phone_number_id,
                paused_until=sender.paused_until,
                pause_reason=sender.pause_reason,
                backoff_until=sender.backoff_until,
                backoff_reason=sender.backoff_reason,
            ),
        )
    )


@get(
    "/metrics",
    operation_id="Metrics",
    tags=["Operations"],
    # Public. `[{}]`, one requirement that asks for nothing: an empty list would leave the document-wide bearer one.
    security=[{}],
    summary="Prometheus metrics",
    media_type="text/plain; version=0.0.4; charset=utf-8",
    responses=problems(),
    operation_class=ProblemOperation,
)
async def metrics(state: AppState) -> bytes:
    try:
        async with state.engine.connect() as conn:
            rows = (await conn.execute(query("dispatch_backlog"))).all()
        counts = {r.status: r.n for r in rows}
        for status in ("pending", "sending"):
            state.metrics.dispatch_backlog.labels(status).set(counts.get(status, 0))
    except Exception:  # the backlog gauge is best effort; metrics must answer even when the DB does not
        log.warning("metrics: could not read the dispatch backlog")
    data: bytes = state.metrics.render()
    return data

"""Health and metrics endpoints (public: no token)."""

from __future__ import annotations

import logging

from litestar import Response, get
from litestar.datastructures import State
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bot import contracts
from bot.db.engine import DatabaseUnavailableError, ping
from bot.db.migrate import current_revision

log = logging.getLogger("jem.health")


@get(
    "/health",
    operation_id="Health",
    tags=["Operations"],
    summary="Liveness and database reachability",
    description="200 when the database answers, 503 when it does not.",
)
async def health(state: State) -> Response[contracts.Health]:
    try:
        await ping(state.engine)
        revision = await current_revision(state.engine)
    except (DatabaseUnavailableError, SQLAlchemyError, OSError) as exc:
        log.warning("health: database unavailable: %s", exc)
        body = contracts.Health(status="degraded", database="unavailable", detail=str(exc).splitlines()[0][:200])
        return Response(body, status_code=503)
    dispatcher = state.get("dispatcher")
    return Response(
        contracts.Health(
            status="ok",
            database="ok",
            schema=revision,
            dispatcher=None if dispatcher is None else dispatcher.describe(),
        )
    )


@get(
    "/metrics",
    operation_id="Metrics",
    tags=["Operations"],
    summary="Prometheus metrics",
    media_type="text/plain; version=0.0.4; charset=utf-8",
)
async def metrics(state: State) -> bytes:
    try:
        async with state.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT status, count(*) AS n FROM delivery"
                        " WHERE status IN ('pending', 'sending') GROUP BY status"
                    )
                )
            ).all()
        counts = {r.status: r.n for r in rows}
        for status in ("pending", "sending"):
            state.metrics.dispatch_backlog.labels(status).set(counts.get(status, 0))
    except Exception:  # the backlog gauge is best effort; metrics must answer even when the DB does not
        log.warning("metrics: could not read the dispatch backlog")
    data: bytes = state.metrics.render()
    return data

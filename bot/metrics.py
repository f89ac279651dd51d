"""Prometheus metrics, one registry per app instance (no process-global registry).

With `serve --workers N` every server process counts its own share of the requests; the supervisor then gives
them a shared directory (prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`, set before the
processes start) and `/metrics` from any process answers the sum over all of them, not a random process's part.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sends = Counter(
            "jem_sends",
            "Graph send attempts by outcome (sent, retry, failed, unknown)",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_events = Counter(
            "jem_webhook_events",
            "Webhook events by kind and result (new, duplicate)",
            ["kind", "result"],
            registry=self.registry,
        )
        self.webhook_requests = Counter(
            "jem_webhook_requests", "Webhook POSTs by response status", ["status"], registry=self.registry
        )
        self.dispatch_backlog = Gauge(
            "jem_dispatch_backlog",
            "Deliveries waiting to be sent (pending) or in flight (sending)",
            ["status"],
            registry=self.registry,
            # Read from the database by whichever process answers /metrics: the latest reading is the truth.
            multiprocess_mode="mostrecent",
        )
        self.graph_latency = Histogram(
            "jem_graph_request_seconds",
            "Latency of Graph API send calls",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "jem_webhook_request_seconds",
            "Time to verify, store and apply one webhook POST",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        shared = os.environ.get(MULTIPROC_ENV)
        if not shared:
            return generate_latest(self.registry)
        # Every server process's values, this one's included (they are all in the shared directory).
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

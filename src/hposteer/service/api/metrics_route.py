"""``GET /metrics``: the Prometheus exposition of this service process (docs/events.md).

No token, like ``/healthz``: scrapers rarely carry one, and the page holds counts and latencies
only (no task names, owners or parameters). Restrict it at the proxy if even those are private.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from hposteer.service.events.prometheus import CONTENT_TYPE, ServiceMetrics


def install(app: FastAPI, metrics: ServiceMetrics) -> None:
    @app.get("/metrics", include_in_schema=False)
    def get_metrics() -> Response:  # a plain def: the database gauges are read on a worker thread
        return Response(metrics.render(), media_type=CONTENT_TYPE)

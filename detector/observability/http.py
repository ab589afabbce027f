"""The API's side of the metrics: every request timed, and ``/metrics`` served."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from detector.observability.jobs import JobsCollector
from detector.observability.metrics import HTTP_LATENCY, HTTP_REQUESTS, process_values


class _Union:
    """Collects from several collectors or registries, for one exposition."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


_api_exposition: Any = None
_api_lock = threading.Lock()


def _api_collector() -> Any:
    global _api_exposition
    with _api_lock:
        if _api_exposition is None:
            _api_exposition = _Union(process_values(), JobsCollector())
        return _api_exposition


def init_app(app: Flask) -> None:
    """Serve ``/metrics`` and time every request of ``app``."""

    @app.before_request
    def _start_timer() -> None:
        g._metrics_start = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        start = g.pop("_metrics_start", None)
        if start is not None:
            rule = request.url_rule
            labels = (
                request.method,
                rule.rule if rule is not None else "<unmatched>",
                str(response.status_code),
            )
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_LATENCY.labels(*labels).observe(time.perf_counter() - start)
        return response

    def metrics() -> Response:
        """Prometheus metrics: the text format, or OpenMetrics when the scraper asks for it."""
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encode(_api_collector()), headers={"Content-Type": content_type})

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])

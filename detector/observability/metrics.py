"""Prometheus metrics: the API's ``/metrics``, Celery task metrics, and pipeline helpers.

API (``init_app``): a request counter and a latency histogram by method, endpoint
(the URL rule, e.g. ``/api/jobs/<job_id>``) and status, plus ``detector_jobs``,
the jobs in the database by status, counted by a query at scrape time.

Workers (``connect_worker_metrics``, called by ``detector.worker``; off unless
``METRICS_PORT`` is set): task duration and failures by task and queue, from
Celery's signals, and whatever the pipeline reports through ``observe_frames``,
``observe_batch`` and ``observe_model_load``.

Several processes, one scrape target. Gunicorn runs several API processes and a
Celery worker a pool of child processes that grows and shrinks (--autoscale).
Set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory private to that container
or worker (a tmpfs in docker-compose.yaml) and prometheus_client's multiprocess
mode keeps every process's values in files there:

* the API's ``/metrics`` sums over all gunicorn processes, whichever one answers;
* a worker's main process serves the sum over its pool's children on ``METRICS_PORT``.

Without ``PROMETHEUS_MULTIPROC_DIR`` every process keeps its own values: the API
answers for the process that took the request (right for one gunicorn process),
and each worker child k serves its own on ``METRICS_PORT + k`` (scrape every port
up to the --autoscale maximum).

All metrics live in ``REGISTRY``, created once per process, so repeated
``create_app`` calls (the tests) never register a time series twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PORT_ENV = "METRICS_PORT"


def multiprocess_dir() -> str | None:
    """The multiprocess-mode directory, or None in single-process mode."""
    return os.environ.get(MULTIPROC_ENV) or None


_mp_dir = multiprocess_dir()
if _mp_dir:
    # Values are written there from the first labelled sample on.
    os.makedirs(_mp_dir, exist_ok=True)

# No `*_created` series: one less time series per label set, and no use here.
disable_created_metrics()

REGISTRY = CollectorRegistry()
if not _mp_dir:
    # Per-process collectors; they mean nothing summed over processes.
    ProcessCollector(registry=REGISTRY)
    PlatformCollector(registry=REGISTRY)
    GCCollector(registry=REGISTRY)

WORKER = socket.gethostname()

# --- API -------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "detector_http_requests",
    "HTTP requests answered by the API.",
    ["method", "endpoint", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "detector_http_request_duration_seconds",
    "Time to answer an HTTP request (uploads include receiving the file).",
    ["method", "endpoint", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)

# --- Celery tasks ------------------------------------------------------------------

TASK_DURATION = Histogram(
    "detector_task_duration_seconds",
    "Run time of a Celery task (failed runs included), by task and queue.",
    ["task", "queue"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800),
    registry=REGISTRY,
)
TASK_FAILURES = Counter(
    "detector_task_failures",
    "Celery task runs that raised, by task and queue.",
    ["task", "queue"],
    registry=REGISTRY,
)

# --- Pipeline helpers ------------------------------------------------------------

FRAMES = Counter(
    "detector_frames",
    "Frames run through the detection model, by worker host and device.",
    ["worker", "device"],
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "detector_batch_size",
    "Frames per forward pass of the detection model, by worker host.",
    ["worker"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
MODEL_LOAD = Histogram(
    "detector_model_load_seconds",
    "Time to build a detection model and load its weights, by worker host, backend and device.",
    ["worker", "backend", "device"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)


def observe_frames(n: int, device: str) -> None:
    """Count ``n`` frames detected on ``device`` (``cpu``, ``cuda:0``, ...)."""
    FRAMES.labels(WORKER, device).inc(n)


def observe_batch(size: int) -> None:
    """Record one forward pass over ``size`` frames."""
    BATCH_SIZE.labels(WORKER).observe(size)


def observe_model_load(seconds: float, backend: str, device: str) -> None:
    """Record how long building a ``backend`` model on ``device`` took."""
    MODEL_LOAD.labels(WORKER, backend, device).observe(seconds)


# --- Jobs by status, from the database -------------------------------------------


class JobsCollector:
    """``detector_jobs{status}``: a ``GROUP BY status`` over the jobs table at scrape time.

    Every status has a sample (0 when no job has it). ``detector_jobs_database_up``
    is 0 when the query failed, so a database outage does not break the scrape.
    """

    def describe(self) -> Iterable[Metric]:
        return [self._jobs(), self._up()]

    @staticmethod
    def _jobs() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "detector_jobs", "Jobs in the database by status, counted at scrape time.", labels=["status"]
        )

    @staticmethod
    def _up() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "detector_jobs_database_up", "1 if the jobs count query of this scrape succeeded."
        )

    def collect(self) -> Iterable[Metric]:
        from sqlalchemy import func, select

        from detector.db import db
        from detector.models import Job, JobStatus

        jobs, up = self._jobs(), self._up()
        counts = {member.value: 0 for member in JobStatus}
        try:
            rows = db.session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            for found, count in rows:
                counts[JobStatus(found).value] = int(count)
        except Exception as exc:  # the database may be down; the rest of the scrape is still good
            log.warning("metrics: counting jobs failed: %s", exc)
            up.add_metric([], 0)
            return [jobs, up]
        finally:
            db.session.remove()
        for status, count in counts.items():
            jobs.add_metric([status], count)
        up.add_metric([], 1)
        return [jobs, up]


class _Union:
    """Collects from several collectors or registries, for one exposition."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


def _process_values() -> Any:
    """This process's metric values, or every process's summed in multiprocess mode."""
    directory = multiprocess_dir()
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


_api_exposition: Any = None
_api_lock = threading.Lock()


def _api_collector() -> Any:
    global _api_exposition
    with _api_lock:
        if _api_exposition is None:
            _api_exposition = _Union(_process_values(), JobsCollector())
        return _api_exposition


# --- Flask -------------------------------------------------------------------------


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


# --- Celery workers ----------------------------------------------------------------

_started: dict[str, tuple[float, str]] = {}


def _task_queue(task: Any) -> str:
    """The queue a task came from: its delivery's routing key, else the static route."""
    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    queue = info.get("routing_key") or info.get("queue")
    if queue:
        return str(queue)
    from detector.pipeline.celery_app import ROUTES

    return str(ROUTES.get(getattr(task, "name", ""), {}).get("queue", "unknown"))


def on_task_prerun(task_id: str | None = None, task: Any = None, **_kwargs: Any) -> None:
    if task_id:
        _started[task_id] = (time.perf_counter(), _task_queue(task))


def on_task_postrun(task_id: str | None = None, task: Any = None, **_kwargs: Any) -> None:
    started = _started.pop(task_id, None) if task_id else None
    if started is not None:
        start, queue = started
        TASK_DURATION.labels(getattr(task, "name", "unknown"), queue).observe(time.perf_counter() - start)


def on_task_failure(sender: Any = None, task_id: str | None = None, **_kwargs: Any) -> None:
    started = _started.get(task_id) if task_id else None
    queue = started[1] if started is not None else _task_queue(sender)
    TASK_FAILURES.labels(getattr(sender, "name", "unknown"), queue).inc()


def connect_task_signals() -> None:
    """Record task duration and failures from Celery's signals (idempotent)."""
    from celery.signals import task_failure, task_postrun, task_prerun

    task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="detector.observability.metrics.prerun")
    task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="detector.observability.metrics.postrun")
    task_failure.connect(on_task_failure, weak=False, dispatch_uid="detector.observability.metrics.failure")


def _process_index() -> int:
    from billiard.process import current_process

    return int(getattr(current_process(), "index", 0) or 0)


def init_worker_metrics(port: int) -> int | None:
    """Serve this worker's metrics over HTTP; returns the port used (None: it was taken).

    Multiprocess mode: call it once, in the worker's main process; it serves the
    sum over the pool's children on ``port``. Otherwise: call it in each pool
    child (after the fork); child k serves its own metrics on ``port + k``.
    """
    registry = _process_values()
    if not multiprocess_dir():
        port += _process_index()
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:  # the port is taken: run without metrics rather than not at all
        log.error("metrics: cannot serve on port %d (pid %d): %s", port, os.getpid(), exc)
        return None
    log.info("metrics served on port %d (pid %d)", port, os.getpid())
    return port


def _mark_dead(pid: int | None = None, **_kwargs: Any) -> None:
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid or os.getpid())


def connect_worker_metrics() -> bool:
    """Turn worker metrics on when ``METRICS_PORT`` is set; False (and nothing done) if not.

    Connects the task signals and starts the HTTP server at the right moment:
    ``worker_init`` (main process) in multiprocess mode, ``worker_process_init``
    (each pool child) otherwise.
    """
    raw = (os.environ.get(PORT_ENV) or "").strip()
    if not raw:
        return False
    port = int(raw)
    from celery.signals import worker_init, worker_process_init, worker_process_shutdown

    connect_task_signals()
    if multiprocess_dir():
        worker_init.connect(
            lambda **_: init_worker_metrics(port),
            weak=False,
            dispatch_uid="detector.observability.metrics.server",
        )
        worker_process_shutdown.connect(
            _mark_dead, weak=False, dispatch_uid="detector.observability.metrics.dead"
        )
    else:
        worker_process_init.connect(
            lambda **_: init_worker_metrics(port),
            weak=False,
            dispatch_uid="detector.observability.metrics.server",
        )
    return True

"""The service's Prometheus metrics, in one registry per process.

API: a request counter and a latency histogram by method, endpoint (the URL
rule, e.g. ``/api/jobs/<job_id>``) and status (fed by `detector.observability.http`),
and ``detector_jobs``, the jobs in the database by status, counted at scrape time
(`detector.observability.jobs`).

Workers: task duration and failures by task and queue, from Celery's signals
(`detector.observability.worker`), and what the pipeline reports through
``observe_frames``, ``observe_batch``, ``observe_batch_size_limit`` and
``observe_model_load``.

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

import os
import socket
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    multiprocess,
)

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

# --- The pipeline ------------------------------------------------------------------

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


JOBS_ENDED = Counter(
    "detector_jobs_ended",
    "Jobs that ended, by final status (counted once, by the process that ended each).",
    ["status"],
    registry=REGISTRY,
)

BATCH_SIZE_LIMIT = Gauge(
    "detector_batch_size_limit",
    "The largest batch this worker process runs: the configured size, or less after "
    "the device ran out of memory on a larger one.",
    ["worker", "device"],
    multiprocess_mode="max",
    registry=REGISTRY,
)


def observe_frames(n: int, device: str) -> None:
    """Count ``n`` frames detected on ``device`` (``cpu``, ``cuda:0``, ...)."""
    FRAMES.labels(WORKER, device).inc(n)


def observe_batch(size: int) -> None:
    """Record one forward pass over ``size`` frames."""
    BATCH_SIZE.labels(WORKER).observe(size)


def observe_job_ended(status: str) -> None:
    """Count a job that ended as ``status`` (only the process whose change took calls it)."""
    JOBS_ENDED.labels(status=status).inc()


def observe_batch_size_limit(size: int, device: str) -> None:
    """Record the batch size a predictor now runs at (it shrinks after out-of-memory)."""
    BATCH_SIZE_LIMIT.labels(WORKER, device).set(size)


def observe_model_load(seconds: float, backend: str, device: str) -> None:
    """Record how long building a ``backend`` model on ``device`` took."""
    MODEL_LOAD.labels(WORKER, backend, device).observe(seconds)


def process_values() -> Any:
    """This process's metric values, or every process's summed in multiprocess mode."""
    directory = multiprocess_dir()
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry

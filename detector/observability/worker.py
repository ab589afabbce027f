"""A Celery worker's side of the metrics: task duration and failures from Celery's
signals, and the HTTP server a worker serves its metrics on (``METRICS_PORT``)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from prometheus_client import multiprocess, start_http_server

from detector.observability.metrics import (
    PORT_ENV,
    TASK_DURATION,
    TASK_FAILURES,
    multiprocess_dir,
    process_values,
)

log = logging.getLogger(__name__)

_started: dict[str, tuple[float, str]] = {}


def _task_queue(task: Any) -> str:
    """The queue a task came from: its delivery's routing key, else the static route."""
    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    queue = info.get("routing_key") or info.get("queue")
    if queue:
        return str(queue)
    conf = getattr(getattr(task, "app", None), "conf", None)
    routes = (conf.get("task_routes") if conf is not None else None) or {}
    return str(routes.get(getattr(task, "name", ""), {}).get("queue", "unknown"))


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

    task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="detector.observability.worker.prerun")
    task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="detector.observability.worker.postrun")
    task_failure.connect(on_task_failure, weak=False, dispatch_uid="detector.observability.worker.failure")


def _process_index() -> int:
    from billiard.process import current_process

    return int(getattr(current_process(), "index", 0) or 0)


def init_worker_metrics(port: int) -> int | None:
    """Serve this worker's metrics over HTTP; returns the port used (None: it was taken).

    Multiprocess mode: call it once, in the worker's main process; it serves the
    sum over the pool's children on ``port``. Otherwise: call it in each pool
    child (after the fork); child k serves its own metrics on ``port + k``.
    """
    registry = process_values()
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
            dispatch_uid="detector.observability.worker.server",
        )
        worker_process_shutdown.connect(
            _mark_dead, weak=False, dispatch_uid="detector.observability.worker.dead"
        )
    else:
        worker_process_init.connect(
            lambda **_: init_worker_metrics(port),
            weak=False,
            dispatch_uid="detector.observability.worker.server",
        )
    return True

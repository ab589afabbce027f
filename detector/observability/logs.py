"""Logging: plain text or one JSON object per line, with the host's name (the node:
which machine of a deployment wrote it) and the job id and chunk index of the
Celery task that is running (if any) on every line."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

_JOB_ID_LENGTH = 32

#: This host's name, on every log line: a deployment's nodes each log their own.
NODE = socket.gethostname()
TEXT_FORMAT = "%(asctime)s %(node)s %(levelname)s %(name)s: %(message)s"


def task_context() -> dict[str, Any]:
    """``{"job_id": ..., "chunk": ...}`` of the pipeline task running in this process."""
    from celery import current_task

    task = current_task
    request = getattr(task, "request", None) if task else None
    if request is None or not getattr(request, "id", None):
        return {}
    args = list(request.args or [])
    kwargs = dict(request.kwargs or {})
    job_id = kwargs.get("job_id") or next(
        (a for a in args if isinstance(a, str) and len(a) == _JOB_ID_LENGTH), None
    )
    context: dict[str, Any] = {"task": task.name, "task_id": request.id}
    if job_id:
        context["job_id"] = job_id
    if task.name == "detector.detect_frames" and len(args) > 1:
        context["chunk"] = args[1]
    return context


class TaskContextFilter(logging.Filter):
    """Adds ``node`` to each record, and ``job_id`` and ``chunk`` to each logged inside
    a pipeline task."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = NODE
        for key, value in task_context().items():
            setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    FIELDS = ("node", "job_id", "chunk", "task", "task_id")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _task_lines_to_root(logger: logging.Logger | None = None, **_kwargs: Any) -> None:
    """Celery's ``after_setup_task_logger``: the task logger (whose lines a worker's tasks
    write) gets no handler and format of Celery's own, so its lines go through the root
    logger's handler, with the node, job and chunk, in LOG_FORMAT."""
    if logger is not None:
        logger.handlers.clear()
        logger.propagate = True


def configure_logging(level_name: str, fmt: str) -> None:
    """Log to stderr at ``level_name``, as ``text`` or ``json``; in a Celery worker, the
    tasks' lines too."""
    from celery.signals import after_setup_task_logger

    after_setup_task_logger.connect(
        _task_lines_to_root, weak=False, dispatch_uid="detector.observability.logs.task_lines"
    )
    level = getattr(logging, level_name.upper(), logging.INFO)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_detector", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._detector = True  # type: ignore[attr-defined]
        handler.addFilter(TaskContextFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.setLevel(level)

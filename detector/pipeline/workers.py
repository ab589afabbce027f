"""Which queues the online workers consume: is anyone serving a job's model?

Asked of the workers themselves with Celery's ``inspect().active_queues()``
broadcast (a worker's main process answers it even while its children are
busy with chunks), and remembered for a few seconds in each process.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import current_app

log = logging.getLogger(__name__)

#: Seconds to wait for the workers' replies.
INSPECT_TIMEOUT_S = 1.0
#: Seconds an answer is reused.
CACHE_SECONDS = 10.0

_lock = threading.Lock()
_cached: tuple[float, dict[str, list[str]] | None] | None = None


def consumers() -> dict[str, list[str]] | None:
    """Queue name -> the worker nodes consuming it now; None when no worker
    answered at all (the broker's control channel is down, or no worker runs)."""
    global _cached
    with _lock:
        if _cached is not None and time.monotonic() - _cached[0] < CACHE_SECONDS:
            return _cached[1]
    try:
        replies = current_app.extensions["celery"].control.inspect(timeout=INSPECT_TIMEOUT_S).active_queues()
    except Exception:
        log.warning("could not ask the workers which queues they consume", exc_info=True)
        replies = None
    found: dict[str, list[str]] | None = None
    if replies:
        found = {}
        for node, queues in replies.items():
            for queue in queues or []:
                found.setdefault(str(queue.get("name")), []).append(node)
    with _lock:
        _cached = (time.monotonic(), found)
    return found


def serving(queue: str) -> bool | None:
    """Whether an online worker consumes ``queue``: None when that cannot be told."""
    found = consumers()
    if found is None:
        return None
    return bool(found.get(queue))


def forget() -> None:
    """Drop the remembered answer (tests; a worker just started)."""
    global _cached
    with _lock:
        _cached = None


def queue_depth(queue: str) -> int | None:
    """How many messages wait in ``queue`` on the broker (ready, not yet taken by a
    worker); None when the broker cannot be asked or has no such queue."""
    try:
        with current_app.extensions["celery"].connection_for_read() as connection:
            declared = connection.default_channel.queue_declare(queue=queue, passive=True)
            return int(declared.message_count)
    except Exception:
        log.warning("could not count the messages in queue %s", queue, exc_info=True)
        return None

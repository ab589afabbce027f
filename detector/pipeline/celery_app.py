"""The Celery app, configured from the Flask app's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery, Task
from flask import Flask
from kombu import Exchange, Queue

from detector.config import ConfigError, Settings
from detector.detection.catalog import load_catalog
from detector.pipeline.limits import task_limits
from detector.pipeline.names import DETECT_FRAMES, PROCESSOR_QUEUE, QUEUE_OF, RENDER_QUEUE, WATCHDOG
from detector.runtime.queues import MAX_PRIORITY, model_queue

ROUTES = {name: {"queue": queue, "routing_key": queue} for name, queue in QUEUE_OF.items()}


# Seconds between a file result store's checks for a chord's end (see below).
EMBEDDED_CHORD_POLL_S = 10.0


def _queue(name: str, **arguments: Any) -> Queue:
    return Queue(
        name, Exchange(name, type="direct"), routing_key=name, durable=True, queue_arguments=arguments or None
    )


def celery_config(settings: Settings, models: tuple[str, ...] = ("default",)) -> dict[str, Any]:
    """Celery settings from the service's settings.

    ``models`` are the names of the deployment's models, the default first:
    each has a queue for its chunks, a priority queue (RabbitMQ
    ``x-max-priority``), so that a job's first chunks go before another job's
    later ones (detector.runtime.queues.chunk_priority).
    """
    broker = settings.celery_broker_url
    backend = settings.celery_result_backend
    conf: dict[str, Any] = {
        "broker_url": broker,
        "result_backend": backend,
        # JSON only: a broker message can never make a worker unpickle anything.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Ack after the task ran; a killed worker's task is delivered again.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Long GPU tasks: a worker process takes one message at a time.
        "worker_prefetch_multiplier": 1,
        "task_default_queue": PROCESSOR_QUEUE,
        "task_default_exchange": PROCESSOR_QUEUE,
        "task_default_routing_key": PROCESSOR_QUEUE,
        "task_queues": (
            _queue(PROCESSOR_QUEUE),
            _queue(RENDER_QUEUE),
            *(_queue(model_queue(name), **{"x-max-priority": MAX_PRIORITY}) for name in models),
        ),
        # A chunk goes to its job's model's queue (planning says which); this route
        # is only for a detect_frames sent without one.
        "task_routes": {
            **ROUTES,
            DETECT_FRAMES: {"queue": model_queue(models[0]), "routing_key": model_queue(models[0])},
        },
        # No global time limit: each task has the one its work needs (limits.py). These
        # are the fixed ones; a render's and a tracking step's grow with the job's frames
        # and come with each message; a download has none (a stall ends it).
        "task_annotations": task_limits(settings),
        # Chord bookkeeping must outlive the longest queue wait plus job.
        "result_expires": 7 * 24 * 3600,
        "result_extended": True,
        "broker_connection_retry_on_startup": True,
        # After a broker reconnect a running chunk goes on; its redelivered copy then
        # finds the chunk done (or replaces its rows): idempotent either way.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": {"watchdog": {"task": WATCHDOG, "schedule": float(settings.watchdog_interval)}},
    }
    if broker.startswith("filesystem"):
        folder = Path(settings.data_dir) / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        conf["broker_transport"] = "detector.pipeline.filesystem_broker:Transport"
        conf["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": settings.broker_store_processed,
            # Seconds between looks at the queue folder: a short wait between chunks.
            "polling_interval": 0.05,
        }
    elif broker.startswith(("amqp", "pyamqp")):
        # Publisher confirms: a publish under a RabbitMQ memory/disk alarm fails
        # loudly instead of vanishing.
        conf["broker_transport_options"] = {"confirm_publish": True}
        # A silent worker's connection closes after missed heartbeats (RabbitMQ's side)
        # and its unacknowledged chunk goes to another worker (docs/deployment.md).
        conf["broker_heartbeat"] = settings.broker_heartbeat
    if backend.startswith("file://"):
        Path(backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        # A file result store has no native chords: Celery polls for the chord's
        # end with a `celery.chord_unlock` message, once a second by default (most
        # of the embedded broker's traffic; docs/performance.md). Here it
        # is only a fallback: the last chunk sends merge_chunks itself and a failed
        # chunk fails its job itself (chunks.py), so it can poll less often.
        conf["result_chord_retry_interval"] = EMBEDDED_CHORD_POLL_S
    return conf


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app whose tasks run inside ``app``'s context."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    try:
        catalog = load_catalog(app.config)
    except ValueError as exc:  # CatalogError, or DETECTOR_* settings naming no known model
        raise ConfigError(str(exc)) from None
    app.extensions["models"] = catalog
    names = (catalog.default, *(name for name in catalog if name != catalog.default))
    celery_app = Celery("detector", task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(app.extensions["settings"], names))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    from detector.pipeline import tasks  # noqa: F401  registers the tasks

    return celery_app

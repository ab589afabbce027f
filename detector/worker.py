"""Celery entry point: ``celery -A detector.worker worker -Q detector`` (or ``-Q processor``).

The model is not built here: each worker child builds its own on its first
chunk, after the fork, so CUDA is never initialised in the parent.
"""

from celery.signals import worker_process_init

from detector.app import create_app
from detector.db import db
from detector.observability.worker import connect_worker_metrics

flask_app = create_app()
# `celery -A detector.worker` looks for an attribute named `app` (then `celery`).
app = celery = flask_app.extensions["celery"]
connect_worker_metrics()  # serves metrics on METRICS_PORT when it is set


@worker_process_init.connect
def _after_fork(**_kwargs: object) -> None:
    db.after_fork()

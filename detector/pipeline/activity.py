"""Each model's last progress: detectors record it with every progress report of a
chunk and, while a chunk runs, every few seconds (`Heartbeat`); the watchdog reads
it to tell a stalled queue from a busy one."""

from __future__ import annotations

import logging
import socket
import threading
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from detector.db import db
from detector.models import ModelActivity, utcnow

log = logging.getLogger(__name__)

WORKER = socket.gethostname()


def record_progress(session: Session, model: str) -> None:
    """Note, in the caller's transaction, that a detector of ``model`` made progress now
    (one upsert: ``INSERT … ON CONFLICT (model) DO UPDATE``)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    now = utcnow()
    statement = insert(ModelActivity).values(model=model, progress_at=now, worker=WORKER)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[ModelActivity.model], set_={"progress_at": now, "worker": WORKER}
        )
    )


def last_progress() -> dict[str, datetime]:
    """Model name -> the last time one of its detectors made progress."""
    rows = db.session.execute(select(ModelActivity.model, ModelActivity.progress_at))
    return {model: at for model, at in rows}


def heartbeat_interval(stall_seconds: float) -> float:
    """How often a running chunk records its model's progress: four times per
    JOB_STALL_SECONDS, and at least every 30 seconds."""
    return max(0.5, min(30.0, stall_seconds / 4))


class Heartbeat:
    """While a chunk runs, record its model's progress every ``interval`` seconds from a
    thread of its own, so that a long model load or a slow batch does not look like a
    stalled queue. A chunk that hangs is stopped by its time limit (CHUNK_TIME_LIMIT),
    and its heartbeat with it; a killed worker's heartbeat stops with the process."""

    def __init__(self, model: str, interval: float) -> None:
        self.model = model
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{model}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with db.transaction() as session:
                    record_progress(session, self.model)
            except Exception:
                log.warning("could not record model %s's progress", self.model, exc_info=True)
            finally:
                db.session.remove()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

"""Step 2 of a job: `detect_frames` decodes one chunk's frames, detects and stores them.

The task is thin: `ChunkRun` does the work in named steps (start, check the
delivery count, load the model, detect, store, merge if last), each of which
re-reads what it needs from the database, so a redelivered message does no harm.
"""

from __future__ import annotations

import time
from typing import Any

from billiard.process import current_process
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy import delete, func, insert, select

from detector.config import current_settings
from detector.db import db
from detector.detection import AnalysedFrame, Predictor, get_predictor
from detector.models import Chunk, ChunkStatus, FrameDetections, Job, JobStatus, utcnow
from detector.observability import metrics
from detector.pipeline import lease
from detector.pipeline.activity import WORKER, Heartbeat, heartbeat_interval, record_progress
from detector.pipeline.admission import model_of
from detector.pipeline.dispatch import stop_job
from detector.pipeline.frames import detect_range
from detector.pipeline.models import job_model_settings
from detector.pipeline.names import DETECT_FRAMES, MERGE_CHUNKS
from detector.runtime.allocator import loaded_allocator
from detector.runtime.queues import IMPLICIT_MODEL
from detector.storage import VideoStorage
from detector.video import ChunkPlan, DecodeStats

log = get_task_logger(__name__)


class JobStopped(Exception):
    """The job was cancelled, failed or deleted while a chunk was running."""


class ChunkTakenOver(Exception):
    """A later delivery of the chunk took it while this one ran (this worker was thought
    dead: killed, or cut off from the broker); this one must leave the chunk alone."""


class Skip(Exception):
    """This delivery has nothing to do; the message says why (it is the task's result)."""


def job_storage() -> VideoStorage:
    return current_app.extensions["video_storage"]


def _process_index() -> int:
    """This worker process's index in its pool: picks its GPU (k mod N)."""
    return int(getattr(current_process(), "index", 0) or 0)


class ChunkRun:
    """One delivery of one chunk of one job."""

    def __init__(self, job_id: str, chunk_index: int, start_frame: int, end_frame: int) -> None:
        self.job_id = job_id
        self.chunk_index = chunk_index
        self.frames = (start_frame, end_frame)
        self.where = f"chunk {chunk_index} (frames {start_frame}-{end_frame - 1})"
        self.settings = current_settings()
        self.stats = DecodeStats()
        self._frames_reported = 0
        self.model = IMPLICIT_MODEL  # the catalog name of the job's model, read at start
        self.delivery = 0  # this delivery's number, counted when it takes the chunk (start)

    @property
    def _row(self) -> tuple[Any, ...]:
        """The chunk's row, as the where clause of its lease (detector.pipeline.lease)."""
        return (Chunk.job_id == self.job_id, Chunk.index == self.chunk_index)

    @property
    def _held(self) -> tuple[Any, ...]:
        """The chunk's row while this delivery holds it: no later delivery has taken it
        (each take counts itself in ``deliveries``)."""
        return (*self._row, Chunk.deliveries == self.delivery)

    def _release(self, session: Any, status: ChunkStatus, **values: Any) -> bool:
        """End this delivery's hold on the chunk: its new status and ``values``; False
        (and nothing changed) when a later delivery has taken the chunk."""
        return lease.release(session, Chunk, *self._held, stamp=Chunk.updated_at, status=status, **values)

    def start(self) -> tuple[ChunkPlan, Job, int] | dict[str, Any]:
        """Take the chunk's lease (it is running now, on this host: ``worker``) and count
        this delivery, which holds the chunk until it ends or a later one takes it.

        Returns the chunk's plan, the job (detached: its score threshold,
        classes and video's storage key are what the chunk needs) and the
        delivery number; or, for a chunk already done, its summary.

        Raises:
            Skip: the job is not processing any more.
        """
        with db.transaction() as session:
            job = session.get(Job, self.job_id)
            chunk = session.get(Chunk, (self.job_id, self.chunk_index))
            if job is None or job.status is not JobStatus.PROCESSING:
                raise Skip("job is not processing")
            if chunk is None or (chunk.start_frame, chunk.end_frame) != self.frames:
                raise RuntimeError(f"{self.where} does not match the job's plan")
            now = utcnow()
            took = lease.take(
                session,
                Chunk,
                *self._row,
                Chunk.status != ChunkStatus.DONE,
                stamp=Chunk.updated_at,
                count=Chunk.deliveries,
                now=now,
                status=ChunkStatus.RUNNING,
                frames_done=0,
                started_at=now,
                worker=WORKER,
            )
            deliveries, frames_done, objects, decoded = session.execute(
                select(Chunk.deliveries, Chunk.frames_done, Chunk.objects, Chunk.frames_decoded).where(
                    *self._row
                )
            ).one()
            if not took:  # done by an earlier delivery
                return self.summary(frames_done, objects, decoded)
            self.delivery = deliveries
            self.model = model_of(job)
            record_progress(session, self.model)
            plan = chunk.plan()
        return plan, job, deliveries

    def check_deliveries(self, deliveries: int) -> None:
        """Give up on a chunk whose every delivery so far killed its worker.

        Raises:
            Skip: too many deliveries; the job is failed.
        """
        if deliveries <= self.settings.max_chunk_deliveries:
            return
        stop_job(
            self.job_id,
            JobStatus.FAILED,
            f"{self.where} was started {deliveries - 1} times and its worker died each time "
            f"(crash, out of memory or killed); giving up",
        )
        raise Skip("too many deliveries")

    def load_predictor(self, model_key: str | None) -> Predictor:
        """This process's predictor of the job's model, built on its first chunk of that
        model (and timed then); at most MAX_LOADED_MODELS stay built."""
        detector_settings = job_model_settings(model_key)
        started = time.perf_counter()
        predictor = get_predictor(detector_settings, _process_index(), keep=self.settings.max_loaded_models)
        if (seconds := time.perf_counter() - started) > 0.05:  # built now, not cached
            log.info(
                "built %s on %s in %.1f s (allocator: %s)",
                predictor.name,
                predictor.device,
                seconds,
                loaded_allocator(),
            )
            metrics.observe_model_load(seconds, detector_settings.backend, predictor.device)
        metrics.observe_batch_size_limit(predictor.batch_size, predictor.device)
        return predictor

    def progress(self, frames_done: int) -> None:
        """After each batch: record progress, and stop if the job was cancelled or failed.

        Raises:
            JobStopped: the job is no longer processing.
            ChunkTakenOver: a later delivery has taken the chunk.
        """
        self._frames_reported = frames_done
        with db.transaction() as session:
            if not lease.renew(session, Chunk, *self._held, stamp=Chunk.updated_at, frames_done=frames_done):
                raise ChunkTakenOver()
            record_progress(session, self.model)
            status = session.scalar(select(Job.status).where(Job.id == self.job_id))
        if status is not JobStatus.PROCESSING:
            raise JobStopped()

    def detect(self, predictor: Predictor, plan: ChunkPlan, job: Job) -> list[AnalysedFrame]:
        """Decode the chunk's frames and run them through ``predictor``.

        Raises:
            Skip: the job was stopped meanwhile (the chunk goes back to pending), or a
                later delivery took the chunk (it is left as that one has it).
        """
        try:
            return detect_range(
                job_storage().source(job.storage_key),
                predictor,
                plan,
                score_threshold=job.score_threshold,
                classes=job.classes,
                stats=self.stats,
                on_batch=self.progress,
                on_forward=metrics.observe_batch,
            )
        except JobStopped:
            log.info(
                "job=%s chunk=%d stopped: the job is no longer processing", self.job_id, self.chunk_index
            )
            with db.transaction() as session:
                self._release(session, ChunkStatus.PENDING)
            raise Skip("job stopped") from None
        except ChunkTakenOver:
            log.warning(
                "job=%s chunk=%d stopped: delivery %d of it was taken over by a later one",
                self.job_id,
                self.chunk_index,
                self.delivery,
            )
            raise Skip("taken over by a later delivery") from None
        finally:
            metrics.observe_batch_size_limit(predictor.batch_size, predictor.device)

    def fail(self, message: str) -> bool:
        """Mark the chunk failed (the chord's error callback names it) and fail the job;
        unless a later delivery has taken the chunk, whose outcome then counts (False)."""
        with db.transaction() as session:
            held = self._release(session, ChunkStatus.FAILED)
        if not held:
            log.warning("job=%s %s, after a later delivery took it over", self.job_id, message)
            return False
        stop_job(self.job_id, JobStatus.FAILED, message)
        return True

    def store(self, frames: list[AnalysedFrame], model: str) -> int:
        """Write the chunk's detections and mark it done; the number of objects.

        Overwrites, never duplicates: a redelivered chunk replaces its own frames.
        ``model`` is the predictor's identity: the job has carried the same since
        it was created, unless this worker is configured differently from the
        API, in which case the job reports the model that really ran.

        Raises:
            Skip: the job was stopped meanwhile, or a later delivery took the chunk.
        """
        start_frame, end_frame = self.frames
        rows = [
            {
                "job_id": self.job_id,
                "index": f.frame,
                "timestamp": f.timestamp,
                "objects": f.detections.to_objects(),
            }
            for f in frames
        ]
        objects = sum(len(f.detections) for f in frames)
        with db.transaction() as session:
            job = session.get(Job, self.job_id, with_for_update=True)
            if job is None or job.status is not JobStatus.PROCESSING:
                raise Skip("job stopped")
            done = self._release(
                session,
                ChunkStatus.DONE,
                frames_done=len(frames),
                frames_decoded=self.stats.decoded,
                objects=objects,
                finished_at=utcnow(),
            )
            if not done:  # a later delivery holds the chunk: its frames are its own to store
                raise Skip("taken over by a later delivery")
            if job.model_name != model:
                log.warning(
                    "job=%s was created for model %s but ran on %s", self.job_id, job.model_name, model
                )
                job.model_name = model
            session.execute(
                delete(FrameDetections).where(
                    FrameDetections.job_id == self.job_id,
                    FrameDetections.index >= start_frame,
                    FrameDetections.index < end_frame,
                )
            )
            if rows:
                session.execute(insert(FrameDetections), rows)
            record_progress(session, self.model)
        return objects

    def merge_if_last(self) -> None:
        """Send merge_chunks now if this was the job's last chunk (checked after our commit).

        The chord's own callback follows and finds the job finished (merging is
        idempotent); this path makes a job succeed without waiting for the result
        backend to notice the chord is complete, and it works when the chord's
        bookkeeping has been lost.
        """
        pending = db.session.scalar(
            select(func.count())
            .select_from(Chunk)
            .where(Chunk.job_id == self.job_id, Chunk.status != ChunkStatus.DONE)
        )
        db.session.rollback()
        if pending == 0:
            current_app.extensions["celery"].send_task(MERGE_CHUNKS, args=[None, self.job_id])

    def summary(self, frames: int = 0, objects: int = 0, decoded: int = 0, **extra: str) -> dict[str, Any]:
        return {"chunk": self.chunk_index, "frames": frames, "objects": objects, "decoded": decoded, **extra}

    def run(self) -> dict[str, Any]:
        """Every step in turn; the chunk's summary (the task's result).

        Raises:
            Skip: nothing (more) to do for this delivery.
        """
        started = self.start()
        if isinstance(started, dict):
            return started  # done by an earlier delivery
        plan, job, deliveries = started
        self.check_deliveries(deliveries)
        log.info("job=%s chunk=%d started (delivery %d)", self.job_id, self.chunk_index, deliveries)
        try:
            with Heartbeat(self.model, heartbeat_interval(self.settings.job_stall_seconds)):
                predictor = self.load_predictor(job.model_key)
                frames = self.detect(predictor, plan, job)
                metrics.observe_frames(len(frames), predictor.device)
                objects = self.store(frames, predictor.name)
        except SoftTimeLimitExceeded:
            if not self.fail(
                f"{self.where} ran past the {self.settings.chunk_time_limit} s time limit; "
                f"use smaller chunks (CHUNK_FRAMES) or a faster device"
            ):
                raise Skip("taken over by a later delivery") from None
            raise
        except Skip:
            raise
        except Exception as exc:
            # The job fails naming the chunk; the error goes on to the chord's callback
            # (which would fail the job too: not for a delivery that lost the chunk).
            if not self.fail(f"{self.where} failed: {exc}"):
                raise Skip("taken over by a later delivery") from None
            raise
        log.info(
            "job=%s chunk=%d done: %d frames (%d decoded), %d objects",
            self.job_id,
            self.chunk_index,
            len(frames),
            self.stats.decoded,
            objects,
        )
        self.merge_if_last()
        return self.summary(len(frames), objects, self.stats.decoded)


@shared_task(name=DETECT_FRAMES, bind=True, ignore_result=False)
def detect_frames(
    self: Task, job_id: str, chunk_index: int, start_frame: int, end_frame: int
) -> dict[str, Any]:
    """Decode frames [start_frame, end_frame) of the job's video, detect, store."""
    run = ChunkRun(job_id, chunk_index, start_frame, end_frame)
    try:
        return run.run()
    except Skip as skip:
        return run.summary(skipped=str(skip))

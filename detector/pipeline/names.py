"""The pipeline's task names, the queue each runs on, and the ids its messages get.

The one place that knows them: the Celery routes, the tasks, dispatching and
revoking all read them from here.
"""

from __future__ import annotations

from detector.runtime.queues import PROCESSOR_QUEUE, RENDER_QUEUE

PROCESS_VIDEO = "detector.process_video"
DETECT_FRAMES = "detector.detect_frames"
MERGE_CHUNKS = "detector.merge_chunks"
CHUNK_FAILED = "detector.chunk_failed"
TRACK_OBJECTS = "detector.track_objects"
RENDER_VIDEO = "detector.render_video"
ANALYSE_TRACKS = "detector.analyse_tracks"
WATCHDOG = "detector.watchdog"
DOWNLOAD_VIDEO = "detector.download_video"
DELIVER_WEBHOOK = "detector.deliver_webhook"
# Celery's own task that polls for a chord's end where the result store has no native chords.
CHORD_UNLOCK = "celery.chord_unlock"

QUEUE_OF = {
    PROCESS_VIDEO: PROCESSOR_QUEUE,
    MERGE_CHUNKS: PROCESSOR_QUEUE,
    CHUNK_FAILED: PROCESSOR_QUEUE,
    TRACK_OBJECTS: PROCESSOR_QUEUE,
    RENDER_VIDEO: RENDER_QUEUE,
    ANALYSE_TRACKS: PROCESSOR_QUEUE,
    WATCHDOG: PROCESSOR_QUEUE,
    DOWNLOAD_VIDEO: PROCESSOR_QUEUE,
    DELIVER_WEBHOOK: PROCESSOR_QUEUE,
    CHORD_UNLOCK: PROCESSOR_QUEUE,
}
# DETECT_FRAMES has no fixed queue: a chunk goes to its job's model's queue
# (detector.runtime.queues.model_queue).


def process_video_task_id(job_id: str) -> str:
    """A job's `process_video` message has the job's id: a resend replaces nothing, and
    it can be revoked by id."""
    return job_id


def download_task_id(job_id: str) -> str:
    """A job's `download_video` message: revoked with the job's other tasks."""
    return f"{job_id}-download"


def track_task_id(job_id: str) -> str:
    """A job's `track_objects` message: revoked with the job's other tasks."""
    return f"{job_id}-track"


def analytics_task_id(job_id: str, analytics_id: str) -> str:
    """A run of one analytics spec of a job (detector.pipeline.analytics)."""
    return f"{job_id}-analytics-{analytics_id}"


def render_task_id(job_id: str) -> str:
    """A job's `render_video` message."""
    return f"{job_id}-render"


def chunk_task_id(job_id: str, chunk_index: int) -> str:
    """Chunk task ids are derived, so a job's pending chunks can be revoked by id."""
    return f"{job_id}-{chunk_index}"


def job_task_ids(job_id: str, chunk_count: int) -> list[str]:
    """Every task id a job's messages may carry: what to revoke when it stops."""
    first = [process_video_task_id(job_id), download_task_id(job_id), track_task_id(job_id)]
    return first + [chunk_task_id(job_id, i) for i in range(chunk_count)]

"""Every pipeline task, imported so that Celery registers them.

A job moves through three steps, one module each: `planning` (process_video),
`chunks` (detect_frames, one per chunk) and `merging` (merge_chunks, or
chunk_failed when a chunk fails), and a tracked job through a fourth,
`tracking` (track_objects). `rendering` (render_video) draws a succeeded job's
annotated video on request, and `analytics` (analyse_tracks) a job's analytics.
The `watchdog` looks after jobs that stopped moving. Every task takes ids and
re-reads the job from the database; every log line names the job (and chunk).
Writes are idempotent, so a redelivered message does no harm.
"""

from detector.pipeline.analytics import analyse_tracks
from detector.pipeline.chunks import detect_frames
from detector.pipeline.download import download_video
from detector.pipeline.merging import chunk_failed, merge_chunks
from detector.pipeline.planning import PLANNING_LEASE, process_video
from detector.pipeline.rendering import render_job
from detector.pipeline.tracking import track_objects
from detector.pipeline.watchdog import watchdog
from detector.pipeline.webhooks import deliver_webhook

__all__ = [
    "PLANNING_LEASE",
    "analyse_tracks",
    "chunk_failed",
    "deliver_webhook",
    "detect_frames",
    "download_video",
    "merge_chunks",
    "process_video",
    "render_job",
    "track_objects",
    "watchdog",
]

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Enum, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from detector.models.base import Base, JSONType, UTCDateTime, utcnow
from detector.video.chunks import ChunkPlan
from detector.video.selection import FrameSelection


class JobStatus(enum.StrEnum):
    # A job from a source_url, while its video is fetched (detector.pipeline.download).
    DOWNLOADING = "downloading"
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class RenderStatus(enum.StrEnum):
    QUEUED = "queued"
    RENDERING = "rendering"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


#: Values of Job.waiting_for.
WAIT_SLOT = "slot"
WAIT_WORKER = "worker"


def new_job_id() -> str:
    return uuid.uuid4().hex


class Job(Base):
    """One uploaded video and the detection run over it."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    original_filename: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[JobStatus] = mapped_column(
        Enum(
            JobStatus,
            name="job_status",
            values_callable=lambda e: [m.value for m in e],
            validate_strings=True,
        ),
        default=JobStatus.QUEUED,
        index=True,
    )
    # Video metadata: probed at upload, frame_count made exact when the job is planned.
    fps: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    frame_count: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    codec: Mapped[str | None] = mapped_column(String(32))
    rotation: Mapped[int] = mapped_column(Integer, default=0)
    # Request parameters and the engine that ran them.
    score_threshold: Mapped[float] = mapped_column(Float)
    # What is analysed (detector.video.FrameSelection): a span in seconds, then
    # every frame_stride-th frame or at most sample_fps frames a second; only
    # these class ids (null: all); and whether objects are tracked.
    sample_fps: Mapped[float | None] = mapped_column(Float)
    frame_stride: Mapped[int | None] = mapped_column(Integer)
    start_time: Mapped[float | None] = mapped_column(Float)
    end_time: Mapped[float | None] = mapped_column(Float)
    classes: Mapped[list[int] | None] = mapped_column(JSONType)
    track: Mapped[bool] = mapped_column(default=False)
    # The exact model (detector.detection.model_identity), fixed when the job is created.
    model_name: Mapped[str | None] = mapped_column(String(1024))
    # The name of that model in the deployment's catalog (detector.detection.catalog);
    # null for jobs from before models had names (they run the default).
    model_key: Mapped[str | None] = mapped_column(String(32))
    # That model's labels, indexed by class id (null at an id that is no class), fixed
    # when the job is created (detector.detection.labels.stored_labels): reads, exports
    # and renders name classes from them, whatever the catalog declares later. Null for
    # jobs from before jobs kept them.
    labels: Mapped[list[str | None] | None] = mapped_column(JSONType)
    # Why a queued job waits (detector.pipeline.admission): WAIT_SLOT, its owner has
    # MAX_PROCESSING_JOBS_PER_USER jobs processing; WAIT_WORKER, no online worker
    # serves its model. Null while it is not held back.
    waiting_for: Mapped[str | None] = mapped_column(String(16))
    # Progress: frames_total (the frames analysed) is known once the job is
    # planned; frames done are summed over its chunks (see Chunk.frames_done).
    # A tracked job then tracks its frames in order (detector.pipeline.tracking):
    # frames_tracked so far, tracked_at its last progress.
    frames_total: Mapped[int | None] = mapped_column(Integer)
    frames_tracked: Mapped[int | None] = mapped_column(Integer)
    tracked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tracks_total: Mapped[int | None] = mapped_column(Integer)
    chunk_count: Mapped[int | None] = mapped_column(Integer)
    objects_total: Mapped[int | None] = mapped_column(Integer)
    dispatched: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where a job's events are POSTed when it ends (detector.pipeline.webhooks).
    callback_url: Mapped[str | None] = mapped_column(Text)
    # A job whose video comes from a URL (detector.pipeline.download); its transfer
    # is the job's JobDownload.
    source_url: Mapped[str | None] = mapped_column(Text)
    # Stored video (detector.pipeline.retention): the upload's size in bytes (a user's
    # STORAGE_QUOTA_MB counts it, and its render's, JobRender.bytes); when
    # VIDEO_RETENTION_DAYS deletes both files (finished_at + retention, null: kept),
    # and when it did.
    video_bytes: Mapped[int | None] = mapped_column(BigInteger)
    video_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    video_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="job",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Chunk.index",
    )
    # The annotated video and the URL download, when the job has them (one row each).
    render: Mapped[JobRender | None] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )
    download: Mapped[JobDownload | None] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def selection(self) -> FrameSelection:
        """The frames the job analyses."""
        return FrameSelection(
            sample_fps=self.sample_fps,
            frame_stride=self.frame_stride,
            start=self.start_time,
            end=self.end_time,
        )


class JobRender(Base):
    """A job's annotated video (detector.pipeline.rendering): asked for by its owner,
    drawn by one render worker at a time (its lease is ``progress_at``)."""

    __tablename__ = "job_renders"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[RenderStatus] = mapped_column(
        Enum(
            RenderStatus,
            name="render_status",
            values_callable=lambda e: [m.value for m in e],
            validate_strings=True,
        ),
        index=True,
    )
    # The file in video storage (the last one drawn: kept while another is drawn) and
    # its size in bytes, which its owner's STORAGE_QUOTA_MB counts.
    key: Mapped[str | None] = mapped_column(String(255))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    progress_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Renders started since it was last asked for.
    deliveries: Mapped[int] = mapped_column(Integer, default=0)

    job: Mapped[Job] = relationship(back_populates="render")


class JobDownload(Base):
    """The transfer of a job's ``source_url`` into video storage (detector.pipeline.download),
    by one worker at a time (its lease is ``progress_at``)."""

    __tablename__ = "job_downloads"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    # Bytes so far, and the size the server announced (null until it does).
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    # Downloads started, and the last progress (the job's creation at first).
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    progress_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="download")


class ChunkStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Chunk(Base):
    """A frame range of a job, detected by one `detect_frames` task.

    The plan (frame range, presentation timestamps, the keyframe to seek to) is
    written by `process_video`; the detector worker reads it by reference.
    """

    __tablename__ = "chunks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_frame: Mapped[int] = mapped_column(Integer)
    end_frame: Mapped[int] = mapped_column(Integer)  # exclusive
    seek_pts: Mapped[int] = mapped_column(BigInteger)
    frame_pts: Mapped[list[int]] = mapped_column(JSONType)
    timestamps: Mapped[list[float]] = mapped_column(JSONType)
    # The chunk's frames: null for every frame from start_frame to end_frame (as
    # chunks planned before jobs could sample were), else the selected indices.
    frames: Mapped[list[int] | None] = mapped_column(JSONType)
    status: Mapped[ChunkStatus] = mapped_column(
        Enum(
            ChunkStatus,
            name="chunk_status",
            values_callable=lambda e: [m.value for m in e],
            validate_strings=True,
        ),
        default=ChunkStatus.PENDING,
    )
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    frames_decoded: Mapped[int] = mapped_column(Integer, default=0)
    objects: Mapped[int] = mapped_column(Integer, default=0)
    # The host name of the detector worker whose delivery last took the chunk (ChunkRun.start).
    worker: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    job: Mapped[Job] = relationship(back_populates="chunks")

    @classmethod
    def from_plan(cls, job_id: str, plan: ChunkPlan) -> Chunk:
        """A pending chunk of ``job_id`` as ``plan`` lays it out."""
        return cls(
            job_id=job_id,
            index=plan.index,
            start_frame=plan.start_frame,
            end_frame=plan.end_frame,
            seek_pts=plan.seek_pts,
            frame_pts=list(plan.frame_pts),
            timestamps=list(plan.timestamps),
            frames=list(plan.frames),
        )

    def plan(self) -> ChunkPlan:
        """The chunk's plan, as `process_video` made it."""
        return ChunkPlan(
            index=self.index,
            start_frame=self.start_frame,
            end_frame=self.end_frame,
            seek_pts=self.seek_pts,
            frame_pts=list(self.frame_pts),
            timestamps=list(self.timestamps),
            frames=list(self.frames)
            if self.frames is not None
            else list(range(self.start_frame, self.end_frame)),
        )


class FrameDetections(Base):
    """The objects found in one frame of a job."""

    __tablename__ = "frames"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp: Mapped[float] = mapped_column(Float)
    objects: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)


class Track(Base):
    """One object followed across a tracked job's analysed frames."""

    __tablename__ = "tracks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    track_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(255))
    class_id: Mapped[int] = mapped_column(Integer)
    first_frame: Mapped[int] = mapped_column(Integer)
    last_frame: Mapped[int] = mapped_column(Integer)
    first_timestamp: Mapped[float] = mapped_column(Float)
    last_timestamp: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    mean_score: Mapped[float] = mapped_column(Float)
    # Its best-scoring object: frame, score and box [x1, y1, x2, y2] (what its thumbnail
    # shows); null for tracks stored before they were kept.
    best_frame: Mapped[int | None] = mapped_column(Integer)
    best_score: Mapped[float | None] = mapped_column(Float)
    best_box: Mapped[list[float] | None] = mapped_column(JSONType)

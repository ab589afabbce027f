"""A job's analytics (docs/analytics.md): start one for a spec, list them, read one with
its results, its heatmap and its exports, delete one.

The same spec of the same job is one row: its id is the spec's hash, and the row's
primary key (job, id) decides between two requests that send it at once. A
failed run is started again by the next request for its spec, as is one whose
message was lost (queued or running with no progress for ANALYTICS_LEASE).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from detector.analytics import EXPORTS, Heatmap, SpecError, export, heatmap_png, media_type, parse_spec
from detector.db import db
from detector.models import Analytics, AnalyticsStage, AnalyticsStatus, Job, JobStatus, utcnow
from detector.pipeline import lease
from detector.pipeline.analytics import ANALYTICS_LEASE, send_analytics
from detector.services import media
from detector.services.errors import Conflict, InvalidInput, NotFound, TryAgainLater
from detector.services.jobs import get_job

log = logging.getLogger(__name__)

BROKER_RETRY_AFTER = 30
_ANALYTICS_ID = re.compile(r"^[0-9a-f]{16}$")


def _succeeded_job(owner_id: int, job_id: str) -> Job:
    job = get_job(owner_id, job_id)
    if job.status is not JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status.value}; analytics run over a succeeded job's tracks")
    return job


def _send(job_id: str, analytics_id: str, asked: Any) -> None:
    """Send the run; if the broker refuses, fail this request's run (one conditional
    UPDATE on the time it was asked) and say to try again."""
    try:
        send_analytics(job_id, analytics_id)
    except Exception:
        log.exception("job=%s analytics=%s: could not be queued", job_id, analytics_id)
        with db.transaction() as session:
            session.execute(
                update(Analytics)
                .where(
                    Analytics.job_id == job_id,
                    Analytics.id == analytics_id,
                    Analytics.status == AnalyticsStatus.QUEUED,
                    Analytics.progress_at == asked,
                )
                .values(
                    status=AnalyticsStatus.FAILED,
                    stage=AnalyticsStage.FAILED.value,
                    error="it could not be queued (the message broker was unavailable); ask again",
                )
            )
        raise TryAgainLater(
            f"the analytics of job {job_id} could not be queued (the message broker is unavailable); "
            f"ask again in {BROKER_RETRY_AFTER} s",
            retry_after=BROKER_RETRY_AFTER,
        ) from None


def start_analytics(owner_id: int, job_id: str, body: Any) -> tuple[Analytics, bool]:
    """The job's analytics for the spec ``body``, started now if new (or failed, or lost);
    whether it was started by this request.

    Raises:
        NotFound: no such job of the caller's.
        Conflict: the job has not succeeded.
        InvalidInput: a bad spec; the message names the field.
        TryAgainLater: the broker did not take the run.
    """
    job = _succeeded_job(owner_id, job_id)
    if not job.width or not job.height:
        raise Conflict(f"job {job_id} has no frame size; analytics need one")
    try:
        spec = parse_spec(body, job.width, job.height, job.duration)
    except SpecError as exc:
        raise InvalidInput(str(exc)) from None
    analytics_id = spec.spec_id
    now = utcnow()
    session = db.session
    session.rollback()
    try:
        with db.transaction() as tx:
            tx.add(
                Analytics(
                    job_id=job.id,
                    id=analytics_id,
                    name=spec.name,
                    spec=spec.as_json(),
                    status=AnalyticsStatus.QUEUED,
                    stage=AnalyticsStage.QUEUED.value,
                    frames_done=0,
                    deliveries=0,
                    created_at=now,
                    progress_at=now,
                )
            )
        created = True
    except IntegrityError:
        created = False
    if not created:
        with db.transaction() as tx:
            restarted = tx.execute(
                update(Analytics)
                .where(
                    Analytics.job_id == job.id,
                    Analytics.id == analytics_id,
                    or_(
                        Analytics.status == AnalyticsStatus.FAILED,
                        Analytics.status.in_([AnalyticsStatus.QUEUED, AnalyticsStatus.RUNNING])
                        & lease.expired(Analytics.progress_at, ANALYTICS_LEASE, now),
                    ),
                )
                .values(
                    status=AnalyticsStatus.QUEUED,
                    stage=AnalyticsStage.QUEUED.value,
                    error=None,
                    frames_done=0,
                    deliveries=0,
                    progress_at=now,
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
        created = bool(restarted)
    if created:
        _send(job.id, analytics_id, now)
    return get_analytics(owner_id, job_id, analytics_id, results=False), created


def list_analytics(owner_id: int, job_id: str) -> list[Analytics]:
    """The job's analytics, newest first, without their results."""
    job = get_job(owner_id, job_id)
    return list(
        db.session.scalars(
            select(Analytics)
            .where(Analytics.job_id == job.id)
            .order_by(Analytics.created_at.desc(), Analytics.id)
        )
    )


def get_analytics(owner_id: int, job_id: str, analytics_id: str, *, results: bool = True) -> Analytics:
    """One of the job's analytics (with its results loaded when ``results``).

    Raises:
        NotFound: no such job of the caller's, or no such analytics of it.
    """
    job = get_job(owner_id, job_id)
    found = None
    if _ANALYTICS_ID.match(analytics_id):
        query = select(Analytics).where(Analytics.job_id == job.id, Analytics.id == analytics_id)
        if results:
            query = query.options(undefer(Analytics.results))
        found = db.session.scalars(query.execution_options(populate_existing=True)).first()
    if found is None:
        raise NotFound(f"job {job_id} has no analytics {analytics_id}")
    return found


def draw_in_render(owner_id: int, job_id: str, analytics_id: str) -> tuple[Job, bool]:
    """Make a succeeded analytics the one the job's annotated video draws, and start
    that render (again, if one was drawn with another or none); the job and whether a
    render was started.

    Raises:
        Conflict: the analytics have not succeeded (or the job cannot be rendered).
    """
    found = _finished(owner_id, job_id, analytics_id)
    with db.transaction() as session:
        before = session.scalar(
            select(Analytics.id).where(Analytics.job_id == found.job_id, Analytics.drawn.is_(True))
        )
        if before != found.id:
            # One UPDATE: this one drawn, every other of the job's not.
            session.execute(
                update(Analytics)
                .where(Analytics.job_id == found.job_id)
                .values(drawn=case((Analytics.id == found.id, True), else_=False))
                .execution_options(synchronize_session=False)
            )
    return media.request_render(owner_id, job_id, again=before != found.id)


def delete_analytics(owner_id: int, job_id: str, analytics_id: str) -> None:
    found = get_analytics(owner_id, job_id, analytics_id, results=False)
    with db.transaction() as session:
        session.execute(delete(Analytics).where(Analytics.job_id == found.job_id, Analytics.id == found.id))


def _finished(owner_id: int, job_id: str, analytics_id: str) -> Analytics:
    found = get_analytics(owner_id, job_id, analytics_id)
    if found.status is not AnalyticsStatus.SUCCEEDED or found.results is None:
        detail = f": {found.error}" if found.error else ""
        raise Conflict(f"analytics {analytics_id} of job {job_id} is {found.status.value}{detail}")
    return found


def heatmap(owner_id: int, job_id: str, analytics_id: str) -> bytes:
    """The heatmap PNG of a succeeded run.

    Raises:
        Conflict: the run has not succeeded.
    """
    found = _finished(owner_id, job_id, analytics_id)
    counts = db.session.scalar(
        select(Analytics.heatmap).where(Analytics.job_id == found.job_id, Analytics.id == found.id)
    )
    if counts is None:
        raise Conflict(f"analytics {analytics_id} of job {job_id} has no heatmap")
    return heatmap_png(Heatmap.from_json(counts))


@dataclass(frozen=True)
class AnalyticsExport:
    pieces: Iterator[str]
    media_type: str
    filename: str


def export_analytics(owner_id: int, job_id: str, analytics_id: str, fmt: str) -> AnalyticsExport:
    """One of `EXPORTS` of a succeeded run, checked before a byte is sent.

    Raises:
        InvalidInput: an unknown format.
        Conflict: the run has not succeeded.
    """
    if fmt not in EXPORTS:
        raise InvalidInput(f"format: one of {', '.join(EXPORTS)}")
    found = _finished(owner_id, job_id, analytics_id)
    job = get_job(owner_id, job_id)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(job.original_filename).stem or "video")[:100]
    what, extension = fmt.split("-")
    assert found.results is not None
    return AnalyticsExport(
        export(fmt, found.results),
        media_type(fmt),
        f"{stem}.analytics-{found.id}.{what}.{extension}",
    )


def analytics_dict(found: Analytics, *, with_results: bool) -> dict[str, Any]:
    """The analytics as the API answers it (docs/analytics.md, Results)."""
    body: dict[str, Any] = {
        "id": found.id,
        "job_id": found.job_id,
        "name": found.name,
        "status": found.status.value,
        "stage": found.stage,
        "progress": round(found.progress, 4),
        "error": found.error,
        "created_at": found.created_at.isoformat(),
        "finished_at": found.finished_at.isoformat() if found.finished_at else None,
        "spec": found.spec,
        "drawn": found.drawn,
    }
    if with_results:
        body["results"] = found.results if found.status is AnalyticsStatus.SUCCEEDED else None
    return body

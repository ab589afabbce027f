"""Moments across all of a user's jobs: where some labels appear together, from the
jobs' tracks, newest job first; and the tracks' thumbnails.

A track of a requested label is present from its first to its last frame, widened by
half the ``window`` (seconds) on each side; a moment is a longest stretch of time in
which every requested label is present, lasting at least ``min_duration``
(`find_moments`, one sweep over a job's tracks of those labels).

The database does the finding: the user's jobs newest first that have a track of
every label (jobs by owner and created_at, tracks by job and label: both indexed),
then those jobs' tracks of the labels. So a search costs with the matching tracks
of the jobs it looks at, and a page looks at SCAN_JOBS jobs at most.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Row, exists, literal, select, tuple_

from detector.db import db
from detector.models import Analytics, AnalyticsStatus, Job, Track, TrackThumbnail
from detector.services.errors import InvalidInput, NotFound
from detector.services.jobs import get_job

#: Labels one search may name.
MAX_LABELS = 10
#: Characters of the ``labels`` parameter.
MAX_LABELS_LENGTH = 1000
#: Jobs one page looks at, at most; a page that looks at this many without filling up
#: ends early, with a cursor to go on from.
SCAN_JOBS = 200
#: Jobs whose tracks are read in one query.
TRACK_BATCH_JOBS = 20
#: Tracks a moment lists, at most (``tracks_total`` counts them all).
MAX_MOMENT_TRACKS = 50
MAX_WINDOW = 3600.0
MAX_MIN_DURATION = 86400.0
WHITE_SPACE = " \t\n\r\f\v"
#: The ``labels`` parameter as the API document declares it: 1 to MAX_LABELS labels,
#: comma separated, each with a character that is not white space, no NUL.
_LABEL = r"[^,\x00]*[^,\x00 \t\n\r\f\v][^,\x00]*"
LABELS_PATTERN = rf"^{_LABEL}(,{_LABEL}){{0,{MAX_LABELS - 1}}}$"
#: Characters of the ``zone`` parameter.
MAX_ZONE_LENGTH = 1000
#: The ``zone`` parameter as the API document declares it: ``<analytics id>:<zone name>``,
#: white space around it allowed, the name with a character that is not white space, no NUL.
ZONE_PATTERN = r"^[ \t\n\r\f\v]*[0-9a-f]{16}:[^\x00]*[^\x00 \t\n\r\f\v][^\x00]*$"


@dataclass(frozen=True)
class Span:
    """One track of a job: its id, label and first and last frame (index and seconds)."""

    track_id: int
    label: str
    first_frame: int
    last_frame: int
    first_timestamp: float
    last_timestamp: float


@dataclass(frozen=True)
class Moment:
    """A stretch of one job's video in which every requested label is present: its
    start and end (seconds and frame) and the tracks present in it, by track id."""

    start_time: float
    end_time: float
    start_frame: int
    end_frame: int
    tracks: tuple[Span, ...]

    @property
    def duration(self) -> float:
        return self.end_time - self.start_time


@dataclass(frozen=True)
class VideoBounds:
    """What is known of a job's video to keep a widened moment inside it: its frame
    rate (to turn the widening into frames), frames and duration; None: unknown."""

    fps: float | None = None
    frame_count: int | None = None
    duration: float | None = None


def find_moments(
    spans: Sequence[Span],
    labels: Sequence[str],
    *,
    window: float = 0.0,
    min_duration: float = 0.0,
    video: VideoBounds = VideoBounds(),
) -> list[Moment]:
    """The moments of one job's tracks ``spans`` in which every one of ``labels`` is
    present, in order of time.

    A track is present from ``first_timestamp - window / 2`` to ``last_timestamp +
    window / 2`` (closed: two tracks that touch are together). A moment's start is
    where the last label came into presence, its end where the first one left; the
    frames there are the boundary tracks' own first and last frames, moved by
    ``window / 2`` seconds at the video's frame rate, and kept inside the video.
    Moments shorter than ``min_duration`` are left out.
    """
    wanted = {label: position for position, label in enumerate(dict.fromkeys(labels))}
    if not wanted:
        return []
    half = window / 2
    events = []
    for n, span in enumerate(spans):
        if span.label in wanted:
            events.append((span.first_timestamp - half, 0, n))  # starts before ends at one time
            events.append((span.last_timestamp + half, 1, n))
    events.sort()
    counts = [0] * len(wanted)
    covered = 0
    active: set[int] = set()
    start: int | None = None  # the span whose start began the moment under way
    members: set[int] = set()
    moments: list[Moment] = []
    for _, kind, n in events:
        label = wanted[spans[n].label]
        if kind == 0:
            counts[label] += 1
            covered += counts[label] == 1
            active.add(n)
            if start is not None:
                members.add(n)
            elif covered == len(wanted):
                start, members = n, set(active)
        else:
            if start is not None and counts[label] == 1:
                moment = _moment(spans, start, n, members, half, video)
                if moment.duration >= min_duration:
                    moments.append(moment)
                start = None
            counts[label] -= 1
            covered -= counts[label] == 0
            active.discard(n)
    return moments


def _moment(
    spans: Sequence[Span], start: int, end: int, members: Iterable[int], half: float, video: VideoBounds
) -> Moment:
    """The moment from ``spans[start]``'s widened first frame to ``spans[end]``'s widened last."""
    first, last = spans[start], spans[end]
    shift = round(half * video.fps) if video.fps and video.fps > 0 else 0
    start_time = max(0.0, first.first_timestamp - half)
    start_frame = max(0, first.first_frame - shift)
    end_time = last.last_timestamp + half
    end_frame = last.last_frame + shift
    if video.duration is not None:
        end_time = min(end_time, max(video.duration, last.last_timestamp))
    if video.frame_count:
        end_frame = min(end_frame, max(video.frame_count - 1, last.last_frame))
    return Moment(
        start_time=round(start_time, 6),
        end_time=round(end_time, 6),
        start_frame=start_frame,
        end_frame=end_frame,
        tracks=tuple(sorted((spans[n] for n in members), key=lambda span: span.track_id)),
    )


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: at the job (by ``created_at`` and id, the search's
    order), less the ``skip`` moments of it shown already; or, with ``after``, at the
    job after it."""

    created_at: datetime
    job_id: str
    skip: int = 0
    after: bool = False

    def encode(self) -> str:
        """The cursor as the opaque text the API hands out."""
        data = {"c": self.created_at.isoformat(), "j": self.job_id, "s": self.skip, "a": self.after}
        return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """A cursor from `encode`.

        Raises:
            InvalidInput: ``text`` is no such cursor.
        """
        refused = InvalidInput("cursor: not a next_cursor of this API")
        try:
            data: Any = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            created_at = datetime.fromisoformat(data["c"])
            job_id, skip, after = data["j"], data["s"], data["a"]
        except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
            raise refused from None
        if (
            created_at.tzinfo is None
            or not isinstance(job_id, str)
            or not 0 < len(job_id) <= 32
            or type(skip) is not int
            or skip < 0
            or type(after) is not bool
        ):
            raise refused
        return cls(created_at.astimezone(UTC), job_id, skip, after)


def parse_labels(text: str) -> tuple[str, ...]:
    """The labels of a search's ``labels`` parameter: comma separated, each without its
    outer white space, each once, in the order given.

    Raises:
        InvalidInput: no label, an empty one, more than MAX_LABELS, or a NUL.
    """
    if len(text) > MAX_LABELS_LENGTH:
        raise InvalidInput(f"labels: at most {MAX_LABELS_LENGTH} characters")
    if "\x00" in text:
        raise InvalidInput("labels: NUL is not allowed")
    labels = [label.strip(WHITE_SPACE) for label in text.split(",")]
    if not all(labels):
        raise InvalidInput("labels: comma-separated labels, none of them empty (e.g. person,dog)")
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"labels: at most {MAX_LABELS} labels")
    return tuple(dict.fromkeys(labels))


def check_seconds(name: str, value: float, maximum: float) -> float:
    """``value`` if it is a number of seconds from 0 to ``maximum``.

    Raises:
        InvalidInput: it is not (the message names ``name``).
    """
    if not (math.isfinite(value) and 0 <= value <= maximum):
        raise InvalidInput(f"{name}: must be a number from 0 to {maximum:g}")
    return float(value)


@dataclass(frozen=True)
class FoundMoment:
    """A moment of one of the user's jobs, with the ids of its listed tracks that have
    a thumbnail."""

    job: Row[Any]
    moment: Moment
    thumbnails: frozenset[int]


@dataclass(frozen=True)
class SearchPage:
    moments: list[FoundMoment]
    next_cursor: Cursor | None


@dataclass(frozen=True)
class Zone:
    """A zone of an analytics spec (detector.analytics): the spec's id (the same for
    every job it ran on) and the zone's name."""

    analytics_id: str
    name: str


#: An analytics id: 16 hex digits (detector.analytics.spec).
_ANALYTICS_ID = re.compile(r"^[0-9a-f]{16}$")


def split_zone(text: str) -> tuple[str, str]:
    """The analytics id and zone name of a ``zone`` parameter, ``<analytics id>:<zone name>``
    (white space around it allowed): what ZONE_PATTERN accepts.

    Raises:
        InvalidInput: not of that form.
    """
    if len(text) > MAX_ZONE_LENGTH:
        raise InvalidInput(f"zone: at most {MAX_ZONE_LENGTH} characters")
    analytics_id, colon, name = text.strip(WHITE_SPACE).partition(":")
    if not colon or not _ANALYTICS_ID.match(analytics_id) or not name.strip(WHITE_SPACE) or "\x00" in name:
        raise InvalidInput(
            "zone: give <analytics id>:<zone name>, as GET /api/jobs/<id>/analytics lists them"
        )
    return analytics_id, name


def parse_zone(owner_id: int, text: str) -> Zone:
    """The ``zone`` parameter, ``<analytics id>:<zone name>``, checked against the
    owner's analytics.

    Raises:
        InvalidInput: not of that form (`split_zone`), no analytics of that id on any of
            the owner's jobs, or its spec has no zone of that name.
    """
    analytics_id, name = split_zone(text)
    spec = db.session.scalar(
        select(Analytics.spec)
        .join(Job, Job.id == Analytics.job_id)
        .where(Job.owner_id == owner_id, Analytics.id == analytics_id)
        .limit(1)
    )
    if spec is None:
        raise InvalidInput(f"zone: none of your jobs has analytics {analytics_id}")
    zones = [zone.get("name") for zone in spec.get("zones", [])]
    if name not in zones:
        raise InvalidInput(f"zone: analytics {analytics_id} has no zone {name[:200]!r}; its zones: {zones}")
    return Zone(analytics_id, name)


def _candidate_jobs(
    owner_id: int, labels: Sequence[str], cursor: Cursor | None, zone: Zone | None = None
) -> list[Row[Any]]:
    """The owner's jobs, newest first from ``cursor`` on, that have a track of every
    label (and, with ``zone``, that analytics done): SCAN_JOBS at most."""
    statement = select(
        Job.id, Job.created_at, Job.original_filename, Job.fps, Job.frame_count, Job.duration
    ).where(Job.owner_id == owner_id)
    for label in labels:
        statement = statement.where(exists().where(Track.job_id == Job.id, Track.label == label))
    if zone is not None:
        statement = statement.where(
            exists().where(
                Analytics.job_id == Job.id,
                Analytics.id == zone.analytics_id,
                Analytics.status == AnalyticsStatus.SUCCEEDED,
            )
        )
    if cursor is not None:
        at = tuple_(literal(cursor.created_at, Job.created_at.type), literal(cursor.job_id, Job.id.type))
        key = tuple_(Job.created_at, Job.id)
        statement = statement.where(key < at if cursor.after else key <= at)
    statement = statement.order_by(Job.created_at.desc(), Job.id.desc()).limit(SCAN_JOBS)
    return cast(list[Row[Any]], list(db.session.execute(statement).all()))


def _spans(job_ids: Sequence[str], labels: Sequence[str]) -> dict[str, list[Span]]:
    """The tracks of ``labels`` of each of ``job_ids``."""
    found: dict[str, list[Span]] = {job_id: [] for job_id in job_ids}
    rows = db.session.execute(
        select(
            Track.job_id,
            Track.track_id,
            Track.label,
            Track.first_frame,
            Track.last_frame,
            Track.first_timestamp,
            Track.last_timestamp,
        ).where(Track.job_id.in_(job_ids), Track.label.in_(labels))
    )
    for job_id, track_id, label, first_frame, last_frame, first_timestamp, last_timestamp in rows:
        found[job_id].append(Span(track_id, label, first_frame, last_frame, first_timestamp, last_timestamp))
    return found


def _zone_spans(job_ids: Sequence[str], labels: Sequence[str], zone: Zone) -> dict[str, list[Span]]:
    """The visits to ``zone`` of each job's tracks of ``labels``, each a span from its
    entry to its exit, read from the events of the job's run of that analytics."""
    found: dict[str, list[Span]] = {job_id: [] for job_id in job_ids}
    wanted = set(labels)
    rows = db.session.execute(
        select(Analytics.job_id, Analytics.results).where(
            Analytics.job_id.in_(job_ids),
            Analytics.id == zone.analytics_id,
            Analytics.status == AnalyticsStatus.SUCCEEDED,
        )
    )
    for job_id, results in rows:
        entered: dict[int, dict[str, Any]] = {}
        for event in (results or {}).get("events", []):
            if event["kind"] != "zone" or event["rule"] != zone.name or event["label"] not in wanted:
                continue
            if event["event"] == "enter":
                entered[event["track_id"]] = event
            elif event["event"] == "exit" and (entry := entered.pop(event["track_id"], None)) is not None:
                found[job_id].append(
                    Span(
                        event["track_id"],
                        event["label"],
                        entry["frame"],
                        event["frame"],
                        entry["timestamp"],
                        event["timestamp"],
                    )
                )
    return found


def _with_thumbnails(found: list[tuple[Row[Any], Moment]]) -> list[FoundMoment]:
    """``found`` with, for each moment, which of its listed tracks have a thumbnail (one query)."""
    job_ids = {job.id for job, _ in found}
    track_ids = {span.track_id for _, moment in found for span in moment.tracks[:MAX_MOMENT_TRACKS]}
    have: set[tuple[str, int]] = set()
    if job_ids and track_ids:
        rows = db.session.execute(
            select(TrackThumbnail.job_id, TrackThumbnail.track_id).where(
                TrackThumbnail.job_id.in_(job_ids), TrackThumbnail.track_id.in_(track_ids)
            )
        )
        have = {(job_id, track_id) for job_id, track_id in rows}
    return [
        FoundMoment(
            job,
            moment,
            frozenset(
                span.track_id for span in moment.tracks[:MAX_MOMENT_TRACKS] if (job.id, span.track_id) in have
            ),
        )
        for job, moment in found
    ]


def search_moments(
    owner_id: int,
    labels: Sequence[str],
    *,
    window: float = 0.0,
    min_duration: float = 0.0,
    limit: int = 20,
    cursor: Cursor | None = None,
    zone: Zone | None = None,
) -> SearchPage:
    """A page of the moments of ``labels`` in the owner's jobs: newest job first, each
    job's in order of time; ``limit`` at most, from ``cursor`` on. With ``zone``, only
    in the jobs that ran its analytics, and a track is present only while it visits
    the zone. The page's ``next_cursor`` is None when no job is left to look at."""
    jobs = _candidate_jobs(owner_id, labels, cursor, zone)
    found: list[tuple[Row[Any], Moment]] = []
    for batch_start in range(0, len(jobs), TRACK_BATCH_JOBS):
        batch = jobs[batch_start : batch_start + TRACK_BATCH_JOBS]
        ids = [job.id for job in batch]
        spans = _spans(ids, labels) if zone is None else _zone_spans(ids, labels, zone)
        for job in batch:
            moments = find_moments(
                spans[job.id],
                labels,
                window=window,
                min_duration=min_duration,
                video=VideoBounds(job.fps, job.frame_count, job.duration),
            )
            skip = cursor.skip if cursor is not None and job.id == cursor.job_id and not cursor.after else 0
            for shown, moment in enumerate(moments[skip:], start=skip):
                if len(found) == limit:
                    return SearchPage(_with_thumbnails(found), Cursor(job.created_at, job.id, shown))
                found.append((job, moment))
    next_cursor = None
    if len(jobs) == SCAN_JOBS:
        last = jobs[-1]  # every one of its moments is on this page or an earlier one
        next_cursor = Cursor(last.created_at, last.id, after=True)
    return SearchPage(_with_thumbnails(found), next_cursor)


def get_thumbnail(owner_id: int, job_id: str, track_id: int) -> bytes:
    """The JPEG of a track of the caller's job.

    Raises:
        NotFound: no such job of the caller's, no such track, or no thumbnail for it.
    """
    job = get_job(owner_id, job_id)
    jpeg = db.session.scalar(
        select(TrackThumbnail.jpeg).where(
            TrackThumbnail.job_id == job.id, TrackThumbnail.track_id == track_id
        )
    )
    if jpeg is None:
        raise NotFound(f"track {track_id} of job {job_id} has no thumbnail")
    return bytes(jpeg)

"""The one builder of a detections page.

The detections endpoint (``GET /api/jobs/<id>/detections``) and
``detector predict`` both build their JSON here, so they cannot drift apart.

A page takes each frame's objects as JSON text: the API reads that text from
the database and sends it on unchanged, which is much faster than parsing every
box only to encode it again; ``detector predict`` writes its frames' text with
``Detections.to_json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

PageFrame = tuple[int, float, str]
"""One frame of a page: its 0-based index in presentation order, its timestamp in
seconds since the first frame, and its objects as JSON text (an array of
``{"label", "class_id", "score", "box"}`` objects, as stored)."""


def frame_json(frame: int, timestamp: float, objects_json: str) -> str:
    """One frame as the JSON text of one element of a page's ``frames``."""
    # A finite float's repr is its JSON text (json.dumps writes the same);
    # timestamps are always finite.
    return f'{{"frame": {frame}, "timestamp": {timestamp!r}, "objects": {objects_json}}}'


def detections_page_json(
    *,
    job_id: str | None,
    frames_total: int,
    start: int,
    limit: int,
    frames: Sequence[PageFrame],
    next_start: int | None = None,
) -> str:
    """A page of detections as JSON text.

    The keys are ``job_id``, ``frames_total`` (the frames the job analysed),
    ``start``, ``limit``, ``next_start`` (the ``start`` of the next page: the
    index of the first analysed frame after this page, or null on the last
    page) and ``frames``. The frames' JSON text is spliced in as it is.
    """
    head = json.dumps(
        {
            "job_id": job_id,
            "frames_total": frames_total,
            "start": start,
            "limit": limit,
            "next_start": next_start,
        }
    )
    body = ", ".join(frame_json(*frame) for frame in frames)
    return f'{head[:-1]}, "frames": [{body}]}}\n'


def detections_page(
    *,
    job_id: str | None,
    frames_total: int,
    start: int,
    limit: int,
    frames: Sequence[PageFrame],
    next_start: int | None = None,
) -> dict[str, Any]:
    """The same page as :func:`detections_page_json`, as Python data."""
    page: dict[str, Any] = json.loads(
        detections_page_json(
            job_id=job_id,
            frames_total=frames_total,
            start=start,
            limit=limit,
            frames=frames,
            next_start=next_start,
        )
    )
    return page

"""The one shape of a frame's result and the one builder of a detections page.

The detections endpoint (``GET /api/jobs/<id>/detections``) and
``detector predict`` both build their JSON here, so they cannot drift apart.

A frame's objects are kept as JSON text: the API reads that text from the
database and sends it on unchanged, which is much faster than parsing every
box only to encode it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple


class FrameResult(NamedTuple):
    """The objects found in one frame.

    ``frame`` is the 0-based index in presentation order, ``timestamp`` the
    seconds since the first frame, and ``objects_json`` a JSON array of
    ``{"label", "class_id", "score", "box"}`` objects, as text.
    """

    frame: int
    timestamp: float
    objects_json: str

    @classmethod
    def from_objects(
        cls, frame: int, timestamp: float, objects: Sequence[Mapping[str, object]]
    ) -> FrameResult:
        """A frame result from the objects as Python data (what a predictor returns)."""
        return cls(frame, timestamp, json.dumps(list(objects)))

    def to_json(self) -> str:
        """This frame as the JSON text of one element of a page's ``frames``."""
        # A finite float's repr is its JSON text (json.dumps writes the same);
        # timestamps are always finite.
        return f'{{"frame": {self.frame}, "timestamp": {self.timestamp!r}, "objects": {self.objects_json}}}'


def detections_page_json(
    *,
    job_id: str | None,
    frames_total: int,
    start: int,
    limit: int,
    frames: Sequence[FrameResult],
    next_start: int | None = None,
) -> str:
    """A page of detections as JSON text.

    The keys are ``job_id``, ``frames_total`` (the frames the job analysed),
    ``start``, ``limit``, ``next_start`` (the ``start`` of the next page: the
    index of the first analysed frame after this page, or null on the last
    page) and ``frames``. The frames' stored JSON is spliced in as it is.
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
    body = ", ".join(frame.to_json() for frame in frames)
    return f'{head[:-1]}, "frames": [{body}]}}\n'


def detections_page(
    *,
    job_id: str | None,
    frames_total: int,
    start: int,
    limit: int,
    frames: Sequence[FrameResult],
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

"""A finished job's detections as one file in a format other tools import.

``export(fmt, source, frames)`` turns a job's analysed frames into the text of
a COCO, MOTChallenge, CVAT, CSV or JSON Lines file, yielded in pieces: the
API streams them (``GET /api/jobs/<id>/export?format=...``) and
``detector predict --format ...`` writes them. The frames are read once, in
order, and never held together, so memory stays flat however long the job.

This package is a plain library: it knows nothing of the database, Flask or
Celery. The caller maps its errors: :class:`UnknownFormatError` (``kind``
``"unknown_format"``) is the request's mistake (400), and
:class:`TracksRequiredError` (``kind`` ``"needs_tracks"``) a format the job's
state does not allow (409).
"""

from __future__ import annotations

from collections.abc import Callable

from detector.exports.coco import write_coco
from detector.exports.common import (
    FORMATS,
    TRACK_FORMATS,
    Document,
    ExportError,
    ExportSource,
    Frames,
    TracksRequiredError,
    UnknownFormatError,
    check_format,
    check_tracks,
    safe_stem,
)
from detector.exports.cvat import write_cvat
from detector.exports.mot import write_mot
from detector.exports.tables import write_csv, write_jsonl

__all__ = [
    "FORMATS",
    "TRACK_FORMATS",
    "Document",
    "ExportError",
    "ExportSource",
    "Frames",
    "TracksRequiredError",
    "UnknownFormatError",
    "export",
    "filename",
    "media_type",
]

_WRITERS: dict[str, Callable[[ExportSource, Frames], Document]] = {
    "coco": write_coco,
    "mot": write_mot,
    "cvat": write_cvat,
    "csv": write_csv,
    "jsonl": write_jsonl,
}

_MEDIA_TYPES = {
    "coco": "application/json",
    "mot": "text/plain",
    "cvat": "application/xml",
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
}

_SUFFIXES = {
    "coco": ".coco.json",
    "mot": ".mot.txt",
    "cvat": ".cvat.xml",
    "csv": ".csv",
    "jsonl": ".jsonl",
}


def export(fmt: str, source: ExportSource, frames: Frames) -> Document:
    """The file of format ``fmt`` for the job ``source`` describes, as pieces of UTF-8 text.

    ``frames`` are the job's analysed frames in frame order, each an
    ``AnalysedFrame`` (see :data:`Frames`); they are read once,
    lazily, as the pieces are taken. The format is checked here, before any
    frame is read: :class:`UnknownFormatError` for a name not in
    :data:`FORMATS` (any case), :class:`TracksRequiredError` for ``mot`` when
    the job was not tracked.
    """
    name = check_format(fmt)
    check_tracks(name, source)
    return _WRITERS[name](source, frames)


def media_type(fmt: str) -> str:
    """The media type to send a ``fmt`` file as (``application/json`` for ``coco``...)."""
    return _MEDIA_TYPES[check_format(fmt)]


def filename(fmt: str, name: str) -> str:
    """The name to save a ``fmt`` export of the video ``name`` as: ``street.coco.json`` for ``street.mp4``.

    Folders and the extension are dropped and every character but letters,
    digits, ``.``, ``_`` and ``-`` becomes ``_``, so the name is safe in a
    ``Content-Disposition`` header and as a path.
    """
    return safe_stem(name) + _SUFFIXES[check_format(fmt)]

"""What every export shares: the job it describes, its errors and the pieces of text.

The writers are generators. Each reads a job's analysed frames once, in order,
and yields the document in pieces of about :data:`PIECE_CHARS` characters, so
a 10,000-frame job is sent without ever being held whole.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    # Only for the types: importing the package would import NumPy, which the
    # writers never need themselves.
    from detector.detection.detections import AnalysedFrame

FORMATS: tuple[str, ...] = ("coco", "mot", "cvat", "csv", "jsonl")
"""The export formats, by the name the API's ``format`` parameter takes."""

TRACK_FORMATS: tuple[str, ...] = ("mot",)
"""The formats that need track ids, and so a tracked job."""

PIECE_CHARS = 64 * 1024
"""About how much text a writer gathers before it yields a piece."""

Frames: TypeAlias = "Iterable[AnalysedFrame]"
"""A job's analysed frames in frame order, each an `AnalysedFrame` (its 0-based
index in the video, its timestamp in seconds and its `Detections`: boxes
``[x1, y1, x2, y2]`` in pixels of the original frame, and track ids when the
job was tracked)."""

Document = Generator[str, None, None]
"""An export's text in pieces. It is a generator: closing it before the end (as a
WSGI server does when the client goes away) releases its temporary file or database at once."""


@dataclass(frozen=True)
class ExportSource:
    """The job an export describes.

    ``name`` is the uploaded file's name (``street.mp4``); ``width``,
    ``height``, ``frame_count`` and ``fps`` describe the whole video, whatever
    frames the job analysed; ``labels`` is the model's label set, class id to
    name; ``tracked`` says whether the job's objects carry track ids.
    """

    name: str
    width: int
    height: int
    frame_count: int
    fps: float
    labels: Mapping[int, str]
    tracked: bool


class ExportError(ValueError):
    """An export that cannot be made. ``kind`` names the reason for the caller to map:
    ``"unknown_format"`` (a request's mistake) or ``"needs_tracks"`` (the job's state)."""

    kind = "export"


class UnknownFormatError(ExportError):
    """A format name that is not one of :data:`FORMATS`."""

    kind = "unknown_format"


class TracksRequiredError(ExportError):
    """A format that needs track ids, asked of a job that was not tracked."""

    kind = "needs_tracks"


def _listed(names: Iterable[str]) -> str:
    """``a, b and c``."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def check_format(fmt: object) -> str:
    """The format's name as :data:`FORMATS` spells it; :class:`UnknownFormatError` if none."""
    name = fmt.strip().lower() if isinstance(fmt, str) else ""
    if name not in FORMATS:
        raise UnknownFormatError(f"Unknown export format {fmt!r}: the formats are {_listed(FORMATS)}.")
    return name


def check_tracks(fmt: str, source: ExportSource) -> None:
    """:class:`TracksRequiredError` when ``fmt`` needs track ids that ``source`` lacks."""
    if fmt in TRACK_FORMATS and not source.tracked:
        others = [name for name in FORMATS if name not in TRACK_FORMATS]
        raise TracksRequiredError(
            f"The {fmt} format needs track ids, and this job was not tracked: "
            f"submit the video again with tracking, or choose one of {_listed(others)}."
        )


def decimal(value: float, places: int) -> str:
    """``value`` with at most ``places`` decimals and no trailing zeros (``12.5``, ``40``).

    The text formats (MOT and CVAT) write pixels to a thousandth, far finer
    than a detector's boxes are; the JSON formats and CSV write exact values.
    """
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


class Pieces:
    """Text gathered until there is a piece's worth (:data:`PIECE_CHARS`), then taken.

    A writer writes to it (``csv.writer`` can too), yields :meth:`take`
    whenever :attr:`full`, and once more at the end.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        """Add ``text``; its length, as a file's ``write`` returns."""
        self._parts.append(text)
        self._size += len(text)
        return len(text)

    @property
    def full(self) -> bool:
        """Whether a piece's worth of text is waiting."""
        return self._size >= PIECE_CHARS

    def take(self) -> str:
        """The text written since the last take; the buffer is emptied."""
        text = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        return text


_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str) -> str:
    """A file's name without folders or extension, reduced to letters, digits, ``.``, ``_`` and ``-``.

    What is left needs no quoting in a ``Content-Disposition`` header and cannot
    climb out of a folder; a name with nothing left becomes ``video``.
    """
    base = re.split(r"[\\/]", name)[-1]
    stem, dot, _ = base.rpartition(".")
    if not dot or not stem.strip("."):
        stem = base
    return _UNSAFE_IN_NAMES.sub("_", stem).strip("._-")[:100] or "video"

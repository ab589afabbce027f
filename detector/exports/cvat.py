"""CVAT for video 1.1 XML, the format CVAT imports a video task's annotations from.

The document is ``<annotations>``, ``<version>1.1</version>``, a ``<meta>``
describing the task (``<size>`` the video's frames, ``<mode>interpolation``,
``<start_frame>`` 0 to ``<stop_frame>``, ``<original_size>``, and a
``<label>`` per name of the model's label set), then one ``<track>`` per
object track, each a run of ``<box frame keyframe outside occluded xtl ytl xbr
ybr z_order>`` in frame order. Frames are the video's 0-based indices, as in
CVAT. Pixels are written to a thousandth (CVAT itself writes hundredths).
Scores have no place in CVAT's boxes and are left out.

A tracked job's track keeps its track id as ``<track id>`` (what CVAT and
Datumaro read back as the track). Every detected box is a keyframe; where the
object is missing from an analysed frame, and on the frame after its last
box, an ``outside="1"`` keyframe ends it, as CVAT does, so that CVAT neither
interpolates across the gap nor stretches the box to the end of the video.
An object without a track id is written as an untracked one.

An untracked job's objects are written the way CVAT writes a video task's
lone shapes: a track of one box, closed by an ``outside`` box on the next
frame, with ids counted from 0. (A ``<image>`` per frame would be CVAT for
images, which Datumaro only imports beside the frames' image files.) Those
tracks are complete as soon as their frame is read, so they are sent as the
frames go.

A track, though, needs all of its boxes together, and the frames are read
once, in frame order. The boxes of a tracked job therefore go to a private
temporary SQLite database (on disk; SQLite keeps only a few megabytes of it in
memory) and come back sorted by track and frame once the last frame is read.
What stays in Python's memory is the boxes of the latest frame.

Every piece of user text (labels, the file's name) is escaped with
``xml.sax.saxutils`` after the characters XML 1.0 cannot hold are replaced
by U+FFFD; the markup around it is written here, from numbers only.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from detector.exports.common import Document, ExportSource, Frames, Pieces, decimal

if TYPE_CHECKING:
    from detector.detection.detections import Detections

_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Box = tuple[float, float, float, float]


def _clean(text: str) -> str:
    """``text`` with every character XML 1.0 cannot hold, even escaped, replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(text))


def _text(text: str) -> str:
    """``text`` escaped as an element's content."""
    return escape(_clean(text), {"\r": "&#13;"})


def _attribute(text: str) -> str:
    """``text`` as a quoted attribute value."""
    return quoteattr(_clean(text))


def _label_names(source: ExportSource) -> list[str]:
    """The model's label names in class-id order, each once."""
    return list(dict.fromkeys(source.labels[class_id] for class_id in sorted(source.labels)))


def _meta(source: ExportSource, stop_frame: int) -> str:
    """The document's start: the XML declaration, ``<annotations>``, ``<version>`` and ``<meta>``."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<annotations>",
        "  <version>1.1</version>",
        "  <meta>",
        "    <task>",
        f"      <name>{_text(source.name)}</name>",
        f"      <size>{int(source.frame_count)}</size>",
        "      <mode>interpolation</mode>",
        "      <overlap>0</overlap>",
        "      <bugtracker></bugtracker>",
        "      <flipped>False</flipped>",
        "      <start_frame>0</start_frame>",
        f"      <stop_frame>{stop_frame}</stop_frame>",
        "      <frame_filter></frame_filter>",
        "      <z_order>False</z_order>",
        "      <labels>",
    ]
    for name in _label_names(source):
        lines += [
            "        <label>",
            f"          <name>{_text(name)}</name>",
            "          <type>rectangle</type>",
            "          <attributes></attributes>",
            "        </label>",
        ]
    lines += [
        "      </labels>",
        "      <original_size>",
        f"        <width>{int(source.width)}</width>",
        f"        <height>{int(source.height)}</height>",
        "      </original_size>",
        f"      <source>{_text(source.name)}</source>",
        "    </task>",
        "  </meta>",
    ]
    return "\n".join(lines) + "\n"


def _track_start(track_id: int, label: str) -> str:
    """A ``<track>`` start tag."""
    return f'  <track id="{track_id}" label={_attribute(label)} source="auto">\n'


_TRACK_END = "  </track>\n"


def _box(frame: int, box: Box, *, outside: bool) -> str:
    """A track's ``<box>`` on ``frame``: a keyframe, the object shown or, ``outside``, gone."""
    x1, y1, x2, y2 = box
    return (
        f'    <box frame="{frame}" keyframe="1" outside="{int(outside)}" occluded="0" '
        f'xtl="{decimal(x1, 3)}" ytl="{decimal(y1, 3)}" xbr="{decimal(x2, 3)}" ybr="{decimal(y2, 3)}" '
        'z_order="0"/>\n'
    )


def _lone_track(track_id: int, label: str, frame: int, box: Box, stop_frame: int) -> str:
    """A track of one box on ``frame``, closed on the next frame when the video has one."""
    text = _track_start(track_id, label) + _box(frame, box, outside=False)
    if frame + 1 <= stop_frame:
        text += _box(frame + 1, box, outside=True)
    return text + _TRACK_END


def _boxes_of(found: Detections) -> list[Box]:
    """Each object's box as four floats."""
    return [(x1, y1, x2, y2) for x1, y1, x2, y2 in found.xyxy.tolist()]


def write_cvat(source: ExportSource, frames: Frames) -> Document:
    """The CVAT for video 1.1 XML of a job's frames, in pieces."""
    stop_frame = max(int(source.frame_count), 1) - 1
    yield _meta(source, stop_frame)
    if source.tracked:
        yield from _tracked(frames, stop_frame)
    else:
        yield from _untracked(frames, stop_frame)
    yield "</annotations>\n"


def _untracked(frames: Frames, stop_frame: int) -> Document:
    """Each object as a track of its own, sent as the frames are read."""
    pieces = Pieces()
    track_id = 0
    for frame, _timestamp, found in frames:
        for label, box in zip(found.label.tolist(), _boxes_of(found), strict=True):
            pieces.write(_lone_track(track_id, label, frame, box, stop_frame))
            track_id += 1
        if pieces.full:
            yield pieces.take()
    if text := pieces.take():
        yield text


_SCHEMA = """
CREATE TABLE tracks (track INTEGER PRIMARY KEY, label TEXT NOT NULL);
CREATE TABLE boxes (track INTEGER, frame INTEGER, outside INTEGER, x1 REAL, y1 REAL, x2 REAL, y2 REAL);
CREATE TABLE lone (frame INTEGER, label TEXT, x1 REAL, y1 REAL, x2 REAL, y2 REAL);
"""


def _store(database: sqlite3.Connection, frames: Frames, stop_frame: int) -> None:
    """Every box of the frames into ``database``, with the ``outside`` boxes that end each run.

    A track's label is that of its first box. A track seen twice in one frame
    keeps its first box there.
    """
    previous: dict[int, Box] = {}
    last_frame = -1
    for frame, _timestamp, found in frames:
        present: dict[int, Box] = {}
        labels: list[tuple[int, str]] = []
        lone: list[tuple[int, str, float, float, float, float]] = []
        objects = zip(found.track_ids(), found.label.tolist(), _boxes_of(found), strict=True)
        for track_id, label, box in objects:
            if track_id is None:
                lone.append((frame, label, *box))
            elif track_id not in present:
                present[track_id] = box
                labels.append((track_id, label))
        rows = [(track_id, frame, 0, *box) for track_id, box in present.items()]
        rows += [(track_id, frame, 1, *box) for track_id, box in previous.items() if track_id not in present]
        database.executemany("INSERT OR IGNORE INTO tracks VALUES (?, ?)", labels)
        database.executemany("INSERT INTO boxes VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        database.executemany("INSERT INTO lone VALUES (?, ?, ?, ?, ?, ?)", lone)
        previous, last_frame = present, frame
    if last_frame + 1 <= stop_frame:
        database.executemany(
            "INSERT INTO boxes VALUES (?, ?, 1, ?, ?, ?, ?)",
            [(track_id, last_frame + 1, *box) for track_id, box in previous.items()],
        )


def _tracked(frames: Frames, stop_frame: int) -> Document:
    """The tracks, from the temporary database once every frame is stored, then any lone boxes."""
    # "" opens a private temporary database on disk, deleted when closed. The
    # generator may be resumed on another thread than the one it started on.
    with closing(sqlite3.connect("", check_same_thread=False)) as database:
        database.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -4096;" + _SCHEMA
        )
        _store(database, frames, stop_frame)
        pieces = Pieces()
        rows: Iterable[tuple[int, str, int, int, float, float, float, float]] = database.execute(
            "SELECT b.track, t.label, b.frame, b.outside, b.x1, b.y1, b.x2, b.y2"
            " FROM boxes AS b JOIN tracks AS t ON t.track = b.track ORDER BY b.track, b.frame, b.outside"
        )
        current: int | None = None
        for track_id, label, frame, outside, *box in rows:
            if track_id != current:
                if current is not None:
                    pieces.write(_TRACK_END)
                pieces.write(_track_start(track_id, label))
                current = track_id
            pieces.write(_box(frame, (box[0], box[1], box[2], box[3]), outside=bool(outside)))
            if pieces.full:
                yield pieces.take()
        if current is not None:
            pieces.write(_TRACK_END)
        (highest,) = database.execute("SELECT max(track) FROM tracks").fetchone()
        next_id = 0 if highest is None else highest + 1
        for frame, label, *box in database.execute("SELECT * FROM lone ORDER BY rowid"):
            pieces.write(_lone_track(next_id, label, frame, (box[0], box[1], box[2], box[3]), stop_frame))
            next_id += 1
            if pieces.full:
                yield pieces.take()
        if text := pieces.take():
            yield text

"""The service's own row formats: CSV (one row per object) and JSON Lines (one line per frame).

Both keep the 0-based frame indices of the API and write every number exactly
as stored (Python's shortest round-tripping form).
"""

from __future__ import annotations

import csv
import json

from detector.exports.common import Document, ExportSource, Frames, Pieces

CSV_HEADER = ("frame", "timestamp", "track_id", "label", "class_id", "score", "x1", "y1", "x2", "y2")


def write_csv(source: ExportSource, frames: Frames) -> Document:
    """A CSV table of a job's objects, in pieces: :data:`CSV_HEADER`, then a row per object.

    ``track_id`` is empty when the object has none. The csv module quotes what
    needs it (a label with a comma, a quote or a line break) and ends rows with
    CRLF, as RFC 4180 has it.
    """
    pieces = Pieces()
    rows = csv.writer(pieces)
    rows.writerow(CSV_HEADER)
    for frame, timestamp, objects in frames:
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            track_id = obj.get("track_id") if source.tracked else None
            rows.writerow(
                (
                    frame,
                    timestamp,
                    "" if track_id is None else track_id,
                    obj["label"],
                    obj["class_id"],
                    obj["score"],
                    x1,
                    y1,
                    x2,
                    y2,
                )
            )
        if pieces.full:
            yield pieces.take()
    if text := pieces.take():
        yield text


def write_jsonl(source: ExportSource, frames: Frames) -> Document:
    """JSON Lines, in pieces: a line per analysed frame, ``{"frame", "timestamp", "objects"}``.

    A line is the JSON of one element of a detections page's ``frames``, the
    very text ``FrameResult.to_json`` makes, objects as stored.
    """
    pieces = Pieces()
    for frame, timestamp, objects in frames:
        pieces.write(json.dumps({"frame": frame, "timestamp": timestamp, "objects": list(objects)}) + "\n")
        if pieces.full:
            yield pieces.take()
    if text := pieces.take():
        yield text

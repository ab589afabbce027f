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
    for frame, timestamp, found in frames:
        track_ids = found.track_ids() if source.tracked else [None] * len(found)
        objects = zip(
            track_ids,
            found.label.tolist(),
            found.class_id.tolist(),
            found.score.tolist(),
            found.xyxy.tolist(),
            strict=True,
        )
        for track_id, label, class_id, score, (x1, y1, x2, y2) in objects:
            rows.writerow(
                (
                    frame,
                    timestamp,
                    "" if track_id is None else track_id,
                    label,
                    class_id,
                    score,
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
    very text ``detector.pipeline.results.frame_json`` makes, objects as stored.
    """
    pieces = Pieces()
    for frame, timestamp, found in frames:
        pieces.write(
            json.dumps({"frame": frame, "timestamp": timestamp, "objects": found.to_objects()}) + "\n"
        )
        if pieces.full:
            yield pieces.take()
    if text := pieces.take():
        yield text

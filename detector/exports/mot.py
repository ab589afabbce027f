"""MOTChallenge text: one line per tracked object, for tracking tools and benchmarks.

Each line is ``frame,id,bb_left,bb_top,bb_width,bb_height,conf,-1,-1,-1``
(the 2D layout, whose world coordinates are -1). MOTChallenge counts from 1,
in the manner of its MATLAB devkit: ``frame`` is the 0-based frame index plus
1, and so are ``bb_left`` and ``bb_top`` (readers such as motmetrics take the 1
off again). ``id`` is the object's track id. Pixels are written to a
thousandth, confidences to a millionth. An object without a track id has no
line, for MOT has no place for it.

Only a tracked job has this format; :func:`detector.exports.export` refuses
the others.
"""

from __future__ import annotations

from detector.exports.common import Document, ExportSource, Frames, Pieces, decimal


def write_mot(source: ExportSource, frames: Frames) -> Document:
    """The MOTChallenge lines of a tracked job's frames, in pieces."""
    pieces = Pieces()
    for frame, _timestamp, found in frames:
        number = frame + 1
        objects = zip(found.track_ids(), found.xyxy.tolist(), found.score.tolist(), strict=True)
        for track_id, (x1, y1, x2, y2), score in objects:
            if track_id is None:
                continue
            pieces.write(
                f"{number},{track_id},{decimal(x1 + 1, 3)},{decimal(y1 + 1, 3)},"
                f"{decimal(x2 - x1, 3)},{decimal(y2 - y1, 3)},{decimal(score, 6)},-1,-1,-1\n"
            )
        if pieces.full:
            yield pieces.take()
    if text := pieces.take():
        yield text

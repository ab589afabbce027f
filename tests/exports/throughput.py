"""How fast each export format is written: frames per second for a 10,000-frame job of 10 objects a frame.

Run it by hand (it is no test): ``.venv/bin/python -m tests.exports.throughput [frames] [objects]``.
The frames are built before the clock starts, so only the writer is timed;
its pieces are counted and dropped, as a stream to a client would be.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from detector.detection import AnalysedFrame, Detections
from detector.exports import FORMATS, ExportSource, export

LABELS = {class_id: f"class {class_id}" for class_id in range(80)}


def make_frames(frames: int, objects: int, *, tracked: bool) -> list[tuple[int, float, list[dict[str, Any]]]]:
    """``frames`` frames of ``objects`` moving boxes each, one track per object slot, renewed every 300 frames."""
    job = []
    for frame in range(frames):
        found = []
        for slot in range(objects):
            x1 = 37.0 * slot + 0.731 * (frame % 300) + 0.125
            y1 = 11.5 * slot + 0.0173 * frame
            obj: dict[str, Any] = {
                "label": LABELS[slot % 80],
                "class_id": slot % 80,
                "score": 0.5 + slot / 23 + (frame % 97) / 1000,
                "box": [x1, y1, x1 + 64.25 + slot, y1 + 120.5],
            }
            if tracked:
                obj["track_id"] = slot + objects * (frame // 300)
            found.append(obj)
        job.append((frame, frame / 25, found))
    return job


def main() -> None:
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    objects = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    print(f"{frames} frames of {objects} objects")
    for tracked in (True, False):
        job = [
            AnalysedFrame(f, t, Detections.from_objects(o))
            for f, t, o in make_frames(frames, objects, tracked=tracked)
        ]
        source = ExportSource("street.mp4", 1920, 1080, frames, 25.0, LABELS, tracked)
        for fmt in FORMATS:
            if fmt == "mot" and not tracked:
                continue
            start = time.perf_counter()
            size = sum(len(piece) for piece in export(fmt, source, job))
            elapsed = time.perf_counter() - start
            print(
                f"{fmt:6} {'tracked' if tracked else 'untracked':9} {frames / elapsed:9.0f} frames/s"
                f" {objects * frames / elapsed:10.0f} objects/s {size / 1e6:7.1f} MB in {elapsed:5.2f} s"
            )


if __name__ == "__main__":
    main()

"""Measure how fast `render_video` renders on this machine (a script, not a test).

    .venv/bin/python -m tests.render.measure_render [--frames 200] [--encoder libx264]

Makes synthetic sources with detector/video/synthetic.py at 640x360 and 1920x1080
and renders each with five boxes on every frame, then with none (what decoding and
encoding alone cost), and prints frames per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from detector.detection import AnalysedFrame, Detections
from detector.render import PRESET, render_video
from detector.video.synthetic import make_video

SIZES = ((640, 360), (1920, 1080))


def _boxes(frames: int, width: int, height: int, per_frame: int = 5) -> Iterator[AnalysedFrame]:
    for i in range(frames):
        objects = []
        for k in range(per_frame):
            x = (i * 3 + k * width // per_frame) % (width - width // 6)
            y = (k * height // per_frame + i) % (height - height // 5)
            objects.append(
                {
                    "label": ("person", "car", "dog", "bicycle", "truck")[k],
                    "class_id": k,
                    "score": 0.5 + k / 10,
                    "box": [x, y, x + width // 6, y + height // 5],
                    "track_id": k + 1,
                }
            )
        yield AnalysedFrame(i, i / 25, Detections.from_objects(objects))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--encoder", default="libx264")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, encoder {args.encoder} (preset {PRESET}), {args.frames} frames")
    with tempfile.TemporaryDirectory() as folder:
        for width, height in SIZES:
            src = make_video(
                Path(folder) / f"{width}x{height}.mp4", frames=args.frames, width=width, height=height
            )
            for label, frames in (
                ("5 boxes/frame", _boxes(args.frames, width, height)),
                ("no boxes", iter(())),
            ):
                stats = render_video(src, Path(folder) / "out.mp4", frames, encoder=args.encoder)
                print(
                    f"{width}x{height} {label:>14}: {stats.frames} frames in {stats.seconds:.2f} s = "
                    f"{stats.fps:.1f} frames/s, {stats.bytes / 1e6:.2f} MB"
                )


if __name__ == "__main__":
    main()

"""The benchmark's analytics figure: how long one analytics spec takes over a long,
busy job's tracks (docs/analytics.md, docs/performance.md).

A database of its own holds one succeeded, tracked job of `FRAMES` stored frames
(10 a second) and `TRACKS` tracks, each a person walking a straight line with a
little jitter for `TRACK_FRAMES` frames from a random start, so about
TRACKS x TRACK_FRAMES / FRAMES people are in each frame; and one queued spec of
four lines, four zones and a calibration. The spec's `analyse_tracks` task runs in
this process, timed as a whole (reading the frames from the database included);
the same frames' analysis in memory (`analyse_frames`, as ``detector predict``
runs it) is timed apart.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FRAMES = 10_000
TRACKS = 1_000
TRACK_FRAMES = 300
FPS = 10.0
FRAME_W, FRAME_H = 1280, 720
SPEC: dict[str, Any] = {
    "name": "bench",
    "interval": 60,
    "min_dwell": 0.5,
    "lines": [
        {"name": "h1", "points": [[0, 240], [1280, 240]]},
        {"name": "h2", "points": [[0, 480], [1280, 480]]},
        {"name": "v1", "points": [[426, 0], [426, 720]]},
        {"name": "v2", "points": [[853, 0], [853, 720]], "classes": ["person"]},
    ],
    "zones": [
        {"name": "a", "polygon": [[100, 100], [500, 100], [500, 400], [100, 400]]},
        {"name": "b", "polygon": [[700, 300], [1200, 250], [1150, 650], [650, 700]]},
        {"name": "c", "polygon": [[600, 50], [700, 50], [700, 700], [600, 700]]},
        {"name": "d", "polygon": [[0, 600], [1280, 600], [1280, 720], [0, 720]]},
    ],
    "calibration": {
        "image": [[200, 700], [1080, 700], [900, 200], [380, 200]],
        "world": [[0, 0], [20, 0], [20, 40], [0, 40]],
    },
}


def synthetic_frames(frames: int = FRAMES, tracks: int = TRACKS, seed: int = 0) -> list[list[dict[str, Any]]]:
    """Each frame's objects: ``tracks`` people walking straight lines with jitter."""
    rng = np.random.default_rng(seed)
    objects: list[list[dict[str, Any]]] = [[] for _ in range(frames)]
    starts = rng.integers(0, max(1, frames - TRACK_FRAMES), size=tracks)
    origins = rng.uniform((0, 0), (FRAME_W, FRAME_H), size=(tracks, 2))
    headings = rng.uniform(0, 2 * np.pi, size=tracks)
    speeds = rng.uniform(1.0, 4.0, size=tracks)
    for track in range(tracks):
        steps = np.arange(TRACK_FRAMES)
        dx, dy = np.cos(headings[track]) * speeds[track], np.sin(headings[track]) * speeds[track]
        xs = origins[track, 0] + dx * steps + rng.normal(0, 1.5, TRACK_FRAMES)
        ys = origins[track, 1] + dy * steps + rng.normal(0, 1.5, TRACK_FRAMES)
        for k, (x, y) in enumerate(zip(xs.tolist(), ys.tolist(), strict=True)):
            if not (0 <= x < FRAME_W and 0 <= y < FRAME_H):
                continue
            f = int(starts[track]) + k
            objects[f].append(
                {
                    "label": "person",
                    "class_id": 0,
                    "score": 0.9,
                    "box": [round(x - 20, 1), round(y - 90, 1), round(x + 20, 1), round(y, 1)],
                    "track_id": track + 1,
                }
            )
    return objects


def make_job(database_url: str, objects: list[list[dict[str, Any]]]) -> tuple[str, str]:
    """A database with one succeeded, tracked job of these frames and one queued spec."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from detector.analytics import parse_spec
    from detector.bench.stored import stored_job
    from detector.db.migrate import upgrade
    from detector.models import Analytics, JobStatus

    upgrade(database_url)
    engine = create_engine(database_url)
    spec = parse_spec(SPEC, FRAME_W, FRAME_H)
    with Session(engine) as session:
        job_id = stored_job(
            session,
            ((i, i / FPS, frame) for i, frame in enumerate(objects)),
            status=JobStatus.SUCCEEDED,
            original_filename="busy.mp4",
            track=True,
            width=FRAME_W,
            height=FRAME_H,
            fps=FPS,
            frame_count=len(objects),
            frames_total=len(objects),
        ).id
        session.add(Analytics(job_id=job_id, id=spec.spec_id, name="bench", spec=spec.as_json()))
        session.commit()
    engine.dispose()
    return job_id, spec.spec_id


def analytics_figure(frames: int = FRAMES, tracks: int = TRACKS) -> dict[str, Any]:
    """The figure: the task's seconds over the database, and the in-memory analysis's."""
    from detector.analytics import analyse_frames, parse_spec
    from detector.app import create_app
    from detector.detection import AnalysedFrame, Detections
    from detector.models import Analytics
    from detector.pipeline.analytics import analyse_tracks

    objects = synthetic_frames(frames, tracks)
    positions = sum(len(o) for o in objects)
    spec = parse_spec(SPEC, FRAME_W, FRAME_H)
    analysed = [AnalysedFrame(i, i / FPS, Detections.from_objects(o)) for i, o in enumerate(objects)]
    started = time.perf_counter()
    in_memory = analyse_frames(spec, analysed)
    memory_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="detector-bench-analytics-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'jobs.sqlite3'}"
        job_id, analytics_id = make_job(url, objects)
        app = create_app({"DATABASE_URL": url, "DATA_DIR": tmp, "VIDEO_STORAGE": tmp})
        with app.app_context():
            started = time.perf_counter()
            result = analyse_tracks.run(job_id, analytics_id)
            task_seconds = time.perf_counter() - started
            from detector.db import db

            stored = db.session.get(Analytics, (job_id, analytics_id))
            assert stored is not None and stored.results is not None, result
            events = len(stored.results["events"])
            db.session.remove()
            db.engine.dispose()
    return {
        "analytics": {
            "frames": frames,
            "tracks": tracks,
            "positions": positions,
            "lines": len(SPEC["lines"]),
            "zones": len(SPEC["zones"]),
            "events": events,
            "events_in_memory": len(in_memory.results["events"]),
            "task_seconds": round(task_seconds, 2),
            "in_memory_seconds": round(memory_seconds, 2),
        }
    }


def main() -> None:
    """Print the figure as JSON: ``python -m detector.bench.analytics [FRAMES [TRACKS]]``."""
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(analytics_figure(*args), indent=2))


if __name__ == "__main__":
    main()

"""The benchmark's tracking-step figure: what a job's tracking step costs in time and
memory for jobs of different lengths, on its own.

For each length, a database of its own holds one processing, tracked job whose
stored frames each have `OBJECTS_PER_FRAME` objects at random places (as random
weights find them: almost every object a new track). A fresh process (the
processor's kind: the app, its database, the tracker loaded) runs the job's
`track_objects` step; it reports the step's time and how far its resident
memory rose above where it stood before (the kernel's peak, VmHWM, reset first).
The step should take time in proportion to the frames and hold memory
independent of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

OBJECTS_PER_FRAME = 10
"""Objects on each stored frame."""

LENGTHS = (600, 7_200, 36_000)
"""Analysed frames of the jobs measured: ten minutes, two hours and ten hours at one frame a second."""

FRAME_W, FRAME_H = 1280, 720


def _objects(rng: np.random.Generator) -> list[dict[str, Any]]:
    corners = rng.uniform((0, 0), (FRAME_W - 60, FRAME_H - 120), size=(OBJECTS_PER_FRAME, 2))
    scores = rng.uniform(0.3, 0.95, size=OBJECTS_PER_FRAME)
    return [
        {"label": "person", "class_id": 0, "score": round(float(s), 3), "box": [x, y, x + 60.0, y + 120.0]}
        for (x, y), s in zip(corners.round(1).tolist(), scores, strict=True)
    ]


def make_job(database_url: str, frames: int, seed: int = 0) -> str:
    """A database at ``database_url`` with one processing, tracked job of ``frames``
    stored frames one second apart; the job's id."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from detector.bench.stored import stored_job
    from detector.db.migrate import upgrade
    from detector.models import JobStatus, utcnow

    upgrade(database_url)
    rng = np.random.default_rng(seed)
    engine = create_engine(database_url)
    with Session(engine) as session:
        job_id = stored_job(
            session,
            ((k * 25, float(k), _objects(rng)) for k in range(frames)),
            status=JobStatus.PROCESSING,
            original_filename="long.mp4",
            score_threshold=0.0,
            sample_fps=1.0,
            track=True,
            started_at=utcnow(),
            frame_count=frames * 25,
            frames_total=frames,
        ).id
        session.commit()
    engine.dispose()
    return job_id


# Runs in the fresh process: the step, timed, with the rise of its peak memory.
_STEP = """
import json, sys, time
from pathlib import Path
from detector.app import create_app
from detector.detection import Detections
from detector.tracking import Tracker
from detector.pipeline.tracking import track_objects

def kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

app = create_app({"DATABASE_URL": sys.argv[1], "DATA_DIR": sys.argv[2]})
warm = Tracker(1.0)  # loads supervision and scipy, as a warm processor has them
for k in range(3):
    warm.update(k, float(k), Detections.from_objects(
        [{"label": "person", "class_id": 0, "score": 0.9, "box": [10.0, 10.0, 50.0, 90.0]}]))
with app.app_context():
    before = kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    result = track_objects(sys.argv[3])
    seconds = time.perf_counter() - started
    print(json.dumps({"result": result, "seconds": seconds, "rss_mb": before / 1024,
                      "rise_mb": (kb("VmHWM") - before) / 1024}))
"""


def run_step(database_url: str, data_dir: Path, job_id: str) -> dict[str, Any]:
    """The job's tracking step in a fresh process: its result, seconds and memory."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _STEP, database_url, str(data_dir), job_id],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def tracking_step(lengths: tuple[int, ...] = LENGTHS) -> dict[str, Any]:
    """The figure: for each length, frames, objects, tracks, seconds (and per frame)
    and the step's memory rise."""
    rows = []
    for frames in lengths:
        with tempfile.TemporaryDirectory(prefix="detector-bench-tracking-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'jobs.sqlite3'}"
            job_id = make_job(url, frames)
            measured = run_step(url, Path(tmp), job_id)
        result = measured["result"]
        rows.append(
            {
                "frames": frames,
                "objects": frames * OBJECTS_PER_FRAME,
                "tracks": result.get("tracks"),
                "seconds": round(measured["seconds"], 2),
                "ms_per_frame": round(1000 * measured["seconds"] / frames, 2),
                "rss_before_mb": round(measured["rss_mb"], 1),
                "rise_mb": round(measured["rise_mb"], 1),
            }
        )
    return {"objects_per_frame": OBJECTS_PER_FRAME, "lengths": rows}


def main() -> None:
    """Print the figure as JSON: ``python -m detector.bench.trackingstep [FRAMES ...]``."""
    lengths = tuple(int(a) for a in sys.argv[1:]) or LENGTHS
    print(json.dumps(tracking_step(lengths), indent=2))


if __name__ == "__main__":
    main()

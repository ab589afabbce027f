"""What planning a job costs a processor: seconds and the peak RSS it adds.

Run it by hand (it is no test):
``.venv/bin/python -m tests.pipeline.measure_planning VIDEO [SAMPLE_FPS|all] [CHUNK_FRAMES]``.
The video is uploaded through a test client on embedded defaults in a scratch
folder; then `process_video` runs in a fresh process, as a processor's pool
process runs it, after the kernel's peak of that process (VmHWM) is reset. No
worker answers there, so the check for one takes its full wait (about a second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHILD = "MEASURE_PLANNING_JOB"


def _mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _config(folder: Path, chunk_frames: int) -> dict[str, Any]:
    return {
        "TESTING": True,
        "DATA_DIR": str(folder / "data"),
        "VIDEO_STORAGE": str(folder / "videos"),
        "DATABASE_URL": f"sqlite:///{folder / 'data' / 'detector.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_RESULT_BACKEND": f"file://{folder / 'data' / 'results'}",
        "SECRET_KEY": "measure",
        "JWT_SECRET_KEY": "measure-jwt-secret-that-is-long-enough-for-hs256",
        "RATELIMIT_ENABLED": False,
        "DETECTOR_WEIGHTS": "random",
        "CHUNK_FRAMES": chunk_frames,
    }


def upload(video: Path, sample_fps: str, folder: Path, chunk_frames: int) -> str:
    """Upload ``video`` as a new job (``sample_fps`` or ``all``); its id."""
    from detector.app import create_app
    from detector.db.migrate import upgrade

    config = _config(folder, chunk_frames)
    Path(config["DATA_DIR"]).mkdir(parents=True)
    upgrade(config["DATABASE_URL"])
    client = create_app(config).test_client()
    user = {"username": "measure", "password": "measure-password"}
    client.post("/api/auth/register", json=user)
    token = client.post("/api/auth/login", json=user).json["access_token"]
    form = {} if sample_fps == "all" else {"sample_fps": sample_fps}
    with video.open("rb") as f:
        response = client.post(
            "/api/jobs", headers={"Authorization": f"Bearer {token}"}, data={"video": (f, video.name), **form}
        )
    if response.status_code != 202:
        raise SystemExit(f"the upload was refused: {response.json}")
    return str(response.json["id"])


def plan(job_id: str, folder: Path, chunk_frames: int) -> str:
    """Plan the job in this process; a line of what it cost."""
    from detector.app import create_app
    from detector.pipeline.tasks import process_video

    app = create_app(_config(folder, chunk_frames))
    with app.app_context():
        Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
        before = _mb("VmRSS")
        started = time.perf_counter()
        planned = process_video(job_id)
        seconds = time.perf_counter() - started
        peak = _mb("VmHWM")
    return f"{planned}: {seconds:.2f} s, RSS {before:.0f} MB, peak +{peak - before:.0f} MB"


def main() -> None:
    video = Path(sys.argv[1])
    sample_fps = sys.argv[2] if len(sys.argv) > 2 else "all"
    chunk_frames = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    if child := os.environ.get(CHILD):
        job_id, folder = json.loads(child)
        print(f"{video.name}, sample_fps {sample_fps}: {plan(job_id, Path(folder), chunk_frames)}")
        return
    folder = Path(tempfile.mkdtemp(prefix="measure-planning-"))
    job_id = upload(video, sample_fps, folder, chunk_frames)
    env = {**os.environ, CHILD: json.dumps([job_id, str(folder)])}
    argv = [sys.executable, "-m", "tests.pipeline.measure_planning", *sys.argv[1:]]
    sys.exit(subprocess.run(argv, env=env).returncode)


if __name__ == "__main__":
    main()

"""Faults, against real RabbitMQ + Redis and real worker processes.

Killed pool children and workers, a chunk that always kills its worker, a chunk
that raises, broker and result-backend restarts and flushes, a deploy (SIGTERM)
mid-chunk, and jobs that stall or whose chord bookkeeping is lost.

One set of workers serves the whole module (starting worker processes is most of
the cost): a processor worker, a detector worker and `celery beat`, which runs the
watchdog every WATCHDOG_INTERVAL seconds with a short JOB_STALL_SECONDS. Faults
are injected by a test-only worker entry point, tests/pipeline/fault_worker.py,
chosen per job by the uploaded file's name (``hold-1.mp4``: chunk 1 stops
mid-chunk until the test releases it). The service itself has no test hook.
Every test leaves the servers up and a detector worker running.

Videos are tiny (160x120, 12 frames in three chunks of four) and the model is the
fast test model, so a scenario costs seconds of CPU.

Two tests restart the local RabbitMQ (``rabbitmqctl stop_app``/``start_app``) and
Redis (``SHUTDOWN NOSAVE``, then the command in REDIS_START): run them against
servers of your own, never shared ones. They skip when the servers are not local.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis
from sqlalchemy import func, select

from detector.app import create_app
from detector.db import db
from detector.db.migrate import upgrade
from detector.models import Chunk, ChunkStatus, FrameDetections
from detector.runtime.processes import worker_argv
from detector.video.synthetic import make_video
from tests.conftest import RABBITMQ_URL, REDIS_URL, Auth, base_config, require_server
from tests.pipeline.conftest import Workers, detector_config, wait_for_job

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FRAMES, FPS = 12, 4
CHUNK_FRAMES = 4  # three chunks: frames 0-3, 4-7, 8-11 (a keyframe every 4 frames)
BATCH = 2  # two batches per chunk: a chunk stores progress once before it ends
STALL = 20  # JOB_STALL_SECONDS: a job with no progress for this long is the watchdog's
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class FaultWorkers(Workers):
    """A processor worker, a detector worker running tests.pipeline.fault_worker,
    and celery beat (the watchdog)."""

    def __init__(self, config: dict[str, Any], log_dir: Path, fault_dir: Path) -> None:
        super().__init__(config, log_dir)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), self.env.get("PYTHONPATH")]))
        self.env["FAULT_DIR"] = str(fault_dir)

    def start(self, queue: str, concurrency: int = 1) -> subprocess.Popen[bytes]:
        if queue == "beat":
            argv = [sys.executable, "-m", "celery", "-A", "detector.worker", "beat"]
            argv += ["-s", str(self.log_dir / "beat-schedule"), "--loglevel", "INFO"]
        else:
            argv = worker_argv(
                queue,
                concurrency=concurrency,
                node_name=f"{queue}-{os.getpid()}-{time.monotonic_ns()}@%h",
                extra=["--without-gossip", "--without-mingle"],
                app="tests.pipeline.fault_worker" if queue == "detector" else "detector.worker",
            )
        return self.group.start(queue, argv, env=self.env)

    def __enter__(self) -> FaultWorkers:
        super().__enter__()
        self.start("beat")
        return self

    def log(self, queue: str) -> str:
        path = self.log_dir / f"{queue}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_ready(self, queue: str, since: int = 0) -> None:
        """Wait for a worker's "ready." line written after byte ``since`` of its log."""
        wait_until(lambda: " ready." in self.log(queue)[since:], 120, f"the {queue} worker to start")

    def restart_detector(self) -> None:
        since = len(self.log("detector"))
        self.start("detector")
        self.wait_ready("detector", since)


class Faults:
    """The module's app (RabbitMQ + Redis db 15, SQLite), user, video and workers."""

    def __init__(self, tmp_path: Path, weights: Path) -> None:
        self.tmp_path = tmp_path
        self.fault_dir = tmp_path / "fault"
        self.fault_dir.mkdir()
        self.video = make_video(
            tmp_path / "clip.mp4", frames=FRAMES, width=160, height=120, fps=FPS, gop=CHUNK_FRAMES
        )
        self.config = base_config(
            tmp_path,
            CELERY_BROKER_URL=RABBITMQ_URL,
            CELERY_RESULT_BACKEND=REDIS_URL,
            **{
                **detector_config(weights),
                "CHUNK_FRAMES": CHUNK_FRAMES,
                "DETECTOR_BATCH_SIZE": BATCH,
                "JOB_STALL_SECONDS": STALL,
                "WATCHDOG_INTERVAL": 2,
            },
        )
        Path(self.config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        upgrade(self.config["DATABASE_URL"])
        self.app = create_app(self.config)
        self.client = self.app.test_client()
        self.headers = Auth(self.client).headers()
        # Leftovers of an earlier run would only be skipped, but would muddle the logs.
        self.app.extensions["celery"].control.purge()
        self.workers = FaultWorkers(self.config, tmp_path, self.fault_dir)

    def upload(self, filename: str = "clip.mp4") -> str:
        response = self.client.post(
            "/api/jobs",
            headers=self.headers,
            content_type="multipart/form-data",
            data={"video": (io.BytesIO(self.video.read_bytes()), filename), "score_threshold": "0.3"},
        )
        assert response.status_code == 202, response.json
        return response.json["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"/api/jobs/{job_id}", headers=self.headers).json

    def wait(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        try:
            return wait_for_job(self.client, self.headers, job_id, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.workers.logs()}") from None

    def chunks(self, job_id: str) -> dict[int, Chunk]:
        with self.app.app_context():
            return {c.index: c for c in db.session.scalars(select(Chunk).where(Chunk.job_id == job_id))}

    def stored_frames(self, job_id: str) -> int:
        with self.app.app_context():
            count = db.session.scalar(select(func.count()).where(FrameDetections.job_id == job_id))
            return int(count or 0)

    def held(self, job_id: str) -> int:
        """Wait until the job's held chunk has stored progress and waits; its pid."""
        path = self.fault_dir / f"{job_id}.held"
        try:
            wait_until(lambda: path.exists() and path.read_text(), 120, f"job {job_id}'s chunk to be held")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.workers.logs()}") from None
        return int(path.read_text())

    def release(self, job_id: str) -> None:
        (self.fault_dir / f"{job_id}.release").touch()

    def frames(self, job_id: str) -> list[dict[str, Any]]:
        page = self.client.get(f"/api/jobs/{job_id}/detections?limit=1000", headers=self.headers)
        assert page.status_code == 200, page.json
        assert page.json["next_start"] is None
        return page.json["frames"]

    def assert_complete(self, job_id: str) -> list[dict[str, Any]]:
        """The job succeeded and every frame is there exactly once, in order, with its time."""
        job = self.job(job_id)
        assert job["status"] == "succeeded", (job, self.workers.logs())
        assert job["error"] is None
        frames = self.frames(job_id)
        assert [f["frame"] for f in frames] == list(range(FRAMES))
        assert [f["timestamp"] for f in frames] == [pytest.approx(i / FPS) for i in range(FRAMES)]
        assert job["progress"] == {
            "frames_done": FRAMES,
            "frames_total": FRAMES,
            "percent": 100.0,
            "stage": "finished",
            "frames_tracked": None,
        }
        assert job["objects_total"] == sum(len(f["objects"]) for f in frames)
        assert sum(len(f["objects"]) for f in frames) > 0, "a test with no detections proves nothing"
        assert all(c.status is ChunkStatus.DONE for c in self.chunks(job_id).values())
        return frames

    def assert_failed_clean(self, job_id: str) -> dict[str, Any]:
        """The job failed with a message and left no stored frames."""
        job = self.job(job_id)
        assert job["status"] == "failed", (job, self.workers.logs())
        assert job["error"] and job["finished_at"]
        assert self.stored_frames(job_id) == 0
        detections = self.client.get(f"/api/jobs/{job_id}/detections", headers=self.headers)
        assert detections.status_code == 409
        return job


@pytest.fixture(scope="module")
def module_faults(tmp_path_factory: pytest.TempPathFactory, seeded_weights: Path) -> Iterator[Faults]:
    require_server(RABBITMQ_URL)
    require_server(REDIS_URL)
    faults = Faults(tmp_path_factory.mktemp("faults"), seeded_weights)
    with faults.workers:
        faults.workers.wait_ready("processor")
        faults.workers.wait_ready("detector")
        yield faults
    faults.app.extensions["celery"].control.purge()  # chunks of jobs failed while no worker ran


@pytest.fixture
def faults(module_faults: Faults) -> Faults:
    """The module's set-up, with a detector worker running (a test may have stopped it)."""
    proc = module_faults.workers.procs.get("detector")
    if proc is None or proc.poll() is not None:
        module_faults.workers.procs.pop("detector", None)
        module_faults.workers.restart_detector()
    return module_faults


# -- killed workers ----------------------------------------------------------------------


def test_killed_pool_child_mid_chunk_is_redelivered(faults: Faults):
    """kill -9 the pool child running a chunk: the parent requeues the message
    (acks_late + reject_on_worker_lost), a new child runs the chunk again, and
    every frame is stored exactly once."""
    job_id = faults.upload("hold-1.mp4")
    pid = faults.held(job_id)
    chunk = faults.chunks(job_id)[1]
    assert chunk.status is ChunkStatus.RUNNING and chunk.frames_done > 0  # mid-chunk
    assert chunk.deliveries == 1
    assert children(faults.workers.procs["detector"].pid) == [pid]
    os.kill(pid, signal.SIGKILL)
    assert faults.wait(job_id)["status"] == "succeeded"
    faults.assert_complete(job_id)
    chunks = faults.chunks(job_id)
    assert [chunks[i].deliveries for i in range(3)] == [1, 2, 1]
    assert f"pid:{pid} exited with 'signal 9 (SIGKILL)'" in faults.workers.log("detector")


def test_killed_worker_chunk_returns_to_the_queue(faults: Faults):
    """SIGKILL the whole detector worker (parent and child) mid-chunk: its unacked
    message returns to RabbitMQ when the connection drops, and a new worker runs it."""
    job_id = faults.upload("hold-1.mp4")
    faults.held(job_id)
    proc = faults.workers.procs.pop("detector")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert faults.chunks(job_id)[1].status is ChunkStatus.RUNNING
    faults.workers.restart_detector()
    assert faults.wait(job_id)["status"] == "succeeded"
    faults.assert_complete(job_id)
    chunks = faults.chunks(job_id)
    assert [chunks[i].deliveries for i in range(3)] == [1, 2, 1]


def test_chunk_that_always_kills_its_worker_fails_the_job_after_bounded_deliveries(faults: Faults):
    """A poison chunk: each delivery kills the pool child. After MAX_CHUNK_DELIVERIES
    (3) deaths the next delivery fails the job, naming the chunk, instead of looping."""
    job_id = faults.upload("crash-1.mp4")
    job = faults.wait(job_id)
    faults.assert_failed_clean(job_id)
    assert job["error"].startswith("chunk 1 (frames 4-7) was started 3 times and its worker died")
    assert faults.chunks(job_id)[1].deliveries == 4
    assert faults.workers.log("detector").count("Worker exited prematurely: exitcode 1") >= 3


def test_chunk_that_raises_fails_the_job_once_and_cleans_up(faults: Faults):
    """The last chunk raises after chunks 0 and 1 stored their frames: the job fails
    once, with the chunk and the error; the chord's callback never runs; no frames remain."""
    job_id = faults.upload("raise-2.mp4")
    job = faults.wait(job_id)
    faults.assert_failed_clean(job_id)
    assert job["error"] == "chunk 2 (frames 8-11) failed: injected failure in chunk 2"
    chunks = faults.chunks(job_id)
    assert chunks[0].status is chunks[1].status is ChunkStatus.DONE  # they had stored frames
    # The chord failed: its error callback ran, found the job already failed and left it.
    wait_until(
        lambda: f"job={job_id} chord failed: " in faults.workers.log("detector"),
        30,
        "the chord's error callback",
    )
    assert faults.job(job_id)["error"] == job["error"]
    everything = faults.workers.log("processor") + faults.workers.log("detector")
    assert everything.count(f"job={job_id} failed:") == 1, faults.workers.logs()
    merges = [line for line in everything.splitlines() if "merge_chunks" in line and job_id in line]
    assert merges == []


def test_chunk_whose_frames_cannot_be_stored_fails_the_job_naming_the_chunk(faults: Faults):
    """Storing a chunk's frames fails in the database, after detection: the job fails
    once, naming the chunk and the database's error (not Celery's ChordError, which
    the chord's error callback sees afterwards and finds the job already failed)."""
    job_id = faults.upload("badstore-1.mp4")
    job = faults.wait(job_id)
    faults.assert_failed_clean(job_id)
    assert job["error"].startswith("chunk 1 (frames 4-7) failed: "), job["error"]
    assert "IntegrityError" in job["error"] and "Dependency" not in job["error"]
    everything = faults.workers.log("processor") + faults.workers.log("detector")
    assert everything.count(f"job={job_id} failed:") == 1, faults.workers.logs()


# -- deploys -----------------------------------------------------------------------------


def test_sigterm_lets_the_running_chunk_finish_then_a_new_worker_completes_the_job(faults: Faults):
    """A deploy sends SIGTERM to the detector worker mid-chunk: Celery's warm shutdown
    finishes and acks that chunk and takes no other; the next worker does the rest."""
    job_id = faults.upload("hold-1.mp4")
    faults.held(job_id)
    proc = faults.workers.procs.pop("detector")
    since = len(faults.workers.log("detector"))
    os.kill(proc.pid, signal.SIGTERM)
    wait_until(lambda: "Warm shutdown" in faults.workers.log("detector")[since:], 30, "warm shutdown")
    faults.release(job_id)
    assert proc.wait(60) == 0
    chunks = faults.chunks(job_id)
    assert chunks[1].status is ChunkStatus.DONE and chunks[1].deliveries == 1  # finished, not redone
    assert chunks[2].status is ChunkStatus.PENDING  # left in the queue for the next worker
    assert faults.job(job_id)["status"] == "processing"
    faults.workers.restart_detector()
    assert faults.wait(job_id)["status"] == "succeeded"
    faults.assert_complete(job_id)
    assert [c.deliveries for c in faults.chunks(job_id).values()] == [1, 1, 1]


# -- the servers -------------------------------------------------------------------------


def _require_local_server(url: str, tool: str) -> None:
    """Restarting a server needs it to be this machine's, and its command-line tool."""
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1") or shutil.which(tool) is None:
        pytest.skip(f"restarting {url} needs a local server and {tool}")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def test_rabbitmq_restart_during_a_job_and_an_upload_while_it_is_down(faults: Faults):
    """RabbitMQ restarts while a chunk runs, and a video is uploaded while it is down.

    Durable queues keep the queued chunks. The running chunk finishes but cannot be
    acked (its channel is gone), so RabbitMQ delivers it again: the second delivery
    finds the chunk done and changes nothing. The upload is accepted (202, queued)
    although its process_video message could not be sent; the watchdog sends it
    again after JOB_STALL_SECONDS."""
    _require_local_server(RABBITMQ_URL, "rabbitmqctl")
    running = faults.upload("hold-1.mp4")
    faults.held(running)
    try:
        _rabbitmqctl("stop_app")
        late = faults.upload("clip.mp4")
        assert faults.job(late)["status"] == "queued"
    finally:
        _rabbitmqctl("start_app")
        _rabbitmqctl("await_startup")
    faults.release(running)
    assert faults.wait(running)["status"] == "succeeded"
    faults.assert_complete(running)
    runs = f"Task detector.detect_frames[{running}-1] succeeded"
    wait_until(lambda: faults.workers.log("detector").count(runs) == 2, 60, "chunk 1's redelivery")
    assert [c.deliveries for c in faults.chunks(running).values()] == [1, 1, 1]
    assert faults.wait(late, timeout=STALL + 90)["status"] == "succeeded"
    faults.assert_complete(late)
    assert "'resent': 1" in faults.workers.log("processor")


def _restart_redis() -> None:
    with contextlib.suppress(redis.ConnectionError):  # the server hangs up as it stops
        redis.Redis.from_url(REDIS_URL).shutdown(nosave=True)
    wait_until(lambda: not _redis_up(), 30, "Redis to stop")


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.ConnectionError:
        return False


def _start_redis() -> None:
    if not _redis_up():
        subprocess.run(REDIS_START, check=True, timeout=30)
        wait_until(_redis_up, 30, "Redis to start")


def test_redis_restart_loses_the_chord_and_the_job_still_finishes(faults: Faults):
    """Redis (no persistence here) restarts while a chunk runs: the chord's
    bookkeeping is gone, so its callback never fires. The last chunk to finish sees
    every chunk stored and sends merge_chunks itself (the watchdog would otherwise,
    see tests/pipeline/test_watchdog.py). A job finished before keeps its
    detections, and so do both after a FLUSHDB of the result database."""
    _require_local_server(REDIS_URL, "redis-server")
    finished = faults.upload("clip.mp4")
    assert faults.wait(finished)["status"] == "succeeded"
    before = faults.assert_complete(finished)

    running = faults.upload("hold-1.mp4")
    faults.held(running)
    try:
        _restart_redis()
    finally:
        _start_redis()
    faults.release(running)
    assert faults.wait(running, timeout=STALL + 90)["status"] == "succeeded"
    faults.assert_complete(running)
    assert faults.frames(finished) == before

    redis.Redis.from_url(REDIS_URL).flushdb()
    assert faults.frames(finished) == before
    faults.assert_complete(running)


def test_watchdog_fails_a_job_whose_chunks_never_run(faults: Faults):
    """No detector worker is running: nothing moves. After JOB_STALL_SECONDS the
    watchdog fails the job with a message saying no detector serves its model."""
    faults.workers.stop("detector")
    job_id = faults.upload("clip.mp4")
    job = faults.wait(job_id, timeout=STALL + 60)
    faults.assert_failed_clean(job_id)
    # Planned while the processor still took the stopped detector for online, the
    # job's chunks wait on a queue nobody works on; planned after it knew, the job
    # waits for a worker. Either way the watchdog fails it after JOB_STALL_SECONDS.
    planned = job["error"].startswith(
        "no detector serving model 'default' has made progress on any chunk for "
    )
    if planned:
        assert "chunks [0, 1, 2] never finished (workers down or messages lost)" in job["error"]
    else:
        assert (
            job["error"]
            == f"no online worker served model 'default' within {STALL} s of the job's submission"
        )

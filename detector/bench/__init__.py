"""`detector bench`: measure the pipeline against its limits on this machine.

Generates its own videos, uses the configured model (seeded random weights by
default, so it runs offline), and runs the real service: the API under gunicorn,
a processor worker and one detector worker, on embedded defaults in a scratch
directory. Every figure in the report is measured in the same run. A benchmark
reports; it never fails because a number is low.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from detector.detection import DetectorSettings, get_predictor
from detector.models import Chunk, Job
from detector.runtime.allocator import loaded_allocator
from detector.runtime.priority import run_in_background
from detector.video import decode_frames, index_frames
from detector.video.synthetic import make_video


@dataclass
class BenchOptions:
    out_dir: Path
    frames: int = 300
    width: int = 640
    height: int = 360
    fps: int = 25
    gop: int = 50
    batch_size: int = 8
    chunk_frames: int = 100
    backend: str = "torchvision"
    model: str = "fasterrcnn_mobilenet_v3_large_320_fpn"
    weights: str = "random"
    device: str = "cpu"
    score_threshold: float = 0.3
    batch_sweep: tuple[int, ...] = (1, 2, 4, 8, 16)
    chunk_sweep: tuple[int, ...] = (25, 50, 100, 300)
    clients: int = 50
    requests_per_client: int = 20
    load_rounds: int = 3
    load_seconds: int = 5  # per endpoint and round, with wrk
    memory_frames: int = 60
    memory_factor: int = 10
    repeats: int = 3


@dataclass
class BenchReport:
    machine: dict[str, Any]
    options: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    # The targets for the development machine, by name: met or not (check_targets).
    targets_met: dict[str, bool] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (VmHWM) or current (VmRSS) resident memory, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Service:
    """The API and both workers as real processes on embedded defaults."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/api"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, **env: str) -> None:
        argv = {
            "api": ["api", "--port", str(self.port)],  # as `detector up` runs it
            "processor": ["worker", "-Q", "processor", "--concurrency", "1"],
            "detector": ["worker", "-Q", "detector", "--concurrency", "1"],
        }[name]
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115  (the child keeps it)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "detector.cli", *argv],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # As `detector up` does: the detector yields the CPU to the API.
            preexec_fn=run_in_background if name == "detector" else None,
        )

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self, name: str, **env: str) -> None:
        self.stop(name)
        self.start(name, **env)

    def worker_children(self, name: str) -> list[int]:
        return _children(self.procs[name].pid)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base.removesuffix("/api") + "/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("the API did not start; see api.log")


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        user = {"username": "bench", "password": "bench-password"}
        self.session.post(f"{base}/auth/register", json=user, timeout=10)
        token = self.session.post(f"{base}/auth/login", json=user, timeout=10).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def upload(self, path: Path, threshold: float) -> str:
        with path.open("rb") as f:
            response = self.session.post(
                f"{self.base}/jobs",
                headers=self.headers,
                files={"video": (path.name, f)},
                data={"score_threshold": str(threshold)},
                timeout=600,
            )
        response.raise_for_status()
        return str(response.json()["id"])

    def wait(self, job_id: str, timeout: float = 3600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.session.get(f"{self.base}/jobs/{job_id}", headers=self.headers, timeout=10).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                if job["status"] != "succeeded":
                    raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
                return dict(job)
            time.sleep(0.25)  # as a client would; timings come from the job's own clock
        raise RuntimeError(f"job {job_id} did not finish in {timeout} s")

    def frames_done(self, job_id: str) -> int:
        job = self.session.get(f"{self.base}/jobs/{job_id}", headers=self.headers, timeout=10).json()
        return int(job["progress"]["frames_done"])

    def run_job(self, path: Path, threshold: float) -> tuple[str, float]:
        """Upload, wait; returns the job id and seconds from the upload's start to success:
        the upload's duration plus the job's own created -> finished time (so the
        polling interval does not blur it)."""
        started = time.perf_counter()
        job_id = self.upload(path, threshold)
        uploaded = time.perf_counter() - started
        job = self.wait(job_id)
        created = datetime.fromisoformat(job["created_at"])
        finished = datetime.fromisoformat(job["finished_at"])
        return job_id, uploaded + (finished - created).total_seconds()


def _broker_bytes(data_dir: Path) -> int:
    folder = data_dir / "broker"
    return sum(p.stat().st_size for sub in ("queue", "processed") for p in (folder / sub).glob("*"))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _load(client: Client, urls: list[str], clients: int, per_client: int) -> dict[str, dict[str, float]]:
    """``clients`` threads, each sending ``per_client`` GETs over ``urls`` in turn."""
    latencies: dict[str, list[float]] = {u: [] for u in urls}
    errors: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        session = requests.Session()
        for i in range(per_client):
            url = urls[i % len(urls)]
            started = time.perf_counter()
            response = session.get(url, headers=client.headers, timeout=30)
            elapsed = time.perf_counter() - started
            with lock:
                latencies[url].append(elapsed * 1000)
                if response.status_code >= 500:
                    errors.append(response.status_code)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        url: {
            "requests": len(ms),
            "p50_ms": round(_percentile(ms, 0.50), 1),
            "p99_ms": round(_percentile(ms, 0.99), 1),
            "server_errors": len(errors),
        }
        for url, ms in latencies.items()
    }


_WRK_LINE = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, headers: dict[str, str], clients: int, seconds: int) -> dict[str, float]:
    """Latency percentiles from wrk (a C load generator) at ``clients`` connections."""
    argv = ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", url]
    for name, value in headers.items():
        argv[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    found = {q: float(v) * _WRK_UNITS[u] for q, v, u in _WRK_LINE.findall(out)}
    requests_total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(requests_total.group(1)) if requests_total else 0,
        "p50_ms": round(found.get("50", float("nan")), 1),
        "p99_ms": round(found.get("99", float("nan")), 1),
        "non_2xx": int(bad.group(1)) if bad else 0,
    }


def combine_rounds(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """One endpoint's load rounds as one figure: the median of each percentile,
    every round's p99, and the totals."""
    combined: dict[str, Any] = {
        "rounds": len(rounds),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 1),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 1),
        "p99_ms_rounds": [r["p99_ms"] for r in rounds],
    }
    for total in ("requests", "non_2xx", "server_errors"):
        if any(total in r for r in rounds):
            combined[total] = int(sum(r.get(total, 0) for r in rounds))
    return combined


@contextmanager
def _timer() -> Iterator[Callable[[], float]]:
    started = time.perf_counter()
    done: list[float] = []
    yield lambda: done[0] if done else time.perf_counter() - started
    done.append(time.perf_counter() - started)


def run_bench(options: BenchOptions, log: Callable[[str], None] = print) -> BenchReport:
    out = options.out_dir.resolve()
    data = out / "data"
    out.mkdir(parents=True, exist_ok=True)
    report = BenchReport(
        machine={
            "cpus": os.cpu_count(),
            "platform": sys.platform,
            "python": sys.version.split()[0],
            "allocator": loaded_allocator(),
        },
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
    )
    figures = report.figures
    config = {
        "DETECTOR_BACKEND": options.backend,
        "DETECTOR_MODEL": options.model,
        "DETECTOR_WEIGHTS": options.weights,
        "DETECTOR_DEVICE": options.device,
        "DETECTOR_BATCH_SIZE": options.batch_size,
        "DETECTOR_MIN_SCORE": 0.05,
        "DETECTOR_SEED": 0,
    }

    log("generating videos")

    def video_of(name: str, frames: int) -> Path:
        return make_video(
            out / name,
            frames=frames,
            width=options.width,
            height=options.height,
            fps=options.fps,
            gop=options.gop,
        )

    video = video_of("bench.mp4", options.frames)
    warmup = video_of("warmup.mp4", options.batch_size)
    short = video_of("short.mp4", options.memory_frames)
    long = video_of("long.mp4", options.memory_frames * options.memory_factor)

    # 1. Decode only.
    index = index_frames(video)
    with _timer() as elapsed:
        frames = list(decode_frames(video, index.pts[0], index.pts))
    figures["decode_fps"] = round(len(frames) / elapsed(), 1)
    log(f"decode only: {figures['decode_fps']} frames/s")

    # 2. Model only, by batch size, on frames already decoded.
    sweep = {}
    sample = frames[: max(options.batch_sweep) * 4]
    for batch in options.batch_sweep:
        settings = DetectorSettings.from_config({**config, "DETECTOR_BATCH_SIZE": batch})
        predictor = get_predictor(settings)
        predictor.predict(sample[:batch], 0.0)  # warm-up
        runs = []
        for _ in range(3):  # the median of three: this machine's neighbours are noisy
            with _timer() as elapsed:
                predictor.predict(sample, options.score_threshold)
            runs.append(len(sample) / elapsed())
        sweep[batch] = round(statistics.median(runs), 2)
        log(f"model only, batch {batch}: {sweep[batch]} frames/s")
    figures["model_fps_by_batch"] = sweep
    if 1 in sweep and options.batch_size in sweep:
        figures["batching_gain"] = round(sweep[options.batch_size] / sweep[1], 2)
    del frames, sample

    # 3. `detector predict`: the same decode + model loop in one process.
    def predict_fps() -> float:
        """Frames/s of the `detector predict` command itself (model loading excluded),
        in a fresh process as a user runs it and as a worker child starts, rather
        than in this process after the sweeps."""
        argv = [sys.executable, "-m", "detector.cli", "predict", str(video)]
        run = subprocess.run(
            [*argv, "--out", str(out / "predict.json"), "--score-threshold", str(options.score_threshold)],
            env={**os.environ, **{k: str(v) for k, v in config.items()}},
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"\(([\d.]+) frames/s", run.stderr)
        if found is None:
            raise RuntimeError(f"detector predict printed no timing: {run.stderr[-500:]}")
        return float(found.group(1))

    first_predict = predict_fps()
    figures["predict_fps"] = round(first_predict, 2)
    log(f"detector predict: {figures['predict_fps']} frames/s")

    env = {
        **os.environ,
        **{k: str(v) for k, v in config.items()},
        "DETECTOR_ENV": "development",
        "DATA_DIR": str(data),
        "VIDEO_STORAGE": str(out / "videos"),
        "CHUNK_FRAMES": str(options.chunk_frames),
        "BROKER_STORE_PROCESSED": "1",
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    subprocess.run(
        [sys.executable, "-m", "detector.cli", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    engine = create_engine(f"sqlite:///{data / 'detector.sqlite3'}")
    service = Service(env, out)
    try:
        for name in ("api", "processor", "detector"):
            service.start(name)
        service.wait_ready()
        client = Client(service.base)
        client.run_job(warmup, options.score_threshold)  # loads the model

        # 4. End to end, through the API and the workers.
        before = _broker_bytes(data)
        job_id, seconds = client.run_job(video, options.score_threshold)
        broker_bytes = _broker_bytes(data) - before
        figures["broker_bytes_per_frame"] = round(broker_bytes / options.frames, 1)
        # This machine's speed drifts from minute to minute: time `detector predict`
        # and the pipeline back to back, several times, and take the median ratio.
        pairs = [(first_predict, options.frames / seconds)]
        for _ in range(options.repeats - 1):
            predicted = predict_fps()
            _, seconds = client.run_job(video, options.score_threshold)
            pairs.append((predicted, options.frames / seconds))
        ratios = sorted(e2e / predict for predict, e2e in pairs)
        figures["predict_fps"] = round(statistics.median(p for p, _ in pairs), 2)
        figures["end_to_end_fps"] = round(statistics.median(e for _, e in pairs), 2)
        figures["pipeline_efficiency"] = round(statistics.median(ratios), 3)
        figures["pipeline_efficiency_runs"] = [round(r, 3) for r in ratios]
        with Session(engine) as session:
            job = session.get(Job, job_id)
            chunks = session.scalars(select(Chunk).where(Chunk.job_id == job_id)).all()
            assert job is not None and job.finished_at is not None
            decoded = sum(c.frames_decoded for c in chunks)
            figures["chunks"] = len(chunks)
            figures["decoded_per_delivered"] = round(decoded / options.frames, 3)
            first_start = min(c.started_at for c in chunks if c.started_at)
            last_done = max(c.finished_at for c in chunks if c.finished_at)
            figures["upload_to_first_chunk_s"] = round((first_start - job.created_at).total_seconds(), 3)
            figures["last_chunk_to_succeeded_s"] = round((job.finished_at - last_done).total_seconds(), 3)
        log(
            f"end to end: {figures['end_to_end_fps']} frames/s, efficiency "
            f"{figures['pipeline_efficiency']}, {figures['broker_bytes_per_frame']} broker bytes/frame"
        )

        # 5. The API under load while a job runs.
        running = client.upload(video, options.score_threshold)
        # A page as clients get it by default (100 frames), of the timed job's detections.
        page_frames = min(100, options.frames)
        urls = [
            f"{service.base}/jobs/{running}",
            f"{service.base}/jobs/{job_id}/detections?limit={page_frames}",
        ]
        # How far the job gets meanwhile: the detector yields the CPU to the API.
        done_before, load_started = client.frames_done(running), time.perf_counter()
        # Several short rounds, the endpoints in turn, and the median of each
        # percentile: this machine's speed drifts within a minute, and one
        # round would measure the drift as much as the API.
        rounds: dict[str, list[dict[str, float]]] = {url: [] for url in urls}
        if shutil.which("wrk"):
            tool = "wrk"
            for _ in range(options.load_rounds):
                for url in urls:
                    rounds[url].append(_wrk(url, client.headers, options.clients, options.load_seconds))
        else:  # a Python client: its own CPU use inflates the latencies it measures
            tool = "python threads"
            for _ in range(options.load_rounds):
                for url, result in _load(client, urls, options.clients, options.requests_per_client).items():
                    rounds[url].append(result)
        load = {url: combine_rounds(results) for url, results in rounds.items()}
        detector_fps = (client.frames_done(running) - done_before) / (time.perf_counter() - load_started)
        client.wait(running)
        figures["api_under_load"] = {
            "clients": options.clients,
            "tool": tool,
            "job": load[urls[0]],
            "detections": load[urls[1]],
            "detections_page_frames": page_frames,
            "detector_fps_during_load": round(detector_fps, 2),
        }
        log(f"API under load: {json.dumps(figures['api_under_load'])}")

        # 6. Detector worker memory, short video versus a longer one (fresh workers).
        memory = {}
        for label, path in (("short", short), ("long", long)):
            service.restart("detector")
            client.run_job(path, options.score_threshold)
            children = service.worker_children("detector")
            memory[label] = {
                "frames": index_frames(path).__len__(),
                "peak_rss_mb": round(max(_rss_mb(p) for p in children), 1),
                "rss_after_mb": round(max(_rss_mb(p, "VmRSS") for p in children), 1),
            }
        figures["detector_worker_memory"] = memory
        log(f"detector worker memory: {json.dumps(memory)}")

        # 7. End to end by chunk size.
        by_chunk = {}
        for chunk in options.chunk_sweep:
            service.restart("processor", CHUNK_FRAMES=str(chunk))
            client.run_job(warmup, options.score_threshold)  # not timed: the worker's start
            _, seconds = client.run_job(video, options.score_threshold)
            by_chunk[chunk] = round(options.frames / seconds, 2)
            log(f"end to end, chunks of {chunk}: {by_chunk[chunk]} frames/s")
        figures["end_to_end_fps_by_chunk"] = by_chunk
    finally:
        service.stop_all()
        engine.dispose()

    report.targets_met = check_targets(figures)
    (out / "bench.json").write_text(json.dumps(asdict(report), indent=2))
    _plot(report, out / "bench.png")
    return report


def _plot(report: BenchReport, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figures = report.figures
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    batches = figures.get("model_fps_by_batch", {})
    left.plot(list(batches), list(batches.values()), marker="o")
    left.set(title="Model only, by batch size", xlabel="batch size", ylabel="frames/s")
    left.set_xscale("log", base=2)
    left.set_ylim(bottom=0)
    chunks = figures.get("end_to_end_fps_by_chunk", {})
    right.plot(list(chunks), list(chunks.values()), marker="o", label="end to end")
    if "predict_fps" in figures:
        right.axhline(figures["predict_fps"], linestyle="--", color="grey", label="detector predict")
    right.set(title="End to end, by chunk size", xlabel="frames per chunk", ylabel="frames/s")
    right.set_ylim(bottom=0)
    right.legend()
    options = report.options
    fig.suptitle(f"{options['model']} on {options['device']}, {options['width']}x{options['height']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# Growth of a detector worker's peak RSS, from the short video to the one ten
# times longer, that still counts as flat: runs move by a few percent either way.
FLAT_MEMORY_GROWTH = 0.10


# What the table shows beside each figure that has a target (check_targets' names).
TARGET_TEXT = {
    "pipeline_efficiency": ">= 0.9",
    "decoded_per_delivered": "<= 1.05",
    "broker_bytes_per_frame": "< 1024",
    "worker_memory_flat": f"flat (+{FLAT_MEMORY_GROWTH:.0%} at most)",
    "api_job_p99": "p99 < 100",
    "api_detections_p99": "p99 < 100",
}


def check_targets(figures: dict[str, Any]) -> dict[str, bool]:
    """Whether each of the issue's targets for this machine is met, by name.

    A target whose figures were not measured is left out, neither met nor missed.
    """
    met: dict[str, bool] = {}
    if (efficiency := figures.get("pipeline_efficiency")) is not None:
        met["pipeline_efficiency"] = efficiency >= 0.9
    if (ratio := figures.get("decoded_per_delivered")) is not None:
        met["decoded_per_delivered"] = ratio <= 1.05
    if (broker := figures.get("broker_bytes_per_frame")) is not None:
        met["broker_bytes_per_frame"] = broker < 1024
    memory = figures.get("detector_worker_memory", {})
    if "short" in memory and "long" in memory:
        limit = memory["short"]["peak_rss_mb"] * (1 + FLAT_MEMORY_GROWTH)
        met["worker_memory_flat"] = memory["long"]["peak_rss_mb"] <= limit
    load = figures.get("api_under_load", {})
    for name in ("job", "detections"):
        if name in load:
            met[f"api_{name}_p99"] = load[name]["p99_ms"] < 100
    return met


def format_table(report: BenchReport) -> str:
    f = report.figures
    # (figure, value, the name of its target in check_targets, or "")
    rows: list[tuple[str, Any, str]] = [
        ("pipeline efficiency (end to end / predict)", f.get("pipeline_efficiency"), "pipeline_efficiency"),
        ("end-to-end frames/s", f.get("end_to_end_fps"), ""),
        ("detector predict frames/s", f.get("predict_fps"), ""),
        ("decode-only frames/s", f.get("decode_fps"), ""),
        ("frames decoded / delivered", f.get("decoded_per_delivered"), "decoded_per_delivered"),
        ("batching gain (batch / batch 1)", f.get("batching_gain"), ""),
        ("broker bytes per frame", f.get("broker_bytes_per_frame"), "broker_bytes_per_frame"),
        ("upload -> first chunk started (s)", f.get("upload_to_first_chunk_s"), ""),
        ("last chunk done -> succeeded (s)", f.get("last_chunk_to_succeeded_s"), ""),
    ]
    for label, m in f.get("detector_worker_memory", {}).items():
        target = "worker_memory_flat" if label == "long" else ""
        rows.append((f"detector worker peak RSS, {m['frames']} frames (MB)", m["peak_rss_mb"], target))
        if "rss_after_mb" in m:
            rows.append((f"detector worker RSS after, {m['frames']} frames (MB)", m["rss_after_mb"], ""))
    load = f.get("api_under_load", {})
    for name in ("job", "detections"):
        if name in load:
            what = f"detections ({load['detections_page_frames']} frames)" if name == "detections" else name
            rows.append(
                (
                    f"GET {what} p50 / p99 ms, {load['clients']} clients ({load.get('tool', '?')})",
                    f"{load[name]['p50_ms']} / {load[name]['p99_ms']}",
                    f"api_{name}_p99",
                )
            )
            if "p99_ms_rounds" in load[name]:
                rounds = ", ".join(str(v) for v in load[name]["p99_ms_rounds"])
                rows.append(("  p99 of each round (the figure above is their median)", rounds, ""))
    if "detector_fps_during_load" in load:
        rows.append(("detector frames/s meanwhile (it yields the CPU)", load["detector_fps_during_load"], ""))

    met = check_targets(f)

    def verdict(target: str) -> str:
        text = TARGET_TEXT.get(target, "")
        return f"{text}: {'met' if met[target] else 'MISSED'}" if target in met else text

    width = max(len(r[0]) for r in rows)
    lines = [f"{'figure'.ljust(width)}  {'measured':>14}  target", "-" * (width + 26)]
    lines += [f"{name.ljust(width)}  {value!s:>14}  {verdict(target)}" for name, value, target in rows]
    return "\n".join(lines)

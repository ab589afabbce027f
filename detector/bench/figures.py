"""One function per measured figure of the benchmark.

Each returns the figures it measured, by their names in the report's
``figures`` (bench.json). The ones before the service starts run in this
process or in `detector predict`; the others talk to the running service.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from detector.bench.load import choose_tool, combine_rounds, python_load, wrk_load
from detector.bench.options import BenchOptions
from detector.bench.service import Client, Service, rss_mb
from detector.detection import DetectorSettings, get_predictor
from detector.models import Chunk, Job
from detector.runtime.processes import detector_cli_argv
from detector.video import decode_frames, index_frames
from detector.video.synthetic import make_video


@dataclass(frozen=True)
class Videos:
    """The benchmark's videos, all of the options' size and frame rate."""

    main: Path  # options.frames: every timed figure
    warmup: Path  # one batch: loads the model in a fresh worker, not timed
    short: Path  # options.memory_frames, for the worker's memory
    long: Path  # memory_factor times longer

    @classmethod
    def make(cls, out: Path, options: BenchOptions) -> Videos:
        def video(name: str, frames: int) -> Path:
            return make_video(
                out / name,
                frames=frames,
                width=options.width,
                height=options.height,
                fps=options.fps,
                gop=options.gop,
            )

        return cls(
            main=video("bench.mp4", options.frames),
            warmup=video("warmup.mp4", options.batch_size),
            short=video("short.mp4", options.memory_frames),
            long=video("long.mp4", options.memory_frames * options.memory_factor),
        )


@dataclass(frozen=True)
class Bench:
    """What every figure needs: the options, the scratch folder, the videos,
    the model's settings (DETECTOR_* names) and where to say what it does."""

    options: BenchOptions
    out: Path
    videos: Videos
    model_config: dict[str, Any]
    log: Callable[[str], None]

    def model_env(self) -> dict[str, str]:
        """The model's settings as environment variables, for the processes the benchmark starts."""
        return {key: str(value) for key, value in self.model_config.items()}


def _elapsed(started: float) -> float:
    return time.perf_counter() - started


# --- without the service ----------------------------------------------------------------------


def decode(bench: Bench) -> dict[str, Any]:
    """Frames/s of decoding the main video alone."""
    video = bench.videos.main
    index = index_frames(video)
    started = time.perf_counter()
    frames = sum(1 for _ in decode_frames(video, index.pts[0], index.pts))
    fps = round(frames / _elapsed(started), 1)
    bench.log(f"decode only: {fps} frames/s")
    return {"decode_fps": fps}


def model_by_batch(bench: Bench) -> dict[str, Any]:
    """Model-only frames/s at each batch size of the sweep, on frames already decoded,
    and the batching gain (the configured batch against batch 1)."""
    options = bench.options
    video = bench.videos.main
    index = index_frames(video)
    wanted = max(options.batch_sweep) * 4
    sample = list(decode_frames(video, index.pts[0], index.pts[:wanted]))
    sweep: dict[int, float] = {}
    for batch in options.batch_sweep:
        settings = DetectorSettings.from_config({**bench.model_config, "DETECTOR_BATCH_SIZE": batch})
        predictor = get_predictor(settings)
        predictor.predict(sample[:batch], 0.0)  # warm-up
        runs = []
        for _ in range(3):  # the median of three: this machine's neighbours are noisy
            started = time.perf_counter()
            predictor.predict(sample, options.score_threshold)
            runs.append(len(sample) / _elapsed(started))
        sweep[batch] = round(statistics.median(runs), 2)
        bench.log(f"model only, batch {batch}: {sweep[batch]} frames/s")
    figures: dict[str, Any] = {"model_fps_by_batch": sweep}
    if 1 in sweep and options.batch_size in sweep:
        figures["batching_gain"] = round(sweep[options.batch_size] / sweep[1], 2)
    return figures


def predict_fps(bench: Bench, env: dict[str, str]) -> float:
    """Frames/s of the `detector predict` command itself (model loading excluded),
    in a fresh process as a user runs it and as a worker child starts, rather
    than in this process after the sweeps."""
    argv = detector_cli_argv("predict", str(bench.videos.main), "--out", str(bench.out / "predict.json"))
    argv += ["--score-threshold", str(bench.options.score_threshold)]
    run = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"\(([\d.]+) frames/s", run.stderr)
    if found is None:
        raise RuntimeError(f"detector predict printed no timing: {run.stderr[-500:]}")
    return float(found.group(1))


def predict_baseline(bench: Bench, env: dict[str, str]) -> dict[str, Any]:
    """`detector predict` on the main video: the same decode and model loop in one process."""
    fps = round(predict_fps(bench, env), 2)
    bench.log(f"detector predict: {fps} frames/s")
    return {"predict_fps": fps}


# --- through the service ----------------------------------------------------------------------


def broker_bytes(bench: Bench, client: Client, data_dir: Path) -> tuple[dict[str, Any], str]:
    """Bytes the embedded broker carried per frame of one job of the main video;
    also the job's id, for the overheads."""
    before = _broker_bytes(data_dir)
    job_id, _ = client.run_job(bench.videos.main, bench.options.score_threshold)
    per_frame = round((_broker_bytes(data_dir) - before) / bench.options.frames, 1)
    bench.log(f"broker: {per_frame} bytes/frame")
    return {"broker_bytes_per_frame": per_frame}, job_id


def _broker_bytes(data_dir: Path) -> int:
    """What the embedded broker's folder holds, messages still queued and processed
    (BROKER_STORE_PROCESSED keeps them)."""
    folder = data_dir / "broker"
    return sum(p.stat().st_size for sub in ("queue", "processed") for p in (folder / sub).glob("*"))


def overheads(bench: Bench, engine: Engine, job_id: str) -> dict[str, Any]:
    """From one finished job's rows: its chunks, frames decoded per frame delivered,
    and the time from upload to the first chunk and from the last chunk to success."""
    with Session(engine) as session:
        job = session.get(Job, job_id)
        chunks = session.scalars(select(Chunk).where(Chunk.job_id == job_id)).all()
        if job is None or job.finished_at is None:
            raise RuntimeError(f"job {job_id} has not finished")
        decoded = sum(c.frames_decoded for c in chunks)
        first_start = min(c.started_at for c in chunks if c.started_at)
        last_done = max(c.finished_at for c in chunks if c.finished_at)
        figures = {
            "chunks": len(chunks),
            "decoded_per_delivered": round(decoded / bench.options.frames, 3),
            "upload_to_first_chunk_s": round((first_start - job.created_at).total_seconds(), 3),
            "last_chunk_to_succeeded_s": round((job.finished_at - last_done).total_seconds(), 3),
        }
    bench.log(f"overheads: {figures}")
    return figures


def pipeline_efficiency(
    bench: Bench, client: Client, env: dict[str, str], first_predict: float
) -> dict[str, Any]:
    """End-to-end frames/s against `detector predict` frames/s.

    This machine's speed drifts from minute to minute, so the two are timed back
    to back, ``repeats`` times (the first `detector predict` is the baseline's,
    run before the service started), and the report takes the median ratio.
    """
    options = bench.options
    pairs = []
    for i in range(options.repeats):
        predicted = first_predict if i == 0 else predict_fps(bench, env)
        _, seconds = client.run_job(bench.videos.main, options.score_threshold)
        pairs.append((predicted, options.frames / seconds))
    ratios = sorted(e2e / predict for predict, e2e in pairs)
    figures = {
        "predict_fps": round(statistics.median(p for p, _ in pairs), 2),
        "end_to_end_fps": round(statistics.median(e for _, e in pairs), 2),
        "pipeline_efficiency": round(statistics.median(ratios), 3),
        "pipeline_efficiency_runs": [round(r, 3) for r in ratios],
    }
    bench.log(
        f"end to end: {figures['end_to_end_fps']} frames/s, efficiency {figures['pipeline_efficiency']}"
    )
    return figures


def api_under_load(bench: Bench, service: Service, client: Client, page_job: str) -> dict[str, Any]:
    """Latency of polling a running job and of reading a page of ``page_job``'s
    detections, under many clients that never pause, while a job runs; and how
    far that job gets meanwhile (the detector yields the CPU to the API)."""
    options = bench.options
    tool = choose_tool(options.load_tool)
    running = client.upload(bench.videos.main, options.score_threshold)
    page_frames = min(100, options.frames)  # a page as clients get it by default
    urls = [
        f"{service.base}/jobs/{running}",
        f"{service.base}/jobs/{page_job}/detections?limit={page_frames}",
    ]
    done_before, started = client.frames_done(running), time.perf_counter()
    # Several short rounds, the endpoints in turn, and the median of each
    # percentile: this machine's speed drifts within a minute, and one round
    # would measure the drift as much as the API.
    rounds: dict[str, list[dict[str, float]]] = {url: [] for url in urls}
    for _ in range(options.load_rounds):
        if tool == "wrk":
            for url in urls:
                rounds[url].append(wrk_load(url, client.headers, options.clients, options.load_seconds))
        else:
            results = python_load(urls, client.headers, options.clients, options.requests_per_client)
            for url, result in results.items():
                rounds[url].append(result)
    detector_fps = (client.frames_done(running) - done_before) / _elapsed(started)
    client.wait(running)
    figure = {
        "clients": options.clients,
        "tool": tool,
        "job": combine_rounds(rounds[urls[0]]),
        "detections": combine_rounds(rounds[urls[1]]),
        "detections_page_frames": page_frames,
        "detector_fps_during_load": round(detector_fps, 2),
    }
    bench.log(f"API under load: {figure}")
    return {"api_under_load": figure}


def worker_memory(bench: Bench, service: Service, client: Client) -> dict[str, Any]:
    """A fresh detector worker's peak and final RSS after the short video, and
    after the long one: flat when memory is bounded by the chunk, not the video."""
    memory = {}
    for label, path in (("short", bench.videos.short), ("long", bench.videos.long)):
        service.restart("detector")
        client.run_job(path, bench.options.score_threshold)
        pool = service.worker_children("detector")
        memory[label] = {
            "frames": len(index_frames(path)),
            "peak_rss_mb": round(max(rss_mb(p) for p in pool), 1),
            "rss_after_mb": round(max(rss_mb(p, "VmRSS") for p in pool), 1),
        }
    bench.log(f"detector worker memory: {memory}")
    return {"detector_worker_memory": memory}


def chunk_sweep(bench: Bench, service: Service, client: Client) -> dict[str, Any]:
    """End-to-end frames/s of the main video at each chunk size of the sweep."""
    options = bench.options
    by_chunk = {}
    for chunk in options.chunk_sweep:
        service.restart("processor", CHUNK_FRAMES=str(chunk))
        client.run_job(bench.videos.warmup, options.score_threshold)  # not timed: the worker's start
        _, seconds = client.run_job(bench.videos.main, options.score_threshold)
        by_chunk[chunk] = round(options.frames / seconds, 2)
        bench.log(f"end to end, chunks of {chunk}: {by_chunk[chunk]} frames/s")
    return {"end_to_end_fps_by_chunk": by_chunk}

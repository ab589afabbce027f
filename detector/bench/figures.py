"""One function per measured figure of the benchmark.

Each returns the figures it measured, by their names in the report's
``figures`` (bench.json). The ones before the service starts run in this
process or in `detector predict`; the others talk to the running service.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from detector.bench.load import choose_tool, combine_rounds, python_load, wrk_load
from detector.bench.options import BenchOptions
from detector.bench.service import Client, PeakRss, Service, children, rss_mb
from detector.detection import AnalysedFrame, Detections, DetectorSettings, get_predictor
from detector.exports import FORMATS
from detector.models import Chunk, FrameDetections, Job, JobStatus, User, utcnow
from detector.render import render_video
from detector.runtime.processes import detector_cli_argv
from detector.tracking import Tracker, frame_rate_of
from detector.video import DecodeStats, decode_frames, index_frames, plan_chunks
from detector.video.selection import FrameSelection
from detector.video.synthetic import make_video


@dataclass(frozen=True)
class Videos:
    """The benchmark's videos, all of the options' size and frame rate."""

    main: Path  # options.frames: every timed figure
    warmup: Path  # one batch: loads the model in a fresh worker, not timed
    short: Path  # options.memory_frames, for the worker's memory
    long: Path  # memory_factor times longer
    large: Path  # options.render_frames of render_width x render_height, for the render

    @classmethod
    def make(cls, out: Path, options: BenchOptions) -> Videos:
        def video(name: str, frames: int, width: int = options.width, height: int = options.height) -> Path:
            return make_video(
                out / name,
                frames=frames,
                width=width,
                height=height,
                fps=options.fps,
                gop=options.gop,
            )

        return cls(
            main=video("bench.mp4", options.frames),
            warmup=video("warmup.mp4", options.batch_size),
            short=video("short.mp4", options.memory_frames),
            long=video("long.mp4", options.memory_frames * options.memory_factor),
            large=video("large.mp4", options.render_frames, options.render_width, options.render_height),
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


def predict_fps(
    bench: Bench, env: dict[str, str], video: Path | None = None, out: Path | None = None
) -> float:
    """Frames/s of the `detector predict` command itself (model loading excluded),
    in a fresh process as a user runs it and as a worker child starts, rather
    than in this process after the sweeps. It runs over ``video`` (the main
    video by default) and writes its detections page to ``out``."""
    video = video or bench.videos.main
    argv = detector_cli_argv("predict", str(video), "--out", str(out or bench.out / "predict.json"))
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


@dataclass(frozen=True)
class TimedRun:
    """One command run to its end in a process of its own, with the kernel's account of it
    (``wait4``: the process and what it waited for, across its own re-exec on an allocator)."""

    stdout: str
    stderr: str
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    minor_faults: int

    def figures(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 2),
            "user_s": round(self.user_s, 2),
            "sys_s": round(self.sys_s, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "minor_faults": self.minor_faults,
        }


def timed_run(argv: list[str], env: dict[str, str]) -> TimedRun:
    """Run ``argv`` to its end; its output, wall time, CPU times, peak RSS and minor page faults.

    Raises:
        RuntimeError: the command failed (its stderr's end is in the message).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = _elapsed(started)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({proc.returncode}): {stderr[-1500:]}")
    return TimedRun(
        stdout=stdout,
        stderr=stderr,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        minor_faults=usage.ru_minflt,
    )


#: What a `detector predict` run says of itself on stderr (detector/cli/predict.py).
_PREDICT_LINE = re.compile(r"\(([\d.]+) frames/s, .* batch (\d+), \d+ streams, allocator (\w+)\)")


def against_prototype(bench: Bench) -> dict[str, Any]:
    """The 2021 prototype's loop (detector/bench/prototype.py: ``DefaultPredictor``, one
    frame at a time, masks computed) against `detector predict` with the detectron2
    backend, on one video of ``prototype_frames`` frames of the benchmark's size and the
    same config and weights: frames/s of each loop, and of each whole command its wall
    time, peak RSS, minor page faults and CPU times, and their ratios.

    Each runs in a fresh process as a user starts it, with ``LD_PRELOAD`` taken out of
    this process's environment (the benchmark itself runs on the model's allocator): the
    prototype on the machine's malloc, as it ran; `detector predict` on its own defaults
    (``DETECTOR_ALLOCATOR``, ``DETECTOR_BATCH_SIZE=auto``) unless this shell sets them.
    With ``--weights random`` both load the seeded random weights from a file that a
    process of its own writes first (`prototype_weights`), as they would load real
    weights, so that each peak is that of detection, not of making random weights.
    Skipped, with a note, without detectron2 or with ``--no-prototype``.
    """
    options = bench.options
    if not options.prototype:
        return {"prototype": {"skipped": "--no-prototype"}}
    if importlib.util.find_spec("detectron2") is None:
        note = "detectron2 is not importable (pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2')"
        bench.log(f"prototype: skipped, {note}")
        return {"prototype": {"skipped": note}}
    video = make_video(
        bench.out / "prototype.mp4",
        frames=options.prototype_frames,
        width=options.width,
        height=options.height,
        fps=options.fps,
        gop=options.gop,
    )
    min_score = float(bench.model_config["DETECTOR_MIN_SCORE"])
    seed = int(bench.model_config["DETECTOR_SEED"])
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    weights = prototype_weights(bench, env, seed)
    prototype = timed_run(
        [
            sys.executable,
            "-m",
            "detector.bench.prototype",
            str(video),
            "--model",
            options.prototype_model,
            "--weights",
            weights,
            "--device",
            options.device,
            "--min-score",
            str(min_score),
            "--seed",
            str(seed),
        ],
        {k: v for k, v in env.items() if k != "DETECTOR_ALLOCATOR"},
    )
    loop = json.loads(prototype.stdout.strip().splitlines()[-1])
    bench.log(f"prototype loop: {loop['frames_per_second']:.3f} frames/s, {prototype.figures()}")

    page = bench.out / "predict-prototype.json"
    predict_env = {
        **env,
        "DETECTOR_BACKEND": "detectron2",
        "DETECTOR_MODEL": options.prototype_model,
        "DETECTOR_WEIGHTS": weights,
        "DETECTOR_DEVICE": options.device,
        "DETECTOR_MIN_SCORE": str(min_score),
        "DETECTOR_SEED": str(seed),
    }
    argv = detector_cli_argv("predict", str(video), "--out", str(page), "--score-threshold", str(min_score))
    predicted = timed_run(argv, predict_env)
    said = _PREDICT_LINE.search(predicted.stderr)
    if said is None:
        raise RuntimeError(f"detector predict printed no timing: {predicted.stderr[-500:]}")
    found = json.loads(page.read_text())["frames"]

    ours: dict[str, Any] = {
        "frames_per_s": float(said.group(1)),
        "batch_size": int(said.group(2)),
        "allocator": said.group(3),
        "objects": sum(len(f["objects"]) for f in found),
        **predicted.figures(),
    }
    theirs: dict[str, Any] = {
        "frames_per_s": round(loop["frames_per_second"], 3),
        "batch_size": 1,
        "allocator": "system",
        "objects": loop["objects"],
        **prototype.figures(),
    }

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    figure = {
        "model": options.prototype_model,
        "weights": weights,
        "frames": options.prototype_frames,
        "size": f"{options.width}x{options.height}",
        "prototype": theirs,
        "predict": ours,
        "speedup": ratio(ours["frames_per_s"], theirs["frames_per_s"]),
        "wall_speedup": ratio(theirs["wall_s"], ours["wall_s"]),
        "peak_rss_ratio": ratio(ours["peak_rss_mb"], theirs["peak_rss_mb"]),
        "minor_faults_ratio": ratio(ours["minor_faults"], theirs["minor_faults"]),
        "sys_s_ratio": ratio(ours["sys_s"], theirs["sys_s"]),
    }
    bench.log(f"against the prototype: {figure}")
    return {"prototype": figure}


def prototype_weights(bench: Bench, env: dict[str, str], seed: int) -> str:
    """The weights the prototype figure runs: ``--weights`` as given, except that
    ``random`` becomes a checkpoint of those seeded random weights, written once by
    ``python -m detector.bench.prototype --save-random-weights`` in a process of its own."""
    options = bench.options
    if options.weights != "random":
        return options.weights
    path = bench.out / "prototype-random-weights.pth"
    argv = [sys.executable, "-m", "detector.bench.prototype", "--save-random-weights", str(path)]
    argv += ["--model", options.prototype_model, "--seed", str(seed)]
    saved = subprocess.run(argv, env=env, capture_output=True, text=True)
    if saved.returncode != 0:
        raise RuntimeError(f"saving the prototype's random weights failed: {saved.stderr[-500:]}")
    return str(path)


def prototype_end_to_end(bench: Bench, env: dict[str, str], theirs: dict[str, Any]) -> dict[str, Any]:
    """The prototype figure's video as a job through the whole service on ``env``
    (embedded defaults, the detectron2 backend and the prototype's config, the
    service's own batch size and allocator), after a warm-up job that builds the
    model: the job's frames/s, the detector worker's peak RSS, and the sum of
    the peaks of every process of the service (API, processor, detector), and
    its speed and the worker's peak against the prototype's (``theirs``, from
    `against_prototype`, which wrote the video). Added to the prototype figure
    by `run_bench` when that was not skipped."""
    options = bench.options
    video = bench.out / "prototype.mp4"
    subprocess.run(detector_cli_argv("db", "upgrade"), env=env, check=True, capture_output=True)
    logs = bench.out / "prototype-service"
    logs.mkdir(exist_ok=True)
    service = Service(env, logs, background_detector=options.background_detector)
    try:
        service.start_all()
        client = Client(service.base, check=service.check_running)
        client.run_job(bench.videos.warmup, options.score_threshold)  # builds the model
        _, seconds = client.run_job(video, options.score_threshold)
        pids = [p.pid for p in service.group.procs.values()]
        everything = pids + [c for p in pids for c in children(p)]
        figure = {
            "frames_per_s": round(options.prototype_frames / seconds, 3),
            "detector_peak_rss_mb": round(max(rss_mb(p) for p in service.worker_children("detector")), 1),
            "service_peak_rss_mb": round(sum(rss_mb(p) for p in everything), 1),
        }
        figure["speedup"] = round(figure["frames_per_s"] / theirs["frames_per_s"], 2)
        figure["detector_peak_rss_ratio"] = round(figure["detector_peak_rss_mb"] / theirs["peak_rss_mb"], 2)
    finally:
        service.stop_all()
    bench.log(f"prototype's video end to end: {figure}")
    return figure


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


# --- job options, tracking, exports and renders -----------------------------------------------


def stored_frames(engine: Engine, job_id: str) -> list[AnalysedFrame]:
    """A job's stored frames in frame order, as the exports and the renderer read them."""
    with Session(engine) as session:
        rows = session.execute(
            select(FrameDetections.index, FrameDetections.timestamp, FrameDetections.objects)
            .where(FrameDetections.job_id == job_id)
            .order_by(FrameDetections.index)
        ).all()
    return [
        AnalysedFrame(index, timestamp, Detections.from_objects(objects))
        for index, timestamp, objects in rows
    ]


def decode_selection(video: Path, selection: FrameSelection, chunk_frames: int) -> tuple[float, int, int]:
    """Decode the frames ``selection`` picks of ``video`` alone, chunk by chunk as a
    job of chunks of ``chunk_frames`` plans them: seconds (indexing excluded),
    frames decoded and frames delivered."""
    index = index_frames(video)
    chosen = selection.select(index.timestamps())
    stats = DecodeStats()
    started = time.perf_counter()
    for plan in plan_chunks(index, chunk_frames, chosen):
        for _ in decode_frames(video, plan.seek_pts, plan.frame_pts, stats):
            pass
    return _elapsed(started), stats.decoded, stats.delivered


@dataclass(frozen=True)
class SampledPair:
    """One full job and one sampled job of the same video, back to back, in seconds
    (upload start to success), and the seconds of decoding each one's frames alone."""

    full_s: float
    sampled_s: float
    decode_s: float  # the sampled job's selection, decoded alone
    full_decode_s: float  # every frame, decoded alone


def sampling_summary(video_frames: int, analysed: int, pairs: list[SampledPair]) -> dict[str, Any]:
    """The sampled-job figures of ``pairs`` (medians over the pairs).

    A sampled job still decodes much of the video (every frame from a keyframe
    to the next selected frame), but runs the model on ``analysed`` frames
    only. So the time it should take is the analysed share of the full job's
    time plus the decoding of its own selection (the full job's time already
    holds its decoding, so this counts the analysed share of it twice, a small
    allowance): ``expected_s = analysed / video_frames * full_s + decode_s``.
    ``vs_expected`` is the sampled job's time over that; `check_targets`
    allows `SAMPLING_SLACK` above 1 for what no sampling shrinks (the upload,
    planning, the wait for the first chunk, the merge) and the machine's drift
    between the two jobs of a pair.
    """
    share = analysed / video_frames

    def median(values: list[float], places: int = 3) -> float:
        return round(statistics.median(values), places)

    expected = [share * p.full_s + p.decode_s for p in pairs]
    ratios = sorted(p.sampled_s / e for p, e in zip(pairs, expected, strict=True))
    return {
        "video_frames": video_frames,
        "frames_analysed": analysed,
        "analysed_share": round(share, 4),
        "full_s": median([p.full_s for p in pairs]),
        "sampled_s": median([p.sampled_s for p in pairs]),
        "full_video_fps": median([video_frames / p.full_s for p in pairs], 2),
        "sampled_video_fps": median([video_frames / p.sampled_s for p in pairs], 2),
        "sampled_analysed_fps": median([analysed / p.sampled_s for p in pairs], 2),
        "speedup": median([p.full_s / p.sampled_s for p in pairs], 2),
        "ideal_speedup": round(video_frames / analysed, 2),
        "decode_s": median([p.decode_s for p in pairs]),
        "decode_share": median([p.decode_s / p.sampled_s for p in pairs]),
        "full_decode_share": median([p.full_decode_s / p.full_s for p in pairs]),
        "expected_s": median(expected),
        "vs_expected": median(ratios),
        "vs_expected_runs": [round(r, 3) for r in ratios],
    }


def _decoded_and_analysed(engine: Engine, job_id: str) -> tuple[int, int]:
    """A finished job's frames decoded (summed over its chunks) and frames analysed."""
    with Session(engine) as session:
        job = session.get(Job, job_id)
        decoded = sum(session.scalars(select(Chunk.frames_decoded).where(Chunk.job_id == job_id)))
        if job is None or not job.frames_total:
            raise RuntimeError(f"job {job_id} has no frames analysed")
        return decoded, job.frames_total


def sampled_job(bench: Bench, client: Client, engine: Engine) -> tuple[dict[str, Any], str]:
    """The main video as a full job and as a ``sample_fps`` job, back to back,
    ``sampling_repeats`` times: frames/s of video of each, the speed-up against
    the frames analysed, the sampled job's frames decoded per frame analysed (its
    chunks' rows) and the share of its time that decoding its frames alone takes
    (in this process, `decode_selection`). Also the id of the last full job,
    whose detections the tracking, export and render figures use."""
    options = bench.options
    video = bench.videos.main
    sampled = FrameSelection(sample_fps=options.sample_fps)
    pairs = []
    for _ in range(options.sampling_repeats):
        full_id, full_s = client.run_job(video, options.score_threshold)
        sampled_id, sampled_s = client.run_job(
            video, options.score_threshold, sample_fps=str(options.sample_fps)
        )
        decode_s, _, _ = decode_selection(video, sampled, options.chunk_frames)
        full_decode_s, _, _ = decode_selection(video, FrameSelection(), options.chunk_frames)
        pairs.append(SampledPair(full_s, sampled_s, decode_s, full_decode_s))
    decoded, analysed = _decoded_and_analysed(engine, sampled_id)
    figure = sampling_summary(len(index_frames(video)), analysed, pairs)
    figure["sample_fps"] = options.sample_fps
    figure["video_fps"] = options.fps
    figure["decoded_per_analysed"] = round(decoded / analysed, 3)
    bench.log(f"sampled job: {figure}")
    return {"sampled_job": figure}, full_id


def tracking(bench: Bench, client: Client, engine: Engine, job_id: str) -> dict[str, Any]:
    """The tracker in this process over the stored detections of ``job_id`` (seconds
    per 1,000 frames, objects per frame), and a ``track=true`` job of the main
    video through the service: its tracking step (from the last chunk done to the
    job's success, from the rows: the merge, the step's wait in the queue, reading
    the frames, tracking them and writing them back) against the job's whole time
    (upload start to success)."""
    frames = stored_frames(engine, job_id)
    objects = sum(len(o) for _, _, o in frames)
    rate = frame_rate_of([t for _, t, _ in frames])
    warm = Tracker(rate)  # loads the tracker's library; not timed
    for frame, timestamp, found in frames[:2]:
        warm.update(frame, timestamp, found)
    tracker = Tracker(rate)
    started = time.perf_counter()
    for frame, timestamp, found in frames:
        tracker.update(frame, timestamp, found)
    tracks = len(tracker.summaries())
    seconds = _elapsed(started)

    # Not timed: the processor loads the tracker's library on its first tracked job.
    client.run_job(bench.videos.warmup, bench.options.score_threshold, track="true")
    tracked_id, job_s = client.run_job(bench.videos.main, bench.options.score_threshold, track="true")
    with Session(engine) as session:
        job = session.get(Job, tracked_id)
        done = session.scalars(select(Chunk.finished_at).where(Chunk.job_id == tracked_id)).all()
        if job is None or job.finished_at is None or not all(done):
            raise RuntimeError(f"job {tracked_id} has not finished")
        step_s = (job.finished_at - max(d for d in done if d is not None)).total_seconds()
        tracked_frames = job.frames_total or 0
        job_tracks = job.tracks_total
    figure = {
        "frames": len(frames),
        "objects_per_frame": round(objects / max(len(frames), 1), 1),
        "tracks": tracks,
        "s_per_1000_frames": round(seconds / max(len(frames), 1) * 1000, 3),
        "job_s": round(job_s, 3),
        "job_frames": tracked_frames,
        "job_tracks": job_tracks,
        "job_step_s": round(step_s, 3),
        "job_step_share": round(step_s / job_s, 3),
        "job_step_s_per_1000_frames": round(step_s / max(tracked_frames, 1) * 1000, 3),
    }
    bench.log(f"tracking: {figure}")
    return {"tracking": figure}


# Objects for the made-up export job when the real job found none.
_FALLBACK_OBJECTS = Detections.from_objects(
    [
        {"label": "person", "class_id": 1, "score": 0.9, "box": [10.0, 20.0, 60.0, 140.0]},
        {"label": "car", "class_id": 3, "score": 0.75, "box": [200.0, 100.0, 320.0, 180.0]},
    ]
)


def made_up_frames(frames: int, per_frame: int, fps: float, pool: Detections) -> list[AnalysedFrame]:
    """``frames`` frames of ``per_frame`` objects each, taken in turn from ``pool``
    (a real job's objects), the k-th object of every frame on track k + 1."""
    pool = pool if len(pool) else _FALLBACK_OBJECTS
    slots = np.arange(per_frame)
    return [
        AnalysedFrame(
            f, round(f / fps, 6), pool[(f * per_frame + slots) % len(pool)].with_track_ids(slots + 1)
        )
        for f in range(frames)
    ]


def _made_up_job(bench: Bench, engine: Engine, pool: Detections) -> str:
    """A succeeded, tracked job of ``export_frames`` frames owned by the benchmark's
    user, written straight into the service's database (no video behind it)."""
    options = bench.options
    frames = options.export_frames
    now = utcnow()
    with Session(engine) as session:
        owner = session.scalar(select(User.id).where(User.username == Client.USERNAME))
        if owner is None:
            raise RuntimeError("the benchmark's user is not in the database")
        job = Job(
            owner_id=owner,
            original_filename="export-bench.mp4",
            storage_key="export-bench-has-no-video",
            status=JobStatus.SUCCEEDED,
            fps=float(options.fps),
            width=options.width,
            height=options.height,
            frame_count=frames,
            duration=frames / options.fps,
            codec="h264",
            score_threshold=options.score_threshold,
            track=True,
            frames_total=frames,
            frames_tracked=frames,
            tracks_total=options.export_objects,
            chunk_count=0,
            objects_total=frames * options.export_objects,
            dispatched=True,
            created_at=now,
            started_at=now,
            finished_at=now,
        )
        session.add(job)
        session.commit()
        job_id = job.id
        made = made_up_frames(frames, options.export_objects, options.fps, pool)
        for at in range(0, frames, 1000):
            rows = [
                {
                    "job_id": job_id,
                    "index": f.frame,
                    "timestamp": f.timestamp,
                    "objects": f.detections.to_objects(),
                }
                for f in made[at : at + 1000]
            ]
            session.execute(insert(FrameDetections), rows)
            session.commit()
    return job_id


def exports(bench: Bench, service: Service, client: Client, engine: Engine, job_id: str) -> dict[str, Any]:
    """Each export format of a made-up succeeded job of ``export_frames`` frames
    (objects taken from ``job_id``'s), streamed through the API: frames/s, and
    the peak resident memory of the API's processes during the download against
    before it (the process that grew most: the one that served it)."""
    options = bench.options
    pool = Detections.merge(f.detections for f in stored_frames(engine, job_id)[:100])
    export_job = _made_up_job(bench, engine, pool)
    by_format = {}
    for fmt in FORMATS:
        api = service.worker_children("api")
        with PeakRss(api) as memory:
            started = time.perf_counter()
            size = client.download_export(export_job, fmt)
            seconds = _elapsed(started)
        by_format[fmt] = {
            "frames_per_s": round(options.export_frames / seconds, 1),
            "seconds": round(seconds, 3),
            "mb": round(size / 1e6, 2),
            **memory.busiest(),
        }
    figure = {
        "frames": options.export_frames,
        "objects_per_frame": options.export_objects,
        "api_processes": len(service.worker_children("api")),
        "formats": by_format,
    }
    bench.log(f"exports: {figure}")
    return {"exports": figure}


def render(bench: Bench, engine: Engine, env: dict[str, str], job_id: str, predict: float) -> dict[str, Any]:
    """Frames/s of `render_video` in this process: the main video with ``job_id``'s
    detections, against ``predict`` (`detector predict` frames/s of the main video),
    and the large video (render_width x render_height) with the detections
    `detector predict` finds in it, against that run's frames/s."""
    options = bench.options
    large_page = bench.out / "predict-large.json"
    large_predict = predict_fps(bench, env, bench.videos.large, large_page)
    frames_large = [
        AnalysedFrame(f["frame"], f["timestamp"], Detections.from_objects(f["objects"]))
        for f in json.loads(large_page.read_text())["frames"]
    ]
    runs = [
        (bench.videos.main, options.width, options.height, stored_frames(engine, job_id), predict),
        (bench.videos.large, options.render_width, options.render_height, frames_large, large_predict),
    ]
    by_size: dict[str, dict[str, Any]] = {}
    for video, width, height, frames, detect_fps in runs:
        size = f"{width}x{height}"
        if size in by_size:
            continue  # the large video is the main one's size
        stats = render_video(video, bench.out / f"render-{size}.mp4", frames)
        by_size[size] = {
            "frames": stats.frames,
            "objects_per_frame": round(sum(len(o) for _, _, o in frames) / max(len(frames), 1), 1),
            "render_fps": round(stats.fps, 2),
            "detect_fps": round(detect_fps, 2),
            "render_per_detect": round(stats.fps / detect_fps, 2) if detect_fps else None,
            "encoder": stats.encoder,
        }
    bench.log(f"render: {by_size}")
    return {"render": by_size}

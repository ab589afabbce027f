"""The benchmark's long-video figure: what a job costs by stage, and the service's peak
memory, for videos of different lengths (ten minutes and two hours by default).

Each length is one tracked, sampled job (``sample_fps``, ``track=true``) through a
service of its own, started as `detector up` starts it (the API, a processor that
also runs the watchdog, a detector), after a warm-up job that loads the model and
the tracker; then every export format and every page of the job's detections,
through the API. Stage times come from the job's own rows (created, its chunks'
first start and last end, finished) and from the API's answers, polled every
`POLL_S` seconds (when the job was first seen tracking). Each process's peak
resident memory comes from the kernel (VmHWM, reset after the warm-up) and from
readings of VmRSS in between (`PeakRss`).

Detection time is the model's: with the benchmark's seeded random weights it is
real work but not the point. The figure is about everything around detection,
which should cost the same for a two-hour video as for a ten-minute one, or grow
with the frames analysed, never with the video.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from detector.bench.figures import Bench
from detector.bench.service import Client, PeakRss, Service, process_tree
from detector.exports import FORMATS
from detector.models import Chunk, Job
from detector.runtime.processes import detector_cli_argv
from detector.video.synthetic import make_video

STAGES = ("upload", "planning", "detection", "merge", "tracking")
"""A job's stages, in order, as the figure times them."""

ROLES = ("api", "processor", "detector")
"""The service's processes whose peak memory the figure reports (each with its children)."""

PHASES = ("job", "exports", "pages")
"""What runs while the peaks are taken: the job from upload to success, every export, every page."""

PAGE_FRAMES = 100
"""Frames per detections page: the API's default page, as a client reads them."""

POLL_S = 0.1
"""Seconds between two questions to the API about the job."""

JOB_TIMEOUT_S = 6 * 3600


def cached_video(bench: Bench, seconds: int) -> Path:
    """The figure's video of ``seconds`` (of the options' rate, keyframe interval and
    the figure's frame size), made once and kept under ``<out>/cache``: a rerun
    with the same options takes it from there."""
    options = bench.options
    frames = seconds * options.fps
    size = f"{options.long_video_width}x{options.long_video_height}"
    folder = bench.out / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"long-video-{frames}f-{size}-{options.fps}fps-gop{options.gop}.mp4"
    if not path.exists():
        bench.log(f"long video: making {path.name} ({frames} frames)")
        partial = path.with_name(f"{path.stem}.partial.mp4")  # a run stopped halfway leaves no video
        make_video(
            partial,
            frames=frames,
            width=options.long_video_width,
            height=options.long_video_height,
            fps=options.fps,
            gop=options.gop,
        )
        partial.replace(path)
    return path


@dataclass(frozen=True)
class JobClock:
    """When a job reached each stage: the upload's duration (the client's clock) and
    moments from the job's rows, all but ``tracking_seen``, the first answer of the
    API that said the job was tracking (None when no answer did: a step shorter
    than `POLL_S`)."""

    upload_s: float
    created: datetime
    first_chunk_started: datetime
    last_chunk_done: datetime
    tracking_seen: datetime | None
    finished: datetime

    def stages(self) -> dict[str, float]:
        """Seconds of each of `STAGES`: the upload; planning (created -> first chunk
        started: the message's trip, indexing, chunk rows and the chord's dispatch);
        detection (first chunk started -> last chunk done); merge (-> first seen
        tracking); tracking (-> finished). Merge and tracking are known to `POLL_S`;
        a tracking step never seen counts in the merge. The client's clock saw the
        tracking; the service's clock wrote the rest: the moment it was seen is kept
        between the last chunk and the end, so that neither stage is negative."""
        tracking_from = self.finished
        if self.tracking_seen is not None:
            tracking_from = min(max(self.tracking_seen, self.last_chunk_done), self.finished)

        def seconds(start: datetime, end: datetime) -> float:
            return round((end - start).total_seconds(), 3)

        return {
            "upload": round(self.upload_s, 3),
            "planning": seconds(self.created, self.first_chunk_started),
            "detection": seconds(self.first_chunk_started, self.last_chunk_done),
            "merge": seconds(self.last_chunk_done, tracking_from),
            "tracking": seconds(tracking_from, self.finished),
        }


def run_job(client: Client, video: Path, threshold: float, **form: str) -> tuple[str, float, datetime | None]:
    """Upload ``video`` with the job options ``form`` and follow the job through the API
    until it succeeds: its id, the upload's seconds, and when an answer first said it
    was tracking. RuntimeError when it fails, is cancelled or takes `JOB_TIMEOUT_S`."""
    started = time.perf_counter()
    job_id = client.upload(video, threshold, **form)
    upload_s = time.perf_counter() - started
    tracking_seen = None
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if tracking_seen is None and job["progress"]["stage"] == "tracking":
            tracking_seen = datetime.now(UTC)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if job["status"] != "succeeded":
                raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
            return job_id, upload_s, tracking_seen
        client.check()
        time.sleep(POLL_S)
    raise RuntimeError(f"job {job_id} did not finish in {JOB_TIMEOUT_S} s")


def job_rows(engine: Engine, job_id: str) -> dict[str, Any]:
    """A finished job's figures and moments from its rows (its chunks summed in SQL)."""
    with Session(engine) as session:
        job = session.get(Job, job_id)
        first, last, chunks, decoded = session.execute(
            select(
                func.min(Chunk.started_at),
                func.max(Chunk.finished_at),
                func.count(),
                func.coalesce(func.sum(Chunk.frames_decoded), 0),
            ).where(Chunk.job_id == job_id)
        ).one()
        if job is None or job.finished_at is None or first is None or last is None:
            raise RuntimeError(f"job {job_id} has not finished")
        return {
            "created": job.created_at,
            "finished": job.finished_at,
            "first_chunk_started": first,
            "last_chunk_done": last,
            "video_frames": job.frame_count,
            "frames_analysed": job.frames_total,
            "chunks": chunks,
            "frames_decoded": int(decoded),
            "objects": job.objects_total,
            "tracks": job.tracks_total,
        }


def read_pages(client: Client, job_id: str, limit: int = PAGE_FRAMES) -> dict[str, Any]:
    """Every page of a job's detections in turn, as a client reads them (``next_start``):
    seconds, pages, frames and the slowest page's milliseconds."""
    start: int | None = 0
    pages = frames = 0
    slowest = 0.0
    started = time.perf_counter()
    while start is not None:
        asked = time.perf_counter()
        response = client.get(
            f"/jobs/{job_id}/detections", params={"start": start, "limit": limit}, timeout=60
        )
        if not response.ok:
            raise RuntimeError(f"a detections page failed ({response.status_code}): {response.text[:500]}")
        page = response.json()
        slowest = max(slowest, time.perf_counter() - asked)
        pages += 1
        frames += len(page["frames"])
        start = page["next_start"]
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "pages": pages,
        "frames": frames,
        "slowest_page_ms": round(slowest * 1000, 1),
    }


def read_exports(client: Client, job_id: str) -> dict[str, dict[str, float]]:
    """Each export format of a job, streamed through the API: seconds and MB."""
    by_format = {}
    for fmt in FORMATS:
        started = time.perf_counter()
        size = client.download_export(job_id, fmt)
        by_format[fmt] = {"seconds": round(time.perf_counter() - started, 3), "mb": round(size / 1e6, 2)}
    return by_format


def role_memory(phases: dict[str, PeakRss], roles: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    """Each role's peak RSS in MB over its processes: in each phase and overall, and the
    RSS after the warm-up of the process that peaked (``idle_rss_mb``); and in each
    phase the most any of its processes grew over its RSS when the phase began (a
    phase's own cost: a peak can be memory an earlier phase left in use)."""
    found: dict[str, dict[str, Any]] = {}
    first = phases[PHASES[0]]
    for role, pids in roles.items():
        by_phase = {
            phase: round(max((memory.peak[p] for p in pids if p in memory.peak), default=float("nan")), 1)
            for phase, memory in phases.items()
        }
        growth = {
            phase: round(
                max(
                    (memory.peak[p] - memory.idle[p] for p in pids if p in memory.idle), default=float("nan")
                ),
                1,
            )
            for phase, memory in phases.items()
        }
        peaks = {p: max(m.peak.get(p, 0.0) for m in phases.values()) for p in pids}
        busiest = max(peaks, key=lambda p: peaks[p])
        found[role] = {
            "peak_rss_mb": round(peaks[busiest], 1),
            "idle_rss_mb": round(first.idle.get(busiest, float("nan")), 1),
            "by_phase": by_phase,
            "growth_by_phase": growth,
            "processes": len(pids),
        }
    return found


def one_length(bench: Bench, seconds: int, service_env: Callable[[Path], dict[str, str]]) -> dict[str, Any]:
    """The figure for a video of ``seconds``, through a fresh service in
    ``<out>/long-video/<seconds>s`` (emptied first)."""
    options = bench.options
    video = cached_video(bench, seconds)
    folder = (bench.out / "long-video" / f"{seconds}s").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    data = folder / "data"
    data.mkdir(parents=True)
    env = {**service_env(data), "VIDEO_STORAGE": str(folder / "videos")}
    subprocess.run(detector_cli_argv("db", "upgrade"), env=env, check=True, capture_output=True)
    engine = create_engine(f"sqlite:///{data / 'detector.sqlite3'}")
    service = Service(env, folder, background_detector=options.background_detector, watchdog=True)
    form = {"sample_fps": str(options.long_video_sample_fps), "track": "true"}
    threshold = options.score_threshold
    try:
        service.start_all()
        client = Client(service.base, check=service.check_running)
        # Not timed: the model and the tracker load, the API's workers read once.
        warm_id, _, _ = run_job(client, bench.videos.warmup, threshold, **form)
        read_exports(client, warm_id)
        read_pages(client, warm_id)
        roles = {role: process_tree(service.group.procs[role].pid) for role in ROLES}
        pids = [p for role_pids in roles.values() for p in role_pids]
        bench.log(f"long video, {seconds} s: the job")
        with PeakRss(pids, interval=0.05) as job_memory:
            job_id, upload_s, tracking_seen = run_job(client, video, threshold, **form)
        load = [round(average, 1) for average in os.getloadavg()]  # how busy the machine was meanwhile
        rows = job_rows(engine, job_id)
        bench.log(f"long video, {seconds} s: exports and pages")
        with PeakRss(pids, interval=0.05) as export_memory:
            exports = read_exports(client, job_id)
        with PeakRss(pids, interval=0.05) as page_memory:
            pages = read_pages(client, job_id)
        reset = all(memory.reset_all for memory in (job_memory, export_memory, page_memory))
    finally:
        service.stop_all()
        engine.dispose()
    clock = JobClock(
        upload_s=upload_s,
        created=rows.pop("created"),
        first_chunk_started=rows.pop("first_chunk_started"),
        last_chunk_done=rows.pop("last_chunk_done"),
        tracking_seen=tracking_seen,
        finished=rows.pop("finished"),
    )
    phases = dict(zip(PHASES, (job_memory, export_memory, page_memory), strict=True))
    return {
        "seconds": seconds,
        "video_mb": round(video.stat().st_size / 1e6, 1),
        **rows,
        "tracking_seen": tracking_seen is not None,
        "stages_s": clock.stages(),
        "exports": exports,
        "pages": pages,
        "memory": role_memory(phases, roles),
        "peaks_reset": reset,
        "load_average_after_job": load,
    }


def long_video(bench: Bench, service_env: Callable[[Path], dict[str, str]]) -> dict[str, Any]:
    """The long-video figure: one run per length of ``long_video_seconds``, in order;
    ``service_env(data_dir)`` is the service's environment on a data folder."""
    options = bench.options
    runs = []
    for seconds in options.long_video_seconds:
        run = one_length(bench, seconds, service_env)
        bench.log(f"long video, {seconds} s: {run}")
        runs.append(run)
    return {
        "long_video": {
            "width": options.long_video_width,
            "height": options.long_video_height,
            "fps": options.fps,
            "gop": options.gop,
            "sample_fps": options.long_video_sample_fps,
            "page_frames": PAGE_FRAMES,
            "model": options.model,
            "weights": options.weights,
            "runs": runs,
        }
    }

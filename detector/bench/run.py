"""`run_bench`: every figure in turn, then the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from detector.bench import figures
from detector.bench.analytics import analytics_figure
from detector.bench.load import choose_tool
from detector.bench.longvideo import long_video
from detector.bench.options import BenchOptions
from detector.bench.peak import peak_figure
from detector.bench.precision import int8_figure
from detector.bench.realvideo import real_video
from detector.bench.report import BenchReport, check_targets, plot
from detector.bench.runtimes import runtimes_figure
from detector.bench.scheduling import short_job_wait
from detector.bench.search import search_figure
from detector.bench.service import Client, Service
from detector.bench.storage import storage_reads
from detector.bench.streams import streams_figure
from detector.runtime.allocator import loaded_allocator
from detector.runtime.processes import detector_cli_argv


def run_bench(options: BenchOptions, log: Callable[[str], None] = print) -> BenchReport:
    """Measure every figure on this machine (or the one ``options.figure`` names); write
    bench.json and bench.png into ``options.out_dir`` and return the report."""
    every = options.figure == "all"
    if every:
        choose_tool(options.load_tool)  # a missing wrk stops the run now, not half an hour in
    out = options.out_dir.resolve()
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
    log("generating videos")
    bench = figures.Bench(
        options=options,
        out=out,
        videos=figures.Videos.make(out, options),
        model_config={
            "DETECTOR_BACKEND": options.backend,
            "DETECTOR_MODEL": options.model,
            "DETECTOR_WEIGHTS": options.weights,
            "DETECTOR_DEVICE": options.device,
            "DETECTOR_BATCH_SIZE": options.batch_size,
            "DETECTOR_MIN_SCORE": 0.05,
            "DETECTOR_SEED": 0,
        },
        log=log,
    )
    found = report.figures
    if every:
        every_other_figure(bench, found)
    if options.figure == "analytics":  # on its own only: it needs no service
        log("analytics over 10,000 frames and 1,000 tracks")
        found.update(analytics_figure())
    if every or options.figure == "search":
        found.update(
            search_figure(
                out,
                log,
                jobs=options.search_jobs,
                objects=options.search_objects,
                database_url=options.search_database_url or None,
            )
        )
    if every or options.figure == "real-video":
        found.update(real_video(bench, lambda data: service_env(bench, data)))
    if every or options.figure == "peak":
        found.update(peak_figure(bench))
    if every or options.figure == "int8":
        found.update(int8_figure(bench))
    if every or options.figure == "storage":
        found.update(storage_reads(bench))
    if options.figure == "streams":  # on its own only: two services per model
        found.update(streams_figure(bench, lambda data: service_env(bench, data)))
    if options.long_video_seconds and options.figure in ("all", "long-video"):
        found.update(long_video(bench, lambda data: service_env(bench, data)))

    report.targets_met = check_targets(found)
    (out / "bench.json").write_text(json.dumps(asdict(report), indent=2))
    plot(report, out / "bench.png")
    return report


def every_other_figure(bench: figures.Bench, found: dict[str, Any]) -> None:
    """Every figure but the long-video one, into ``found``."""
    options, out = bench.options, bench.out
    data = out / "data"
    found.update(figures.decode(bench))
    found.update(figures.model_by_batch(bench))
    predict_env = {**os.environ, **bench.model_env()}
    found.update(figures.predict_baseline(bench, predict_env))
    found.update(figures.against_prototype(bench))
    if "skipped" not in found["prototype"]:
        prototype_env = {
            **service_env(bench, out / "prototype-data"),
            "DETECTOR_BACKEND": "detectron2",
            "DETECTOR_MODEL": options.prototype_model,
            "DETECTOR_WEIGHTS": found["prototype"]["weights"],
        }
        for name in ("DETECTOR_BATCH_SIZE", "LD_PRELOAD"):  # the service's own defaults
            prototype_env.pop(name, None)
        (out / "prototype-data").mkdir(exist_ok=True)
        theirs = found["prototype"]["prototype"]
        found["prototype"]["end_to_end"] = figures.prototype_end_to_end(bench, prototype_env, theirs)
    found.update(runtimes_figure(bench))

    env = service_env(bench, data)
    subprocess.run(detector_cli_argv("db", "upgrade"), env=env, check=True, capture_output=True)
    engine = create_engine(f"sqlite:///{data / 'detector.sqlite3'}")
    service = Service(env, out, background_detector=options.background_detector)
    try:
        service.start_all()
        client = Client(service.base, check=service.check_running)
        client.run_job(bench.videos.warmup, options.score_threshold)  # loads the model
        broker, timed_job = figures.broker_bytes(bench, client, data)
        found.update(broker)
        found.update(figures.overheads(bench, engine, timed_job))
        found.update(figures.pipeline_efficiency(bench, client, predict_env, found["predict_fps"]))
        sampling, full_job = figures.sampled_job(bench, client, engine)
        found.update(sampling)
        found.update(figures.tracking(bench, client, engine, full_job))
        found.update(figures.exports(bench, service, client, engine, full_job))
        found.update(figures.render(bench, engine, predict_env, full_job, found["predict_fps"]))
        found.update(figures.api_under_load(bench, service, client, timed_job))
        found.update(figures.worker_memory(bench, service, client))
        found.update(figures.chunk_sweep(bench, service, client))
        found.update(short_job_wait(bench, service, client))
    finally:
        service.stop_all()
        engine.dispose()


def service_env(bench: figures.Bench, data: Path) -> dict[str, str]:
    """The service's environment: the model's settings and embedded defaults
    (SQLite, the filesystem broker, a file result store) in the scratch folder,
    whatever servers this shell is configured for."""
    env = {
        **os.environ,
        **bench.model_env(),
        "DETECTOR_ENV": "development",
        "DATA_DIR": str(data),
        "VIDEO_STORAGE": str(bench.out / "videos"),
        "CHUNK_FRAMES": str(bench.options.chunk_frames),
        "BROKER_STORE_PROCESSED": "1",
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    return env

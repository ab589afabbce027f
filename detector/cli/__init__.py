"""The ``detector`` command: run the service, its workers, migrations and tools."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from detector.config import env_int, load_config, load_env_file
from detector.runtime.allocator import (
    AllocatorError,
    model_env,
    restart_with_model_allocator,
)
from detector.runtime.priority import run_in_background


def _config() -> dict[str, Any]:
    return load_config()


@click.group()
def main() -> None:
    """detector: batch video object detection (API, Celery workers, tools)."""


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the committed migrations to DATABASE_URL."""
    from detector.db.migrate import upgrade

    config = _config()
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


def _model_env() -> dict[str, str]:
    """The environment for a process that runs the model (detector.runtime.allocator)."""
    load_env_file()  # DETECTOR_ALLOCATOR may be set in .env
    try:
        return model_env(os.environ)
    except AllocatorError as exc:
        raise click.ClickException(str(exc)) from exc


def _on_model_allocator() -> None:
    """Restart this command on tcmalloc when it is not on it yet (detector.runtime.allocator)."""
    restart_with_model_allocator(_model_env())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=lambda: env_int("API_WORKERS", (os.cpu_count() or 1) + 1),
    type=click.IntRange(1),
    help="gunicorn processes, each serving one request at a time  [default: API_WORKERS, else CPUs + 1]",
)
@click.option(
    "--timeout",
    default=lambda: env_int("API_TIMEOUT", 300),
    type=click.IntRange(1),
    help="seconds one request (an upload included) may take  [default: API_TIMEOUT, else 300]",
)
def api(host: str, port: int, workers: int, timeout: int) -> None:
    """Serve the REST API with gunicorn.

    Sync workers: each process takes a connection only when it is free, so load
    spreads evenly over them. (With threaded workers, keep-alive connections
    stay with whichever process accepted them, and under load one process could
    hold most of them: p99 was 105-215 ms, against 45-93 ms with sync workers.)
    A request here is CPU work, so processes beyond the cores only contend:
    on 2 cores, 3 processes served 42 % more requests per second than 5
    (docs/performance.md). Raise API_WORKERS when requests wait on a database
    on another host, or on slow uploads with no buffering proxy in front.
    """
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{host}:{port}",
            "--workers",
            str(workers),
            "--timeout",
            str(timeout),
            "--access-logfile",
            "-",
            "detector.wsgi:app",
        ],
    )


def _worker_argv(
    queue: str, concurrency: int | None, autoscale: str | None, beat: bool, extra: tuple[str, ...] = ()
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "detector.worker",
        "worker",
        "-Q",
        queue,
        "--loglevel",
        "INFO",
        "-n",
        f"{queue}@%h",
    ]
    if autoscale:
        argv += ["--autoscale", autoscale]
    elif concurrency:
        argv += ["--concurrency", str(concurrency)]
    if beat:
        config = _config()
        argv += ["--beat", "--schedule", str(Path(config["DATA_DIR"]) / "celerybeat-schedule")]
    return argv + list(extra)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("-Q", "--queue", type=click.Choice(["processor", "detector"]), required=True)
@click.option("--concurrency", type=int, default=None, help="worker processes")
@click.option("--autoscale", default=None, help="MAX,MIN worker processes")
@click.option("--beat", is_flag=True, help="also run the watchdog schedule (one per deployment)")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    queue: str, concurrency: int | None, autoscale: str | None, beat: bool, celery_args: tuple[str, ...]
) -> None:
    """Run a Celery worker for one queue (extra arguments go to celery).

    It runs on tcmalloc when the system has it: see DETECTOR_ALLOCATOR.
    """
    argv = _worker_argv(queue, concurrency, autoscale, beat, celery_args)
    env = _model_env()
    os.execve(argv[0], argv, env)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--detectors", default=1, show_default=True, type=int, help="detector worker processes")
def up(host: str, port: int, detectors: int) -> None:
    """Run everything on this machine: migrations, API, processor and detector workers.

    Uses the configured database, broker and result backend, or embedded ones
    (SQLite, a filesystem broker, a file result store) when none are set.
    Ctrl-C stops them all.
    """
    from detector.db.migrate import upgrade

    config = _config()
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    children = {
        "api": [sys.executable, "-m", "detector.cli", "api", "--host", host, "--port", str(port)],
        "processor": _worker_argv("processor", 2, None, beat=True),
        "detector": _worker_argv("detector", detectors, None, beat=False),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = _model_env()  # all of them on tcmalloc when installed, as `detector bench` runs them
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name, argv in children.items():
        # On one machine the detector yields the CPU to the API and the processor,
        # so requests stay fast while a video is being analysed.
        nice = run_in_background if name == "detector" else None
        procs[name] = subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=nice)
    click.echo(
        f"detector is up: API and Swagger UI at http://{host}:{port}/api/ "
        f"(database {config['DATABASE_URL']}, broker {config['CELERY_BROKER_URL']}); "
        f"Ctrl-C stops it"
    )
    code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                click.echo(f"{name} exited with status {proc.returncode}; stopping", err=True)
                stopping, code = True, 1
                break
        time.sleep(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()  # the main process: a warm shutdown, as `docker stop` does
    deadline = time.monotonic() + 30
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    sys.exit(code)


@main.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write JSON here instead of standard output",
)
@click.option(
    "--score-threshold", type=click.FloatRange(0, 1), default=None, help="default: DEFAULT_SCORE_THRESHOLD"
)
def predict(video: Path, out: Path | None, score_threshold: float | None) -> None:
    """Detect objects in VIDEO in this process (no queue): the pipeline's baseline.

    Prints the same JSON as GET /api/jobs/<id>/detections, with every frame.
    Runs on tcmalloc when the system has it, as the workers do (DETECTOR_ALLOCATOR).
    """
    from detector.pipeline.predict import predict_video

    _on_model_allocator()
    config = _config()
    threshold = config["DEFAULT_SCORE_THRESHOLD"] if score_threshold is None else score_threshold
    page, timing = predict_video(video, config, threshold)
    text = json.dumps(page)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text)
    click.echo(
        f"{timing['frames']} frames in {timing['seconds']:.2f} s "
        f"({timing['frames_per_second']:.2f} frames/s, {timing['model']} on "
        f"{timing['device']}, batch {timing['batch_size']}, allocator {timing['allocator']})",
        err=True,
    )


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-out"),
    show_default=True,
    help="scratch directory and reports",
)
@click.option("--frames", default=300, show_default=True)
@click.option("--width", default=640, show_default=True)
@click.option("--height", default=360, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--chunk-frames", default=100, show_default=True)
@click.option("--backend", default="torchvision", show_default=True)
@click.option("--model", default="fasterrcnn_mobilenet_v3_large_320_fpn", show_default=True)
@click.option("--weights", default="random", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-sweep", default="1,2,4,8,16", show_default=True)
@click.option("--chunk-sweep", default="25,50,100,300", show_default=True)
@click.option("--clients", default=50, show_default=True)
@click.option("--memory-frames", default=60, show_default=True)
@click.option(
    "--load-rounds",
    default=3,
    show_default=True,
    type=click.IntRange(1),
    help="rounds of the API load (each endpoint in turn); the report takes the median",
)
@click.option(
    "--load-seconds",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="seconds of load per endpoint and round (with wrk)",
)
def bench(
    out_dir: Path,
    frames: int,
    width: int,
    height: int,
    batch_size: int,
    chunk_frames: int,
    backend: str,
    model: str,
    weights: str,
    device: str,
    batch_sweep: str,
    chunk_sweep: str,
    clients: int,
    memory_frames: int,
    load_rounds: int,
    load_seconds: int,
) -> None:
    """Measure the pipeline: efficiency vs `detector predict`, decode, batching,
    broker bytes, overheads, worker memory, API latency under load.

    Writes bench.json and bench.png into --out and prints a table.
    """
    from detector.bench import BenchOptions, format_table, run_bench

    _on_model_allocator()
    options = BenchOptions(
        out_dir=out_dir,
        frames=frames,
        width=width,
        height=height,
        batch_size=batch_size,
        chunk_frames=chunk_frames,
        backend=backend,
        model=model,
        weights=weights,
        device=device,
        batch_sweep=tuple(int(b) for b in batch_sweep.split(",") if b),
        chunk_sweep=tuple(int(c) for c in chunk_sweep.split(",") if c),
        clients=clients,
        memory_frames=memory_frames,
        load_rounds=load_rounds,
        load_seconds=load_seconds,
    )
    report = run_bench(options, log=lambda line: click.echo(line, err=True))
    click.echo(format_table(report))
    click.echo(f"report: {out_dir / 'bench.json'}, plot: {out_dir / 'bench.png'}")


if __name__ == "__main__":
    main()

"""Running the service: `detector up`, `detector api`, `detector worker`, `detector db`,
`detector user`."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import click

from detector.cli.common import catalog, local_backend, process_env, settings
from detector.config import env_int
from detector.detection.catalog import UnknownModel
from detector.runtime.processes import QUEUES, ProcessGroup, api_argv, detector_cli_argv, worker_argv


@click.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the committed migrations to DATABASE_URL."""
    from detector.db.migrate import upgrade

    service = settings()
    Path(service.data_dir).mkdir(parents=True, exist_ok=True)
    upgrade(service.database_url, revision)
    click.echo(f"database at {revision}")


@click.group()
def user() -> None:
    """Accounts, for the operator (also when REGISTRATION_OPEN is false)."""


@user.command("add")
@click.argument("username")
@click.password_option(help="the password (asked for when not given)")
def user_add(username: str, password: str) -> None:
    """Create the account USERNAME in DATABASE_URL."""
    from detector.app import create_app
    from detector.services.errors import ServiceError
    from detector.services.users import create_user

    with create_app().app_context():
        try:
            created = create_user(username, password)
        except ServiceError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"user {created.username} created (id {created.id})")


@click.command()
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
    spreads evenly over them (threaded workers let one process hold most
    keep-alive connections). A request here is CPU work, so processes beyond
    the cores only contend (docs/performance.md). Raise API_WORKERS when
    requests wait on a database on another host, or on slow uploads with no
    buffering proxy in front.
    """
    argv = api_argv(host, port, workers, timeout)
    os.execvp(argv[0], argv)


def _served(models: tuple[str, ...]) -> list[str]:
    """The models a detector worker serves: those named (each checked), else all of them."""
    known = catalog()
    try:
        return [known.resolve(name) for name in models] if models else list(known)
    except UnknownModel as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None


def _beat_schedule() -> Path:
    return Path(settings().data_dir) / "celerybeat-schedule"


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("-Q", "--queue", type=click.Choice(QUEUES), required=True)
@click.option("--concurrency", type=int, default=None, help="worker processes")
@click.option("--autoscale", default=None, help="MAX,MIN worker processes")
@click.option("--beat", is_flag=True, help="also run the watchdog schedule (one per deployment)")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="-Q detector only: serve this model of DETECTOR_MODELS (repeat for several); default: all",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    queue: str,
    concurrency: int | None,
    autoscale: str | None,
    beat: bool,
    models: tuple[str, ...],
    celery_args: tuple[str, ...],
) -> None:
    """Run a Celery worker for one queue (extra arguments go to celery).

    A detector worker consumes the queue of each model it serves
    (``detector.<name>``), building each model on its first chunk and keeping
    at most MAX_LOADED_MODELS built. It runs on the allocator DETECTOR_ALLOCATOR
    chooses.
    """
    if models and queue != "detector":
        raise click.UsageError("--model is for detector workers (-Q detector)")
    argv = worker_argv(
        queue,
        concurrency=concurrency,
        autoscale=autoscale,
        beat_schedule=_beat_schedule() if beat else None,
        extra=celery_args,
        models=_served(models),
    )
    os.execve(argv[0], argv, process_env())


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--detectors", default=1, show_default=True, type=int, help="detector worker processes")
def up(host: str, port: int, detectors: int) -> None:
    """Run everything on this machine: migrations, API, processor and detector workers.

    Uses the configured database, broker and result backend, or embedded ones
    (SQLite, a filesystem broker, a file result store) when none are set.
    On a machine without a GPU, torchvision's model runs on OpenVINO unless
    DETECTOR_BACKEND or DETECTOR_MODELS is set. Ctrl-C stops them all.
    """
    from detector.db.migrate import upgrade

    service = settings()
    Path(service.data_dir).mkdir(parents=True, exist_ok=True)
    upgrade(service.database_url)
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # All of them on tcmalloc when installed, as `detector bench` runs them; on a
    # machine without a GPU, torchvision's model on OpenVINO unless a backend is named.
    env = process_env()
    if chosen := local_backend():
        env.update(chosen)
        click.echo(
            "no GPU and no DETECTOR_BACKEND: torchvision's model runs on OpenVINO on the CPU "
            "(DETECTOR_BACKEND=torchvision for eager PyTorch)"
        )
    group = ProcessGroup(env)
    group.start("api", detector_cli_argv("api", "--host", host, "--port", str(port)))
    group.start("processor", worker_argv("processor", concurrency=2, beat_schedule=_beat_schedule()))
    # On one machine the detector yields the CPU to the API and the processor,
    # so requests stay fast while a video is being analysed.
    # It serves every model of DETECTOR_MODELS, building each on first use.
    group.start(
        "detector", worker_argv("detector", concurrency=detectors, models=_served(())), background=True
    )
    # Annotated videos, one at a time, also behind the API.
    group.start("render", worker_argv("render", concurrency=1), background=True)
    click.echo(
        f"detector is up: API and Swagger UI at http://{host}:{port}/api/ "
        f"(database {service.database_url}, broker {service.celery_broker_url}); "
        f"Ctrl-C stops it"
    )
    code = 0
    while not stopping:
        if (ended := group.exited()) is not None:
            click.echo(f"{ended[0]} exited with status {ended[1]}; stopping", err=True)
            code = 1
            break
        time.sleep(0.5)
    group.stop_all(timeout=30)
    sys.exit(code)

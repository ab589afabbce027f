"""The command lines of the service's processes, and one way to start and stop them.

`detector up`, `detector bench` and the tests all run the same processes: the
API under gunicorn, a processor worker (with the watchdog's beat schedule) and
a detector worker at a low CPU priority. Their command lines are built here
only, and `ProcessGroup` starts, watches and stops them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from detector.runtime.priority import run_in_background
from detector.runtime.queues import DETECTOR_QUEUE, IMPLICIT_MODEL, QUEUES, model_queue

__all__ = ["QUEUES", "ProcessGroup", "api_argv", "detector_cli_argv", "worker_argv"]


def api_argv(host: str, port: int, workers: int, timeout: int) -> list[str]:
    """gunicorn serving the Flask app: ``workers`` sync processes, ``timeout`` s a request."""
    return [
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
        # The access log without media tokens (they are in the query strings of video URLs).
        "--logger-class",
        "detector.observability.access_log.AccessLogger",
        "detector.wsgi:app",
    ]


def worker_argv(
    queue: str,
    *,
    concurrency: int | None = None,
    autoscale: str | None = None,
    beat_schedule: Path | None = None,
    node_name: str | None = None,
    extra: Sequence[str] = (),
    app: str = "detector.worker",
    models: Sequence[str] = (IMPLICIT_MODEL,),
) -> list[str]:
    """A Celery worker for ``queue`` (``processor``, ``detector`` or ``render``).

    Args:
        models: for the ``detector`` queue, the models it serves: it consumes
            each one's queue (``detector.<name>``).
        concurrency: worker processes (ignored when ``autoscale`` is given).
        autoscale: ``MAX,MIN`` worker processes.
        beat_schedule: also run the watchdog's schedule, kept in this file
            (exactly one worker of a deployment does).
        node_name: the Celery node name; ``<queue>@<host>`` by default.
        extra: more `celery worker` options, passed as they are.
        app: the module holding the Celery app (tests wrap it to inject faults).
    """
    if queue not in QUEUES:
        raise ValueError(f"queue must be one of {', '.join(QUEUES)}, got {queue!r}")
    if queue == DETECTOR_QUEUE:
        if not models:
            raise ValueError("a detector worker serves at least one model")
        consumed = ",".join(model_queue(m) for m in models)
    else:
        consumed = queue
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", consumed]
    argv += ["--loglevel", "INFO", "-n", node_name or f"{queue}@%h"]
    if autoscale:
        argv += ["--autoscale", autoscale]
    elif concurrency:
        argv += ["--concurrency", str(concurrency)]
    if beat_schedule is not None:
        argv += ["--beat", "--schedule", str(beat_schedule)]
    return argv + list(extra)


def detector_cli_argv(*args: str) -> list[str]:
    """A `detector` subcommand run with this interpreter (``python -m detector.cli ...``)."""
    return [sys.executable, "-m", "detector.cli", *args]


class ProcessGroup:
    """Named child processes, each in a session of its own, stopped together.

    A process started with ``background=True`` runs at the lowest CPU priority
    (`run_in_background`): the detector yields the CPU to the API on a shared
    machine. Each is stopped as ``docker stop`` stops a container: SIGTERM to
    its main process (a warm shutdown for Celery and gunicorn), then SIGKILL to
    its whole session after a grace period.
    """

    def __init__(self, env: Mapping[str, str], log_dir: Path | None = None) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        background: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` as ``name``; its output goes to ``<log_dir>/<name>.log`` when
        the group has a log folder, else to this process's own output."""
        log: IO[bytes] | None = None
        if self.log_dir is not None:
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115  (the child keeps it)
        try:
            proc = subprocess.Popen(
                list(argv),
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                start_new_session=True,
                preexec_fn=run_in_background if background else None,
            )
        finally:
            if log is not None:
                log.close()  # the child has its own copy
        self.procs[name] = proc
        return proc

    def exited(self) -> tuple[str, int] | None:
        """The name and exit status of a process that has ended, if one has."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Stop ``name`` with ``sig``, SIGKILL its session after ``timeout`` s; its exit status."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_session(proc)
        _kill_session(proc)  # what the main process left behind (a pool child, say)
        return proc.returncode

    def stop_all(self, timeout: float = 30) -> None:
        """Stop every process at once, giving them ``timeout`` s together to finish."""
        procs = list(self.procs.values())
        self.procs.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            _kill_session(proc)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait()

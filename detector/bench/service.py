"""The service under test, as real processes, and a client of its API."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from detector.runtime.processes import ProcessGroup, detector_cli_argv, worker_argv
from detector.runtime.queues import IMPLICIT_MODEL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """The ids of a process's children (a Celery worker's pool processes)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (VmHWM) or current (VmRSS) resident memory, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (a Celery worker's pool and beat, gunicorn's workers)."""
    found = [pid]
    for child in children(pid):
        found += process_tree(child)
    return found


def reset_peak_rss(pid: int) -> bool:
    """Set a process's peak resident memory (VmHWM) to its current one (Linux's
    clear_refs 5); False where that is not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakRss:
    """The peak resident memory of processes while inside the ``with``, in MB by pid.

    Each process's VmRSS is read every ``interval`` seconds; where the kernel's
    own peak (VmHWM) can be reset on entry, it is read on exit as well, which
    catches a peak between two readings. ``idle`` holds each one's VmRSS on entry.
    """

    def __init__(self, pids: list[int], interval: float = 0.01) -> None:
        self.pids = pids
        self.interval = interval
        self.idle: dict[int, float] = {}
        self.peak: dict[int, float] = {}
        self._reset: dict[int, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self, pid: int, field: str) -> float | None:
        try:
            return rss_mb(pid, field)
        except OSError:  # the process has ended
            return None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in self.pids:
                if (now := self._read(pid, "VmRSS")) is not None:
                    self.peak[pid] = max(self.peak.get(pid, now), now)

    def __enter__(self) -> PeakRss:
        for pid in self.pids:
            if (idle := self._read(pid, "VmRSS")) is not None:
                self.idle[pid] = self.peak[pid] = idle
            self._reset[pid] = reset_peak_rss(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for pid in self.pids:
            if self._reset[pid] and (hwm := self._read(pid, "VmHWM")) is not None:
                self.peak[pid] = max(self.peak.get(pid, hwm), hwm)

    @property
    def reset_all(self) -> bool:
        """Whether the kernel's peak of every process could be reset on entry (else the
        peaks are the readings' alone)."""
        return all(self._reset.values())

    def busiest(self) -> dict[str, float]:
        """The process that grew most: its idle and peak MB and the growth."""
        grown = {pid: self.peak[pid] - self.idle[pid] for pid in self.idle if pid in self.peak}
        if not grown:
            return {"idle_rss_mb": float("nan"), "peak_rss_mb": float("nan"), "growth_mb": float("nan")}
        pid = max(grown, key=lambda p: grown[p])
        return {
            "idle_rss_mb": round(self.idle[pid], 1),
            "peak_rss_mb": round(self.peak[pid], 1),
            "growth_mb": round(grown[pid], 1),
        }


class Service:
    """The API and both workers as real processes on embedded defaults, started
    as `detector up` starts them (detector.runtime.processes), one worker process each.

    Each process logs to ``<log_dir>/<name>.log``. With ``background_detector``
    the detector runs at the lowest CPU priority, as `detector up` runs it; with
    ``watchdog`` the processor also runs the watchdog's schedule, as it does there.
    The detector serves ``models`` (names of DETECTOR_MODELS; by default the one
    model of a deployment that declares none).
    """

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        background_detector: bool = True,
        watchdog: bool = False,
        models: tuple[str, ...] = (IMPLICIT_MODEL,),
    ) -> None:
        self.background_detector = background_detector
        self.watchdog = watchdog
        self.models = models
        self.log_dir = log_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api"
        self.group = ProcessGroup(env, log_dir)

    def start(self, name: str, **env: str) -> None:
        """Start ``api``, ``processor`` or ``detector``, with ``env`` added to its environment."""
        if name == "api":
            self.group.start(name, detector_cli_argv("api", "--port", str(self.port)), env=env)
        elif name in ("processor", "detector"):
            # As `detector up` does: the detector yields the CPU to the API.
            background = name == "detector" and self.background_detector
            watchdog = name == "processor" and self.watchdog
            schedule = self.log_dir / "beat-schedule" if watchdog else None
            argv = worker_argv(name, concurrency=1, beat_schedule=schedule, models=self.models)
            self.group.start(name, argv, background=background, env=env)
        else:
            raise ValueError(f"no such process: {name!r}")

    def start_all(self) -> None:
        for name in ("api", "processor", "detector"):
            self.start(name)
        self.wait_ready()

    def restart(self, name: str, **env: str) -> None:
        self.group.stop(name)
        self.start(name, **env)

    def worker_children(self, name: str) -> list[int]:
        """The pool processes of worker ``name``: where the model runs."""
        return children(self.group.procs[name].pid)

    def stop_all(self) -> None:
        self.group.stop_all()

    def check_running(self) -> None:
        """Raise RuntimeError when one of the processes has ended."""
        if (ended := self.group.exited()) is not None:
            name, status = ended
            raise RuntimeError(f"the {name} process exited with status {status}; see {name}.log")

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the API answers /healthz."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base.removesuffix("/api") + "/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            self.check_running()
            time.sleep(0.2)
        raise RuntimeError("the API did not start; see api.log")


class Client:
    """A registered user of the API: uploads videos and waits for their jobs.

    ``check`` is called while waiting for a job, and raises when the job can no
    longer finish (`Service.check_running`: a worker died).
    """

    USERNAME = "bench"

    def __init__(self, base: str, check: Callable[[], None] = lambda: None) -> None:
        self.base = base
        self.check = check
        self.session = requests.Session()
        self._user = {"username": self.USERNAME, "password": "bench-password"}
        self.session.post(f"{base}/auth/register", json=self._user, timeout=10)
        self.headers: dict[str, str] = {}
        self.login()

    def login(self) -> None:
        """Log in: a fresh access token in ``headers``."""
        response = self.session.post(f"{self.base}/auth/login", json=self._user, timeout=10)
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET ``path`` (below the API's base) as this user. An access token lasts an
        hour and a long job longer: on a 401 it logs in again and asks once more."""
        response = self.session.get(f"{self.base}{path}", headers=self.headers, **kwargs)
        if response.status_code == 401:
            self.login()
            response = self.session.get(f"{self.base}{path}", headers=self.headers, **kwargs)
        return response

    def upload(self, path: Path, threshold: float, **form: str) -> str:
        """Upload ``path`` with the job options in ``form`` (``sample_fps="5"``); the new job's id."""
        with path.open("rb") as f:
            response = self.session.post(
                f"{self.base}/jobs",
                headers=self.headers,
                files={"video": (path.name, f)},
                data={"score_threshold": str(threshold), **form},
                timeout=600,
            )
        if not response.ok:
            raise RuntimeError(f"the upload was refused ({response.status_code}): {response.text[:500]}")
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/jobs/{job_id}", timeout=10)
        if not response.ok:
            raise RuntimeError(
                f"job {job_id} could not be read ({response.status_code}): {response.text[:500]}"
            )
        return dict(response.json())

    def wait(self, job_id: str, timeout: float = 3600) -> dict[str, Any]:
        """Poll the job until it ends; the job, or RuntimeError when it did not succeed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                if job["status"] != "succeeded":
                    raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
                return job
            self.check()
            time.sleep(0.25)  # as a client would; timings come from the job's own clock
        raise RuntimeError(f"job {job_id} did not finish in {timeout} s")

    def download_export(self, job_id: str, fmt: str) -> int:
        """Stream the job's export in format ``fmt`` to its end; its size in bytes."""
        response = self.get(f"/jobs/{job_id}/export", params={"format": fmt}, stream=True, timeout=600)
        if not response.ok:
            raise RuntimeError(f"the {fmt} export failed ({response.status_code}): {response.text[:500]}")
        return sum(len(piece) for piece in response.iter_content(64 * 1024))

    def frames_done(self, job_id: str) -> int:
        return int(self.job(job_id)["progress"]["frames_done"])

    def run_job(self, path: Path, threshold: float, **form: str) -> tuple[str, float]:
        """Upload (with the job options in ``form``), wait; returns the job id and seconds
        from the upload's start to success:
        the upload's duration plus the job's own created -> finished time (so the
        polling interval does not blur it)."""
        started = time.perf_counter()
        job_id = self.upload(path, threshold, **form)
        uploaded = time.perf_counter() - started
        job = self.wait(job_id)
        created = datetime.fromisoformat(job["created_at"])
        finished = datetime.fromisoformat(job["finished_at"])
        return job_id, uploaded + (finished - created).total_seconds()

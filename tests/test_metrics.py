"""Prometheus metrics: the API's /metrics, Celery task metrics from a real worker, helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from detector.app import create_app
from detector.db import db
from detector.db.migrate import upgrade
from detector.models import Job, JobStatus, User
from detector.observability import metrics
from detector.observability import worker as worker_metrics
from detector.pipeline.celery_app import ROUTES


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a text exposition, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


# --- the API -------------------------------------------------------------------------


def test_metrics_endpoint_counts_requests_and_jobs(app: Flask, client: FlaskClient) -> None:
    with app.app_context(), db.transaction() as session:
        user = User(username="metrics-user", password_hash="x")
        session.add(user)
        session.flush()
        for status in (JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.FAILED):
            session.add(
                Job(
                    owner_id=user.id,
                    original_filename="v.mp4",
                    storage_key="0" * 32,
                    score_threshold=0.5,
                    status=status,
                )
            )

    assert client.get("/healthz").status_code == 200
    assert client.get("/no-such-page").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)

    assert value(text, "detector_http_requests_total", method="GET", endpoint="/healthz", status="200")
    assert value(text, "detector_http_requests_total", method="GET", endpoint="<unmatched>", status="404")
    assert value(
        text, "detector_http_request_duration_seconds_count", method="GET", endpoint="/healthz", status="200"
    )
    assert value(text, "detector_jobs", status="queued") == 2
    assert value(text, "detector_jobs", status="failed") == 1
    assert value(text, "detector_jobs", status="succeeded") == 0
    assert value(text, "detector_jobs_database_up") == 1

    # The next scrape counts the previous one, under its URL rule.
    again = client.get("/metrics").get_data(as_text=True)
    assert value(again, "detector_http_requests_total", method="GET", endpoint="/metrics", status="200")


def test_metrics_offers_openmetrics_to_prometheus(client: FlaskClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


def test_create_app_again_and_again_registers_nothing_twice(tmp_path: Path) -> None:
    # Tests build many apps in one process: that must not raise
    # "Duplicated timeseries in CollectorRegistry".
    for _ in range(3):
        app = create_app(
            {
                "DATA_DIR": str(tmp_path),
                "VIDEO_STORAGE": str(tmp_path / "videos"),
                "ENV": "test",
                # Explicit, so a DATABASE_URL in the environment or a .env is not used.
                "DATABASE_URL": f"sqlite:///{tmp_path / 'detector.sqlite3'}",
            }
        )
    upgrade(app.config["DATABASE_URL"])
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert value(text, "detector_jobs", status="processing") == 0
    db.session.remove()


def test_jobs_gauge_reports_a_database_outage_without_failing_the_scrape(tmp_path: Path) -> None:
    app = create_app(
        {
            "DATA_DIR": str(tmp_path),
            "VIDEO_STORAGE": str(tmp_path / "videos"),
            "ENV": "test",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'detector.sqlite3'}",
        }
    )
    # No migrations: the jobs table does not exist, like a database that is down.
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert value(text, "detector_jobs_database_up") == 0
    assert value(text, "detector_jobs", status="queued") is None


# --- helpers and task signals ----------------------------------------------------------


def registry_text() -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.REGISTRY).decode()


def test_pipeline_helpers_are_labelled_by_worker_and_device() -> None:
    before = value(registry_text(), "detector_frames_total", worker=metrics.WORKER, device="cuda:1") or 0
    metrics.observe_frames(24, "cuda:1")
    metrics.observe_batch(8)
    metrics.observe_model_load(3.5, "detectron2", "cuda:1")
    text = registry_text()
    assert value(text, "detector_frames_total", worker=metrics.WORKER, device="cuda:1") == before + 24
    assert value(text, "detector_batch_size_bucket", worker=metrics.WORKER, le="8.0")
    assert value(
        text,
        "detector_model_load_seconds_count",
        worker=metrics.WORKER,
        backend="detectron2",
        device="cuda:1",
    )


class FakeTask:
    """What the signal handlers read from a task: its name, delivery info and its app's routes."""

    def __init__(self, name: str, delivery_info: dict[str, str] | None) -> None:
        self.name = name
        self.request = type("Request", (), {"delivery_info": delivery_info})()
        self.app = type("App", (), {"conf": {"task_routes": ROUTES}})()


def test_task_signals_record_duration_and_failures() -> None:
    from celery.signals import task_failure, task_postrun, task_prerun

    worker_metrics.connect_task_signals()
    worker_metrics.connect_task_signals()  # idempotent: one observation per signal, not two
    task = FakeTask("detector.test_signal_task", {"exchange": "detector", "routing_key": "detector"})
    task_prerun.send(sender=task, task_id="t-1", task=task, args=(), kwargs={})
    task_failure.send(
        sender=task,
        task_id="t-1",
        exception=RuntimeError("boom"),
        args=(),
        kwargs={},
        traceback=None,
        einfo=None,
    )
    task_postrun.send(sender=task, task_id="t-1", task=task, args=(), kwargs={}, retval=None, state="FAILURE")
    # No delivery info (an eager call): the queue comes from the static routes.
    routed = FakeTask("detector.merge_chunks", None)
    task_prerun.send(sender=routed, task_id="t-2", task=routed, args=(), kwargs={})
    task_postrun.send(
        sender=routed, task_id="t-2", task=routed, args=(), kwargs={}, retval=None, state="SUCCESS"
    )

    text = registry_text()
    labels = {"task": "detector.test_signal_task", "queue": "detector"}
    assert value(text, "detector_task_duration_seconds_count", **labels) == 1
    assert value(text, "detector_task_failures_total", **labels) == 1
    assert value(
        text, "detector_task_duration_seconds_count", task="detector.merge_chunks", queue="processor"
    )


def test_worker_metrics_are_off_without_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METRICS_PORT", raising=False)
    assert worker_metrics.connect_worker_metrics() is False


def test_multiprocess_mode_sums_over_processes(tmp_path: Path) -> None:
    """What the API (gunicorn processes) and a worker's pool do with PROMETHEUS_MULTIPROC_DIR."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    observe = "from detector.observability import metrics; metrics.observe_frames({n}, 'cuda:0')"
    for n in (5, 7):
        subprocess.run([sys.executable, "-c", observe.format(n=n)], env=env, check=True, timeout=120)
    read = textwrap.dedent("""
        from prometheus_client import generate_latest
        from detector.observability import metrics
        print(generate_latest(metrics.process_values()).decode())
    """)
    out = subprocess.run(
        [sys.executable, "-c", read], env=env, check=True, timeout=120, capture_output=True, text=True
    ).stdout
    assert value(out, "detector_frames_total", worker=socket.gethostname(), device="cuda:0") == 12


# --- a real Celery worker ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("multiprocess", [True, False], ids=["multiprocess-dir", "port-per-child"])
def test_celery_worker_serves_task_metrics(tmp_path: Path, multiprocess: bool) -> None:
    """`celery -A detector.worker` with METRICS_PORT: task duration and failures by queue."""
    data = tmp_path / "data"
    data.mkdir()
    config: dict[str, Any] = {
        "ENV": "test",
        "DATA_DIR": str(data),
        "VIDEO_STORAGE": str(tmp_path / "videos"),
        "DATABASE_URL": f"sqlite:///{data / 'detector.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_RESULT_BACKEND": f"file://{data / 'results'}",
        "SECRET_KEY": "test-secret",
        "JWT_SECRET_KEY": "test-jwt-secret-that-is-long-enough-for-hs256",
    }
    upgrade(config["DATABASE_URL"])
    port = free_port()
    env = {**os.environ, **{("DETECTOR_ENV" if k == "ENV" else k): v for k, v in config.items()}}
    env.update(METRICS_PORT=str(port), PYTHONUNBUFFERED="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if multiprocess:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "detector.worker",
                "worker",
                "-Q",
                "processor",
                "--concurrency",
                "1",
                "-n",
                f"metrics-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        app = create_app(config)
        celery = app.extensions["celery"]
        celery.send_task("detector.watchdog")
        celery.send_task("detector.chunk_failed", args=[])  # wrong arguments: the task raises
        watchdog = {"task": "detector.watchdog", "queue": "processor"}
        failed = {"task": "detector.chunk_failed", "queue": "processor"}
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                text = scrape(port)  # child 0 of the pool in port-per-child mode
            except OSError:
                text = ""
            # The filesystem transport does not keep the order of messages.
            if value(text, "detector_task_failures_total", **failed) and value(
                text, "detector_task_duration_seconds_count", **watchdog
            ):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no task metrics on port {port}:\n{text}\n{log_path.read_text()}")
        assert value(text, "detector_task_duration_seconds_count", **watchdog) == 1
        assert value(text, "detector_task_failures_total", **failed) == 1
        assert value(text, "detector_task_duration_seconds_count", **failed) == 1
    finally:
        proc.send_signal(signal.SIGTERM)  # to the main process only, as `docker stop` does
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        db.session.remove()

"""`detector submit`, `wait`, `jobs`, `results` and `login` against a live API on loopback
(no workers here: jobs stay queued unless cancelled; see test_cli_pipeline.py for real runs)."""

from __future__ import annotations

import json
import os
import signal
import stat
import time

from click.testing import CliRunner

from detector.cli import main
from detector.client import DetectorClient
from tests.client.conftest import Cli, api_get


def test_submit_prints_the_job_id_and_jobs_lists_it(app, cli: Cli, small_video):
    result = cli.run("submit", str(small_video), "--score-threshold", "0.3")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    job = api_get(app, cli, f"/api/jobs/{job_id}")
    assert job["status"] == "queued" and job["score_threshold"] == 0.3
    assert job["filename"] == small_video.name
    assert job["video"]["frame_count"] == 20

    listed = cli.run("jobs")
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout and "queued" in listed.stdout
    as_json = json.loads(cli.run("jobs", "--json").stdout)
    assert [j["id"] for j in as_json["jobs"]] == [job_id]


def test_a_cancelled_job_exits_1(app, cli: Cli, small_video):
    proc = cli.start("submit", str(small_video), "--wait", "--poll", "0.1")
    job_id = proc.stdout.readline().strip()  # printed as soon as the upload is accepted
    assert len(job_id) == 32, proc.communicate(timeout=10)
    response = app.test_client().post(f"/api/jobs/{job_id}/cancel", headers=cli.headers)
    assert response.status_code == 200
    _, errors = proc.communicate(timeout=60)
    assert proc.returncode == 1, errors
    assert f"job {job_id} cancelled" in errors


def test_ctrl_c_while_waiting_leaves_the_job_and_says_how_to_resume(app, cli: Cli, small_video):
    job_id = cli.run("submit", str(small_video)).stdout.strip()
    proc = cli.start("wait", job_id, "--poll", "0.1")
    time.sleep(1.5)  # started and polling
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGINT)
    _, errors = proc.communicate(timeout=30)
    assert proc.returncode == 130, errors
    assert f"detector wait {job_id}" in errors
    assert api_get(app, cli, f"/api/jobs/{job_id}")["status"] == "queued"


def test_results_of_an_unfinished_job(cli: Cli, small_video):
    job_id = cli.run("submit", str(small_video)).stdout.strip()
    result = cli.run("results", job_id)
    assert result.returncode == 3
    assert f"detector wait {job_id}" in result.stderr


def test_exit_codes_for_usage_and_server_errors(cli: Cli, small_video, tmp_path):
    # 2: usage errors (click's own, and no server or key anywhere)
    assert cli.run("submit").returncode == 2
    assert cli.run("submit", str(tmp_path / "missing.mp4")).returncode == 2
    assert cli.run("submit", str(small_video), "--export", "json").returncode == 2
    no_server = cli.run("jobs", DETECTOR_SERVER="")
    assert no_server.returncode == 2 and "DETECTOR_SERVER" in no_server.stderr
    no_key = cli.run("jobs", DETECTOR_API_KEY="")
    assert no_key.returncode == 2 and "DETECTOR_API_KEY" in no_key.stderr
    # 3: the server refuses, or is not there
    refused = cli.run("jobs", "--api-key", "dk_live_" + "A" * 43)
    assert refused.returncode == 3 and "401" in refused.stderr
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("hello")
    bad = cli.run("submit", str(not_a_video))
    assert bad.returncode == 3 and "415" in bad.stderr
    unreachable = cli.run("jobs", "--server", "http://127.0.0.1:9")
    assert unreachable.returncode == 3 and "cannot reach" in unreachable.stderr


def test_login_creates_a_key_and_keeps_it_in_the_config_file(app, cli: Cli, tmp_path):
    config = tmp_path / "client.toml"
    result = cli.run(
        "login",
        "--server",
        cli.server,
        "--username",
        "alice",
        "--password",
        "password123",
        DETECTOR_SERVER="",
        DETECTOR_API_KEY="",
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert f'server = "{cli.server}"' in text and "dk_live_" in text
    # The file is enough: no flags, no environment.
    listed = cli.run("jobs", DETECTOR_SERVER="", DETECTOR_API_KEY="")
    assert listed.returncode == 0, listed.stderr
    keys = api_get(app, cli, "/api/keys")["keys"]
    assert "detector CLI" in [k["name"] for k in keys]
    wrong = cli.run("login", "--server", cli.server, "--username", "alice", "--password", "nope-nope")
    assert wrong.returncode == 3 and "401" in wrong.stderr


def test_a_url_is_sent_as_source_url(monkeypatch):
    sent = {}

    def fake_request(self, method, path, **kwargs):
        if method == "POST":
            sent.update(method=method, path=path, files=kwargs.get("files"), headers=kwargs.get("headers"))
            return {"id": "f" * 32}
        raise AssertionError(path)

    monkeypatch.setattr(DetectorClient, "request", fake_request)
    result = CliRunner().invoke(
        main,
        [
            "submit",
            "https://example.com/v.mp4",
            "--server",
            "http://x",
            "--api-key",
            "k",
            "--callback-url",
            "https://example.com/hook",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sent["path"] == "/jobs"
    assert sent["files"]["source_url"] == (None, "https://example.com/v.mp4")
    assert sent["files"]["callback_url"] == (None, "https://example.com/hook")
    assert sent["headers"]["Idempotency-Key"]


def test_a_retried_upload_makes_one_job(app, cli: Cli, small_video):
    """The client retries a dropped upload with the same Idempotency-Key: one job."""
    client = DetectorClient(cli.server, cli.api_key)
    first = client.submit_file(small_video, idempotency_key="retry-1")
    again = client.submit_file(small_video, idempotency_key="retry-1")
    assert first["id"] == again["id"]
    assert api_get(app, cli, "/api/jobs")["total"] == 1


def test_submit_sends_the_job_options_and_results_downloads_an_export(app, cli: Cli, small_video, tmp_path):
    from detector.db import db
    from detector.models import FrameDetections, Job, JobStatus

    result = cli.run(
        "submit",
        str(small_video),
        "--frame-stride",
        "2",
        "--start",
        "0.1",
        "--classes",
        "person,car",
        "--track",
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    options = api_get(app, cli, f"/api/jobs/{job_id}")["options"]
    assert options == {
        "sample_fps": None,
        "frame_stride": 2,
        "start": 0.1,
        "end": None,
        "classes": ["person", "car"],
        "track": True,
        "model": "default",
    }
    with app.app_context():  # finish it as the pipeline would: two analysed frames, tracked
        job = db.session.get(Job, job_id)
        job.status, job.frames_total = JobStatus.SUCCEEDED, 2
        for index in (2, 4):
            obj = {"label": "car", "class_id": 3, "score": 0.8, "box": [1.0, 2.0, 30.0, 40.0], "track_id": 1}
            db.session.add(FrameDetections(job_id=job_id, index=index, timestamp=index / 10, objects=[obj]))
        db.session.commit()
    out = tmp_path / "job.csv"
    exported = cli.run("results", job_id, "--format", "csv", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "frame,timestamp,track_id,label,class_id,score,x1,y1,x2,y2"
    assert [line.split(",")[:4] for line in lines[1:]] == [["2", "0.2", "1", "car"], ["4", "0.4", "1", "car"]]
    mot = cli.run("results", job_id, "--format", "mot")
    assert mot.returncode == 0, mot.stderr
    assert [line.split(",")[:2] for line in mot.stdout.splitlines()] == [["3", "1"], ["5", "1"]]

"""A client generated from the API document works against a live server.

/api/swagger.json (Swagger 2.0) is converted to OpenAPI 3 with swagger2openapi
(npm, unpatched), a Python client is generated from that with
openapi-python-client, and the client registers, logs in, uploads a video,
polls the job, lists the jobs and pages through the detections. The same recipe
is in docs/api.md ("A generated client").

swagger2openapi is a Node tool: install it with
``npm install --prefix ~/.local/swagger2openapi swagger2openapi@7.0.8`` and put
its ``node_modules/.bin`` on PATH (or point SWAGGER2OPENAPI at the script).
Without it this test skips, and fails under CI=true.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from openapi_spec_validator import validate
from werkzeug.serving import make_server

from detector.app import create_app
from detector.db import db
from detector.db.migrate import upgrade
from detector.models import FrameDetections, Job, JobStatus
from detector.video.synthetic import make_video
from tests.conftest import base_config, missing_tool

PACKAGE = "detector_api_client"


def _swagger2openapi() -> str:
    found = os.environ.get("SWAGGER2OPENAPI") or shutil.which("swagger2openapi")
    if not found:
        missing_tool("swagger2openapi (npm) is not installed; see this module's docstring")
    return found


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """The test app served over HTTP on a loopback port, in a thread."""
    config = base_config(tmp_path)
    (tmp_path / "data").mkdir()
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}/api"
    finally:
        server.shutdown()
        thread.join(10)
        db.session.remove()
        db.engine.dispose()


def _generate_client(app: Any, folder: Path) -> ModuleType:
    """Convert the app's document to OpenAPI 3, generate a client package, import it."""
    swagger = folder / "swagger.json"
    swagger.write_text(json.dumps(app.test_client().get("/api/swagger.json").json))
    openapi = folder / "openapi.json"
    subprocess.run(
        [_swagger2openapi(), str(swagger), "--outfile", str(openapi)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    document = json.loads(openapi.read_text())
    assert document["openapi"].startswith("3.")
    validate(document)  # the converted document is valid OpenAPI 3 as it is

    settings = folder / "generator.yaml"
    settings.write_text("post_hooks: []\n")  # no formatter needed to import it
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(openapi),
            "--output-path",
            str(folder / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(settings),
        ],
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # Every operation became a function: a warning here would mean one was skipped.
    assert "Unable to" not in generated.stdout, generated.stdout
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))


@pytest.fixture
def client_package(live_app, tmp_path: Path) -> Iterator[ModuleType]:
    package = _generate_client(live_app[0], tmp_path)
    yield package
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def _mark_succeeded(app: Any, job_id: str, frames: int) -> None:
    """What the workers would have written: every frame's objects, the job succeeded."""
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.status = JobStatus.SUCCEEDED
        job.frames_total = frames
        job.objects_total = frames
        for i in range(frames):
            obj = {"label": "person", "class_id": 1, "score": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}
            db.session.add(FrameDetections(job_id=job_id, index=i, timestamp=i / 10, objects=[obj]))
        db.session.commit()


def test_a_generated_client_uploads_polls_and_pages(live_app, client_package, tmp_path):
    app, base_url = live_app
    pkg = client_package
    api = importlib.import_module(f"{PACKAGE}.api")
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    register = importlib.import_module(f"{PACKAGE}.api.auth.register")
    login = importlib.import_module(f"{PACKAGE}.api.auth.login")
    create_job = importlib.import_module(f"{PACKAGE}.api.jobs.create_job")
    get_job = importlib.import_module(f"{PACKAGE}.api.jobs.get_job")
    list_jobs = importlib.import_module(f"{PACKAGE}.api.jobs.list_jobs")
    list_detections = importlib.import_module(f"{PACKAGE}.api.jobs.list_detections")
    assert api is not None

    anonymous = pkg.Client(base_url=base_url, raise_on_unexpected_status=True)
    credentials = models.Credentials(username="alice", password="correct horse battery")
    user = register.sync(client=anonymous, body=credentials)
    assert isinstance(user, models.User) and user.username == "alice"
    tokens = login.sync(client=anonymous, body=credentials)
    assert isinstance(tokens, models.Tokens)
    wrong = login.sync_detailed(
        client=anonymous, body=models.Credentials(username="alice", password="wrong-password")
    )
    assert wrong.status_code == 401
    assert isinstance(wrong.parsed, models.Error) and wrong.parsed.error == "unauthorized"

    client = pkg.AuthenticatedClient(base_url=base_url, token=tokens.access_token)
    video = make_video(tmp_path / "clip.mp4", frames=10, width=64, height=48, fps=10, gop=5)
    body = models.CreateJobBody(
        video=types.File(payload=io.BytesIO(video.read_bytes()), file_name="clip.mp4", mime_type="video/mp4"),
        score_threshold=0.4,
    )
    accepted = create_job.sync_detailed(client=client, body=body)
    assert accepted.status_code == 202
    job = accepted.parsed
    assert isinstance(job, models.Job)
    assert accepted.headers["Location"] == f"/api/jobs/{job.id}"
    assert job.status == models.JobStatus.QUEUED and job.score_threshold == 0.4

    too_low = create_job.sync_detailed(
        client=client,
        body=models.CreateJobBody(
            video=types.File(payload=io.BytesIO(video.read_bytes()), file_name="clip.mp4"),
            score_threshold=0.01,
        ),
    )
    assert too_low.status_code == 400 and isinstance(too_low.parsed, models.Error)

    polled = get_job.sync(client=client, job_id=job.id)
    assert isinstance(polled, models.Job) and polled.id == job.id
    assert polled.video.width == 64 and polled.progress.frames_total is None

    listed = list_jobs.sync(client=client, page=1, per_page=10)
    assert isinstance(listed, models.JobPage) and [j.id for j in listed.jobs] == [job.id]

    # No workers run here, so the job stays queued: its detections are a 409.
    unfinished = list_detections.sync_detailed(client=client, job_id=job.id)
    assert unfinished.status_code == 409
    assert isinstance(unfinished.parsed, models.Error) and unfinished.parsed.error == "conflict"

    _mark_succeeded(app, job.id, frames=10)
    frames: list[int] = []
    start: int | None = 0
    while start is not None:
        page = list_detections.sync(client=client, job_id=job.id, start=start, limit=4)
        assert isinstance(page, models.DetectionsPage) and page.frames_total == 10
        frames += [f.frame for f in page.frames]
        assert all(o.label == "person" and len(o.box) == 4 for f in page.frames for o in f.objects)
        start = page.next_start if isinstance(page.next_start, int) else None
    assert frames == list(range(10))

"""Old jobs survive a change of the model catalog (DETECTOR_MODELS): a job keeps its
model's identity and label set from its creation, so that after a restart with a
catalog that no longer has its model it is still read, paged, exported and rendered,
with the same labels. The job runs through the real pipeline steps in-process
(planning, detection with seeded random weights, merging, tracking)."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from detector.app import create_app
from detector.db import db
from detector.db.migrate import upgrade
from detector.detection.labels import PLACEHOLDERS, TORCHVISION_COCO, from_stored
from detector.exports import FORMATS
from detector.models import Chunk
from detector.pipeline import workers
from detector.pipeline.chunks import detect_frames
from detector.pipeline.merging import merge_chunks
from detector.pipeline.planning import process_video
from detector.pipeline.rendering import render_job
from detector.pipeline.tracking import track_objects
from tests.api.conftest import job_row, update_job
from tests.api.test_jobs import upload
from tests.api.test_results import succeeded_job
from tests.conftest import Auth

BEFORE = """
default = "fast"

[models.fast]
model = "fasterrcnn_mobilenet_v3_large_320_fpn"
weights = "random"
seed = 1234
device = "cpu"
min_score = 0.05

[models.accurate]
backend = "detectron2"
model = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
device = "cpu"
"""

# The restart's catalog: "fast" is gone, and the default numbers the same names
# differently (Detectron2's person is 0, torchvision's 1).
AFTER = """
[models.accurate]
backend = "detectron2"
model = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
device = "cpu"
"""

TORCHVISION_LABELS = {i: name for i, name in enumerate(TORCHVISION_COCO) if name not in PLACEHOLDERS}
# The job's `classes`: every other class of the fast model.
KEPT = {i: name for i, name in TORCHVISION_LABELS.items() if i % 2 == 0}


def _catalog(config: dict[str, Any], tmp_path: Path, name: str, text: str) -> dict[str, Any]:
    path = tmp_path / name
    path.write_text(text)
    return {**config, "DETECTOR_MODELS": str(path)}


@pytest.fixture
def before(config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The app before the restart: a catalog of two models."""
    monkeypatch.setattr(workers, "consumers", lambda: None)  # no worker to ask: planning goes ahead
    with _app(_catalog(config, tmp_path, "before.toml", BEFORE)) as app:
        yield app


@contextmanager
def _app(config: dict[str, Any]) -> Iterator[Flask]:
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _restart(config: dict[str, Any], tmp_path: Path) -> Any:
    """A fresh app on the same database and storage, with the catalog without "fast"."""
    return _app(_catalog(config, tmp_path, "after.toml", AFTER))


def _run_job(app: Flask, job_id: str) -> None:
    """The job's pipeline, step by step in-process, as the workers run it."""
    with app.app_context():
        assert process_video.run(job_id)["chunks"] >= 1
        chunks = db.session.execute(
            select(Chunk.index, Chunk.start_frame, Chunk.end_frame).where(Chunk.job_id == job_id)
        ).all()
        db.session.rollback()
        for index, start, end in chunks:
            assert "skipped" not in detect_frames.run(job_id, index, start, end)
        assert merge_chunks.run(None, job_id).get("tracking") is True
        assert "skipped" not in track_objects.run(job_id)


def _pages(client, headers, job_id: str) -> list[dict[str, Any]]:
    """Every frame of the job's detections, paged a few frames at a time."""
    frames, start = [], 0
    while start is not None:
        response = client.get(f"/api/jobs/{job_id}/detections?start={start}&limit=7", headers=headers)
        assert response.status_code == 200, response.json
        frames += response.json["frames"]
        start = response.json["next_start"]
    return frames


def _exports(client, headers, job_id: str) -> dict[str, str]:
    found = {}
    for fmt in FORMATS:
        response = client.get(f"/api/jobs/{job_id}/export?format={fmt}", headers=headers)
        assert response.status_code == 200, (fmt, response.get_data(as_text=True)[:300])
        found[fmt] = response.get_data(as_text=True)
    return found


def _read(client, headers, job_id: str) -> dict[str, Any]:
    response = client.get(f"/api/jobs/{job_id}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def test_a_finished_job_reads_pages_exports_and_renders_after_its_model_leaves_the_catalog(
    config, before, tmp_path, small_video
):
    client = before.test_client()
    headers = Auth(client).headers()
    classes = ",".join(KEPT.values())
    created = upload(client, headers, small_video, classes=classes, track="true", score_threshold=0.3)
    assert created.status_code == 202, created.json
    job_id = created.json["id"]
    # The job keeps its model's labels from its creation on.
    assert from_stored(job_row(before, job_id).labels) == TORCHVISION_LABELS
    _run_job(before, job_id)
    job = _read(client, headers, job_id)
    assert job["status"] == "succeeded" and job["objects_total"] > 0, job
    frames = _pages(client, headers, job_id)
    exports = _exports(client, headers, job_id)
    tracks = client.get(f"/api/jobs/{job_id}/tracks", headers=headers).json

    with _restart(config, tmp_path) as after:
        client = after.test_client()
        assert [m["name"] for m in client.get("/api/models", headers=headers).json["models"]] == ["accurate"]
        read = _read(client, headers, job_id)
        assert read["options"]["classes"] == list(KEPT.values())
        assert read["options"]["model"] == "fast" and read["model"] == job["model"]
        assert read == job
        # The job list reads it too.
        listed = client.get("/api/jobs", headers=headers)
        assert listed.status_code == 200 and listed.json["jobs"][0]["options"] == job["options"]
        # Its detections: the same pages, each object of a kept class, named by the job's model.
        assert _pages(client, headers, job_id) == frames
        objects = [o for f in frames for o in f["objects"]]
        assert objects and all(KEPT.get(o["class_id"]) == o["label"] for o in objects)
        assert client.get(f"/api/jobs/{job_id}/tracks", headers=headers).json == tracks
        # Every export, byte for byte as before, naming the job's model's classes.
        assert _exports(client, headers, job_id) == exports
        coco = json.loads(exports["coco"])
        assert {c["id"]: c["name"] for c in coco["categories"]} == TORCHVISION_LABELS
        names = [e.findtext("name") for e in ET.fromstring(exports["cvat"]).iter("label")]
        assert names == list(TORCHVISION_LABELS.values())
        rows = list(csv.DictReader(io.StringIO(exports["csv"])))
        assert rows and {r["label"] for r in rows} <= set(KEPT.values())
        # And its annotated video.
        response = client.post(f"/api/jobs/{job_id}/render", headers=headers)
        assert response.status_code == 202, response.json
        with after.app_context():
            assert render_job.run(job_id).get("frames") == 20
        assert _read(client, headers, job_id)["render"]["status"] == "succeeded"
        video = client.get(f"/api/jobs/{job_id}/video/annotated", headers=headers)
        assert video.status_code == 200 and len(video.get_data()) > 0
        # A new job can only name the models the catalog has now.
        refused = upload(client, headers, small_video, model="fast")
        assert refused.status_code == 400 and "accurate" in refused.json["message"]


@pytest.mark.parametrize(
    "identity",
    [
        "torchvision/fasterrcnn_mobilenet_v3_large_320_fpn@random(seed=1234)",
        # A model whose labels only its config (and Detectron2) knows.
        "detectron2/LVISv0.5-Detection/faster_rcnn_R_50_FPN_1x.yaml@default",
    ],
)
def test_a_job_from_before_jobs_kept_labels_still_reads_and_exports_without_its_model(
    config, before, tmp_path, small_video, identity
):
    client = before.test_client()
    headers = Auth(client).headers()
    # Person (1) and car (3) in its frames, tracked.
    job_id = succeeded_job(before, client, headers, small_video, classes="person,car", track="true")
    update_job(before, job_id, labels=None, model_name=identity)
    assert job_row(before, job_id).labels is None

    with _restart(config, tmp_path) as after:
        client = after.test_client()
        read = _read(client, headers, job_id)
        # The restart's default (Detectron2's labels) would call class 1 "bicycle".
        known = identity.startswith("torchvision/")
        # Named by what its identity tells; by class id when nothing tells any more.
        assert read["options"]["classes"] == (["person", "car"] if known else ["1", "3"])
        assert _pages(client, headers, job_id)
        exports = _exports(client, headers, job_id)
        categories = {c["id"]: c["name"] for c in json.loads(exports["coco"])["categories"]}
        assert categories == (TORCHVISION_LABELS if known else {1: "person", 3: "car"})
        names = [e.findtext("name") for e in ET.fromstring(exports["cvat"]).iter("label")]
        assert names == (list(TORCHVISION_LABELS.values()) if known else ["person", "car"])

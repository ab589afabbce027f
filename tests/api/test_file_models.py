"""Models from files (docs/models.md) over the API: what GET /api/models and
GET /api/labels say of them, jobs choosing classes by the file's labels, and a
catalog whose file cannot be used stopping the app at start."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.app import create_app
from detector.config import ConfigError
from tests.api.test_jobs import job_count, upload
from tests.conftest import Auth, base_config, reconfigure
from tests.detection.model_files import NAMES, graph_file, ultralytics_metadata, yolo_head
from tests.shared_data import SharedData


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    """SQLite only: nothing here depends on the database (tests/api/conftest.py runs
    the API's other tests on PostgreSQL too)."""
    return base_config(tmp_path)


def _yolo_catalog(folder: Path) -> Path:
    """A catalog of one model, ``mine``: a yolo file (input 64x64, labels cat, dog and
    bird in its metadata) beside it, named by a relative path."""
    graph_file(folder / "mine.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata())
    catalog = folder / "models.toml"
    catalog.write_text('[models.mine]\nfile = "mine.onnx"\nfamily = "yolo"\nmin_score = 0.2\n')
    return catalog


@pytest.fixture
def file_model(app: Any, tmp_path: Path) -> Path:
    """The app on `_yolo_catalog`; returns the model file."""
    reconfigure(app, DETECTOR_MODELS=str(_yolo_catalog(tmp_path)))
    return tmp_path / "mine.onnx"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_models_shows_a_files_family_runtime_input_size_labels_and_sha256(file_model, client, auth: Auth):
    [mine] = client.get("/api/models", headers=auth.headers()).json["models"]
    assert (mine["name"], mine["default"], mine["queue"]) == ("mine", True, "detector.mine")
    assert (mine["family"], mine["runtime"], mine["backend"]) == ("yolo", "onnxruntime", "onnxruntime")
    assert mine["input_size"] == [64, 64]  # the metadata's imgsz
    assert mine["labels"] == [NAMES[i] for i in sorted(NAMES)]
    assert mine["file"] == "mine.onnx" and mine["file_sha256"] == _sha256(file_model)
    prefix = mine["identity"].removeprefix("onnxruntime/yolo:mine.onnx@sha256:")
    assert prefix != mine["identity"] and len(prefix) >= 12 and mine["file_sha256"].startswith(prefix)
    assert mine["weights"] == mine["weights_checksum"] == f"sha256:{prefix}"
    assert mine["error"] is None


def test_a_replaced_file_shows_its_new_sha256(file_model, app, client, auth: Auth):
    headers = auth.headers()
    before = client.get("/api/models", headers=headers).json["models"][0]
    graph_file(file_model, {"output0": yolo_head() * 0.5}, metadata=ultralytics_metadata())
    reconfigure(app)  # the processes read the catalog again when they restart
    after = client.get("/api/models", headers=headers).json["models"][0]
    assert after["file_sha256"] == _sha256(file_model) != before["file_sha256"]
    assert after["identity"] != before["identity"]


def test_labels_of_a_file_model_are_the_files(file_model, client, auth: Auth):
    answer = client.get("/api/labels?model=mine", headers=auth.headers()).json
    assert answer["labels"] == [{"class_id": i, "label": NAMES[i]} for i in sorted(NAMES)]
    assert answer["model"].startswith("onnxruntime/yolo:mine.onnx@sha256:")


def test_declared_labels_replace_the_files(app, client, auth: Auth, tmp_path):
    catalog = _yolo_catalog(tmp_path)
    (tmp_path / "names.txt").write_text("0 kitten\n1 puppy\n2 chick\n")
    catalog.write_text(catalog.read_text() + 'labels = "names.txt"\n')
    reconfigure(app, DETECTOR_MODELS=str(catalog))
    headers = auth.headers()
    [mine] = client.get("/api/models", headers=headers).json["models"]
    assert mine["labels"] == ["kitten", "puppy", "chick"]
    labels = client.get("/api/labels?model=mine", headers=headers).json["labels"]
    assert labels[1] == {"class_id": 1, "label": "puppy"}


def test_a_job_chooses_classes_by_the_files_labels(file_model, app, client, auth: Auth, small_video):
    headers = auth.headers()
    response = upload(client, headers, small_video, model="mine", classes="bird, Dog", score_threshold=0.3)
    assert response.status_code == 202, response.json
    assert response.json["options"]["classes"] == ["dog", "bird"]
    assert response.json["model"].startswith("onnxruntime/yolo:mine.onnx@sha256:")
    by_id = upload(client, headers, small_video, classes="0", score_threshold=0.3)
    assert by_id.status_code == 202 and by_id.json["options"]["classes"] == ["cat"]
    # COCO's names are not this file's.
    unknown = upload(client, headers, small_video, classes="dog,person", score_threshold=0.3)
    assert unknown.status_code == 400
    message = unknown.json["message"]
    assert message.startswith("classes: unknown label 'person'")
    assert "cat, dog, bird" in message
    assert job_count(app) == 2
    # The model's min_score is 0.2: a lower threshold is refused.
    low = upload(client, headers, small_video, score_threshold=0.1)
    assert low.status_code == 400 and "0.2" in low.json["message"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # No names in the metadata and none declared.
        (lambda folder: graph_file(folder / "mine.onnx", {"output0": yolo_head()}), "names no labels"),
        # Not a file ONNX Runtime can open.
        (lambda folder: (folder / "mine.onnx").write_bytes(b"not a model"), "cannot be read"),
        # An SSD's outputs (boxes, scores) where a yolo head is declared.
        (
            lambda folder: graph_file(
                folder / "mine.onnx",
                {"boxes": np.zeros((1, 3, 4)), "scores": np.zeros((1, 3))},
                metadata=ultralytics_metadata(),
            ),
            "is not a yolo model",
        ),
        # Absent.
        (lambda folder: None, "does not exist"),
    ],
    ids=["no-labels", "not-onnx", "wrong-family", "absent"],
)
def test_a_catalog_with_a_bad_file_stops_the_app_naming_the_table(tmp_path, make, message):
    folder = tmp_path / "models"
    folder.mkdir()
    make(folder)
    catalog = folder / "models.toml"
    catalog.write_text('[models.mine]\nfile = "mine.onnx"\nfamily = "yolo"\n')
    config = base_config(tmp_path, DETECTOR_MODELS=str(catalog))
    with pytest.raises(ConfigError, match=rf"^DETECTOR_MODELS: \[models\.mine\]: .*{message}"):
        create_app(config)


def test_the_real_ssd_shows_its_runtime_input_size_labels_and_sha256(
    app, client, auth: Auth, testdata: SharedData, tmp_path
):
    catalog = tmp_path / "models.toml"
    catalog.write_text(
        f'[models.coral]\nfile = "{testdata.ssd_tflite}"\nfamily = "ssd"\nlabels = "{testdata.labels}"\n'
    )
    reconfigure(app, DETECTOR_MODELS=str(catalog))
    headers = auth.headers()
    [coral] = client.get("/api/models", headers=headers).json["models"]
    assert (coral["family"], coral["runtime"], coral["input_size"]) == ("ssd", "tflite", [300, 300])
    assert coral["file"] == testdata.ssd_tflite.name and coral["file_sha256"] == _sha256(testdata.ssd_tflite)
    assert len(coral["labels"]) == 80 and coral["labels"][:3] == ["person", "bicycle", "car"]
    labels = client.get("/api/labels?model=coral", headers=headers).json["labels"]
    # coco_labels.txt's ids, gaps included: the ids the model's outputs hold.
    assert labels[0] == {"class_id": 0, "label": "person"} and labels[-1]["class_id"] == 89


def test_the_api_serves_a_file_model_without_torch(tmp_path):
    """The API image has no torch (docker/Dockerfile.api): listing a file model,
    its labels and its identity imports none of it."""
    catalog = _yolo_catalog(tmp_path)
    code = (
        "import sys\n"
        "from detector.app import create_app\n"
        "from detector.services import models\n"
        f"app = create_app({{'DATA_DIR': {str(tmp_path)!r}, 'VIDEO_STORAGE': {str(tmp_path / 'v')!r},"
        " 'ENV': 'test'})\n"
        "with app.app_context():\n"
        "    [mine] = models.listing()\n"
        "    assert mine['family'] == 'yolo' and mine['labels'] == ['cat', 'dog', 'bird'], mine\n"
        "    assert models.identity('mine') == mine['identity']\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "DETECTOR_MODELS": str(catalog), "DETECTOR_ENV": "test"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr

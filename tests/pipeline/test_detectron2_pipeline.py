"""The pipeline with the Detectron2 backend equals `detector predict` with it, on a
custom three-class model (tests/detection/test_detectron2_custom.py): a job of it
reports the model's own three labels."""

# ruff: noqa: E402  (Detectron2 is imported after require_detectron2)
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Auth, base_config, require_detectron2

require_detectron2()  # before the imports below, which need Detectron2

from detector.detection.catalog import load_catalog
from detector.pipeline.predict import predict_video
from detector.video.synthetic import make_video
from tests.detection.test_detectron2_custom import NAMES, make_three_class_model
from tests.pipeline.conftest import wait_for_job
from tests.pipeline.test_end_to_end import _all_frames, _app, _upload, assert_same_detections

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")


@pytest.fixture(scope="module")
def d2_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A catalog whose one model is the three-class model: config, weights and labels files."""
    model = make_three_class_model(tmp_path_factory.mktemp("d2"))
    models = model.folder / "models.toml"
    models.write_text(
        f'[models.shapes]\nbackend = "detectron2"\nmodel = "{model.config}"\nweights = "{model.weights}"\n'
        f'labels = "{model.labels}"\ndevice = "cpu"\nbatch_size = 4\n'
    )
    return {"DETECTOR_MODELS": str(models), "CHUNK_FRAMES": 12}


@pytest.mark.slow
def test_pipeline_equals_predict_with_detectron2(tmp_path: Path, d2_config, workers_factory):
    video = make_video(tmp_path / "clip.mp4", frames=24, width=160, height=120, fps=8, gop=12)
    expected, _ = predict_video(video, d2_config, 0.3)
    assert {o["label"] for f in expected["frames"] for o in f["objects"]} == set(NAMES)
    config = base_config(tmp_path, **d2_config)
    app = _app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    with workers_factory(config, models=("shapes",)) as workers:
        job = _upload(client, headers, video, threshold=0.3)
        done = wait_for_job(client, headers, job["id"])
        assert done["status"] == "succeeded", (done, workers.logs())
    config_file = load_catalog(d2_config).settings(None).model
    assert done["model"].startswith(f"detectron2/{config_file}@sha256:")
    frames = _all_frames(client, headers, job["id"])
    assert [f["frame"] for f in frames] == list(range(24))
    assert_same_detections(frames, expected["frames"])
    assert {(o["class_id"], o["label"]) for f in frames for o in f["objects"]} == set(enumerate(NAMES))

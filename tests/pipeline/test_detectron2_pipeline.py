"""The pipeline with the Detectron2 backend equals `detector predict` with it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip(
    "detectron2", reason="detectron2 is not importable (the optional GPU backend)", exc_type=ImportError
)

from detector.pipeline.predict import predict_video
from detector.video.synthetic import make_video
from tests.conftest import Auth, base_config
from tests.pipeline.conftest import wait_for_job
from tests.pipeline.test_end_to_end import _all_frames, _app, _upload, assert_same_detections

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")


@pytest.fixture(scope="module")
def d2_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A small local config (320 px input) and seeded weights saved through the checkpointer."""
    from detectron2 import model_zoo
    from detectron2.checkpoint import DetectionCheckpointer

    from detector.detection import DetectorSettings, build_predictor
    from detector.detection.detectron2_backend import DEFAULT_MODEL

    folder = tmp_path_factory.mktemp("d2")
    config_file = folder / "faster_rcnn_320.yaml"
    config_file.write_text(
        f'_BASE_: "{model_zoo.get_config_file(DEFAULT_MODEL)}"\n'
        "INPUT:\n  MIN_SIZE_TEST: 320\n  MAX_SIZE_TEST: 533\n"
        "MODEL:\n  RPN:\n    POST_NMS_TOPK_TEST: 300\n"
    )
    predictor = build_predictor(
        DetectorSettings(backend="detectron2", model=str(config_file), weights="random", seed=7, device="cpu")
    )
    DetectionCheckpointer(predictor.model, save_dir=str(folder)).save("seeded")  # type: ignore[attr-defined]
    return {
        "DETECTOR_BACKEND": "detectron2",
        "DETECTOR_MODEL": str(config_file),
        "DETECTOR_WEIGHTS": str(folder / "seeded.pth"),
        "DETECTOR_DEVICE": "cpu",
        "DETECTOR_BATCH_SIZE": 4,
        "CHUNK_FRAMES": 12,
    }


@pytest.mark.slow
def test_pipeline_equals_predict_with_detectron2(tmp_path: Path, d2_config, workers_factory):
    video = make_video(tmp_path / "clip.mp4", frames=24, width=160, height=120, fps=8, gop=12)
    expected, _ = predict_video(video, d2_config, 0.3)
    assert sum(len(f["objects"]) for f in expected["frames"]) > 0
    config = base_config(tmp_path, **d2_config)
    app = _app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    with workers_factory(config) as workers:
        job = _upload(client, headers, video, threshold=0.3)
        done = wait_for_job(client, headers, job["id"])
        assert done["status"] == "succeeded", (done, workers.logs())
    assert done["model"].startswith("detectron2/")
    frames = _all_frames(client, headers, job["id"])
    assert [f["frame"] for f in frames] == list(range(24))
    assert_same_detections(frames, expected["frames"])

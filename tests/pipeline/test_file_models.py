"""Models from files (docs/models.md) through the real pipeline: a job on a model
that a DETECTOR_MODELS catalog declares by its file, run by real workers on the
embedded defaults, finds exactly the objects `detector predict --model NAME`
prints, frame by frame; and `classes=`, by the file's labels, keeps exactly those
classes' objects in the job.

Two models: the yolo family on a tiny ONNX graph built here (its class scores
are the colours of the frame's squares, so its objects move with the synthetic
video; tests/detection/model_files.py), and the real SSD MobileNet V2 on a few
frames of vtest.avi from the shared test data (skipped without it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.video.synthetic import make_video
from tests.conftest import base_config
from tests.detection.model_files import colour_grid_file, graph_file, ultralytics_metadata, yolo_head
from tests.pipeline.conftest import worker_env
from tests.pipeline.test_options_pipeline import Service
from tests.shared_data import SharedData, ssd_catalog


def _cli_predict(
    monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], video: Path, out: Path, *options: str
) -> list[dict[str, Any]]:
    """The frames `detector predict VIDEO --out OUT OPTIONS` writes, with ``config``
    as its environment (the workers' settings)."""
    for key, value in worker_env(config).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["predict", str(video), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    frames: list[dict[str, Any]] = json.loads(out.read_text())["frames"]
    return frames


def _objects(frames: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(o["label"], o["class_id"]) for f in frames for o in f["objects"]]


def _run_and_compare(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    config: dict[str, Any],
    workers: Any,
    video: Path,
    model: str,
    options: dict[str, str],
    kept: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A job on ``model`` with ``options`` and ``classes=kept``: its frames are exactly
    those `detector predict --model MODEL --classes KEPT` prints with the same
    options, which are `detector predict`'s frames of every class but for the other
    classes' objects. Returns the job and its frames."""
    service = Service(config)
    cli_options = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
    every = _cli_predict(monkeypatch, config, video, tmp_path / "every.json", "--model", model, *cli_options)
    some = _cli_predict(
        monkeypatch, config, video, tmp_path / "some.json", "--model", model, "--classes", kept, *cli_options
    )
    # The filter keeps exactly the objects of that class, of the same frames.
    assert [f["frame"] for f in some] == [f["frame"] for f in every]
    for filtered, whole in zip(some, every, strict=True):
        assert filtered["objects"] == [o for o in whole["objects"] if o["label"] == kept]
    assert {label for label, _ in _objects(some)} == {kept}
    assert len(_objects(every)) > len(_objects(some)), "the filter drops nothing here: it proves nothing"

    done = service.run(workers, video, **options, model=model, classes=kept)
    frames = service.frames(done["id"])
    assert frames == some
    assert len(service.chunks(done["id"])) >= 3
    assert done["objects_total"] == len(_objects(frames))
    assert done["options"]["model"] == model and done["options"]["classes"] == [kept]
    return done, frames


@pytest.fixture(scope="module")
def shapes_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 frames of moving coloured shapes, 320x240, a keyframe every 4 frames."""
    return make_video(
        tmp_path_factory.mktemp("shapes") / "shapes.mp4", frames=24, width=320, height=240, gop=4
    )


@pytest.mark.slow
def test_a_job_on_a_yolo_file_equals_predict_and_filters_by_its_labels(
    tmp_path, monkeypatch, workers_factory, shapes_video
):
    folder = tmp_path / "models"
    folder.mkdir()
    colour_grid_file(folder / "grid.onnx")
    graph_file(folder / "still.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata())
    # Two file models, `still` the default: a job and `predict` run the one they name.
    # Paths are the catalog's folder's; labels come from the files' metadata.
    catalog = folder / "models.toml"
    catalog.write_text(
        'default = "still"\n'
        '[models.still]\nfile = "still.onnx"\nfamily = "yolo"\n'
        '[models.grid]\nfile = "grid.onnx"\nfamily = "yolo"\nmin_score = 0.5\n'
    )
    config = base_config(tmp_path, DETECTOR_MODELS=str(catalog), DETECTOR_DEVICE="cpu", CHUNK_FRAMES=8)
    with workers_factory(config, models=("grid",)) as workers:
        done, frames = _run_and_compare(
            monkeypatch, tmp_path, config, workers, shapes_video, "grid", {"score_threshold": "0.5"}, "green"
        )
    assert done["model"].startswith("onnxruntime/yolo:grid.onnx@sha256:")
    assert len(frames) == 24
    # The squares the green disc fills change as it moves.
    assert len({json.dumps(f["objects"]) for f in frames}) > 1


@pytest.mark.slow
def test_a_job_on_the_real_ssd_equals_predict_and_filters_by_its_labels(
    testdata: SharedData, tmp_path, monkeypatch, workers_factory
):
    catalog = ssd_catalog(testdata, tmp_path / "models.toml", backend="onnxruntime", name="ssd")
    config = base_config(tmp_path, DETECTOR_MODELS=str(catalog), DETECTOR_DEVICE="cpu", CHUNK_FRAMES=4)
    # Every 4th frame of the first 4.8 s: twelve frames, with people, parked cars and more.
    options = {"frame_stride": "4", "end": "4.8", "score_threshold": "0.4"}
    with workers_factory(config, models=("ssd",)) as workers:
        done, frames = _run_and_compare(
            monkeypatch, tmp_path, config, workers, testdata.video, "ssd", options, "person"
        )
    assert done["model"].startswith("onnxruntime/ssd:ssd_mobilenet_v2_coco.onnx@sha256:")
    assert [f["frame"] for f in frames] == list(range(0, 48, 4))
    assert all(f["objects"] for f in frames), "people on every frame"

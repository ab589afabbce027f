"""A custom Detectron2 model: its own config file, weights file and labels.

The model is a three-class Faster R-CNN on a ResNet-18 FPN, built from a config
the test writes (128 px input), with seeded random weights saved to a ``.pth``
file the way a trained model's would be, and declared in a DETECTOR_MODELS
catalog with a labels file of three names. It reports those names and no
others: through the predictor, `detector predict`, GET /api/models and GET
/api/labels (tests/pipeline/test_detectron2_pipeline.py runs a job of it). A
labels file that names another number of classes than the config is refused
when the catalog is loaded, naming the table.
"""

# ruff: noqa: E402  (Detectron2 is imported after require_detectron2)
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import base_config, require_detectron2

require_detectron2()  # before the imports below, which need Detectron2

from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer

from detector.app import create_app
from detector.cli import main
from detector.config import ConfigError
from detector.detection import DetectorSettings, build_predictor
from detector.detection.catalog import CatalogError, load_catalog
from detector.detection.detectron2_backend import Detectron2Predictor
from detector.detection.labels import LabelsError
from detector.video.synthetic import frame_image, make_video
from tests.conftest import Auth

# Detectron2's anchor generator calls torch.meshgrid without `indexing`.
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")

NAMES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class CustomModel:
    """A three-class Detectron2 model's files, all in one folder."""

    folder: Path
    config: Path
    weights: Path
    labels: Path


def three_class_config(path: Path, dataset: str = "()") -> Path:
    """A Faster R-CNN R18-FPN config for three classes at a 128 px input, written to ``path``."""
    path.write_text(
        f'_BASE_: "{model_zoo.get_config_file("Base-RCNN-FPN.yaml")}"\n'
        "MODEL:\n"
        "  RESNETS:\n    DEPTH: 18\n    RES2_OUT_CHANNELS: 64\n"
        "  FPN:\n    OUT_CHANNELS: 64\n"
        "  RPN:\n    PRE_NMS_TOPK_TEST: 300\n    POST_NMS_TOPK_TEST: 50\n"
        "  ROI_BOX_HEAD:\n    FC_DIM: 128\n"
        "  ROI_HEADS:\n    NUM_CLASSES: 3\n"
        "INPUT:\n  MIN_SIZE_TEST: 128\n  MAX_SIZE_TEST: 224\n"
        f"DATASETS:\n  TEST: {dataset}\n"
    )
    return path


def make_three_class_model(folder: Path) -> CustomModel:
    """The config, a weights file (seeded random weights, saved by Detectron2's
    checkpointer as training would) and a labels file of `NAMES`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = three_class_config(folder / "shapes.yaml")
    predictor = build_predictor(
        DetectorSettings(backend="detectron2", model=str(config), weights="random", seed=11, device="cpu")
    )
    assert isinstance(predictor, Detectron2Predictor)
    DetectionCheckpointer(predictor.model, save_dir=str(folder)).save("shapes")
    labels = folder / "labels.txt"
    labels.write_text("".join(f"{name}\n" for name in NAMES))
    return CustomModel(folder, config, folder / "shapes.pth", labels)


def catalog_file(model: CustomModel, labels: str = '"labels.txt"', name: str = "shapes") -> Path:
    """A DETECTOR_MODELS file beside the model's files: the torchvision default and the
    custom model as ``name``, its labels path relative to the file."""
    path = model.folder / f"models-{name}.toml"
    path.write_text(
        'default = "fast"\n\n'
        '[models.fast]\nmodel = "fasterrcnn_mobilenet_v3_large_320_fpn"\nweights = "random"\n\n'
        f'[models.{name}]\nbackend = "detectron2"\nmodel = "{model.config}"\n'
        f'weights = "{model.weights}"\nlabels = {labels}\ndevice = "cpu"\nbatch_size = 4\n'
    )
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> CustomModel:
    return make_three_class_model(tmp_path_factory.mktemp("shapes"))


def found_labels(found: Any) -> set[tuple[int, str]]:
    return {(o["class_id"], o["label"]) for detections in found for o in detections.to_objects()}


def test_the_model_reports_its_three_labels(model: CustomModel):
    settings = load_catalog({"DETECTOR_MODELS": str(catalog_file(model))}).settings("shapes")
    assert settings.labels == str(model.labels)
    predictor = build_predictor(settings)
    assert isinstance(predictor, Detectron2Predictor)
    assert predictor.labels == list(NAMES)
    assert predictor.name.startswith(f"detectron2/{model.config}@sha256:")
    frames = [frame_image(i * 7, 160, 120) for i in range(4)]
    # Random weights spread objects over every class: each id has its own name.
    assert found_labels(predictor.predict(frames, 0.0)) == set(enumerate(NAMES))


def test_an_inline_labels_list_works_as_a_file(model: CustomModel):
    inline = '["a", "b", "c"]'
    settings = load_catalog({"DETECTOR_MODELS": str(catalog_file(model, inline, "inline"))}).settings(
        "inline"
    )
    assert settings.labels == ("a", "b", "c")
    predictor = build_predictor(settings)
    frames = [frame_image(i * 7, 160, 120) for i in range(4)]
    assert found_labels(predictor.predict(frames, 0.0)) == {(0, "a"), (1, "b"), (2, "c")}


def test_a_labels_file_of_another_length_is_refused_at_start_naming_the_table(model: CustomModel):
    four = model.folder / "four-labels.txt"
    four.write_text("circle\nsquare\ntriangle\nstar\n")
    models = catalog_file(model, f'"{four.name}"', "wrong")
    with pytest.raises(CatalogError) as error:
        load_catalog({"DETECTOR_MODELS": str(models)})
    message = str(error.value)
    assert "[models.wrong]" in message and str(four) in message
    assert "names 4 classes" in message and "MODEL.ROI_HEADS.NUM_CLASSES 3" in message

    # The service refuses to start on it, and so does `detector predict`.
    with pytest.raises(ConfigError, match=r"\[models\.wrong\]"):
        create_app(base_config(model.folder / "app", DETECTOR_MODELS=str(models)))
    video = make_video(model.folder / "clip.mp4", frames=4, width=160, height=120, fps=4)
    result = CliRunner(env={"DETECTOR_MODELS": str(models)}).invoke(main, ["predict", str(video)])
    assert result.exit_code != 0 and "[models.wrong]" in result.output


def test_a_config_whose_dataset_names_other_classes_needs_labels(model: CustomModel, tmp_path: Path):
    # Based on a COCO config, the model's test set would name 80 classes for its 3.
    config = three_class_config(tmp_path / "coco-based.yaml", dataset='("coco_2017_val",)')
    settings = DetectorSettings(
        backend="detectron2", model=str(config), weights=str(model.weights), device="cpu"
    )
    with pytest.raises(LabelsError, match="coco_2017_val names 80 classes: declare the model's labels"):
        build_predictor(settings)
    with_labels = build_predictor(DetectorSettings(**{**settings.__dict__, "labels": str(model.labels)}))
    assert isinstance(with_labels, Detectron2Predictor) and with_labels.labels == list(NAMES)


def test_detector_predict_reports_the_three_labels(model: CustomModel, monkeypatch: pytest.MonkeyPatch):
    video = make_video(model.folder / "predict.mp4", frames=6, width=160, height=120, fps=6)
    out = model.folder / "predict.json"
    monkeypatch.setenv("DETECTOR_MODELS", str(catalog_file(model)))
    result = CliRunner().invoke(
        main, ["predict", str(video), "--model", "shapes", "--score-threshold", "0.05", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    frames = json.loads(out.read_text())["frames"]
    assert [f["frame"] for f in frames] == list(range(6))
    assert {(o["class_id"], o["label"]) for f in frames for o in f["objects"]} == set(enumerate(NAMES))

    # --classes takes the model's own names, and refuses another model's.
    result = CliRunner().invoke(main, ["predict", str(video), "--model", "shapes", "--classes", "person"])
    assert result.exit_code != 0 and "person" in result.output


def test_the_api_lists_the_models_labels(model: CustomModel, tmp_path: Path):
    from detector.db.migrate import upgrade

    config = base_config(tmp_path, DETECTOR_MODELS=str(catalog_file(model)))
    Path(config["DATA_DIR"]).mkdir(parents=True)
    upgrade(config["DATABASE_URL"])
    client = create_app(config).test_client()
    headers = Auth(client).headers()
    listed = {m["name"]: m for m in client.get("/api/models", headers=headers).json["models"]}
    shapes = listed["shapes"]
    assert shapes["labels"] == list(NAMES) and shapes["backend"] == "detectron2"
    assert shapes["model"] == str(model.config) and shapes["weights"].startswith("sha256:")
    assert "person" in listed["fast"]["labels"]
    labels = client.get("/api/labels?model=shapes", headers=headers).json
    assert labels["labels"] == [{"class_id": i, "label": name} for i, name in enumerate(NAMES)]
    assert labels["model"] == shapes["identity"]


def test_a_retinanet_counts_its_classes_in_its_own_key():
    from detector.detection.detectron2_backend import config_labels

    retinanet = "COCO-Detection/retinanet_R_50_FPN_3x.yaml"
    with pytest.raises(
        LabelsError, match=r"the labels list names 2 classes, but \S+ has MODEL\.RETINANET\.NUM_CLASSES 80"
    ):
        config_labels(DetectorSettings(backend="detectron2", model=retinanet, labels=("a", "b")))
    # A zoo config's own dataset names as many classes as it has (LVIS v0.5: 1230).
    lvis = "LVISv0.5-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
    assert len(config_labels(DetectorSettings(backend="detectron2", model=lvis))) == 1230

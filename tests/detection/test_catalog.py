"""The deployment's models by name (detector.detection.catalog): DETECTOR_MODELS."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.detection.base import DetectorSettings
from detector.detection.catalog import IMPLICIT_MODEL, CatalogError, UnknownModel, load_catalog
from detector.runtime import queues

BASE = {
    "DETECTOR_BACKEND": "torchvision",
    "DETECTOR_MODEL": None,
    "DETECTOR_WEIGHTS": "default",
    "DETECTOR_DEVICE": "cpu",
    "DETECTOR_BATCH_SIZE": 4,
    "DETECTOR_MIN_SCORE": 0.1,
    "DETECTOR_SEED": 3,
}

TWO_MODELS = """
default = "accurate"

[models.fast]
model = "fasterrcnn_mobilenet_v3_large_320_fpn"
weights = "random"

[models.accurate]
backend = "detectron2"
model = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
device = "cuda"
batch_size = 8
"""


def _write(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return {**BASE, "DETECTOR_MODELS": str(path)}


def test_without_a_file_there_is_one_model_made_of_the_detector_settings():
    catalog = load_catalog(BASE)
    assert list(catalog) == [IMPLICIT_MODEL] and catalog.default == IMPLICIT_MODEL
    assert catalog.settings(None) == DetectorSettings.from_config(BASE)
    assert IMPLICIT_MODEL == queues.IMPLICIT_MODEL  # the queue side knows the same name


def test_a_file_declares_named_models_in_order_and_tables_inherit_the_rest(tmp_path):
    catalog = load_catalog(_write(tmp_path, TWO_MODELS))
    assert list(catalog) == ["fast", "accurate"]
    assert catalog.default == "accurate"
    fast, accurate = catalog.settings("fast"), catalog.settings("accurate")
    assert (fast.backend, fast.model, fast.weights) == (
        "torchvision",
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "random",
    )
    # What the table leaves out comes from DETECTOR_*.
    assert (fast.device, fast.batch_size, fast.min_score, fast.seed) == ("cpu", 4, 0.1, 3)
    assert (accurate.backend, accurate.device, accurate.batch_size) == ("detectron2", "cuda", 8)
    assert catalog.settings(None) == accurate and catalog.resolve("") == "accurate"


def test_the_first_model_is_the_default_when_the_file_names_none(tmp_path):
    catalog = load_catalog(_write(tmp_path, TWO_MODELS.replace('default = "accurate"', "")))
    assert catalog.default == "fast"


def test_an_unknown_name_lists_the_valid_ones(tmp_path):
    catalog = load_catalog(_write(tmp_path, TWO_MODELS))
    with pytest.raises(UnknownModel, match="model must be one of fast, accurate; got 'slow'"):
        catalog.resolve("slow")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models]\n", "declares no"),
        ('[models.Fast]\nmodel = "x"\n', "must be 1-32 lower-case"),
        ("[models.fast]\nbackend = 'torchvision'\ncolour = 'red'\n", "unknown key 'colour'"),
        ("[models.fast]\nbackend = 'tensorflow'\n", r"\[models.fast\]: DETECTOR_BACKEND must be one of"),
        ("[models.fast]\nbatch_size = 0\n", "DETECTOR_BATCH_SIZE must be at least 1"),
        ("default = 'slow'\n[models.fast]\nbackend = 'torchvision'\n", "default 'slow' is not one of fast"),
        ("extra = 1\n[models.fast]\nbackend = 'torchvision'\n", "unknown key 'extra'"),
        ("[models.fast\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_is_a_clear_error(tmp_path, text, message):
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, text))


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog({**BASE, "DETECTOR_MODELS": str(tmp_path / "absent.toml")})


def test_each_model_has_its_own_queue():
    assert queues.model_queue("fast") == "detector.fast"


def test_a_jobs_first_chunks_outrank_another_jobs_later_ones():
    priorities = [queues.chunk_priority(i) for i in range(600)]
    assert priorities[0] == queues.MAX_PRIORITY
    assert priorities == sorted(priorities, reverse=True)  # never rises along a job
    assert min(priorities) == 0 and max(priorities) <= queues.MAX_PRIORITY
    # A new job's first chunk goes before a running job's second; its second
    # before that job's fourth; ... (one step each time the index doubles).
    assert priorities[1] == priorities[2] == queues.MAX_PRIORITY - 1
    assert priorities[3] == queues.MAX_PRIORITY - 2
    assert priorities[99] < priorities[0] and priorities[99] == queues.MAX_PRIORITY - 6


def test_the_shipped_example_file_is_a_valid_catalog():
    example = Path(__file__).resolve().parents[2] / "docker" / "models.example.toml"
    catalog = load_catalog({**BASE, "DETECTOR_MODELS": str(example)})
    assert list(catalog) == ["fast", "accurate"] and catalog.default == "fast"
    assert catalog.settings("accurate").backend == "detectron2"


def test_a_file_model_table_parses_labels_input_and_relative_paths(tmp_path, monkeypatch):
    from detector.detection import catalog as catalog_module
    from detector.detection.base import InputSpec

    checked = []
    monkeypatch.setattr(catalog_module, "check_model_file", lambda name, settings: checked.append(name))
    text = """
[models.ssd]
file = "models/ssd.tflite"
family = "ssd"
labels = ["person", "bicycle"]
min_score = 0.3
[models.ssd.input]
size = [300, 200]
layout = "NHWC"
dtype = "uint8"
channels = "BGR"
scale = 1.0
mean = [0, 0, 0]
std = [1, 1, 1]
resize = "letterbox"
"""
    ssd = load_catalog(_write(tmp_path, text)).settings("ssd")
    assert checked == ["ssd"]
    assert (ssd.backend, ssd.file, ssd.family) == ("tflite", str(tmp_path / "models" / "ssd.tflite"), "ssd")
    assert ssd.labels == ("person", "bicycle") and ssd.min_score == 0.3
    assert ssd.input == InputSpec(
        size=(300, 200),
        layout="NHWC",
        dtype="uint8",
        channels="BGR",
        scale=1.0,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        resize="letterbox",
    )
    hash(ssd)  # predictors are cached by their settings


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('family = "yolo"', "family and input are for a model file: set file too"),
        ('file = "m.onnx"', "file needs a family"),
        ('file = "m.onnx"\nfamily = "rcnn"', "family must be one of ssd, yolo, detr"),
        ('backend = "torchvision"\nfile = "m.onnx"\nfamily = "ssd"', "a model file runs on backend"),
        ('backend = "tflite"', "the tflite backend runs a model file"),
        ('labels = ["a"]', "labels are for a model file or a Detectron2 model"),
        ('file = "m.onnx"\nfamily = "ssd"\nlabels = []', "labels must not be an empty list"),
        ('file = "m.onnx"\nfamily = "ssd"\ninput = {size = [0, 3]}', r"input.size must be \[width, height\]"),
        (
            'file = "m.onnx"\nfamily = "ssd"\ninput = {layout = "CHW"}',
            "input.layout must be one of NCHW, NHWC",
        ),
        ('file = "m.onnx"\nfamily = "ssd"\ninput = {colour = "RGB"}', "input has unknown key 'colour'"),
        ('file = "m.onnx"\nfamily = "ssd"\ninput = {std = [1, 0, 1]}', "input.std must be positive"),
    ],
)
def test_bad_file_model_tables_are_refused_naming_the_table(tmp_path, table, message):
    with pytest.raises(CatalogError, match=rf"\[models.mine\]: .*{message}"):
        load_catalog(_write(tmp_path, f"[models.mine]\n{table}\n"))

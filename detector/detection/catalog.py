"""The models a deployment offers, by name: which one a job runs is the job's choice.

``DETECTOR_MODELS`` names a TOML file that declares them, one table each, and
which is the default::

    default = "fast"

    [models.fast]
    backend = "torchvision"
    model = "fasterrcnn_mobilenet_v3_large_320_fpn"

    [models.accurate]
    backend = "detectron2"
    model = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
    device = "cuda"
    batch_size = 8

A table's keys are those of `DetectorSettings` (backend, model, weights,
device, batch_size, streams, min_score, seed, cache_dir, file, family, labels, input,
precision, calibration); a key it leaves out takes the ``DETECTOR_*`` setting. Without ``DETECTOR_MODELS``
the deployment has one model, ``default``, made of the ``DETECTOR_*`` settings
alone.

A model from a file (docs/models.md) names it, its family and its labels::

    [models.ssd]
    backend = "onnxruntime"      # onnxruntime | openvino | tflite
    file = "/models/ssd_mobilenet_v2_coco.onnx"
    family = "ssd"               # ssd | yolo | detr
    labels = "/models/coco_labels.txt"
    [models.ssd.input]
    size = [300, 300]

A model on OpenVINO may opt in to 8-bit integers: ``precision = "int8"`` and
``calibration = "<a video or a folder of frames>"`` (``detector.detection.quantize``).

A relative ``file``, ``labels`` or ``calibration`` path is relative to the TOML file's folder; a
table with a ``file`` and no ``backend`` runs on ``tflite`` for a ``.tflite``
file, else on ``onnxruntime``. Loading the catalog checks every model file: it
exists, opens, and its inputs and outputs fit its family, labels and input
(``detector.detection.families.open_file_model``), so a process with a bad
file stops at start with a message naming the table.

A Detectron2 model's ``labels`` must name as many classes as its config's
``NUM_CLASSES``: where Detectron2 is installed, loading the catalog reads the
config to check it (`check_detectron2_labels`).

This module imports neither torch nor a backend, but for that check: the API reads the catalog.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from detector.detection.base import DetectorSettings, WeightsError

#: The model's name when a deployment declares none (DETECTOR_MODELS unset); the
#: same as detector.runtime.queues.IMPLICIT_MODEL (tests/detection check it).
IMPLICIT_MODEL = "default"

#: A model's name: it becomes part of a queue's name and of URLs.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

_KEYS = tuple(f.name for f in fields(DetectorSettings))


class CatalogError(ValueError):
    """DETECTOR_MODELS cannot be used; the message says what to change."""


class UnknownModel(ValueError):
    """A job asked for a model the deployment does not declare."""


@dataclass(frozen=True)
class ModelCatalog:
    """The deployment's models in their declared order, and the default's name."""

    models: Mapping[str, DetectorSettings]
    default: str

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def resolve(self, name: str | None) -> str:
        """The name of the model a job asks for (None or "": the default).

        Raises:
            UnknownModel: no model of that name; the message lists the valid ones.
        """
        if name is None or not str(name).strip():
            return self.default
        name = str(name).strip()
        if name not in self.models:
            raise UnknownModel(f"model must be one of {', '.join(self.models)}; got {name[:40]!r}")
        return name

    def settings(self, name: str | None) -> DetectorSettings:
        """How to build the model ``name`` (None: the default).

        Raises:
            UnknownModel: no model of that name.
        """
        return self.models[self.resolve(name)]


def load_catalog(config: Mapping[str, Any]) -> ModelCatalog:
    """The catalog ``config`` declares (see the module's docstring).

    Raises:
        CatalogError: the file is missing or unreadable, or declares a bad name,
            key or value, or a default it does not declare.
    """
    base = DetectorSettings.from_config(config)
    source = config.get("DETECTOR_MODELS")
    if not source:
        return ModelCatalog(models={IMPLICIT_MODEL: base}, default=IMPLICIT_MODEL)
    path = Path(str(source)).expanduser()
    try:
        declared = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CatalogError(f"DETECTOR_MODELS: cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"DETECTOR_MODELS: {path} is not valid TOML: {exc}") from None
    return catalog_from(declared, config, where=str(path), folder=path.parent)


def catalog_from(
    declared: Mapping[str, Any],
    config: Mapping[str, Any],
    where: str,
    folder: Path | None = None,
    check_files: bool = True,
) -> ModelCatalog:
    """The catalog of a parsed DETECTOR_MODELS file; ``config`` gives the settings a table
    leaves out, ``folder`` is where relative ``file`` and ``labels`` paths start (None:
    the working directory). With ``check_files``, every model file is checked
    (`check_model_file`)."""
    tables = declared.get("models")
    if not isinstance(tables, dict) or not tables:
        raise CatalogError(f"DETECTOR_MODELS: {where} declares no [models.<name>] table")
    unknown_top = set(declared) - {"models", "default"}
    if unknown_top:
        raise CatalogError(f"DETECTOR_MODELS: {where}: unknown key {sorted(unknown_top)[0]!r}")
    models: dict[str, DetectorSettings] = {}
    for name, table in tables.items():
        if not NAME.match(name):
            raise CatalogError(
                f"DETECTOR_MODELS: model name {name!r} must be 1-32 lower-case letters, digits, - or _"
            )
        if not isinstance(table, dict):
            raise CatalogError(f"DETECTOR_MODELS: [models.{name}] must be a table")
        if unknown := sorted(set(table) - set(_KEYS)):
            raise CatalogError(
                f"DETECTOR_MODELS: [models.{name}] has unknown key {unknown[0]!r}; keys: {', '.join(_KEYS)}"
            )
        table = _file_paths(table, folder)
        own = {f"DETECTOR_{key.upper()}": value for key, value in table.items()}
        try:
            models[name] = DetectorSettings.from_config({**config, **own})
        except (TypeError, ValueError) as exc:
            raise CatalogError(f"DETECTOR_MODELS: [models.{name}]: {exc}") from None
        if check_files and models[name].is_file_model:
            check_model_file(name, models[name])
        if check_files and models[name].calibration is not None:
            check_calibration(name, models[name])
        elif check_files and models[name].backend == "detectron2" and models[name].labels is not None:
            check_detectron2_labels(name, models[name])
    default = declared.get("default", next(iter(models)))
    if default not in models:
        raise CatalogError(f"DETECTOR_MODELS: default {default!r} is not one of {', '.join(models)}")
    return ModelCatalog(models=models, default=default)


def _file_paths(table: Mapping[str, Any], folder: Path | None) -> dict[str, Any]:
    """The table with ``file`` and a ``labels`` file made absolute from ``folder``, and
    for a model file without a ``backend`` the one its file type runs on."""
    table = dict(table)
    for key in ("file", "labels", "calibration"):
        value = table.get(key)
        if isinstance(value, str) and value.strip():
            path = Path(value).expanduser()
            if not path.is_absolute() and folder is not None:
                path = folder / path
            table[key] = str(path)
    if isinstance(table.get("file"), str) and "backend" not in table:
        table["backend"] = "tflite" if table["file"].lower().endswith(".tflite") else "onnxruntime"
    return table


def check_model_file(name: str, settings: DetectorSettings) -> None:
    """Check the model file of the table ``name``: it exists, opens, and fits its family,
    labels and input. Reads the file's description only (no torch, nothing run).

    Raises:
        CatalogError: it does not; the message names the table and says what is wrong.
    """
    from detector.detection.families import LabelsError, ModelFileError, open_file_model

    try:
        open_file_model(settings)
    except (ModelFileError, LabelsError) as exc:
        raise CatalogError(f"DETECTOR_MODELS: [models.{name}]: {exc}") from None


def check_calibration(name: str, settings: DetectorSettings) -> None:
    """Check the calibration frames of the table ``name`` (``precision = "int8"``): a
    video file, or a folder with images.

    Raises:
        CatalogError: they are not there; the message names the table.
    """
    from detector.detection.identity import calibration_files

    assert settings.calibration is not None
    try:
        calibration_files(Path(settings.calibration))
    except WeightsError as exc:
        raise CatalogError(f"DETECTOR_MODELS: [models.{name}]: {exc}") from None


def check_detectron2_labels(name: str, settings: DetectorSettings) -> None:
    """Check the labels the Detectron2 model of the table ``name`` declares: they can be
    read and name as many classes as its config's ``NUM_CLASSES``. Only where Detectron2
    is installed (it reads the config); an API without it leaves the check to the
    detector workers, which load the same catalog at start.

    Raises:
        CatalogError: they do not, or the config is unknown; the message names the table.
    """
    if importlib.util.find_spec("detectron2") is None:
        return
    from detector.detection.registry import detectron2_config_labels

    try:
        detectron2_config_labels(settings)
    except ImportError as exc:
        raise CatalogError(f"DETECTOR_MODELS: [models.{name}]: Detectron2 does not import ({exc})") from None
    except ValueError as exc:
        raise CatalogError(f"DETECTOR_MODELS: [models.{name}]: {exc}") from None


def input_size(settings: DetectorSettings) -> tuple[int, int] | None:
    """The ``(width, height)`` a model file takes its frames at; None for a built-in model.

    Raises:
        ValueError: the file cannot be read or does not fit its family any more.
    """
    if not settings.is_file_model:
        return None
    from detector.detection.families import open_file_model

    fmt = open_file_model(settings).input
    return fmt.width, fmt.height

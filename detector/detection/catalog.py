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
device, batch_size, min_score, seed, cache_dir); a key it leaves out takes the
``DETECTOR_*`` setting. Without ``DETECTOR_MODELS`` the deployment has one
model, ``default``, made of the ``DETECTOR_*`` settings alone.

This module imports neither torch nor a backend: the API reads the catalog.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from detector.detection.base import DetectorSettings

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
    return catalog_from(declared, config, where=str(path))


def catalog_from(declared: Mapping[str, Any], config: Mapping[str, Any], where: str) -> ModelCatalog:
    """The catalog of a parsed DETECTOR_MODELS file; ``config`` gives the settings a table leaves out."""
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
        own = {f"DETECTOR_{key.upper()}": value for key, value in table.items()}
        try:
            models[name] = DetectorSettings.from_config({**config, **own})
        except (TypeError, ValueError) as exc:
            raise CatalogError(f"DETECTOR_MODELS: [models.{name}]: {exc}") from None
    default = declared.get("default", next(iter(models)))
    if default not in models:
        raise CatalogError(f"DETECTOR_MODELS: default {default!r} is not one of {', '.join(models)}")
    return ModelCatalog(models=models, default=default)

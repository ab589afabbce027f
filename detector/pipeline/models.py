"""The deployment's model catalog, read once per app, and the model a job runs."""

from __future__ import annotations

from flask import current_app

from detector.detection.base import DetectorSettings
from detector.detection.catalog import ModelCatalog, load_catalog


def current_catalog() -> ModelCatalog:
    """The catalog of the app in whose context this runs, read on first use.

    Raises:
        CatalogError: DETECTOR_MODELS cannot be used.
        ValueError: the DETECTOR_* settings name no model this service knows.
    """
    extensions = current_app.extensions
    if "models" not in extensions:
        extensions["models"] = load_catalog(current_app.config)
    catalog: ModelCatalog = extensions["models"]
    return catalog


def job_model_settings(model_key: str | None) -> DetectorSettings:
    """How to build the model a job chose (None, a job from before models had names: the default)."""
    return current_catalog().settings(model_key)

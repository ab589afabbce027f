"""What the `detector` subcommands share: settings, and the model's allocator."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import click

from detector.config import ConfigError, Settings, load_config, load_env_file
from detector.detection.base import DetectorSettings
from detector.detection.catalog import ModelCatalog, UnknownModel, load_catalog
from detector.runtime.allocator import AllocatorError, model_env, restart_with_model_allocator


def config() -> dict[str, Any]:
    """The service's settings, with any error said as a command-line error."""
    try:
        return load_config()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def settings() -> Settings:
    """The service's settings, typed."""
    try:
        return Settings.from_config(config())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def catalog(overrides: Mapping[str, Any] | None = None) -> ModelCatalog:
    """The deployment's models (DETECTOR_MODELS), with any error said as a command-line
    error; ``overrides`` replace settings."""
    try:
        return load_catalog({**config(), **(overrides or {})})
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def model_settings(name: str | None, overrides: Mapping[str, Any] | None = None) -> DetectorSettings:
    """How to build the model ``name`` of the catalog (None: the default); ``overrides``
    replace settings."""
    try:
        return catalog(overrides).settings(name)
    except UnknownModel as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None


def process_env() -> dict[str, str]:
    """The environment for a process that runs the model (detector.runtime.allocator)."""
    load_env_file()  # DETECTOR_ALLOCATOR may be set in .env
    try:
        return model_env(os.environ)
    except AllocatorError as exc:
        raise click.ClickException(str(exc)) from exc


#: What `local_backend` sets where it applies: torchvision's models as their ONNX export
#: on OpenVINO, on the CPU.
LOCAL_CPU_BACKEND = {"DETECTOR_BACKEND": "openvino", "DETECTOR_DEVICE": "cpu"}


def local_backend() -> dict[str, str]:
    """The backend of the commands that run the model on this machine (`detector up`,
    `detector predict`) where the configuration leaves it to them: `LOCAL_CPU_BACKEND`,
    or nothing to change.

    It applies where nothing names a backend (no ``DETECTOR_BACKEND`` in the
    environment or ``.env``, no ``DETECTOR_MODELS`` catalog), ``DETECTOR_DEVICE``
    is ``auto`` or ``cpu``, this machine has no CUDA GPU for ``auto``, and
    OpenVINO is installed. Then torchvision's model runs on OpenVINO: the same
    network and weights, the same objects within float32 rounding, about twice
    as fast as eager PyTorch on the CPU (docs/performance.md, "Streams").
    Anything named is kept: ``DETECTOR_BACKEND=torchvision`` runs eager
    PyTorch. A deployment of several hosts names its backends (the API records
    a job's model before any worker sees it), as the compose files do.
    """
    import importlib.util

    load_env_file()
    if os.environ.get("DETECTOR_BACKEND") or os.environ.get("DETECTOR_MODELS"):
        return {}
    device = (os.environ.get("DETECTOR_DEVICE") or "auto").strip().lower()
    if device not in ("auto", "cpu") or importlib.util.find_spec("openvino") is None:
        return {}
    if device == "auto":
        from detector.detection.devices import cuda_device_count

        if cuda_device_count():
            return {}
    return dict(LOCAL_CPU_BACKEND)


def on_model_allocator() -> None:
    """Restart this command on tcmalloc when it is not on it yet (detector.runtime.allocator)."""
    restart_with_model_allocator(process_env())

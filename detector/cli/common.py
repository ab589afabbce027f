"""What the `detector` subcommands share: settings, and the model's allocator."""

from __future__ import annotations

import os
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


def catalog() -> ModelCatalog:
    """The deployment's models (DETECTOR_MODELS), with any error said as a command-line error."""
    try:
        return load_catalog(config())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def model_settings(name: str | None) -> DetectorSettings:
    """How to build the model ``name`` of the catalog (None: the default)."""
    try:
        return catalog().settings(name)
    except UnknownModel as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None


def process_env() -> dict[str, str]:
    """The environment for a process that runs the model (detector.runtime.allocator)."""
    load_env_file()  # DETECTOR_ALLOCATOR may be set in .env
    try:
        return model_env(os.environ)
    except AllocatorError as exc:
        raise click.ClickException(str(exc)) from exc


def on_model_allocator() -> None:
    """Restart this command on tcmalloc when it is not on it yet (detector.runtime.allocator)."""
    restart_with_model_allocator(process_env())

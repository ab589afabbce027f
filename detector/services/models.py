"""The deployment's models as the API shows them, and the model a job asks for."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detector.detection import WeightsError, model_identity
from detector.detection.base import DetectorSettings
from detector.detection.catalog import ModelCatalog, input_size
from detector.detection.identity import file_checksum, file_sha256
from detector.detection.labels import label_set
from detector.pipeline.models import current_catalog
from detector.pipeline.workers import consumers
from detector.runtime.queues import model_queue
from detector.services.errors import InvalidInput, Misconfigured


def catalog() -> ModelCatalog:
    """The deployment's models.

    Raises:
        Misconfigured: DETECTOR_MODELS or the DETECTOR_* settings cannot be used.
    """
    try:
        return current_catalog()
    except ValueError as exc:
        raise Misconfigured(f"the models cannot be read: {exc}") from None


def choose(name: Any) -> str:
    """The name of the model a job's ``model`` field asks for (absent: the default).

    A name given must be one of the catalog's names exactly, as the API document's
    enum of them says (an empty or space-padded name is not one).

    Raises:
        InvalidInput: no model of that name; the message lists the valid ones.
    """
    models = catalog()
    if name is None:
        return models.default
    if str(name) not in models.models:
        raise InvalidInput(
            f"model must be one of {', '.join(models)}; got {str(name)[:40]!r} (GET /api/models)"
        )
    return str(name)


def identity(name: str | None = None) -> str:
    """The exact model and weights ``name`` (None: the default) runs, as a job records it.

    Raises:
        Misconfigured: the weights cannot be identified here (a local file the API cannot read).
    """
    try:
        return model_identity(catalog().settings(name))
    except (WeightsError, ValueError) as exc:
        raise Misconfigured(
            f"the model cannot be identified: {exc} The API must see the same "
            f"model settings (DETECTOR_MODELS, DETECTOR_*) and weights files as the detector workers."
        ) from None


def labels(name: str | None = None) -> Mapping[int, str]:
    """Class id -> label of every class the model ``name`` (None: the default) reports.

    Raises:
        Misconfigured: the settings name no model this service knows.
    """
    try:
        return label_set(catalog().settings(name))
    except (ValueError, ImportError) as exc:
        raise Misconfigured(f"the model's labels cannot be read: {exc}") from None


def listing() -> list[dict[str, Any]]:
    """Every model of the deployment, the default first: what it is, its weights'
    identity, its labels, and whether a worker serving it is online."""
    models = catalog()
    online = consumers()
    names = [models.default, *(n for n in models if n != models.default)]
    return [_model_dict(models, name, online) for name in names]


def _model_dict(models: ModelCatalog, name: str, online: dict[str, list[str]] | None) -> dict[str, Any]:
    settings = models.settings(name)
    queue = model_queue(name)
    error = None
    try:
        full = identity(name)
    except Misconfigured as exc:
        full, error = None, str(exc)
    checksum = None
    if settings.file is not None:  # the file's checksum, without the precision that follows it
        checksum = full.split("@", 1)[1].split("+", 1)[0] if full else None
    elif settings.weights not in ("default", "random") and "://" not in settings.weights:
        try:
            checksum = f"sha256:{file_checksum(Path(settings.weights).expanduser())}"
        except OSError:
            checksum = None
    return {
        "name": name,
        "default": name == models.default,
        "backend": settings.backend,
        "model": full.split("/", 1)[1].split("@", 1)[0] if full else settings.model,
        "weights": full.split("@", 1)[1] if full else settings.weights,
        "weights_checksum": checksum,
        "identity": full,
        "device": settings.device,
        "batch_size": settings.batch_size if isinstance(settings.batch_size, int) else None,
        "precision": settings.precision,
        "queue": queue,
        "labels": [labels(name)[i] for i in sorted(labels(name))],
        "online": None if online is None else bool(online.get(queue)),
        "workers": sorted(online.get(queue, [])) if online is not None else [],
        "error": error,
        **_file_dict(settings),
    }


def _file_dict(settings: DetectorSettings) -> dict[str, Any]:
    """What the API shows of a model file: its family, runtime, input size and file."""
    if settings.file is None:
        return {
            "family": None,
            "runtime": settings.backend,
            "input_size": None,
            "file": None,
            "file_sha256": None,
        }
    try:
        size = input_size(settings)
    except ValueError:  # the catalog checked it when loaded; the file changed since
        size = None
    try:
        sha256: str | None = file_sha256(Path(settings.file))
    except OSError:
        sha256 = None
    return {
        "family": settings.family,
        "runtime": settings.backend,
        "input_size": list(size) if size else None,
        "file": Path(settings.file).name,
        "file_sha256": sha256,
    }

"""The torchvision detection models, built from `DetectorSettings`.

Shared by the torchvision backend (which runs them in PyTorch) and the ONNX
export (which the onnxruntime and openvino backends run), so that both build
the same model with the same weights. torch is imported only when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from detector.detection.base import DetectorSettings
from detector.detection.identity import TORCHVISION_CHECKPOINTS, TORCHVISION_DEFAULT_MODEL
from detector.detection.weights import resolve_weights

if TYPE_CHECKING:
    import torch


def model_name(settings: DetectorSettings) -> str:
    """The torchvision model ``settings`` name.

    Raises:
        ValueError: an unknown model.
    """
    name = settings.model or TORCHVISION_DEFAULT_MODEL
    if name not in TORCHVISION_CHECKPOINTS:
        raise ValueError(
            f"unknown model {name!r} for the {settings.backend} backend; one of "
            f"{', '.join(TORCHVISION_CHECKPOINTS)}"
        )
    return name


def build_torch_model(settings: DetectorSettings) -> torch.nn.Module:
    """The eval-mode torchvision model of ``settings``, on the CPU, with its weights loaded.

    Raises:
        ValueError: an unknown model.
        WeightsError: the weights cannot be had.
    """
    import torch
    from torchvision.models import detection as tvd

    from detector.detection.random_weights import torchvision_random_init

    name = model_name(settings)
    checkpoint = resolve_weights(settings.weights, TORCHVISION_CHECKPOINTS[name], settings.cache_dir)
    torch.manual_seed(settings.seed)
    model = getattr(tvd, name)(
        weights=None,
        weights_backbone=None,
        num_classes=len(categories(name)),
        box_score_thresh=settings.min_score,
    )
    if checkpoint is None:
        torchvision_random_init(model, settings.seed)
    else:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state))
    return model.eval()


def categories(name: str) -> list[str]:
    """The labels of torchvision model ``name``, by class id: its COCO weights' categories."""
    from torchvision.models import get_model_weights

    return list(get_model_weights(name).COCO_V1.meta["categories"])  # type: ignore[attr-defined]

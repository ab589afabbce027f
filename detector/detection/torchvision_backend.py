"""Faster R-CNN from torchvision: the backend that runs anywhere (CPU default)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.models import detection as tvd

from detector.detection.base import DetectedObject, DetectorSettings, Predictor, to_objects
from detector.detection.weights import resolve_weights

# name -> (builder, pretrained COCO weights)
MODELS: dict[str, tuple[Callable[..., torch.nn.Module], Any]] = {
    "fasterrcnn_mobilenet_v3_large_fpn": (
        tvd.fasterrcnn_mobilenet_v3_large_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        tvd.fasterrcnn_mobilenet_v3_large_320_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
    ),
    "fasterrcnn_resnet50_fpn": (
        tvd.fasterrcnn_resnet50_fpn,
        tvd.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
    ),
    "fasterrcnn_resnet50_fpn_v2": (
        tvd.fasterrcnn_resnet50_fpn_v2,
        tvd.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    ),
}
DEFAULT_MODEL = "fasterrcnn_mobilenet_v3_large_fpn"


class TorchvisionPredictor(Predictor):
    """A torchvision COCO detector; input frames are BGR, the model wants RGB in [0, 1]."""

    def __init__(self, settings: DetectorSettings, device: str) -> None:
        model_name = settings.model or DEFAULT_MODEL
        if model_name not in MODELS:
            raise ValueError(f"unknown torchvision model {model_name!r}; one of {', '.join(MODELS)}")
        builder, pretrained = MODELS[model_name]
        self.name = f"torchvision/{model_name}"
        self.device = device
        self.batch_size = settings.batch_size
        self.labels: list[str] = list(pretrained.meta["categories"])

        checkpoint = resolve_weights(settings.weights, pretrained.url, settings.cache_dir)
        torch.manual_seed(settings.seed)
        model = builder(
            weights=None,
            weights_backbone=None,
            num_classes=len(self.labels),
            box_score_thresh=settings.min_score,
        )
        if checkpoint is None:
            seeded_random_init(model, settings.seed)
        else:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("model", state))
        self.model = model.eval().to(device)
        self._pin = device.startswith("cuda")

    @torch.inference_mode()
    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[list[DetectedObject]]:
        if not frames:
            return []
        if all(f.shape == frames[0].shape for f in frames):
            # One host-to-device copy for the whole batch.
            host = torch.from_numpy(np.stack(frames))
            if self._pin:
                host = host.pin_memory()
            batch = host.to(self.device, non_blocking=True)
            images = list(batch.permute(0, 3, 1, 2).flip(1).float().div_(255).unbind(0))
        else:
            images = [
                torch.from_numpy(f).to(self.device).permute(2, 0, 1).flip(0).float().div_(255) for f in frames
            ]
        outputs = self.model(images)
        return [
            to_objects(
                out["boxes"].cpu().numpy(),
                out["scores"].cpu().numpy(),
                out["labels"].cpu().numpy(),
                self.labels,
            )
            for out in outputs
        ]


@torch.no_grad()
def seeded_random_init(model: tvd.FasterRCNN, seed: int) -> None:
    """Make a randomly initialised Faster R-CNN give varied, deterministic detections.

    With PyTorch's default initialisation the backbone's activations shrink to
    nothing and every box gets the same score, which would make tests of the
    pipeline vacuous. So: batch-norm statistics and the FPN output scale are
    calibrated on seeded noise images (unit-variance features), the box head is
    re-initialised so its features keep their scale, and the classifier gets
    small weights so scores spread over (0, 1). Same seed, same weights, on any
    machine. For tests and benchmarks only: the detections mean nothing.
    """
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    calibration = [torch.rand(3, 240, 320, generator=generator) for _ in range(2)]
    model.eval()
    images, _ = model.transform(calibration)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    body: Any = model.backbone.body
    body.train()
    body(images.tensors)
    body.eval()
    features = model.backbone(images.tensors)
    fpn: Any = model.backbone.fpn
    for block, feature in zip(fpn.layer_blocks, features.values(), strict=False):
        conv: Any = block[0] if isinstance(block, nn.Sequential) else block
        scale = feature.std().item()
        conv.weight.div_(scale)
        if conv.bias is not None:
            conv.bias.div_(scale)
    torch.manual_seed(seed)
    head: Any = model.roi_heads.box_head
    predictor: Any = model.roi_heads.box_predictor
    for layer in (head.fc6, head.fc7):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    nn.init.normal_(predictor.cls_score.weight, std=0.02 / predictor.cls_score.in_features**0.5)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.bbox_pred.bias)

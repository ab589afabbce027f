"""Faster R-CNN from torchvision: the backend that runs anywhere (CPU default)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import cv2
import numpy as np
import torch
from torchvision.models import detection as tvd
from torchvision.models.detection.transform import GeneralizedRCNNTransform

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
        # On the CPU, frames are shrunk to the model's input size while still
        # 8-bit (see _shrink); on a GPU the device does it faster from the upload.
        self._shrink_first = device == "cpu"
        transform = cast(GeneralizedRCNNTransform, model.transform)
        self._input_short, self._input_long = int(transform.min_size[-1]), int(transform.max_size)

    def _shrink(self, frame: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The frame at the size the model's transform would resize it to, and the
        x and y factors back to the frame's pixels.

        The model turns every frame into floats at full size and then resizes
        it: at 1080p that is a 25 MB tensor per frame for a 320-pixel model.
        Resizing the 8-bit frame first (bilinear, like the model's own resize)
        ran a 1080p batch 1.4-1.8 times faster on 2 cores. Frames the model
        would enlarge are left as they are.
        """
        height, width = frame.shape[:2]
        scale = min(self._input_short / min(height, width), self._input_long / max(height, width))
        if scale >= 1.0:
            return frame, 1.0, 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR), width / size[0], height / size[1]

    @torch.inference_mode()
    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[list[DetectedObject]]:
        if not frames:
            return []
        sizes = [(f.shape[1], f.shape[0]) for f in frames]  # each original frame's width, height
        factors = [(1.0, 1.0)] * len(frames)
        if self._shrink_first:
            shrunk = [self._shrink(f) for f in frames]
            frames = [small for small, _, _ in shrunk]
            factors = [(fx, fy) for _, fx, fy in shrunk]
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
                _to_frame_pixels(out["boxes"].cpu().numpy(), factor, size),
                out["scores"].cpu().numpy(),
                out["labels"].cpu().numpy(),
                self.labels,
            )
            for out, factor, size in zip(outputs, factors, sizes, strict=True)
        ]


def _to_frame_pixels(boxes: np.ndarray, factor: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """Boxes found on a shrunk frame, in the original frame's pixels (inside it)."""
    (fx, fy), (width, height) = factor, size
    if fx == 1.0 and fy == 1.0:
        return boxes
    scaled = boxes * np.array([fx, fy, fx, fy], dtype=boxes.dtype)
    return np.clip(scaled, 0, [width, height, width, height]).astype(boxes.dtype)


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

"""Seeded random weights that make a model give varied, deterministic detections.

For tests and benchmarks: a model with PyTorch's default random weights gives
boxes that are all alike, which would make tests of the pipeline vacuous. The
functions here calibrate a randomly initialised torchvision Faster R-CNN or
Detectron2 model on seeded noise images instead. The detections mean nothing.

Detectron2 is imported only inside ``detectron2_random_init``, so torchvision-only
installs can import this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from torchvision.models.detection import FasterRCNN


@torch.no_grad()
def torchvision_random_init(model: FasterRCNN, seed: int) -> None:
    """Make a randomly initialised Faster R-CNN give varied, deterministic detections.

    With PyTorch's default initialisation the backbone's activations shrink to
    nothing and every box gets the same score, which would make tests of the
    pipeline vacuous. So: batch-norm statistics and the FPN output scale are
    calibrated on seeded noise images (unit-variance features), the box head is
    re-initialised so its features keep their scale, and the classifier gets
    small weights so scores spread over (0, 1). Same seed, same weights, on any
    machine. For tests and benchmarks only: the detections mean nothing.
    """
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


def detectron2_input_size(cfg: Any) -> tuple[int, int]:
    """``(height, width)`` a Detectron2 config's model sees a 4:3 frame at, rounded to
    multiples of 32: the size of the calibration images of `detectron2_random_init`."""
    short = cfg.INPUT.MIN_SIZE_TEST or 480
    long = min(short * 4 / 3, cfg.INPUT.MAX_SIZE_TEST or math.inf)
    return max(32, round(short / 32) * 32), max(32, round(long / 32) * 32)


@torch.no_grad()
def detectron2_random_init(
    model: nn.Module, seed: int, image_size: tuple[int, int] = (320, 448), spread: float = 1.5
) -> None:
    """Make a randomly initialised Detectron2 model give varied, deterministic detections.

    Detectron2's own initialisation is made for loading pretrained weights:
    its frozen batch norms are identities and the input is only mean-shifted
    (pixel std 1), so activations grow to hundreds through the ResNet, boxes
    come out degenerate and every score is 0 or 1. And the classifier's fixed
    per-class offset (the mean feature is large) makes every box the same
    class. So: each batch norm of the backbone gets the mean and variance of
    its input on seeded calibration images (unit-variance features), and
    each classifier layer (``cls_score``) is re-drawn, centred on the
    calibration features and scaled so its logits vary by ``spread`` from box
    to box, which spreads the scores over (0, 1). A sigmoid classifier
    (RetinaNet) keeps its prior bias.

    Same seed, same weights (up to float rounding) on any machine. For tests
    and benchmarks only: the detections mean nothing.

    Args:
        model: a model from ``build_model``, on the CPU.
        seed: the random seed.
        image_size: ``(height, width)`` of the calibration images: the size
            the model sees frames at, each a multiple of 32.
        spread: the standard deviation of the classifier's logits.
    """
    from detectron2.layers import FrozenBatchNorm2d

    generator = torch.Generator().manual_seed(seed)
    calibration = [
        {"image": image, "height": image.shape[1], "width": image.shape[2]}
        for image in _calibration_images(generator, image_size)
    ]
    model.eval()
    backbone = model.get_submodule("backbone")
    preprocess = cast(Callable[[list[dict[str, Any]]], Any], model.preprocess_image)

    norms = [
        m for m in backbone.modules() if isinstance(m, (FrozenBatchNorm2d, nn.modules.batchnorm._BatchNorm))
    ]
    hooks = [m.register_forward_pre_hook(_normalise_input) for m in norms]
    try:
        backbone(preprocess(calibration).tensor)
    finally:
        for hook in hooks:
            hook.remove()

    classifiers = [m for name, m in model.named_modules() if name.split(".")[-1] == "cls_score"]
    priors = {}
    for layer in classifiers:
        priors[layer] = float(layer.bias.mean()) if layer.bias is not None else 0.0
        nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.weight[0].numel()), generator=generator)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    logits: dict[nn.Module, list[torch.Tensor]] = {layer: [] for layer in classifiers}

    def keep_logits(layer: nn.Module, args: Any, output: Any) -> None:
        outs = output if isinstance(output, (list, tuple)) else [output]
        for out in outs:
            logits[layer].append(out.movedim(1, -1).reshape(-1, out.shape[1]) if out.dim() > 2 else out)

    hooks = [layer.register_forward_hook(keep_logits) for layer in classifiers]
    try:
        model(calibration)
    finally:
        for hook in hooks:
            hook.remove()
    for layer in classifiers:
        if not logits[layer]:
            continue
        rows = torch.cat(logits[layer])
        mean = rows.mean(0)
        scale = spread / float((rows - mean).std().clamp_min(1e-6))
        layer.weight.mul_(scale)
        if layer.bias is not None:
            layer.bias.copy_(priors[layer] - mean * scale)


def _normalise_input(module: Any, args: tuple[torch.Tensor, ...]) -> None:
    """Forward pre-hook: set a batch norm's statistics to those of its input."""
    x = args[0]
    module.running_mean.copy_(x.mean((0, 2, 3)))
    module.running_var.copy_(x.var((0, 2, 3), unbiased=False))
    if module.weight is not None:
        module.weight.fill_(1.0)
    if module.bias is not None:
        module.bias.zero_()


def _calibration_images(generator: torch.Generator, size: tuple[int, int]) -> list[torch.Tensor]:
    """Two seeded BGR float images of ``size``, each in four bands: pixel noise and flat patches.

    Flat patches, up to a quarter of the image high, matter: a model
    calibrated on pixel noise alone sees video frames (large flat areas,
    edges) as far out of range. Patch sizes follow the image size, so the
    calibration holds at the model's own input size.
    """
    height, width = size
    images = []
    for _ in range(2):
        bands = []
        for fraction in (0, 1 / 60, 1 / 15, 1 / 4):
            cell = max(1, round(height * fraction))
            band = height // 4
            coarse = torch.rand(1, 3, -(-band // cell), -(-width // cell), generator=generator) * 255
            bands.append(
                nn.functional.interpolate(coarse, scale_factor=cell, mode="nearest")[0, :, :band, :width]
            )
        images.append(torch.cat(bands, dim=1))
    return images

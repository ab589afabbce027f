"""Faster R-CNN from torchvision: the backend that runs anywhere (CPU default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import cv2
import numpy as np
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from detector.detection.base import DetectorSettings, Predictor, boxes_in_frame, stream_threads
from detector.detection.batching import frames_to_device
from detector.detection.detections import Detections
from detector.detection.identity import model_identity
from detector.detection.torchvision_models import build_torch_model, categories, model_name


class TorchvisionPredictor(Predictor):
    """A torchvision COCO detector; input frames are BGR, the model wants RGB in [0, 1].

    On the CPU a small model runs several batches side by side (``streams``),
    each forward pass in a thread of its own on one intra-op thread: eager
    PyTorch releases the GIL in its operators, and the 320 px models' operators
    are too small for two threads to share one well."""

    def __init__(self, settings: DetectorSettings, device: str) -> None:
        self.name = model_identity(settings)  # an unknown model or missing weights file: ValueError
        self.device = device
        self.labels: list[str] = categories(model_name(settings))
        model = build_torch_model(settings)
        self.model = model.to(device)
        # On the CPU, frames are shrunk to the model's input size while still
        # 8-bit (see _shrink); on a GPU the device does it faster from the upload.
        self._shrink_first = device == "cpu"
        transform = cast(GeneralizedRCNNTransform, model.transform)
        self._input_short, self._input_long = int(transform.min_size[-1]), int(transform.max_size)
        self.batch_size = settings.batch_size_on(device, (self._input_short, self._input_long))
        self.streams = settings.streams_on(device, (self._input_short, self._input_long))
        # Each stream's operators run on the thread that calls them, with this many
        # intra-op threads (on the CPU).
        self._threads = stream_threads(self.streams)

    def _before_run(self) -> None:
        # torch has one intra-op thread count for the whole process, and a worker may
        # hold predictors with other counts (MAX_LOADED_MODELS): set this one's first.
        # The stream threads start from it: each runs its forward passes on _threads.
        if self.device == "cpu" and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)

    def _shrink(self, frame: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The frame at the size the model's transform would resize it to, and the
        x and y factors back to the frame's pixels.

        The model turns every frame into floats at full size and then resizes
        it: for a large frame and a small model, most of that float tensor is
        thrown away. Resizing the 8-bit frame first (bilinear, like the model's
        own resize) is much cheaper on the CPU (docs/performance.md, "At
        1080p"). Frames the model would enlarge are left as they are.
        """
        height, width = frame.shape[:2]
        scale = min(self._input_short / min(height, width), self._input_long / max(height, width))
        if scale >= 1.0:
            return frame, 1.0, 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR), width / size[0], height / size[1]

    @torch.inference_mode()
    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        if not frames:
            return []
        sizes = [(f.shape[1], f.shape[0]) for f in frames]  # each original frame's width, height
        factors = [(1.0, 1.0)] * len(frames)
        if self._shrink_first:
            shrunk = [self._shrink(f) for f in frames]
            frames = [small for small, _, _ in shrunk]
            factors = [(fx, fy) for _, fx, fy in shrunk]
        # BGR uint8 to the RGB floats in [0, 1] the model wants.
        images = [image.flip(0).float().div_(255) for image in frames_to_device(frames, self.device)]
        outputs = self.model(images)
        return [
            Detections.from_model(
                boxes_in_frame(out["boxes"].cpu().numpy(), factor, size),
                out["scores"].cpu().numpy(),
                out["labels"].cpu().numpy(),
                self.labels,
            )
            for out, factor, size in zip(outputs, factors, sizes, strict=True)
        ]

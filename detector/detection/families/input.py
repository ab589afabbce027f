"""A file model's input: how a frame becomes the tensor the model wants, and how a
box found on that tensor goes back to the frame.

`InputFormat` is an `InputSpec` with every field decided (the catalog's
``input`` table, else what the file says, else the family's default);
`prepare` turns BGR frames into one batch and `Geometry` undoes the resize.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: The grey Ultralytics pads a letterboxed frame with.
LETTERBOX_PAD = 114


@dataclass(frozen=True)
class InputFormat:
    """Everything `prepare` needs, decided.

    Attributes:
        width, height: the model's input size in pixels.
        layout: ``NCHW`` or ``NHWC``.
        dtype: ``uint8``, ``float32`` or ``float16``.
        channels: ``RGB`` or ``BGR``.
        scale: multiplies the values after the cast.
        mean, std: per channel, ``(value * scale - mean) / std``.
        resize: ``stretch`` or ``letterbox``.
    """

    width: int
    height: int
    layout: str = "NCHW"
    dtype: str = "float32"
    channels: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "stretch"

    @property
    def shape(self) -> tuple[int, int, int]:
        """One frame's shape in ``layout`` (without the batch axis)."""
        if self.layout == "NCHW":
            return (3, self.height, self.width)
        return (self.height, self.width, 3)


@dataclass(frozen=True)
class Geometry:
    """Where a frame went in the model's input: resized by ``gain`` (x, y), then
    shifted by ``pad`` (left, top) pixels; the frame is ``size`` (width, height)."""

    gain: tuple[float, float]
    pad: tuple[float, float]
    size: tuple[int, int]

    def to_frame(self, boxes: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """``[N, 4]`` ``x1, y1, x2, y2`` boxes in input pixels, in the frame's pixels
        (padding taken off, resize undone, clipped to the frame)."""
        (gx, gy), (px, py), (width, height) = self.gain, self.pad, self.size
        out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - px) / gx
        out[:, [1, 3]] = (out[:, [1, 3]] - py) / gy
        return np.clip(out, 0, [width, height, width, height])


def _resized(frame: np.ndarray, fmt: InputFormat) -> tuple[np.ndarray, Geometry]:
    """The frame at the input size (stretched or letterboxed), and how it got there."""
    import cv2

    height, width = frame.shape[:2]
    if fmt.resize == "stretch":
        if (width, height) == (fmt.width, fmt.height):
            out = frame
        else:
            out = cv2.resize(frame, (fmt.width, fmt.height), interpolation=cv2.INTER_LINEAR)
        return out, Geometry((fmt.width / width, fmt.height / height), (0.0, 0.0), (width, height))
    # Ultralytics' LetterBox: one ratio for both axes, the rest padded evenly.
    ratio = min(fmt.width / width, fmt.height / height)
    new_w, new_h = round(width * ratio), round(height * ratio)
    if (new_w, new_h) != (width, height):
        frame = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (fmt.width - new_w) / 2, (fmt.height - new_h) / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    bottom, right = fmt.height - new_h - top, fmt.width - new_w - left
    out = cv2.copyMakeBorder(frame, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(LETTERBOX_PAD,) * 3)
    return out, Geometry((new_w / width, new_h / height), (float(left), float(top)), (width, height))


def prepare(frames: Sequence[np.ndarray], fmt: InputFormat) -> tuple[np.ndarray, list[Geometry]]:
    """BGR ``uint8`` ``(H, W, 3)`` frames as one ``[B, ...]`` batch in ``fmt``, and each
    frame's `Geometry`."""
    tensors, geometries = [], []
    for frame in frames:
        image, geometry = _resized(frame, fmt)
        if fmt.channels == "RGB":
            image = image[:, :, ::-1]
        tensors.append(image)
        geometries.append(geometry)
    batch = np.stack(tensors)
    if fmt.dtype == "uint8":
        out = np.ascontiguousarray(batch)
    else:
        values = batch.astype(np.float32)
        if fmt.scale != 1.0:
            values *= np.float32(fmt.scale)
        if fmt.mean != (0.0, 0.0, 0.0):
            values -= np.asarray(fmt.mean, dtype=np.float32)
        if fmt.std != (1.0, 1.0, 1.0):
            values /= np.asarray(fmt.std, dtype=np.float32)
        out = values.astype(np.float16) if fmt.dtype == "float16" else values
    if fmt.layout == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out), geometries

"""Frames from the host to the model's device, for every backend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def frames_to_device(frames: Sequence[np.ndarray], device: str) -> list[torch.Tensor]:
    """The frames as ``(3, H, W)`` ``uint8`` tensors on ``device``, channels in the frames' order.

    Frames of one shape are stacked and go over in one copy: from pinned
    (page-locked) memory and without blocking when ``device`` is a GPU, so the
    copy does not wait on the host. Frames of different shapes go one by one.

    Args:
        frames: ``uint8`` arrays of shape ``(H, W, 3)``.
        device: a torch device, ``cpu`` or ``cuda:N``.
    """
    if not frames:
        return []
    if all(f.shape == frames[0].shape for f in frames):
        host = torch.from_numpy(np.stack(frames))
        if device.startswith("cuda"):
            host = host.pin_memory()
        return list(host.to(device, non_blocking=True).permute(0, 3, 1, 2).unbind(0))
    # A copy only of frames torch cannot share: read-only or not contiguous.
    return [
        torch.from_numpy(np.require(f, requirements=["C", "W"])).to(device).permute(2, 0, 1) for f in frames
    ]

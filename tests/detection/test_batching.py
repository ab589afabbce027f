"""Frames to the model's device: one copy for frames of one shape, else one per frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.detection.batching import frames_to_device


def _frame(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _expected(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))


def test_frames_of_one_shape_are_stacked_in_one_copy(monkeypatch: pytest.MonkeyPatch):
    frames = [_frame(i, 6, 8) for i in range(3)]
    stacked: list[tuple[int, ...]] = []
    real_stack = np.stack

    def recording_stack(arrays, *args, **kwargs):
        result = real_stack(arrays, *args, **kwargs)
        stacked.append(result.shape)
        return result

    monkeypatch.setattr(np, "stack", recording_stack)
    images = frames_to_device(frames, "cpu")
    assert stacked == [(3, 6, 8, 3)]
    assert len(images) == 3
    for image, frame in zip(images, frames, strict=True):
        assert image.dtype == torch.uint8 and image.shape == (3, 6, 8)
        assert torch.equal(image, _expected(frame))


def test_frames_of_different_shapes_go_one_by_one():
    read_only = _frame(3, 2, 2)
    read_only.flags.writeable = False
    # A reversed view and a read-only array (as Detectron2's resize gives) are copied.
    frames = [_frame(0, 6, 8), _frame(1, 4, 4), _frame(2, 6, 8)[:, ::-1], read_only]
    images = frames_to_device(frames, "cpu")
    assert [tuple(image.shape) for image in images] == [(3, 6, 8), (3, 4, 4), (3, 6, 8), (3, 2, 2)]
    for image, frame in zip(images, frames, strict=True):
        assert torch.equal(image, _expected(frame))


def test_no_frames():
    assert frames_to_device([], "cpu") == []


def test_for_a_gpu_the_batch_is_pinned_and_copied_once_without_blocking(monkeypatch: pytest.MonkeyPatch):
    """Without a GPU: stand-ins for ``pin_memory`` and ``to`` record what is asked of them."""
    pinned: list[tuple[int, ...]] = []
    copies: list[tuple[tuple[int, ...], object, bool]] = []

    def pin_memory(self: torch.Tensor) -> torch.Tensor:
        pinned.append(tuple(self.shape))
        return self

    def to(self: torch.Tensor, device: object, non_blocking: bool = False) -> torch.Tensor:
        copies.append((tuple(self.shape), device, non_blocking))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", to)
    frames = [_frame(i, 6, 8) for i in range(4)]
    images = frames_to_device(frames, "cuda:1")
    assert pinned == [(4, 6, 8, 3)]
    assert copies == [((4, 6, 8, 3), "cuda:1", True)]
    assert all(torch.equal(image, _expected(frame)) for image, frame in zip(images, frames, strict=True))


def test_on_the_cpu_nothing_is_pinned(monkeypatch: pytest.MonkeyPatch):
    def pin_memory(self: torch.Tensor) -> torch.Tensor:
        raise AssertionError("pinned for the CPU")

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    assert len(frames_to_device([_frame(0, 6, 8), _frame(1, 6, 8)], "cpu")) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu():
    frames = [_frame(i, 6, 8) for i in range(2)] + [_frame(2, 4, 4)]
    images = frames_to_device(frames, "cuda:0")
    assert all(image.is_cuda for image in images)
    for image, frame in zip(images, frames, strict=True):
        assert torch.equal(image.cpu(), _expected(frame))

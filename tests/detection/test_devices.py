"""Spreading worker processes over GPUs, and retrying a batch that runs out of memory.

No GPU is needed: device counts are stand-ins and the out-of-memory error is raised
by a stand-in predictor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from detector.detection import DetectedObject, Predictor, resolve_device


@pytest.mark.parametrize(
    "requested, index, count, expected",
    [
        ("auto", 0, 0, "cpu"),
        ("auto", 3, 0, "cpu"),
        ("auto", 0, 4, "cuda:0"),
        ("auto", 1, 4, "cuda:1"),
        ("auto", 5, 4, "cuda:1"),
        ("cuda", 2, 2, "cuda:0"),
        ("cuda:1", 7, 2, "cuda:1"),
        ("cpu", 3, 8, "cpu"),
        ("  CUDA ", 3, 2, "cuda:1"),
    ],
)
def test_resolve_device(requested, index, count, expected):
    assert resolve_device(requested, index, count) == expected


def test_every_gpu_gets_worker_processes():
    """Eight pool processes on a four-GPU node: two per GPU, none left idle."""
    devices = [resolve_device("auto", k, 4) for k in range(8)]
    assert sorted(set(devices)) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert all(devices.count(d) == 2 for d in set(devices))


@pytest.mark.parametrize("requested, count", [("cuda", 0), ("cuda:2", 2)])
def test_impossible_devices_are_clear_errors(requested, count):
    with pytest.raises(RuntimeError, match="CUDA device"):
        resolve_device(requested, 0, count)


def test_nonsense_device_is_rejected():
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        resolve_device("tpu", 0, 0)


class FakePredictor(Predictor):
    """Runs out of memory on batches larger than ``fits``; 'detects' the frame's mean."""

    name = "fake/oom"
    device = "cpu"

    def __init__(self, batch_size: int, fits: int) -> None:
        self.batch_size = batch_size
        self.fits = fits
        self.calls: list[int] = []

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[list[DetectedObject]]:
        self.calls.append(len(frames))
        if len(frames) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [
            [DetectedObject(label="x", class_id=1, score=float(f.mean()) / 255, box=[0, 0, 1, 1])]
            for f in frames
        ]


def _frames(n: int) -> list[np.ndarray]:
    return [np.full((4, 4, 3), i * 10, dtype=np.uint8) for i in range(n)]


def test_out_of_memory_batch_is_retried_smaller():
    predictor = FakePredictor(batch_size=8, fits=3)
    results = predictor.predict(_frames(10), score_threshold=0.0)
    assert [r[0]["score"] for r in results] == pytest.approx([i * 10 / 255 for i in range(10)])
    assert predictor.calls[:3] == [8, 4, 2]
    assert max(predictor.calls[3:]) <= 2


def test_out_of_memory_at_batch_one_fails_the_chunk():
    predictor = FakePredictor(batch_size=4, fits=0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        predictor.predict(_frames(2), score_threshold=0.0)


def test_score_threshold_filters():
    predictor = FakePredictor(batch_size=4, fits=4)
    results = predictor.predict(_frames(6), score_threshold=0.1)
    assert [len(r) for r in results] == [0, 0, 0, 1, 1, 1]

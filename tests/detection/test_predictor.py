"""The predictor interface: batching, the out-of-memory back-off, and the per-process cache.

No GPU is needed: the out-of-memory error is raised by a stand-in predictor.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from detector.detection import Detections, DetectorSettings, Predictor, get_predictor, registry
from detector.detection.base import BACKENDS


class FakePredictor(Predictor):
    """Runs out of memory on batches larger than ``fits``; 'detects' the frame's mean."""

    name = "fake/oom"
    device = "cpu"

    def __init__(self, batch_size: int, fits: int) -> None:
        self.batch_size = batch_size
        self.fits = fits
        self.calls: list[int] = []

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        self.calls.append(len(frames))
        if len(frames) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [
            Detections.from_objects(
                [{"label": "x", "class_id": 1, "score": float(f.mean()) / 255, "box": [0, 0, 1, 1]}]
            )
            for f in frames
        ]


def _frames(n: int) -> list[np.ndarray]:
    return [np.full((4, 4, 3), i * 10, dtype=np.uint8) for i in range(n)]


def _scores(results: list[Detections]) -> list[float]:
    return [r.to_objects()[0]["score"] for r in results]


def test_out_of_memory_batch_is_retried_smaller():
    predictor = FakePredictor(batch_size=8, fits=3)
    results = predictor.predict(_frames(10), score_threshold=0.0)
    assert _scores(results) == pytest.approx([i * 10 / 255 for i in range(10)])
    assert predictor.calls == [8, 4, 2, 2, 2, 2, 2]


def test_the_smaller_batch_size_is_kept_for_later_calls():
    predictor = FakePredictor(batch_size=8, fits=3)
    predictor.predict(_frames(10), score_threshold=0.0)
    assert predictor.batch_size == 2
    predictor.calls.clear()
    sizes: list[int] = []
    results = predictor.predict(_frames(9), score_threshold=0.0, on_forward=sizes.append)
    assert predictor.calls == [2, 2, 2, 2, 1], "no batch runs out of memory again"
    assert sizes == predictor.calls
    assert _scores(results) == pytest.approx([i * 10 / 255 for i in range(9)])


def test_forward_sizes_are_the_real_ones_and_leave_out_failed_passes():
    predictor = FakePredictor(batch_size=8, fits=3)
    sizes: list[int] = []
    predictor.predict(_frames(10), score_threshold=0.0, on_forward=sizes.append)
    assert sizes == [2, 2, 2, 2, 2]
    assert sum(sizes) == 10


def test_forward_sizes_without_back_off():
    predictor = FakePredictor(batch_size=4, fits=4)
    sizes: list[int] = []
    predictor.predict(_frames(10), score_threshold=0.0, on_forward=sizes.append)
    assert sizes == [4, 4, 2]
    assert predictor.batch_size == 4


def test_a_short_last_batch_that_runs_out_of_memory_halves_its_own_size():
    """A 3-frame batch failed, so halving the configured 8 to 4 would fail again."""
    predictor = FakePredictor(batch_size=8, fits=2)
    predictor.predict(_frames(3), score_threshold=0.0)
    assert predictor.calls == [3, 1, 1, 1]
    assert predictor.batch_size == 1


def test_each_shrink_is_logged_once(caplog: pytest.LogCaptureFixture):
    predictor = FakePredictor(batch_size=8, fits=3)
    with caplog.at_level(logging.WARNING, logger="detector.detection.base"):
        predictor.predict(_frames(10), score_threshold=0.0)
        predictor.predict(_frames(10), score_threshold=0.0)
    messages = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert len(messages) == 2, messages
    assert "batch of 8 frames: batches of 4" in messages[0]
    assert "batch of 4 frames: batches of 2" in messages[1]


def test_an_out_of_memory_message_without_the_cuda_type_also_backs_off():
    class Plain(FakePredictor):
        def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
            if len(frames) > self.fits:
                raise RuntimeError("CUDA error: out of memory")
            return super().predict_batch(frames)

    predictor = Plain(batch_size=4, fits=2)
    assert len(predictor.predict(_frames(4), score_threshold=0.0)) == 4
    assert predictor.batch_size == 2


def test_other_errors_are_raised_and_keep_the_batch_size():
    class Broken(FakePredictor):
        def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
            raise ValueError("bad frame")

    predictor = Broken(batch_size=4, fits=4)
    with pytest.raises(ValueError, match="bad frame"):
        predictor.predict(_frames(4), score_threshold=0.0)
    assert predictor.batch_size == 4


def test_out_of_memory_at_batch_one_fails_the_chunk():
    predictor = FakePredictor(batch_size=4, fits=0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        predictor.predict(_frames(2), score_threshold=0.0)
    assert predictor.calls == [2, 1]
    assert predictor.batch_size == 1


def test_score_threshold_filters():
    predictor = FakePredictor(batch_size=4, fits=4)
    results = predictor.predict(_frames(6), score_threshold=0.1)
    assert [len(r) for r in results] == [0, 0, 0, 1, 1, 1]


class FakeBackend(FakePredictor):
    """A backend class as the registry builds it: ``cls(settings, device)``."""

    built = 0

    def __init__(self, settings: DetectorSettings, device: str) -> None:
        super().__init__(settings.batch_size, fits=3)
        self.device = device
        FakeBackend.built += 1


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> type[FakeBackend]:
    monkeypatch.setitem(registry.PREDICTOR_CLASSES, "torchvision", lambda: FakeBackend)
    monkeypatch.setattr(registry, "_cache", OrderedDict())
    FakeBackend.built = 0
    return FakeBackend


def test_the_cached_predictor_keeps_its_smaller_batch_size(fake_backend):
    """What the pipeline sees: one predictor per process, asked for again for every chunk."""
    settings = DetectorSettings(device="cpu", batch_size=8)
    first = get_predictor(settings)
    first.predict(_frames(8), score_threshold=0.0)
    again = get_predictor(settings)
    assert again is first and fake_backend.built == 1
    assert again.batch_size == 2
    sizes: list[int] = []
    again.predict(_frames(8), score_threshold=0.0, on_forward=sizes.append)
    assert sizes == [2, 2, 2, 2]


def test_other_settings_or_processes_get_their_own_predictor(fake_backend):
    settings = DetectorSettings(device="cpu")
    assert get_predictor(settings) is not get_predictor(DetectorSettings(device="cpu", batch_size=2))
    assert get_predictor(settings) is not get_predictor(settings, process_index=1)
    assert fake_backend.built == 3


def test_every_backend_has_a_predictor_class():
    assert set(registry.PREDICTOR_CLASSES) == set(BACKENDS)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        registry.build_predictor(DetectorSettings(backend="tensorflow", device="cpu"))

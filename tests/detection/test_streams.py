"""Streams: batches run side by side on the CPU, each on its share of the threads.

What ``DETECTOR_STREAMS`` means (`DetectorSettings.streams_on`), that
`Predictor.predict` really runs batches at once and keeps the frames' order, and
that every CPU runtime finds exactly the same objects with two streams as with
one, each on one thread (what changes a model's arithmetic is the threads an
operator runs on, not which batch runs beside it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from itertools import islice

import numpy as np
import pytest

from detector.detection import Detections, DetectorSettings, Predictor, build_predictor
from detector.detection.base import cpu_threads, default_streams, stream_threads
from detector.detection.catalog import load_catalog
from tests.conftest import base_config
from tests.shared_data import SSD_BACKENDS, SharedData, ssd_catalog


def test_auto_is_one_stream_a_thread_for_small_models_and_one_for_large():
    assert default_streams((320, 640)) == cpu_threads()  # the 320 px MobileNet
    assert default_streams((300, 300)) == cpu_threads()  # the SSD
    assert default_streams((640, 640)) == cpu_threads()  # a 640 px YOLO
    assert default_streams((800, 1333)) == 1  # the 800 px models
    assert default_streams(None) == 1  # input size unknown
    settings = DetectorSettings()
    assert settings.streams_on("cpu", (320, 640)) == cpu_threads()
    assert settings.streams_on("cuda:0", (320, 640)) == 1  # never on a GPU
    assert DetectorSettings(streams=3).streams_on("cpu", (800, 1333)) == 3
    assert DetectorSettings(streams=3).streams_on("cuda", (320, 640)) == 1


def test_each_stream_gets_its_share_of_the_threads():
    assert stream_threads(1) == cpu_threads()
    assert stream_threads(cpu_threads()) == 1
    assert stream_threads(10 * cpu_threads()) == 1  # never none


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("AUTO", "auto"), ("2", 2), (4, 4)])
def test_the_setting_is_auto_or_a_whole_number(value, expected):
    assert DetectorSettings.from_config({"DETECTOR_STREAMS": value}).streams == expected


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_setting_is_refused_naming_it(value):
    with pytest.raises(ValueError, match="DETECTOR_STREAMS"):
        DetectorSettings.from_config({"DETECTOR_STREAMS": value})


def test_a_catalog_table_may_set_its_streams(tmp_path):
    catalog = tmp_path / "models.toml"
    catalog.write_text('default = "a"\n[models.a]\nstreams = 1\n[models.b]\n')
    loaded = load_catalog(base_config(tmp_path, DETECTOR_MODELS=str(catalog), DETECTOR_STREAMS="2"))
    assert loaded.settings("a").streams == 1
    assert loaded.settings("b").streams == 2  # DETECTOR_STREAMS for a table without


class SideBySide(Predictor):
    """Two streams whose batches must meet: each batch waits at a barrier for the
    other stream's batch, so one stream alone would never get past it."""

    name = "fake/streams"
    device = "cpu"

    def __init__(self) -> None:
        self.batch_size = 2
        self.streams = 2
        self.barrier = threading.Barrier(2, timeout=30)
        self.threads: set[str] = set()

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        self.threads.add(threading.current_thread().name)
        self.barrier.wait()  # BrokenBarrierError if the other stream is not running
        return [
            Detections.from_objects(
                [{"label": "x", "class_id": 1, "score": float(f[0, 0, 0]) / 255, "box": [0, 0, 1, 1]}]
            )
            for f in frames
        ]


def test_streams_run_batches_at_once_and_keep_the_frames_order():
    predictor = SideBySide()
    frames = [np.full((2, 2, 3), i, dtype=np.uint8) for i in range(8)]
    forwards: list[int] = []
    found = predictor.predict(frames, score_threshold=0.0, on_forward=forwards.append)
    assert [round(d.to_objects()[0]["score"] * 255) for d in found] == list(range(8))
    assert forwards == [2, 2, 2, 2]
    assert len(predictor.threads) == 2


def test_the_score_threshold_holds_with_streams():
    predictor = SideBySide()
    frames = [np.full((2, 2, 3), value, dtype=np.uint8) for value in (0, 100, 200, 250)]
    found = predictor.predict(frames, score_threshold=0.5)
    assert [len(d) for d in found] == [0, 0, 1, 1]


class NoWaiting(Predictor):
    """Two streams, where the first batch finishes only after the third has: with rounds
    of one batch a stream (each round waiting for its slowest batch), the third would
    never start while the first runs, and the first would time out."""

    name = "fake/no-waiting"
    device = "cpu"

    def __init__(self) -> None:
        self.batch_size = 1
        self.streams = 2
        self.third_done = threading.Event()
        self.started: list[int] = []

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        value = int(frames[0][0, 0, 0])
        self.started.append(value)
        if value == 0 and not self.third_done.wait(timeout=30):
            raise TimeoutError("the other stream did not go on with the next batches")
        if value == 2:
            self.third_done.set()
        return [
            Detections.from_objects(
                [{"label": "x", "class_id": 1, "score": value / 255, "box": [0, 0, 1, 1]}]
            )
        ]


def test_a_free_stream_takes_the_next_batch_without_waiting_for_the_others():
    predictor = NoWaiting()
    batches = [[np.full((2, 2, 3), i, dtype=np.uint8)] for i in range(6)]
    found = list(predictor.predict_batches(batches, score_threshold=0.0))
    assert [round(d[0].to_objects()[0]["score"] * 255) for d in found] == list(range(6))  # in order
    assert sorted(predictor.started) == list(range(6))


class Slow(NoWaiting):
    """Batches that take a while, counting those running."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.lock = threading.Lock()

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        with self.lock:
            self.running += 1
            self.started.append(int(frames[0][0, 0, 0]))
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return [Detections.from_objects([])]


def test_a_caller_that_stops_leaves_no_batch_running():
    predictor = Slow()
    batches = ([np.full((2, 2, 3), i, dtype=np.uint8)] for i in range(100))
    results = predictor.predict_batches(batches, score_threshold=0.0)
    assert len(next(results)) == 1
    results.close()  # as when a job is cancelled after a batch
    assert predictor.running == 0  # the running batches finished before close returned
    started = len(predictor.started)
    time.sleep(0.2)
    assert len(predictor.started) == started <= 2 * predictor.streams + 1  # the queued ones dropped


def _same(a: list[Detections], b: list[Detections]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.to_objects() == y.to_objects()


def _frames(count: int = 12) -> list[np.ndarray]:
    """Moving shapes on a textured background, 320x240."""
    rng = np.random.default_rng(7)
    frames = []
    for i in range(count):
        frame = (rng.random((240, 320, 3)) * 60).astype(np.uint8)
        frame[40 + i * 5 : 120 + i * 5, 60 + i * 8 : 140 + i * 8] = (30, 200, 60)
        frame[150:220, 200 - i * 6 : 260 - i * 6] = (220, 40, 40)
        frames.append(frame)
    return frames


def test_eager_streams_run_on_their_share_of_the_threads_however_batches_come(monkeypatch):
    """torch's thread count is the process's: a predictor sets its own before its
    streams run, through `predict` and through `predict_batches` (what a chunk uses)."""
    import torch

    predictor = build_predictor(
        DetectorSettings(
            model="fasterrcnn_mobilenet_v3_large_320_fpn",
            weights="random",
            device="cpu",
            batch_size=1,
            streams=2,
        )
    )
    calls: list[int] = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)  # as another predictor left it
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    frame = np.zeros((96, 160, 3), np.uint8)
    assert len(list(predictor.predict_batches([[frame], [frame]], 0.3))) == 2
    assert calls == [stream_threads(2)]
    predictor.predict([frame], 0.3)
    assert len(calls) > 1 and set(calls) == {stream_threads(2)}


def test_torchvision_finds_the_same_objects_with_two_streams(seeded_weights_path):
    import torch

    threads = torch.get_num_threads()
    try:
        one, two = (
            build_predictor(
                DetectorSettings(
                    model="fasterrcnn_mobilenet_v3_large_320_fpn",
                    weights=str(seeded_weights_path),
                    device="cpu",
                    batch_size=2,
                    streams=streams,
                    min_score=0.01,
                )
            )
            for streams in (cpu_threads(), 2 * cpu_threads())  # one thread a stream in both
        )
        assert (one.streams, two.streams) == (cpu_threads(), 2 * cpu_threads())
        frames = _frames()
        _same(one.predict(frames, 0.01), two.predict(frames, 0.01))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def seeded_weights_path(tmp_path_factory):
    import torch

    from detector.detection.torchvision_backend import TorchvisionPredictor

    predictor = TorchvisionPredictor(
        DetectorSettings(
            model="fasterrcnn_mobilenet_v3_large_320_fpn", weights="random", seed=5, device="cpu"
        ),
        "cpu",
    )
    path = tmp_path_factory.mktemp("streams") / "seeded.pth"
    torch.save(predictor.model.state_dict(), path)
    return path


@pytest.mark.parametrize("backend", SSD_BACKENDS)
def test_a_model_file_finds_the_same_objects_with_two_streams(backend, testdata: SharedData, tmp_path):
    import av

    with av.open(str(testdata.video)) as container:
        frames = [
            f.to_ndarray(format="bgr24")
            for i, f in enumerate(islice(container.decode(video=0), 40))
            if i % 4 == 0
        ]
    catalog = ssd_catalog(testdata, tmp_path / "models.toml", backend)
    found = []
    for streams in (cpu_threads(), 2 * cpu_threads()):  # one thread a stream in both
        config = base_config(
            tmp_path, DETECTOR_MODELS=str(catalog), DETECTOR_DEVICE="cpu", DETECTOR_STREAMS=streams
        )
        predictor = build_predictor(load_catalog(config).settings(None))
        assert predictor.streams == streams
        found.append(predictor.predict(frames, 0.3))
    assert sum(len(d) for d in found[0]) > 10  # people in every frame
    _same(*found)

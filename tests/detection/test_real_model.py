"""A pretrained detector on a real video: SSD MobileNet V2 (COCO) from the shared
test data, declared in a DETECTOR_MODELS file as a deployment declares it, on
every 20th frame of vtest.avi (pedestrians crossing a square, a parked car).

What the model finds was measured first with ONNX Runtime alone, and the frames
below were looked at with the boxes drawn on them: 2 to 9 people a frame (about
5.6 on average at a score of 0.4), upright boxes, the car parked at the top
right in every frame. Each runtime that can run the model (ONNX Runtime and
OpenVINO on the ONNX file, LiteRT on the 8-bit TFLite file) must find the same,
and the same objects as the others: matched one to one by class and IoU
(Hungarian assignment). The quantized TFLite model's scores and boxes differ a
little, so it is held to a lower match rate (93 % of the objects matched, mean
IoU 0.97, when measured).
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from detector.detection import Detections, build_predictor
from detector.detection.catalog import load_catalog
from tests.conftest import base_config
from tests.shared_data import PERSON, SSD_BACKENDS, SharedData, ssd_catalog

STRIDE = 20
THRESHOLD = 0.4
CAR = 2

# The parked car at the top right, where it stands in every frame: x1, y1, x2, y2.
PARKED_CAR = (732, 49, 768, 95)

# Walkers seen in two frames (drawn and looked at): each must be found where it is.
WALKERS = {
    200: [
        (614, 273, 645, 365),
        (225, 194, 252, 264),
        (80, 157, 108, 221),
        (695, 103, 715, 155),
        (706, 255, 742, 345),
        (685, 99, 706, 158),
        (489, 142, 517, 210),
    ],
    600: [
        (273, 436, 345, 580),  # the woman nearest the camera
        (643, 306, 675, 401),
        (457, 308, 489, 410),  # red jacket, by the tripod
        (563, 200, 596, 278),
    ],
}


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda boxes: np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _assign(a: Detections, b: Detections, min_iou: float = 0.5) -> list[float]:
    """The IoUs of the objects of ``a`` and ``b`` matched one to one (same class,
    IoU at least ``min_iou``), by the assignment that maximises the total IoU."""
    if not len(a) or not len(b):
        return []
    overlap = _iou(a.xyxy, b.xyxy)
    overlap[a.class_id[:, None] != b.class_id[None, :]] = 0.0
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    return [float(overlap[r, c]) for r, c in zip(rows, cols, strict=True) if overlap[r, c] >= min_iou]


@pytest.fixture(scope="module")
def frames(testdata: SharedData) -> dict[int, np.ndarray]:
    """Every STRIDE-th frame of the video, by frame index, as BGR arrays."""
    with av.open(str(testdata.video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return {
            i: f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(stream)) if i % STRIDE == 0
        }


@pytest.fixture(scope="module")
def found(testdata: SharedData, frames, tmp_path_factory) -> dict[str, Any]:
    """Each runtime's objects on ``frames``, the model built from a DETECTOR_MODELS file
    (batch size ``auto``), one list per backend, in frame order; built lazily."""
    folder = tmp_path_factory.mktemp("real-model")
    results: dict[str, list[Detections]] = {}

    def on(backend: str) -> list[Detections]:
        if backend not in results:
            catalog = ssd_catalog(testdata, folder / f"{backend}.toml", backend)
            config = base_config(folder, DETECTOR_MODELS=str(catalog), DETECTOR_DEVICE="cpu")
            settings = load_catalog(config).settings(None)
            assert (settings.backend, settings.family) == (backend, "ssd")
            predictor = build_predictor(settings)
            results[backend] = predictor.predict(list(frames.values()), THRESHOLD)
        return results[backend]

    return {"on": on}


@pytest.mark.parametrize("backend", SSD_BACKENDS)
def test_people_on_every_frame_upright_and_the_parked_car(backend, frames, found) -> None:
    objects = found["on"](backend)
    assert len(objects) == len(frames) == 40
    people = [d[d.class_id == PERSON] for d in objects]
    counts = [len(p) for p in people]
    assert min(counts) >= 2, counts
    assert 4 <= np.mean(counts) <= 9, counts
    assert all(set(d.label[d.class_id == PERSON]) == {"person"} for d in objects)
    boxes = np.concatenate([p.xyxy for p in people])
    heights, widths = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    assert np.mean(heights / widths >= 1.3) >= 0.95  # people stand
    assert (boxes[:, 0] >= -1).all() and (boxes[:, 2] <= 769).all() and (boxes[:, 3] <= 577).all()
    car = np.array([PARKED_CAR], dtype=float)
    parked = [bool(len(d) and (_iou(car, d.xyxy[d.class_id == CAR]) >= 0.6).any()) for d in objects]
    assert np.mean(parked) >= 0.9, parked


@pytest.mark.parametrize("backend", SSD_BACKENDS)
def test_the_walkers_are_found_where_they_are(backend, frames, found) -> None:
    objects = dict(zip(frames, found["on"](backend), strict=True))
    for frame, walkers in WALKERS.items():
        people = objects[frame][objects[frame].class_id == PERSON]
        overlap = _iou(np.array(walkers, dtype=float), people.xyxy)
        seen = int((overlap.max(axis=1) >= 0.5).sum())
        # The 8-bit model misses a person in a pair now and then.
        assert seen >= len(walkers) - (2 if backend == "tflite" else 1), (frame, overlap.max(axis=1))


@pytest.mark.parametrize(
    "backend, min_rate, min_mean_iou",
    [("openvino", 0.98, 0.99), ("tflite", 0.85, 0.9)],
)
def test_the_runtimes_find_the_same_objects(backend, min_rate, min_mean_iou, found) -> None:
    reference, other = found["on"]("onnxruntime"), found["on"](backend)
    ious = [iou for a, b in zip(reference, other, strict=True) for iou in _assign(a, b)]
    total = max(sum(map(len, reference)), sum(map(len, other)))
    assert total > 150
    assert len(ious) / total >= min_rate, (len(ious), total)
    assert np.mean(ious) >= min_mean_iou

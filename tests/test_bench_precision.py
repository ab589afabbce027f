"""The INT8 figure's average precision against a reference, on detections worked out by hand."""

from __future__ import annotations

import pytest

from detector.bench.figures import Bench
from detector.bench.options import BenchOptions
from detector.bench.precision import average_precision, int8_figure
from detector.detection import Detections

LABELS = ["person", "bicycle", "car"]


def frame(*objects: tuple[int, float, tuple[float, float, float, float]]) -> Detections:
    """Detections of (class id, score, box) objects."""
    if not objects:
        return Detections.empty()
    classes, scores, boxes = zip(*objects, strict=True)
    return Detections.from_model(list(boxes), list(scores), list(classes), LABELS)


REFERENCE = [
    frame((0, 0.9, (0, 0, 10, 20)), (0, 0.8, (50, 50, 60, 70))),
    frame((2, 0.9, (100, 100, 200, 150))),
]


def test_the_reference_against_itself_is_perfect():
    assert average_precision(REFERENCE, REFERENCE) == {"ap": 1.0, "by_class": {0: 1.0, 2: 1.0}}


def test_a_false_positive_ranked_between_two_hits_costs_what_the_curve_says():
    found = [
        frame((0, 0.9, (0, 0, 10, 20)), (0, 0.8, (200, 200, 210, 220)), (0, 0.7, (51, 51, 61, 71))),
        frame((2, 0.6, (100, 100, 200, 150))),
    ]
    # person: hit, miss, hit of 2: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; made monotone
    # 1, 2/3, 2/3: area 1/2 x 1 + 1/2 x 2/3. car: 1.
    person = 0.5 + 0.5 * 2 / 3
    result = average_precision(REFERENCE, found)
    assert result["by_class"] == {0: pytest.approx(person, abs=1e-4), 2: 1.0}
    assert result["ap"] == pytest.approx((person + 1.0) / 2, abs=1e-4)


def test_a_box_in_the_wrong_frame_class_or_place_is_no_hit():
    found = [
        frame((2, 0.9, (0, 0, 10, 20))),  # a car where the reference has a person
        frame((0, 0.9, (100, 100, 200, 150)), (2, 0.8, (150, 125, 250, 175))),  # IoU 1/7 with the car
    ]
    assert average_precision(REFERENCE, found) == {"ap": 0.0, "by_class": {0: 0.0, 2: 0.0}}


def test_one_found_box_takes_one_reference_object_only():
    reference = [frame((0, 0.9, (0, 0, 10, 10)), (0, 0.9, (0, 0, 10, 10)))]
    found = [frame((0, 0.9, (0, 0, 10, 10)))]
    assert average_precision(reference, found)["ap"] == 0.5  # recall 1/2 at precision 1


def test_no_reference_object_is_nothing_to_miss():
    assert average_precision([frame()], [frame((0, 0.5, (0, 0, 1, 1)))]) == {"ap": 1.0, "by_class": {}}


def test_the_figure_is_skipped_without_the_shared_data(tmp_path):
    options = BenchOptions(out_dir=tmp_path, testdata=str(tmp_path / "nowhere"))
    bench = Bench(options, tmp_path, None, {"DETECTOR_MIN_SCORE": 0.05}, lambda line: None)  # type: ignore[arg-type]
    assert "the shared test data is missing" in int8_figure(bench)["int8"]["skipped"]

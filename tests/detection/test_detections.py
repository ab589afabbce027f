"""`Detections`, the one shape of a frame's objects: its JSON form both ways, byte for
byte; the model's rounding; selecting by masks; empty sets; merging; and the checks
that refuse arrays of the wrong type, dtype or shape."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys

import numpy as np
import pytest

from detector.detection import NO_TRACK, AnalysedFrame, Detections


def stored_objects(count: int, *, tracked: bool, seed: int = 0) -> list[dict]:
    """Objects as a backend stores them (box in hundredths, score in millionths), or
    with any float at all, with a hostile label among them."""
    rng = random.Random(seed)
    objects = []
    for k in range(count):
        x1, y1 = round(rng.uniform(0, 1900), 2), rng.uniform(0, 1000)  # y1 not rounded: any float
        obj = {
            "label": ["person", "car", '<b>"x"</b>\x00', "caf\u00e9"][k % 4],
            "class_id": k % 4,
            "score": round(rng.random(), 6),
            "box": [x1, y1, round(x1 + rng.uniform(1, 300), 2), y1 + 0.1 * k],
        }
        if tracked:
            obj["track_id"] = k + 1
        objects.append(obj)
    return objects


def detections(**arrays: object) -> Detections:
    """Three well-formed objects, with any array replaced by ``arrays``."""
    fields = {
        "xyxy": np.array([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]], dtype=np.float64),
        "score": np.array([0.9, 0.6, 0.3]),
        "class_id": np.array([1, 3, 1]),
        "label": np.array(["person", "car", "person"], dtype=object),
        "track_id": None,
    }
    return Detections(**{**fields, **arrays})  # type: ignore[arg-type]


# The JSON form -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tracked", [False, True])
def test_stored_objects_come_back_exactly_and_as_the_same_json_text(tracked):
    objects = stored_objects(50, tracked=tracked)
    found = Detections.from_objects(objects)
    assert len(found) == 50
    assert found.to_objects() == objects
    assert [list(o) for o in found.to_objects()] == [list(o) for o in objects]  # the same key order
    assert found.to_json() == json.dumps(objects)
    assert json.dumps(Detections.from_objects(json.loads(found.to_json())).to_objects()) == json.dumps(
        objects
    )
    assert (found.track_id is not None) is tracked


def test_the_json_form_has_plain_python_values():
    (obj,) = Detections.from_objects(stored_objects(1, tracked=True)).to_objects()
    assert type(obj["label"]) is str and type(obj["class_id"]) is int and type(obj["track_id"]) is int
    assert type(obj["score"]) is float and all(type(v) is float for v in obj["box"])


def test_an_object_without_a_track_id_in_a_tracked_set_keeps_none():
    objects = stored_objects(3, tracked=True)
    del objects[1]["track_id"]
    found = Detections.from_objects(objects)
    assert found.track_id is not None and found.track_id.tolist() == [1, NO_TRACK, 3]
    assert found.track_ids() == [1, None, 3]
    assert found.to_objects() == objects
    assert Detections.from_objects(stored_objects(2, tracked=False)).track_ids() == [None, None]


def test_objects_that_are_not_detections_are_refused():
    good = stored_objects(2, tracked=False)
    with pytest.raises(ValueError, match=r"xyxy must have shape \(2, 4\), not \(2, 3\)"):
        Detections.from_objects([{**o, "box": o["box"][:3]} for o in good])
    with pytest.raises(ValueError, match="not detections"):
        Detections.from_objects([good[0], {**good[1], "box": [1.0, 2.0]}])
    with pytest.raises(ValueError, match="not detections"):
        Detections.from_objects([{**good[0], "box": "abcd"}])
    with pytest.raises(ValueError, match="not detections"):
        Detections.from_objects([{**good[0], "score": "high"}])
    with pytest.raises(KeyError, match="box"):
        Detections.from_objects([{k: v for k, v in good[0].items() if k != "box"}])


# What a backend makes ------------------------------------------------------------------------------------


def test_a_models_output_is_rounded_as_pythons_round_rounds_it():
    rng = np.random.default_rng(7)
    boxes = (rng.random((2000, 4)) * 4000).astype(np.float32)
    scores = rng.random(2000).astype(np.float32)
    classes = rng.integers(0, 3, 2000)
    found = Detections.from_model(boxes, scores, classes, ["a", "b", "c"])
    assert found.xyxy.tolist() == [[round(float(v), 2) for v in box] for box in boxes]
    assert found.score.tolist() == [round(float(s), 6) for s in scores]
    assert found.label.tolist() == [["a", "b", "c"][c] for c in classes.tolist()]
    assert found.track_id is None


def test_a_class_id_past_the_labels_is_named_by_its_number():
    found = Detections.from_model(
        np.zeros((3, 4), np.float32), np.ones(3, np.float32), [0, 91, 1], ["bg", "x"]
    )
    assert found.label.tolist() == ["bg", "91", "x"]
    assert found.class_id.dtype == np.int64 and found.class_id.tolist() == [0, 91, 1]


def test_a_model_that_finds_nothing():
    found = Detections.from_model(np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty(0), ["a"])
    assert len(found) == 0 and found == Detections.empty()


# Selecting -----------------------------------------------------------------------------------------------


def test_masks_positions_and_slices_select_objects_and_their_track_ids():
    found = detections(track_id=np.array([7, 8, 9]))
    confident = found[found.score >= 0.5]
    assert confident.to_objects() == found.to_objects()[:2]
    people = found[np.isin(found.class_id, [1])]
    assert people.label.tolist() == ["person", "person"] and people.track_id.tolist() == [7, 9]
    assert found[1].to_objects() == [found.to_objects()[1]]  # one position: one object, still a set
    assert found[[2, 0]].track_ids() == [9, 7]
    assert found[1:].score.tolist() == [0.6, 0.3]
    assert len(found[found.score > 1]) == 0
    assert found.score.tolist() == [0.9, 0.6, 0.3]  # selecting changes nothing in place


def test_equality_compares_every_array():
    assert detections() == detections()
    assert detections() != detections(score=np.array([0.9, 0.6, 0.31]))
    assert detections() != detections(label=np.array(["person", "car", "cat"], dtype=object))
    assert detections() != detections(track_id=np.array([1, 2, 3]))
    assert detections(track_id=np.array([1, 2, 3])) != detections(track_id=np.array([1, 2, 4]))
    assert detections() != detections().to_objects()


def test_it_is_not_iterated_object_by_object_nor_changed():
    found = detections()
    with pytest.raises(TypeError, match="not iterable"):
        iter(found)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.score = np.zeros(3)  # type: ignore[misc]
    tracked = found.with_track_ids([4, 5, 6])
    assert tracked.track_ids() == [4, 5, 6] and found.track_id is None


# Empty and merged ----------------------------------------------------------------------------------------


def test_empty():
    empty = Detections.empty()
    assert len(empty) == 0 and not empty
    assert empty.xyxy.shape == (0, 4) and empty.score.shape == empty.label.shape == (0,)
    assert empty.to_objects() == [] and empty.to_json() == "[]"
    assert empty.track_id is None and Detections.empty(tracked=True).track_id.shape == (0,)
    assert Detections.from_objects([]) == empty
    assert empty[empty.score > 0] == empty


def test_merge_puts_objects_one_after_another():
    first = detections(track_id=np.array([1, 2, 3]))
    second = Detections.from_objects(stored_objects(2, tracked=False))
    merged = Detections.merge([first, second])
    assert merged.to_objects() == first.to_objects() + second.to_objects()
    assert merged.track_ids() == [1, 2, 3, None, None]
    assert Detections.merge([second, second]).track_id is None
    assert Detections.merge([]) == Detections.empty()


# Checks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"xyxy": np.zeros((3, 4), np.float32)}, "xyxy must have dtype float64, not float32"),
        ({"xyxy": np.zeros((3, 3))}, r"xyxy must have shape \(3, 4\), not \(3, 3\)"),
        ({"xyxy": [[0, 0, 1, 1]] * 3}, "xyxy must be a numpy array, not list"),
        ({"score": np.array([0.9, 0.6])}, r"xyxy must have shape \(2, 4\), not \(3, 4\)"),
        ({"score": np.array(0.9)}, r"score must have shape \(N,\), not \(\)"),
        ({"class_id": np.array([1, 3])}, r"class_id must have shape \(3,\) like score, not \(2,\)"),
        ({"class_id": np.array([1.0, 3.0, 1.0])}, "class_id must have dtype int64, not float64"),
        ({"label": np.array(["a", "b", "c"])}, "label must have dtype object, not <U1"),
        ({"label": ("a", "b", "c")}, "label must be a numpy array, not tuple"),
        ({"track_id": np.array([1, 2])}, r"track_id must have shape \(3,\) like score, not \(2,\)"),
        ({"track_id": np.array([1, 2, 3], np.int32)}, "track_id must have dtype int64, not int32"),
    ],
)
def test_arrays_of_the_wrong_type_dtype_or_shape_are_refused_by_name(arrays, message):
    with pytest.raises(ValueError, match=message):
        detections(**arrays)


def test_track_ids_for_every_object():
    with pytest.raises(ValueError, match=r"track_id must have shape \(3,\)"):
        detections().with_track_ids([1, 2])


# The frame -----------------------------------------------------------------------------------------------


def test_an_analysed_frame_unpacks_as_frame_timestamp_and_detections():
    found = detections()
    analysed = AnalysedFrame(12, 0.48, found)
    frame, timestamp, objects = analysed
    assert (frame, timestamp, objects is found) == (12, 0.48, True)
    assert analysed._replace(detections=Detections.empty()).frame == 12


def test_the_module_imports_neither_supervision_nor_torch():
    code = (
        "import sys, detector.detection.detections; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'supervision', 'torch', 'cv2', 'scipy'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

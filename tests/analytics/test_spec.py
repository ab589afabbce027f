"""Specs: each bad field is refused by name; the canonical form is the spec's identity."""

from __future__ import annotations

import pytest

from detector.analytics import SpecError, parse_spec

SQUARE = [[10, 10], [100, 10], [100, 100], [10, 100]]


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {"zones": [{"name": "z", "polygon": [[10, 10], [100, 100], [100, 10], [10, 100]]}]},
            "zones[0].polygon",
            "cross",
        ),
        (
            {"zones": [{"name": "z", "polygon": [[10, 10], [50, 50], [90, 90]]}]},
            "zones[0].polygon",
            "no area",
        ),
        (
            {"zones": [{"name": "z", "polygon": [[10, 10], [500, 10], [10, 100]]}]},
            "zones[0].polygon[1]",
            "outside",
        ),
        (
            {"zones": [{"name": "z", "polygon": SQUARE}, {"name": "z", "polygon": SQUARE}]},
            "zones[1].name",
            "twice",
        ),
        ({"zones": [{"name": " ", "polygon": SQUARE}]}, "zones[0].name", "name"),
        ({"lines": [{"name": "l", "points": [[5, 5], [5, 5]]}]}, "lines[0].points", "zero length"),
        ({"lines": [{"name": "l", "points": [[5, 5], [-1, 5]]}]}, "lines[0].points[1]", "outside"),
        ({"lines": [{"name": "l", "points": [[5, 5], [9, 5]], "in": "up"}]}, "lines[0].in", "left or right"),
        ({"lines": [{"name": "l", "points": [[5, 5], [9, 5]], "classes": []}]}, "lines[0].classes", "labels"),
        (
            {"lines": [{"name": "l", "points": [[5, 5], [9, 5]], "classes": [3]}]},
            "lines[0].classes[0]",
            "label",
        ),
        (
            {"lines": [{"name": "l", "points": [[5, 5], [9, 5]], "colour": "red"}]},
            "lines[0].colour",
            "no such",
        ),
        ({"interval": 0}, "interval", "more than 0"),
        ({"interval": 0.001}, "interval", "intervals"),
        ({"anchor": "feet"}, "anchor", "bottom_center"),
        ({"min_dwell": -1}, "min_dwell", "0 or more"),
        ({"hysteresis": True}, "hysteresis", "number"),
        (
            {"calibration": {"image": [[0, 0], [10, 0], [20, 0], [0, 10]], "world": SQUARE}},
            "calibration.image",
            "one line",
        ),
        (
            {"calibration": {"image": SQUARE, "world": [[0, 0], [1, 1], [2, 2], [0, 5]]}},
            "calibration.world",
            "one line",
        ),
        ({"calibration": {"image": SQUARE}}, "calibration.world", "four points"),
        ({"zone": []}, "zone", "no such field"),
    ],
)
def test_a_bad_field_is_named(spec, field, words):
    with pytest.raises(SpecError) as raised:
        parse_spec(spec, 200, 150, duration=60.0)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")
    assert words in str(raised.value)


def test_the_same_spec_written_differently_has_one_id():
    one = {"lines": [{"name": "l", "points": [[5, 5], [9, 5]], "classes": ["car", "bus"]}], "interval": 60}
    two = {
        "interval": 60.0,
        "lines": [{"classes": ["bus", "car"], "in": "left", "points": [[5.0, 5], [9, 5.0]], "name": "l"}],
    }
    a, b = parse_spec(one, 200, 150), parse_spec(two, 200, 150)
    assert a.canonical_json() == b.canonical_json() and a.spec_id == b.spec_id
    assert len(a.spec_id) == 16
    assert parse_spec({**one, "name": "another label"}, 200, 150).spec_id == a.spec_id
    assert parse_spec({**one, "interval": 30}, 200, 150).spec_id != a.spec_id


def test_defaults_are_filled_in():
    spec = parse_spec({}, 300, 400)
    assert (spec.anchor, spec.interval, spec.min_dwell, spec.hysteresis) == ("bottom_center", 60.0, 0.0, 5.0)
    assert spec.as_json()["calibration"] is None
    assert parse_spec(spec.as_json(), 300, 400).spec_id == spec.spec_id

"""`find_moments`: where every requested label is present, from a job's track intervals."""

from __future__ import annotations

import pytest

from detector.services.search import Span, VideoBounds, find_moments

FPS = 10.0


def span(track_id: int, label: str, first: float, last: float) -> Span:
    """A track seen from ``first`` to ``last`` seconds, in a 10 fps video."""
    return Span(track_id, label, round(first * FPS), round(last * FPS), first, last)


def bounds(moments) -> list[tuple[float, float]]:
    return [(m.start_time, m.end_time) for m in moments]


def test_overlapping_labels_make_one_moment_of_their_overlap():
    spans = [span(1, "person", 10, 20), span(2, "dog", 15, 30)]
    [moment] = find_moments(spans, ["person", "dog"])
    assert (moment.start_time, moment.end_time) == (15, 20)
    assert (moment.start_frame, moment.end_frame) == (150, 200)
    assert [t.track_id for t in moment.tracks] == [1, 2]
    assert moment.duration == 5


def test_labels_apart_are_no_moment_unless_within_the_window():
    spans = [span(1, "person", 10, 20), span(2, "dog", 21, 30)]
    assert find_moments(spans, ["person", "dog"]) == []
    assert find_moments(spans, ["person", "dog"], window=0.9) == []
    # Each widened by 1 s: 9-21 and 20-31.
    [moment] = find_moments(spans, ["person", "dog"], window=2, video=VideoBounds(fps=FPS))
    assert (moment.start_time, moment.end_time) == (20, 21)
    # The boundary tracks' own frames, moved by a second at 10 fps.
    assert (moment.start_frame, moment.end_frame) == (200, 210)


def test_min_duration_leaves_out_shorter_moments():
    spans = [
        span(1, "person", 10, 20),
        span(2, "dog", 15, 30),
        span(3, "dog", 40, 41),
        span(4, "person", 39, 50),
    ]
    assert bounds(find_moments(spans, ["person", "dog"])) == [(15, 20), (40, 41)]
    assert bounds(find_moments(spans, ["person", "dog"], min_duration=5)) == [(15, 20)]
    assert find_moments(spans, ["person", "dog"], min_duration=5.01) == []


def test_a_moment_lasts_while_any_track_of_each_label_is_there():
    # Two people one after the other (touching at 20 s), one dog throughout: one moment,
    # with all three tracks; a second dog inside it adds a track, not a moment.
    spans = [
        span(1, "person", 5, 20),
        span(2, "person", 20, 35),
        span(3, "dog", 10, 30),
        span(4, "dog", 12, 14),
    ]
    [moment] = find_moments(spans, ["person", "dog"])
    assert (moment.start_time, moment.end_time) == (10, 30)
    assert [t.track_id for t in moment.tracks] == [1, 2, 3, 4]


def test_a_gap_in_one_label_splits_the_moment():
    spans = [span(1, "person", 0, 10), span(2, "person", 12, 20), span(3, "car", 0, 20)]
    assert bounds(find_moments(spans, ["person", "car"])) == [(0, 10), (12, 20)]
    # A window wider than the gap joins them (the ends stay inside the video).
    joined = find_moments(spans, ["person", "car"], window=3, video=VideoBounds(FPS, 201, 20.0))
    assert bounds(joined) == [(0, 20)]
    assert (joined[0].start_frame, joined[0].end_frame) == (0, 200)


def test_objects_in_the_same_single_frame_are_a_moment_of_no_length():
    spans = [span(1, "person", 3, 3), span(2, "dog", 3, 3), span(3, "dog", 3.1, 3.1)]
    assert bounds(find_moments(spans, ["person", "dog"])) == [(3, 3)]
    assert find_moments(spans, ["person", "dog"], min_duration=0.01) == []


def test_one_label_is_its_tracks_in_view_and_three_need_all_three():
    spans = [span(1, "person", 0, 4), span(2, "person", 3, 8), span(3, "dog", 2, 9), span(4, "cat", 6, 12)]
    assert bounds(find_moments(spans, ["person"])) == [(0, 8)]
    assert bounds(find_moments(spans, ["person", "dog", "cat"])) == [(6, 8)]
    assert find_moments(spans, ["person", "horse"]) == []


def test_other_labels_are_ignored_and_labels_count_once():
    spans = [span(1, "person", 0, 10), span(2, "car", 0, 10), span(3, "dog", 20, 30)]
    assert bounds(find_moments(spans, ["person", "person"])) == [(0, 10)]
    [moment] = find_moments(spans, ["person", "car"])
    assert [t.track_id for t in moment.tracks] == [1, 2]


@pytest.mark.parametrize("window", [0.0, 1.0, 4.0])
def test_moments_match_a_frame_by_frame_count(window):
    """Against a brute-force scan at 1/100 s: the moments are exactly the times (from the
    video's start on) at which every label is within window/2 of one of its tracks."""
    spans = [
        span(1, "a", 0.5, 2.0),
        span(2, "b", 1.0, 1.5),
        span(3, "a", 3.0, 6.0),
        span(4, "b", 5.5, 9.0),
        span(5, "b", 2.2, 2.4),
        span(6, "a", 8.0, 8.0),
    ]
    moments = find_moments(spans, ["a", "b"], window=window)
    half = window / 2

    def present(t: float, label: str) -> bool:
        return any(
            s.first_timestamp - half <= t <= s.last_timestamp + half for s in spans if s.label == label
        )

    assert all(m.start_time >= 0 for m in moments)
    for step in range(0, 1300):
        t = step / 100
        inside = any(m.start_time <= t <= m.end_time for m in moments)
        assert inside == (present(t, "a") and present(t, "b")), t

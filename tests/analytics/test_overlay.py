"""The annotated video's overlay of an analytics: zones, lines and running counts."""

from __future__ import annotations

import av
import numpy as np

from detector.analytics import analyse_frames, parse_spec
from detector.analytics.overlay import overlay_for
from detector.render import render_video
from tests.analytics.tracks import straight, tracked_frames

LINE = {"name": "gate", "points": [[0, 60], [160, 60]], "in": "left"}
ZONE = {"name": "low", "polygon": [[10, 80], [150, 80], [150, 115], [10, 115]]}


def _analysis():
    frames = list(range(20))
    tracks = {1: straight(frames, (40, 20), (0, 5)), 2: straight(frames, (120, 110), (0, -5))}
    spec = parse_spec({"lines": [LINE], "zones": [ZONE]}, 160, 120)
    return spec, analyse_frames(spec, tracked_frames(tracks, frames)).results


def test_the_counts_run_with_the_frames():
    spec, results = _analysis()
    overlay = overlay_for(spec, results)
    crossings = sorted(e["frame"] for e in results["events"] if e["kind"] == "line")
    assert len(crossings) == 2
    assert overlay(0).text == ("gate: in 0 out 0", "low: 1 inside, 1 entered")  # track 2 starts inside
    assert overlay(crossings[0] - 1).text[0] == "gate: in 0 out 0"
    assert overlay(19).text[0] == "gate: in 1 out 1"
    (name, a, b, tip) = overlay(0).lines[0]
    assert (name, a, b) == ("gate", (0.0, 60.0), (160.0, 60.0))
    assert tip[1] < 60  # the arrow points to the in side: left of left-to-right is up


def test_the_render_draws_the_line(tmp_path, small_video):
    spec, results = _analysis()
    plain, marked = tmp_path / "plain.mp4", tmp_path / "marked.mp4"
    frames = tracked_frames({}, range(20))
    render_video(small_video, plain, frames)
    render_video(small_video, marked, frames, overlay=overlay_for(spec, results))

    def row(path, y):
        with av.open(str(path)) as video:
            image = next(video.decode(video=0)).to_ndarray(format="bgr24")
        return image[y - 1 : y + 2, 100:140].reshape(-1, 3).mean(axis=0)

    b, g, r = row(marked, 60)
    assert b > 150 and r > 150 and g < 100, (b, g, r)  # magenta
    assert not np.allclose(row(plain, 60), row(marked, 60), atol=30)
    assert np.allclose(row(plain, 30), row(marked, 30), atol=12)  # away from it, the video as it was

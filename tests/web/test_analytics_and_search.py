"""The job page's analytics panel and the search page in headless Chromium, against one
real service (tests/web/tracked_job.py: the API on loopback, real workers, and a
tracked job whose stored tracks are the synthetic clip's two moving shapes, a car
moving right and a person moving left, so every answer is known).

Analytics: draw a zone and a line over the video with the mouse, run, read the
counts, charts and events, seek from an event, show the heatmap, swap the line's "in"
side and run again, reload. The line is vertical at x = 80, drawn top to bottom with
"in" on its left (the picture's right): the car crosses it in, at 72/7 frames =
1.029 s; the person crosses it out. The zone is the left half (x 4 to 76): both car
tracks and the first person track are seen in it, so 3 entries and 3 exits (a track
that ends inside exits where it was last seen).

Search: the car and the person are each tracked from 0 s to 2 s and again from 2.1 s
to 2.9 s, so "person, car" is together in two moments, 0-2 s and 2.1-2.9 s: search by
labels, window and shortest duration, read the moments and their thumbnails, page
through them, open the job's player at a moment's time.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.web.conftest import Watched
from tests.web.tracked_job import (  # noqa: F401 (the fixtures)
    HEIGHT,
    PASSWORD,
    WIDTH,
    TrackedService,
    live_tracked_service,
    seeded_weights,
)

pytestmark = pytest.mark.slow

ZONE = [(4.0, 4.0), (76.0, 4.0), (76.0, 92.0), (4.0, 92.0)]
LINE = [(80.0, 4.0), (80.0, 92.0)]
CAR_CROSSES = 72 / 7 / 10  # seconds: the square's bottom centre (x + 8) reaches x = 80


def sign_in(watched: Watched, username: str) -> None:
    page = watched.page
    page.goto("/#/signin")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.auth button[type=submit]")
    page.wait_for_selector("#sign-out")


def frame_to_page(page: Any, point: tuple[float, float]) -> tuple[float, float]:
    """A stored-frame point in page coordinates: the picture letterboxed in the <video> (rotation 0)."""
    g = page.evaluate(
        """() => { const v = document.querySelector('video.video'); const r = v.getBoundingClientRect();
                   return {left: r.left, top: r.top, cw: v.clientWidth, ch: v.clientHeight,
                           vw: v.videoWidth, vh: v.videoHeight}; }"""
    )
    scale = min(g["cw"] / g["vw"], g["ch"] / g["vh"])
    ox, oy = (g["cw"] - g["vw"] * scale) / 2, (g["ch"] - g["vh"] * scale) / 2
    return g["left"] + ox + point[0] * scale, g["top"] + oy + point[1] * scale


def flat(points: list[Any]) -> list[float]:
    return [float(v) for point in points for v in point]


def seconds_text(value: float | None) -> str:
    """The page's formatSeconds, for the short durations of this clip."""
    if value is None:
        return "—"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def cells(page: Any, table: str, rule: str, label: str) -> list[str]:
    return page.locator(f"table.{table} tr[data-rule='{rule}'][data-label='{label}'] td").all_text_contents()


def bar_values(page: Any, chart: int, series: str) -> list[int]:
    bars = page.locator("figure.chart svg").nth(chart).locator(f"rect.bar[data-series='{series}']")
    return [int(v) for v in bars.evaluate_all("bars => bars.map(b => b.dataset.value)")]


def run_and_wait(page: Any, previous: str | None) -> tuple[str, list[str]]:
    """Click Run; the analytics id the panel then shows, and the statuses it went through."""
    page.evaluate(
        """() => { const s = document.querySelector('section.analytics'); window.statuses = [];
                   new MutationObserver(() => window.statuses.push(s.dataset.status))
                     .observe(s, {attributes: true, attributeFilter: ['data-status']}); }"""
    )
    page.click("#run-analytics")
    page.wait_for_function(
        "p => { const s = document.querySelector('section.analytics');"
        " return s.dataset.status === 'succeeded' && s.dataset.analytics !== p; }",
        arg=previous or "",
        timeout=60_000,
    )
    return page.eval_on_selector("section.analytics", "s => s.dataset.analytics"), page.evaluate(
        "() => window.statuses"
    )


def test_draw_a_zone_and_a_line_run_read_the_counts_and_seek_from_an_event(
    tracked_service: TrackedService, browser_page: Any
):
    service = tracked_service
    job, client = service.job, service.client()
    watched = browser_page(service.url)
    page = watched.page
    sign_in(watched, service.username)
    page.goto(f"/#/jobs/{job['id']}")
    page.wait_for_function("() => document.querySelector('video.video')?.readyState >= 2")
    page.click("section.analytics summary")  # folded until opened
    assert page.locator("#run-analytics").is_disabled()  # nothing drawn yet

    # The zone: four corners, then the first one again closes it. The line: two clicks.
    page.click("#draw-zone")
    for corner in ZONE + ZONE[:1]:
        page.mouse.click(*frame_to_page(page, corner))
    page.click("#draw-line")
    for end in LINE:
        page.mouse.click(*frame_to_page(page, end))
    assert page.locator(".shape").count() == 2
    assert page.locator(".shape[data-kind=zone] .shape-name").input_value() == "zone 1"
    assert page.locator(".shape[data-kind=line] .shape-name").input_value() == "line 1"
    assert page.locator(".shape[data-kind=line] .shape-in").input_value() == "left"
    # Without a pointer: a shape's points typed (this one removed again).
    page.click(".typed-shape summary")
    page.fill("#typed-points", "10,10 20.5,10")
    page.click(".typed-shape button:has-text('Add as line')")
    assert page.locator(".shape[data-name='line 2'] .shape-points").input_value() == "10,10 20.5,10"
    page.click(".shape[data-name='line 2'] button:has-text('Remove')")
    assert page.locator(".shape").count() == 2

    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            sent.append(json.loads(r.post_data))
            if r.method == "POST" and r.url.endswith(f"/api/jobs/{job['id']}/analytics")
            else None
        ),
    )
    aid, statuses = run_and_wait(page, None)
    # The run showed its progress before its results (a new spec is queued first).
    assert statuses[0] in ("queued", "running") and statuses[-1] == "succeeded", statuses

    # The spec the page sent: the clicked points in frame pixels (within a fraction of
    # a frame pixel: the picture is shown several times its size), every class.
    (zone,) = sent[-1]["zones"]
    (line,) = sent[-1]["lines"]
    assert zone["name"] == "zone 1" and "classes" not in zone
    assert flat(zone["polygon"]) == pytest.approx(flat(ZONE), abs=0.5)
    assert line["name"] == "line 1" and line["in"] == "left"
    assert flat(line["points"]) == pytest.approx(flat(LINE), abs=0.5)

    # The counts: the shapes' known ones, as the page shows them and the API answers.
    results = client.get(f"/api/jobs/{job['id']}/analytics/{aid}", headers=service.headers).json["results"]
    (zone_result,) = results["zones"]
    (line_result,) = results["lines"]
    assert (line_result["in"], line_result["out"]) == (1, 1)
    assert cells(page, "line-counts", "line 1", "") == ["all", "1", "1"]
    assert cells(page, "line-counts", "line 1", "car") == ["car", "1", "0"]
    assert cells(page, "line-counts", "line 1", "person") == ["person", "0", "1"]
    assert (zone_result["entries"], zone_result["exits"]) == (3, 3)
    dwell = zone_result["dwell"]
    assert cells(page, "zone-counts", "zone 1", "") == [
        "all", "3", "3", seconds_text(dwell["p50"]), seconds_text(dwell["p95"]), seconds_text(dwell["max"]),
        str(zone_result["peak_occupancy"]),
    ]  # fmt: skip
    # Dwell per track: the first car from 0 s until it leaves at x + 8 = 76 (0.971 s), the
    # second car from 2.1 s to 2.9 s, the person from x = 76 (1.186 s) until its track ends (2 s).
    assert dwell["max"] == pytest.approx(0.9 + 5 / 7 / 10, abs=0.01)
    assert dwell["p50"] == pytest.approx(2.0 - 83 / 7 / 10, abs=0.01)
    assert cells(page, "zone-counts", "zone 1", "car")[:3] == ["car", "2", "2"]
    assert cells(page, "zone-counts", "zone 1", "person")[:3] == ["person", "1", "1"]

    # The charts, per 1 s interval of the 3 s clip: both crossings in the second.
    assert len(results["intervals"]) == 3
    assert bar_values(page, 0, "in") == [0, 1, 0]
    assert bar_values(page, 0, "out") == [0, 1, 0]
    assert sum(bar_values(page, 1, "entries")) == 3

    # The events, in time order; a click on the car's crossing seeks the player there.
    events = results["events"]
    assert len(events) == 8  # 2 crossings, 3 entries, 3 exits
    shown = page.locator("ol.events button.event")
    assert [float(t) for t in shown.evaluate_all("bs => bs.map(b => b.dataset.timestamp)")] == [
        e["timestamp"] for e in events
    ]
    (index, crossing) = next(
        (i, e) for i, e in enumerate(events) if e["kind"] == "line" and e["label"] == "car"
    )
    assert crossing["direction"] == "in" and crossing["timestamp"] == pytest.approx(CAR_CROSSES, abs=0.01)
    page.evaluate("() => { document.querySelector('video.video').currentTime = 2.5; }")
    page.wait_for_function("() => document.querySelector('video.video').currentTime === 2.5")
    shown.nth(index).click()
    assert page.eval_on_selector("video.video", "v => v.currentTime") == pytest.approx(
        crossing["timestamp"], abs=1e-3
    )
    page.wait_for_function(
        "t => Math.abs(Number(document.querySelector('canvas.overlay').dataset.time) - t) < 0.05",
        arg=crossing["timestamp"],
    )
    # The rule filter keeps one rule's events.
    page.select_option("#event-rule", "line 1")
    assert shown.count() == 2

    # The heatmap, over the picture, at the picture's size.
    page.check("#show-heatmap")
    page.wait_for_function("() => document.querySelector('img.heatmap')?.naturalWidth > 0")
    assert page.eval_on_selector("img.heatmap", "i => [i.naturalWidth, i.naturalHeight]") == [WIDTH, HEIGHT]
    heat = page.locator("img.heatmap").bounding_box()
    left, top = frame_to_page(page, (0, 0))
    right, bottom = frame_to_page(page, (WIDTH, HEIGHT))
    assert heat["x"] == pytest.approx(left, abs=1) and heat["y"] == pytest.approx(top, abs=1)
    assert heat["width"] == pytest.approx(right - left, abs=1)
    assert heat["height"] == pytest.approx(bottom - top, abs=1)

    # Edit and run again: with the other side in, the car goes out and the person in.
    page.select_option(".shape[data-kind=line] .shape-in", "right")
    assert "run again" in page.locator(".analytics-status").text_content()
    again, _ = run_and_wait(page, aid)
    assert again != aid and sent[-1]["lines"][0]["in"] == "right"
    assert cells(page, "line-counts", "line 1", "car") == ["car", "0", "1"]
    assert cells(page, "line-counts", "line 1", "person") == ["person", "1", "0"]

    # A reload opens the panel on the newest analytics, its shapes ready to edit.
    page.reload()
    page.click("section.analytics summary")
    page.wait_for_function(
        "a => document.querySelector('section.analytics')?.dataset.analytics === a", arg=again
    )
    assert page.locator(".shape").count() == 2
    assert page.locator(".shape[data-kind=line] .shape-in").input_value() == "right"
    assert cells(page, "line-counts", "line 1", "car") == ["car", "0", "1"]
    watched.assert_clean()


# --- Search ---------------------------------------------------------------------------


def moments(page: Any) -> list[tuple[str, float]]:
    return [
        (job_id, float(start))
        for job_id, start in page.locator("li.moment").evaluate_all(
            "ms => ms.map(m => [m.dataset.jobId, m.dataset.start])"
        )
    ]


def test_search_shows_the_moments_and_opens_the_player_at_their_time(
    tracked_service: TrackedService, browser_page: Any
):
    service = tracked_service
    job = service.job
    watched = browser_page(service.url)
    page = watched.page
    sign_in(watched, service.username)
    page.click("#sections a:has-text('Search')")
    page.wait_for_selector("#search-form")
    # The model's labels can be ticked as well as typed.
    page.wait_for_selector(".search .label-chooser:not([hidden])", state="attached")

    page.fill("#search-labels", "person, car")
    page.fill("#search-window", "0")
    page.fill("#search-min-duration", "0")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("li.moment")
    query = parse_qs(page.evaluate("() => location.hash").split("?", 1)[1])
    assert query == {"labels": ["person,car"], "window": ["0"], "min_duration": ["0"]}
    page.wait_for_function("() => !document.querySelector('#search-form button[type=submit]').disabled")

    # The page shows the API's moments, in its order: this job's two, in time order.
    answer = (
        service.client()
        .get("/api/search?labels=person,car&window=0&min_duration=0", headers=service.headers)
        .json
    )
    assert [(m["job_id"], m["start_time"]) for m in answer["moments"]] == moments(page)
    assert moments(page) == [(job["id"], 0.0), (job["id"], 2.1)]
    first = page.locator("li.moment").nth(0)
    assert first.locator(".moment-file").text_content() == "crossing.mp4"
    assert "0.00 s to 2.00 s" in first.locator(".moment-facts").text_content()
    # Each track's thumbnail, loaded (through its media token) from the service.
    assert first.locator(".thumb figcaption").all_text_contents() == ["car #1", "person #3"]
    page.wait_for_function(
        "() => [...document.querySelectorAll('li.moment img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("li.moment img").count() == 4
    assert page.locator("#more-moments").is_hidden()

    # The shortest duration leaves out the 0.8 s moment.
    page.fill("#search-min-duration", "1")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("() => location.hash.includes('min_duration=1')")
    page.wait_for_function("() => document.querySelectorAll('li.moment').length === 1")
    assert moments(page) == [(job["id"], 0.0)]

    # Paging: a moment a page, then the next one with "More moments".
    page.goto("/#/search?labels=person,car&limit=1")
    page.wait_for_selector("#more-moments:not([hidden])")
    assert moments(page) == [(job["id"], 0.0)]
    page.click("#more-moments")
    page.wait_for_function("() => document.querySelectorAll('li.moment').length === 2")
    assert moments(page) == [(job["id"], 0.0), (job["id"], 2.1)]
    page.wait_for_selector("#more-moments", state="hidden")

    # A moment opens the job's player at its start.
    page.locator("li.moment").nth(1).locator("a.open-moment").click()
    page.wait_for_function("() => document.querySelector('video.video')?.readyState >= 2")
    assert page.evaluate("() => location.hash") == f"#/jobs/{job['id']}?t=2.1"
    page.wait_for_function("() => document.querySelector('video.video').currentTime === 2.1")
    page.wait_for_function("() => document.querySelector('canvas.overlay').dataset.frame === '21'")
    # Back returns to the results.
    page.go_back()
    page.wait_for_function("() => document.querySelectorAll('li.moment').length >= 1")
    watched.assert_clean()

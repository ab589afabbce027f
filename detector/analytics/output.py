"""What analytics results are turned into for people: the heatmap as a PNG, the events
as CSV or JSON Lines, and the counts per interval as CSV (docs/analytics.md, Exports)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from detector.analytics.positions import Heatmap

EXPORTS = ("events-csv", "events-jsonl", "counts-csv")
EVENT_COLUMNS = ("timestamp", "frame", "track_id", "label", "rule", "kind", "event", "direction")
COUNT_COLUMNS = ("start", "end", "rule", "kind", "label", "in", "out")


def heatmap_png(heatmap: Heatmap) -> bytes:
    """The heatmap as a PNG the frame's size: a colour map (blue to red) of the anchors'
    density, log-scaled and smoothed over a few cells, transparent where there were none."""
    counts = heatmap.counts.astype(np.float32)
    smooth = cv2.GaussianBlur(np.log1p(counts), (0, 0), sigmaX=1.5)
    top = float(smooth.max())
    level = np.asarray(smooth / top if top > 0 else smooth, dtype=np.float32)
    image = cv2.resize(level, (heatmap.width, heatmap.height), interpolation=cv2.INTER_LINEAR)
    gray = np.clip(image * 255, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(gray, cv2.COLORMAP_JET)
    alpha = np.clip(image * 4 * 255, 0, 200).astype(np.uint8)  # faint density still shows
    ok, png = cv2.imencode(".png", np.dstack([colour, alpha]))
    if not ok:
        raise ValueError("the heatmap could not be encoded as PNG")
    return bytes(png.tobytes())


def _csv(rows: Iterator[list[Any]], header: tuple[str, ...]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def events_csv(results: dict[str, Any]) -> Iterator[str]:
    return _csv(([ev[c] for c in EVENT_COLUMNS] for ev in results["events"]), EVENT_COLUMNS)


def events_jsonl(results: dict[str, Any]) -> Iterator[str]:
    for ev in results["events"]:
        yield json.dumps(ev) + "\n"


def count_rows(results: dict[str, Any]) -> Iterator[list[Any]]:
    """``[start, end, rule, kind, label, in, out]`` per interval, rule and class with a count."""
    intervals = results["intervals"]
    rules = [("line", ln, "in", "out") for ln in results["lines"]]
    rules += [("zone", z, "entries", "exits") for z in results["zones"]]
    for k, bounds in enumerate(intervals):
        for kind, rule, into, out in rules:
            here = rule["intervals"][k]
            for label in sorted(set(here[into]) | set(here[out])):
                yield [
                    bounds["start"],
                    bounds["end"],
                    rule["name"],
                    kind,
                    label,
                    here[into].get(label, 0),
                    here[out].get(label, 0),
                ]


def counts_csv(results: dict[str, Any]) -> Iterator[str]:
    return _csv(count_rows(results), COUNT_COLUMNS)


def export(fmt: str, results: dict[str, Any]) -> Iterator[str]:
    """One of `EXPORTS` of ``results``, in text pieces."""
    if fmt == "events-csv":
        return events_csv(results)
    if fmt == "events-jsonl":
        return events_jsonl(results)
    if fmt == "counts-csv":
        return counts_csv(results)
    raise ValueError(f"unknown analytics export {fmt!r}: one of {', '.join(EXPORTS)}")


def media_type(fmt: str) -> str:
    return "application/x-ndjson" if fmt.endswith("jsonl") else "text/csv"

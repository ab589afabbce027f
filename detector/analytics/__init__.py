"""Analytics over a job's tracks: line crossings, zone visits and dwell, occupancy,
speed and a heatmap, from a spec of zones and lines (docs/analytics.md).

A pure library, like detector.tracking: nothing here knows about Flask, Celery or
the database. The pipeline feeds it a job's stored frames, ``detector predict``
the frames it found; `analyse_frames` gives both the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from detector.analytics.engine import analyse
from detector.analytics.output import EXPORTS, export, heatmap_png, media_type
from detector.analytics.positions import Heatmap, PositionCollector, Positions
from detector.analytics.spec import AnalyticsSpec, SpecError, parse_spec
from detector.detection import AnalysedFrame


@dataclass(frozen=True)
class Analysis:
    """A spec's results (JSON values) and its heatmap's counts."""

    results: dict[str, Any]
    heatmap: Heatmap


def analyse_frames(
    spec: AnalyticsSpec,
    frames: Iterable[AnalysedFrame],
    on_frame: Callable[[int], None] | None = None,
) -> Analysis:
    """Analyse tracked frames given in frame order; ``on_frame(n)`` after each n-th frame read."""
    collector = PositionCollector(spec.anchor, spec.width, spec.height)
    for n, frame in enumerate(frames, start=1):
        collector.add(frame)
        if on_frame is not None:
            on_frame(n)
    return Analysis(analyse(spec, collector.finish()), collector.heatmap)


__all__ = [
    "EXPORTS",
    "Analysis",
    "AnalyticsSpec",
    "Heatmap",
    "PositionCollector",
    "Positions",
    "SpecError",
    "analyse",
    "analyse_frames",
    "export",
    "heatmap_png",
    "media_type",
    "parse_spec",
]

"""`detector predict`: the pipeline's detection (and tracking) over a whole video, in
one process: the baseline the pipeline's results are compared with."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.detection import AnalysedFrame, get_predictor
from detector.detection.catalog import load_catalog
from detector.pipeline.frames import detect_range
from detector.pipeline.results import detections_page
from detector.runtime.allocator import loaded_allocator
from detector.tracking import Tracker, TrackSummary, frame_rate_of
from detector.video import index_frames, plan_chunks
from detector.video.selection import FrameSelection


@dataclass
class Prediction:
    """What `predict` found: the analysed frames in order, the video's frame count,
    the tracks (when tracked) and timing figures (model loading excluded)."""

    frames: list[AnalysedFrame]
    video_frames: int
    timing: dict[str, Any]
    tracks: list[TrackSummary] | None = None

    def page(self) -> dict[str, Any]:
        """The frames as one page of ``GET /api/jobs/<id>/detections`` that holds them all."""
        return detections_page(
            job_id=None,
            frames_total=len(self.frames),
            start=0,
            limit=max(len(self.frames), 1),
            frames=[(f.frame, f.timestamp, f.detections.to_json()) for f in self.frames],
        )


def track_results(
    frames: list[AnalysedFrame],
) -> tuple[list[AnalysedFrame], list[TrackSummary], float]:
    """``frames`` with a track id on every object, as the pipeline's `track_objects`
    gives them (the same tracker, fed the same frames in the same order), the
    tracks, and the seconds tracking took."""
    started = time.perf_counter()
    tracker = Tracker(frame_rate_of([f.timestamp for f in frames]))
    tracked = [f._replace(detections=tracker.update(f.frame, f.timestamp, f.detections)) for f in frames]
    return tracked, tracker.summaries(), time.perf_counter() - started


def predict(
    path: Path,
    config: Mapping[str, Any],
    score_threshold: float,
    *,
    selection: FrameSelection | None = None,
    classes: Collection[int] | None = None,
    track: bool = False,
    model: str | None = None,
) -> Prediction:
    """Detect objects in the selected frames of ``path`` (default: every frame), as the
    pipeline does, with the model named ``model`` of the deployment's catalog
    (None: its default), and track them when ``track``."""
    predictor = get_predictor(load_catalog(config).settings(model))
    started = time.perf_counter()
    index = index_frames(path)
    chosen = (selection or FrameSelection()).select(index.timestamps())
    frames: list[AnalysedFrame] = []
    if chosen:
        plan = plan_chunks(index, len(chosen), chosen)[0]  # the selection as one chunk
        frames = detect_range(path, predictor, plan, score_threshold=score_threshold, classes=classes)
    seconds = time.perf_counter() - started
    tracks, tracking_seconds = None, 0.0
    if track:
        frames, tracks, tracking_seconds = track_results(frames)
    timing = {
        "model": predictor.name,
        "device": predictor.device,
        "batch_size": predictor.batch_size,
        "streams": predictor.streams,
        "frames": len(frames),
        "video_frames": len(index),
        "seconds": seconds,
        "frames_per_second": len(frames) / seconds if seconds else 0.0,
        "tracking_seconds": tracking_seconds,
        "allocator": loaded_allocator(),
    }
    return Prediction(frames=frames, video_frames=len(index), timing=timing, tracks=tracks)


def predict_video(
    path: Path, config: Mapping[str, Any], score_threshold: float, **options: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Detections for the selected frames of ``path``, shaped exactly like a page of
    ``GET /api/jobs/<id>/detections`` that holds them all, and timing figures."""
    found = predict(path, config, score_threshold, **options)
    return found.page(), found.timing

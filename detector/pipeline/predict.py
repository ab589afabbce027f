"""`detector predict`: the pipeline's detection over a whole video, in one process."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from detector.detection import DetectorSettings, get_predictor
from detector.pipeline.frames import detect_range
from detector.pipeline.results import FrameResult, detections_page
from detector.runtime.allocator import loaded_allocator
from detector.video import index_frames, plan_chunks
from detector.video.selection import FrameSelection


def predict_frames(
    path: Path,
    config: Mapping[str, Any],
    score_threshold: float,
    *,
    selection: FrameSelection | None = None,
    classes: Collection[int] | None = None,
) -> tuple[list[FrameResult], int, dict[str, Any]]:
    """Detections for the selected frames of ``path`` (default: every frame), as the
    pipeline makes them; the video's frame count; timing figures (model loading excluded)."""
    predictor = get_predictor(DetectorSettings.from_config(config))
    started = time.perf_counter()
    index = index_frames(path)
    chosen = (selection or FrameSelection()).select([index.timestamp(pts) for pts in index.pts])
    frames: list[FrameResult] = []
    if chosen:
        plan = plan_chunks(index, len(chosen), chosen)[0]  # the selection as one chunk
        frames = detect_range(path, predictor, plan, score_threshold=score_threshold, classes=classes)
    seconds = time.perf_counter() - started
    return (
        frames,
        len(index),
        {
            "model": predictor.name,
            "device": predictor.device,
            "batch_size": predictor.batch_size,
            "frames": len(frames),
            "video_frames": len(index),
            "seconds": seconds,
            "frames_per_second": len(frames) / seconds if seconds else 0.0,
            "allocator": loaded_allocator(),
        },
    )


def predict_video(
    path: Path,
    config: Mapping[str, Any],
    score_threshold: float,
    *,
    selection: FrameSelection | None = None,
    classes: Collection[int] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Detections for the selected frames of ``path``, shaped exactly like a page of
    ``GET /api/jobs/<id>/detections`` that holds them all, and timing figures."""
    frames, _, timing = predict_frames(path, config, score_threshold, selection=selection, classes=classes)
    page = detections_page(
        job_id=None, frames_total=len(frames), start=0, limit=max(len(frames), 1), frames=frames
    )
    return page, timing

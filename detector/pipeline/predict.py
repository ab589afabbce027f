"""`detector predict`: the pipeline's detection over a whole video, in one process."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detector.detection import DetectorSettings, get_predictor
from detector.pipeline.frames import detect_range
from detector.pipeline.results import detections_page
from detector.runtime.allocator import loaded_allocator
from detector.video import index_frames, plan_chunks


def predict_video(
    path: Path, config: Mapping[str, Any], score_threshold: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Detections for every frame of ``path``, shaped exactly like a page of
    ``GET /api/jobs/<id>/detections`` that holds all frames, and timing figures
    (model loading excluded)."""
    predictor = get_predictor(DetectorSettings.from_config(config))
    started = time.perf_counter()
    index = index_frames(path)
    plan = plan_chunks(index, max(1, len(index)))[0]  # the whole video as one chunk
    frames = detect_range(path, predictor, plan, score_threshold=score_threshold)
    seconds = time.perf_counter() - started
    page = detections_page(job_id=None, frames_total=len(index), start=0, limit=len(index), frames=frames)
    return page, {
        "model": predictor.name,
        "device": predictor.device,
        "batch_size": predictor.batch_size,
        "frames": len(frames),
        "seconds": seconds,
        "frames_per_second": len(frames) / seconds if seconds else 0.0,
        "allocator": loaded_allocator(),
    }

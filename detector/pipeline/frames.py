"""Decode a frame range and run it through a predictor in batches.

Used by the `detect_frames` task and by `detector predict`, so both produce
exactly the same detections for the same frames. No Celery, no database.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from contextlib import closing
from itertools import islice
from typing import Any, TypeVar

import numpy as np

from detector.detection import AnalysedFrame, Predictor
from detector.video import ChunkPlan, DecodeStats, VideoSource, decode_frames

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int) -> Generator[T, None, None]:
    """Iterate ``items`` in a background thread, ``depth`` items ahead.

    Decoding (FFmpeg) and inference (PyTorch) both release the GIL, so the
    next batch decodes while the model runs on this one.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="decode-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def detect_range(
    path: VideoSource,
    predictor: Predictor,
    plan: ChunkPlan,
    *,
    score_threshold: float,
    classes: Collection[int] | None = None,
    stats: DecodeStats | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_forward: Callable[[int], None] | None = None,
) -> list[AnalysedFrame]:
    """Detections for the frames of ``plan``, one `AnalysedFrame` per frame, in order.

    Objects score at least ``score_threshold`` and, when ``classes`` are given,
    have one of those class ids.

    ``on_batch(frames_done)`` is called after each batch (progress, cancellation),
    while the predictor's other streams go on with the next ones;
    ``on_forward(size)`` after each forward pass of the model, with its real size
    (smaller than the batch after the device ran out of memory).
    """
    stats = stats if stats is not None else DecodeStats()
    wanted = np.fromiter(classes, dtype=np.int64) if classes is not None else None
    frames: list[AnalysedFrame] = []
    # The decoding thread reads two batches ahead, and the predictor's streams take
    # them as they come (Predictor.predict_batches).
    batches = batched(decode_frames(path, plan.seek_pts, plan.frame_pts, stats), predictor.batch_size)
    with closing(prefetch(batches, depth=2)) as read_ahead:
        for found_in_batch in predictor.predict_batches(read_ahead, score_threshold, on_forward=on_forward):
            for found in found_in_batch:
                i = len(frames)
                kept = found if wanted is None else found[np.isin(found.class_id, wanted)]
                frames.append(AnalysedFrame(plan.frames[i], plan.timestamps[i], kept))
            if on_batch is not None:
                on_batch(len(frames))
    return frames

"""The benchmark's INT8 figure: a model at ``precision = "int8"`` against the same model at FP32.

On the shared test data (``--testdata``), the SSD MobileNet V2 ONNX file on
OpenVINO, at FP32 and at INT8 (``detector.detection.quantize``: NNCF, calibrated
on a folder of frames of the same camera that are not the frames measured), on
every ``int8_stride``-th frame of ``vtest.avi``:

* speed: frames/s of each, timed batch by batch in turn (`peak.time_runtimes`),
  and their ratio;
* agreement: the INT8 model's objects at the score threshold matched one to
  one with FP32's (same class, IoU at least 0.5: `realvideo.agreement`);
* average precision with the FP32 detections at the score threshold as the
  reference and the INT8 detections down to the model's score floor ranked by
  score (`average_precision`, at IoU 0.5, the mean over the classes the
  reference has).

The calibration frames are every ``int8_stride``-th frame from ``int8_stride // 2``
on, written as PNG into the scratch folder. Without the shared data the figure
is skipped with a note. Nothing here gates on timing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from detector.bench.figures import Bench
from detector.bench.realvideo import RealVideoData, agreement, box_iou, sampled_frames, ssd_settings
from detector.detection import Detections, DetectorSettings, build_predictor

#: Two objects are the same when they have the same class and at least this IoU.
MATCH_IOU = 0.5


def average_precision(
    reference: Sequence[Detections], found: Sequence[Detections], min_iou: float = MATCH_IOU
) -> dict[str, Any]:
    """Average precision of ``found`` against ``reference`` (taken as the truth), frame by frame.

    For each class the reference has: ``found``'s objects of that class over all
    frames, highest score first, each a true positive when it has IoU at least
    ``min_iou`` with a reference object of its class in its frame not already
    taken (the best such), else a false positive; the AP is the area under the
    precision-recall curve with precision made monotone (all points, as COCO and
    VOC 2010 on).

    Returns:
        ``{"ap": mean over those classes (1.0 when the reference has no object),
        "by_class": {class id: AP}}``.
    """
    classes = sorted({int(c) for frame in reference for c in frame.class_id})
    by_class: dict[int, float] = {}
    for cls in classes:
        truths = [frame.xyxy[frame.class_id == cls] for frame in reference]
        total = sum(len(t) for t in truths)
        ranked = [
            (float(score), index, box)
            for index, frame in enumerate(found)
            for score, box in zip(
                frame.score[frame.class_id == cls], frame.xyxy[frame.class_id == cls], strict=True
            )
        ]
        ranked.sort(key=lambda item: -item[0])
        taken = [np.zeros(len(t), dtype=bool) for t in truths]
        hits = []
        for _, index, box in ranked:
            hit = False
            if len(truths[index]):
                overlaps = box_iou(box[None, :], truths[index])[0]
                overlaps[taken[index]] = -1.0
                best = int(np.argmax(overlaps))
                if overlaps[best] >= min_iou:
                    taken[index][best] = True
                    hit = True
            hits.append(hit)
        by_class[cls] = _area(np.array(hits, dtype=bool), total)
    ap = float(np.mean(list(by_class.values()))) if by_class else 1.0
    return {"ap": round(ap, 4), "by_class": {c: round(v, 4) for c, v in by_class.items()}}


def _area(hits: np.ndarray, total: int) -> float:
    """The area under the precision-recall curve of ranked hits out of ``total`` truths."""
    if total == 0 or not len(hits):
        return 0.0
    true = np.cumsum(hits)
    precision = true / np.arange(1, len(hits) + 1)
    recall = true / total
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or more
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * precision))


def write_calibration(video: Path, folder: Path, stride: int, offset: int) -> Path:
    """Every ``stride``-th frame of ``video`` from ``offset`` on, as PNG files in ``folder``."""
    import av
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            if index % stride == offset:
                cv2.imwrite(str(folder / f"{index:06d}.png"), frame.to_ndarray(format="bgr24"))
    return folder


def compare_precision(
    fp32: DetectorSettings,
    frames: Sequence[np.ndarray],
    calibration: Path,
    score_threshold: float,
) -> dict[str, Any]:
    """The model of ``fp32`` (on OpenVINO) against its INT8 copy calibrated on ``calibration``,
    on ``frames``: frames/s, speed-up, objects matched and AP (see the module docstring)."""
    import time

    from detector.bench.peak import time_runtimes

    int8 = replace(fp32, precision="int8", calibration=str(calibration))
    started = time.perf_counter()
    predictors = {"fp32": build_predictor(fp32)}
    build_fp32 = time.perf_counter() - started
    started = time.perf_counter()
    predictors["int8"] = build_predictor(int8)
    build_int8 = time.perf_counter() - started  # the quantization, the first time
    fps = time_runtimes(predictors, frames, score_threshold)
    found = {key: p.predict(frames, fp32.min_score) for key, p in predictors.items()}
    reference = [d[d.score >= score_threshold] for d in found["fp32"]]
    int8_kept = [d[d.score >= score_threshold] for d in found["int8"]]
    return {
        "frames": len(frames),
        "score_threshold": score_threshold,
        "fp32": {
            "name": predictors["fp32"].name,
            "fps": round(fps["fp32"], 2),
            "build_s": round(build_fp32, 1),
        },
        "int8": {
            "name": predictors["int8"].name,
            "fps": round(fps["int8"], 2),
            "build_s": round(build_int8, 1),
        },
        "speedup": round(fps["int8"] / fps["fp32"], 2),
        "agreement": agreement(reference, int8_kept, MATCH_IOU),
        "average_precision": average_precision(reference, found["int8"], MATCH_IOU),
    }


def int8_figure(bench: Bench) -> dict[str, Any]:
    """The figure (``int8`` in the report); skipped, with a note, without the shared data."""
    options = bench.options
    data = RealVideoData(Path(options.testdata).expanduser().resolve())
    if missing := data.missing():
        note = f"the shared test data is missing: {', '.join(map(str, missing))}"
        bench.log(f"int8: skipped, {note}")
        return {"int8": {"skipped": note}}
    stride = options.int8_stride
    frames = [image for _, image in sampled_frames(data.video, stride)]
    calibration = write_calibration(data.video, bench.out / "int8-calibration", stride, stride // 2)
    settings = replace(
        ssd_settings(data, "openvino", min_score=0.05), cache_dir=str(bench.out / "model-cache")
    )
    load_before = os.getloadavg()[0]
    result = compare_precision(settings, frames, calibration, options.score_threshold)
    bench.log(
        f"int8: SSD {result['int8']['fps']} frames/s against {result['fp32']['fps']} at FP32 "
        f"({result['speedup']}x), {result['agreement']['match_rate']:.1%} of objects matched, "
        f"AP50 {result['average_precision']['ap']:.3f} against FP32"
    )
    return {
        "int8": {
            "video": data.video.name,
            "frame_stride": stride,
            "calibration_frames": len(list(calibration.glob("*.png"))),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "ssd": result,
        }
    }

"""PyTorch eager against ONNX Runtime and OpenVINO: frames/s and agreement, on the same frames.

``compare_runtimes`` decodes a video's first frames once, builds each
runtime's predictor (the torchvision backend, and ``onnxruntime`` and
``openvino`` on the model's ONNX export, which is built and cached first),
warms each up on one untimed batch, then runs the frames batch by batch
through each runtime in turn, timing each runtime's calls. For each runtime it reports frames/s and how many of its objects
match eager's: one to one, greedily by IoU, same class, IoU at least
``MATCH_IOU`` and scores at most ``MATCH_SCORE`` apart, out of the larger of
the two object counts.

    python -m detector.bench.runtimes VIDEO [--model M] [--weights W] [--batch-size 8] ...

prints the result as JSON. Nothing here gates on timing: the figures are for
the report (``detector bench``) and docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import av
import numpy as np

from detector.bench.figures import Bench
from detector.detection import Detections, DetectorSettings, build_predictor
from detector.detection.weights import default_cache_dir

#: The runtimes compared, by backend name; ``torchvision`` is the eager reference.
RUNTIMES = ("torchvision", "onnxruntime", "openvino")

#: Two objects match when they have the same class, IoU at least this, ...
MATCH_IOU = 0.99
#: ... and scores at most this far apart.
MATCH_SCORE = 1e-3


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else float(a == b)


def match_objects(
    expected: Detections,
    got: Detections,
    min_iou: float = MATCH_IOU,
    max_score_diff: float = MATCH_SCORE,
) -> int:
    """How many objects of ``got`` match one of ``expected`` each, one to one.

    Greedy by IoU: candidate pairs (same class, IoU at least ``min_iou``,
    scores at most ``max_score_diff`` apart) are taken best IoU first, each
    object in at most one pair.
    """
    pairs = []
    got_objects = list(zip(got.class_id.tolist(), got.score.tolist(), got.xyxy.tolist(), strict=True))
    expected_objects = zip(
        expected.class_id.tolist(), expected.score.tolist(), expected.xyxy.tolist(), strict=True
    )
    for i, (e_class, e_score, e_box) in enumerate(expected_objects):
        for j, (g_class, g_score, g_box) in enumerate(got_objects):
            if e_class != g_class or abs(e_score - g_score) > max_score_diff:
                continue
            overlap = iou(e_box, g_box)
            if overlap >= min_iou:
                pairs.append((overlap, i, j))
    pairs.sort(reverse=True)
    used_e: set[int] = set()
    used_g: set[int] = set()
    for _, i, j in pairs:
        if i not in used_e and j not in used_g:
            used_e.add(i)
            used_g.add(j)
    return len(used_e)


def match_rate(expected: Sequence[Detections], got: Sequence[Detections]) -> dict[str, Any]:
    """Matched objects over all frames, out of max(objects expected, objects got)."""
    matched = sum(match_objects(e, g) for e, g in zip(expected, got, strict=True))
    n_expected = sum(len(e) for e in expected)
    n_got = sum(len(g) for g in got)
    total = max(n_expected, n_got)
    return {
        "matched": matched,
        "objects_eager": n_expected,
        "objects": n_got,
        "match_rate": round(matched / total, 4) if total else 1.0,
    }


def read_frames(video_path: str | Path, frames: int) -> list[np.ndarray]:
    """The first ``frames`` frames of the video, as BGR ``uint8`` arrays."""
    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return [f.to_ndarray(format="bgr24") for f in islice(container.decode(stream), frames)]


def conditioned_checkpoint(
    model: str, path: str | Path, seed: int = 0, width: int = 640, height: int = 360, spread: float = 2.0
) -> Path:
    """Write seeded weights that are well conditioned on synthetic video frames, for comparisons.

    ``weights=random`` (``torchvision_random_init``) calibrates the model on
    noise images; on video frames (large flat areas) its features come out
    hundreds of times larger than on noise, which is what spreads its scores,
    but it also makes the model so sensitive that eager PyTorch does not agree
    with itself across thread counts (about 60 % of objects match at IoU 0.99
    and 1e-3 in score). So runtimes cannot be compared on it. These weights
    start from the same seeded random model, recalibrate its batch norms and
    FPN scale on synthetic frames of ``width`` x ``height``, and re-draw the
    classifier so its logits spread by ``spread`` (scores over (0, 1)). The
    file is a state dict, loaded as ``weights=<path>``; the detections mean nothing.
    """
    import torch
    from torch import nn

    from detector.detection.torchvision_models import build_torch_model
    from detector.video.synthetic import frame_image

    torch_model: Any = build_torch_model(DetectorSettings(model=model, weights="random", seed=seed))
    calibration = [
        torch.from_numpy(frame_image(101 + 7 * i, width, height)).permute(2, 0, 1).flip(0).float() / 255
        for i in range(4)
    ]
    with torch.no_grad():
        images, _ = torch_model.transform(calibration)
        for module in torch_model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None  # a plain average over the calibration batch
        body = torch_model.backbone.body
        body.train()
        body(images.tensors)
        body.eval()
        features = torch_model.backbone(images.tensors)
        for block, feature in zip(torch_model.backbone.fpn.layer_blocks, features.values(), strict=False):
            conv: Any = block[0] if isinstance(block, nn.Sequential) else block
            scale = feature.std().item()
            conv.weight.div_(scale)
            if conv.bias is not None:
                conv.bias.div_(scale)
        features = torch_model.backbone(images.tensors)
        proposals, _ = torch_model.rpn(images, features)
        heads = torch_model.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, images.image_sizes))
        classifier = heads.box_predictor.cls_score
        generator = torch.Generator().manual_seed(seed)
        classifier.weight.copy_(torch.randn(classifier.weight.shape, generator=generator))
        logits = box_features @ classifier.weight.T
        factor = spread / logits.std().item()
        classifier.weight.mul_(factor)
        classifier.bias.copy_(-logits.mean(0) * factor)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch_model.state_dict(), path)
    return path


def conditioned_weights(model: str, cache_dir: str | None, width: int, height: int) -> str:
    """The file of `conditioned_checkpoint` of ``model`` (seed 0) for frames of ``width`` x
    ``height``, in ``cache_dir`` (None: the default), written first if it is not there."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    checkpoint = folder / "conditioned" / f"{model}-seed0-{width}x{height}.pth"
    if not checkpoint.is_file():
        conditioned_checkpoint(model, checkpoint, width=width, height=height)
    return str(checkpoint)


def compare_runtimes(
    model: str,
    weights: str,
    video_path: str | Path,
    batch_size: int,
    frames: int,
    min_score: float = 0.05,
    score_threshold: float = 0.3,
    cache_dir: str | None = None,
    runtimes: Sequence[str] = RUNTIMES,
) -> dict[str, Any]:
    """Frames/s of each runtime over the same frames, and each one's agreement with eager.

    Args:
        model: a torchvision model name (``identity.TORCHVISION_CHECKPOINTS``).
        weights: ``default``, a file, a URL, ``random``, or ``conditioned``
            (``conditioned_checkpoint`` of the model, seed 0, at the video's frame size).
        video_path: the video whose first ``frames`` frames are used.
        batch_size: frames per ``predict_batch``.
        min_score: the models' score floor.
        score_threshold: objects scoring less are left out (as a job's threshold).
        cache_dir: the weights and export cache (None: the default).
        runtimes: backends to run; ``torchvision`` (eager) first when matching is wanted.

    Returns:
        ``{"model", "weights", "frames", "width", "height", "batch_size",
        "runtimes": {backend: {"fps", "seconds", "objects", "build_s", and against eager
        "matched", "objects_eager", "match_rate"}}, "speedup": {backend: fps / eager fps}}``.
    """
    images = read_frames(video_path, frames)
    if not images:
        raise ValueError(f"no frames in {video_path}")
    result: dict[str, Any] = {
        "model": model,
        "weights": weights,
        "frames": len(images),
        "width": int(images[0].shape[1]),
        "height": int(images[0].shape[0]),
        "batch_size": batch_size,
        "min_score": min_score,
        "score_threshold": score_threshold,
        "runtimes": {},
    }
    if weights == "conditioned":
        height, width = images[0].shape[:2]
        weights = conditioned_weights(model, cache_dir, width, height)
    predictors = {}
    for backend in runtimes:
        settings = DetectorSettings(
            backend=backend,
            model=model,
            weights=weights,
            device="cpu",
            batch_size=batch_size,
            min_score=min_score,
            cache_dir=cache_dir,
        )
        started = time.perf_counter()
        predictors[backend] = build_predictor(settings)
        result["runtimes"][backend] = {
            "name": predictors[backend].name,
            "build_s": round(time.perf_counter() - started, 2),
        }
    # Rounds of a batch for each stream, each runtime in turn (below).
    step = batch_size * max(p.streams for p in predictors.values())
    for predictor in predictors.values():
        predictor.predict(images[:step], score_threshold)  # warm-up, not timed
    # Batch by batch, each runtime in turn: on a shared machine, load that comes
    # and goes slows every runtime alike instead of whichever ran at the time.
    seconds = dict.fromkeys(predictors, 0.0)
    found: dict[str, list[Detections]] = {backend: [] for backend in predictors}
    for pos in range(0, len(images), step):
        batch = images[pos : pos + step]
        for backend, predictor in predictors.items():
            started = time.perf_counter()
            found[backend].extend(predictor.predict(batch, score_threshold))
            seconds[backend] += time.perf_counter() - started
    eager = found.get("torchvision")
    for backend, objects in found.items():
        entry = result["runtimes"][backend]
        entry.update(
            fps=round(len(images) / seconds[backend], 2),
            seconds=round(seconds[backend], 2),
            objects=sum(len(o) for o in objects),
        )
        if eager is not None and backend != "torchvision":
            entry.update(match_rate(eager, objects))
    if "torchvision" in result["runtimes"]:
        base = result["runtimes"]["torchvision"]["fps"]
        result["speedup"] = {
            backend: round(entry["fps"] / base, 2)
            for backend, entry in result["runtimes"].items()
            if backend != "torchvision"
        }
    return result


def runtimes_figure(bench: Bench) -> dict[str, Any]:
    """The benchmark's runtimes figure: `compare_runtimes` on its video (``frames``
    frames, its batch size and model, ``runtimes_weights``). Skipped, with a note,
    for a model that is not torchvision's or with ``--runtimes ''``."""
    from detector.detection.identity import TORCHVISION_CHECKPOINTS

    options = bench.options
    if not options.runtimes:
        return {"runtimes": {"skipped": "--runtimes is empty"}}
    if options.backend != "torchvision" or options.model not in TORCHVISION_CHECKPOINTS:
        note = f"the runtimes are compared on a torchvision model, not {options.backend} {options.model}"
        bench.log(f"runtimes: skipped, {note}")
        return {"runtimes": {"skipped": note}}
    weights = options.runtimes_weights or options.weights
    result = compare_runtimes(
        options.model,
        weights,
        bench.videos.main,
        options.batch_size,
        options.frames,
        float(bench.model_config["DETECTOR_MIN_SCORE"]),
        options.score_threshold,
        cache_dir=str(bench.out / "model-cache"),
        runtimes=options.runtimes,
    )
    for backend, entry in result["runtimes"].items():
        agreement = f", {entry['match_rate']:.2%} of eager's objects matched" if "match_rate" in entry else ""
        bench.log(f"runtime {backend}: {entry['fps']} frames/s{agreement}")
    return {"runtimes": result}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m detector.bench.runtimes", description=__doc__.split("\n")[0]
    )
    parser.add_argument("video")
    parser.add_argument("--model", default="fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument("--weights", default="random", help="default, a file, a URL, random or conditioned")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--min-score", type=float, default=0.05)
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated backends")
    args = parser.parse_args(argv)
    result = compare_runtimes(
        args.model,
        args.weights,
        args.video,
        args.batch_size,
        args.frames,
        args.min_score,
        args.score_threshold,
        args.cache_dir,
        [r for r in args.runtimes.split(",") if r],
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

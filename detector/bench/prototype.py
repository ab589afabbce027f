"""The 2021 prototype's detection loop, for the benchmark to measure the service against.

Written here (not the prototype's code) the way the prototype ran it: frames
decoded with OpenCV (``cv2.VideoCapture``) and sent one at a time through
Detectron2's ``DefaultPredictor``, the config as it is, so a Mask R-CNN config
computes its masks too (the prototype threw them away). Only the weights are
the service's: ``random`` gives the same seeded random weights
(`detectron2_random_init`) as ``DETECTOR_WEIGHTS=random``, so both run the
same model.

Run as ``python -m detector.bench.prototype VIDEO --model CONFIG`` in a
process of its own, on the allocator of its environment (the benchmark starts
it as it starts `detector predict`, with ``LD_PRELOAD`` as the machine gives
it). It prints one line of JSON: frames, seconds (model loading excluded) and
frames/s.

``python -m detector.bench.prototype --save-random-weights FILE --model CONFIG``
writes those seeded random weights to a checkpoint file instead, the whole
model's (masks too). The benchmark has both loops load that file, as they
would load real weights: making random weights runs the model on calibration
images, and that pass, not the detection loop, would otherwise set each
process's peak memory.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def save_random_weights(path: Path, model: str, seed: int) -> None:
    """Write the seeded random weights ``--weights random`` gives ``model`` to ``path``,
    as a checkpoint both this loop and `detector predict` load (``{"model": state_dict}``)."""
    import torch

    built = predictor(model, "random", "cpu", 0.05, seed).model
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"model": built.state_dict()}, partial)
    partial.replace(path)


def predictor(model: str, weights: str, device: str, min_score: float, seed: int) -> Any:
    """The prototype's ``DefaultPredictor`` of ``model`` with ``weights``: ``random``
    (seeded), ``default``/``pretrained`` (the zoo's) or a checkpoint file."""
    import torch
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    cfg = get_cfg()
    local = Path(model).expanduser()
    cfg.merge_from_file(str(local) if local.is_file() else model_zoo.get_config_file(model))
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = min_score
    if weights == "random":
        cfg.MODEL.WEIGHTS = ""  # built from scratch here, then given the service's random weights
    elif weights in ("default", "pretrained"):
        cfg.MODEL.WEIGHTS = model_zoo.get_checkpoint_url(model)
    else:
        cfg.MODEL.WEIGHTS = weights
    torch.manual_seed(seed)
    built = DefaultPredictor(cfg)
    if weights == "random":
        from detector.detection.random_weights import detectron2_input_size, detectron2_random_init

        built.model.to("cpu")
        detectron2_random_init(built.model, seed, detectron2_input_size(cfg))
        built.model.to(device)
    return built


def run(video: str, model: str, weights: str, device: str, min_score: float, seed: int) -> dict[str, float]:
    """Detect in every frame of ``video`` with the prototype's predictor, one frame at a time."""
    import cv2

    detect = predictor(model, weights, device, min_score, seed)
    capture = cv2.VideoCapture(video)
    frames = objects = 0
    started = time.perf_counter()
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        instances = detect(frame)["instances"].to("cpu")
        objects += len(instances.pred_boxes.tensor.numpy())
        frames += 1
    seconds = time.perf_counter() - started
    capture.release()
    return {"frames": frames, "objects": objects, "seconds": seconds, "frames_per_second": frames / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m detector.bench.prototype", description=__doc__.split("\n")[0]
    )
    parser.add_argument("video", nargs="?", help="the video to detect in (not with --save-random-weights)")
    parser.add_argument("--model", default="COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml")
    parser.add_argument("--weights", default="random", help="random (the service's seeded weights) or a file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-score", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--save-random-weights",
        type=Path,
        metavar="FILE",
        help="write the seeded random weights to FILE and stop",
    )
    args = parser.parse_args(argv)
    if args.save_random_weights is not None:
        save_random_weights(args.save_random_weights, args.model, args.seed)
        return
    if args.video is None:
        parser.error("a video is needed")
    found = run(args.video, args.model, args.weights, args.device, args.min_score, args.seed)
    print(json.dumps(found), flush=True)


if __name__ == "__main__":
    main()

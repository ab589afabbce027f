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
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def run(video: str, model: str, weights: str, device: str, min_score: float, seed: int) -> dict[str, float]:
    """Detect in every frame of ``video`` with ``DefaultPredictor``, one frame at a time."""
    import cv2
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
    predictor = DefaultPredictor(cfg)
    if weights == "random":
        from detector.detection.random_weights import detectron2_input_size, detectron2_random_init

        predictor.model.to("cpu")
        detectron2_random_init(predictor.model, seed, detectron2_input_size(cfg))
        predictor.model.to(device)
    capture = cv2.VideoCapture(video)
    frames = objects = 0
    started = time.perf_counter()
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        instances = predictor(frame)["instances"].to("cpu")
        objects += len(instances.pred_boxes.tensor.numpy())
        frames += 1
    seconds = time.perf_counter() - started
    capture.release()
    return {"frames": frames, "objects": objects, "seconds": seconds, "frames_per_second": frames / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m detector.bench.prototype", description=__doc__.split("\n")[0]
    )
    parser.add_argument("video")
    parser.add_argument("--model", default="COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml")
    parser.add_argument("--weights", default="random", help="random (the service's seeded weights) or a file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-score", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    found = run(args.video, args.model, args.weights, args.device, args.min_score, args.seed)
    print(json.dumps(found), flush=True)


if __name__ == "__main__":
    main()

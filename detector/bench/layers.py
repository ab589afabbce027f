"""Where a torchvision model's time goes on OpenVINO: its export's operators, timed one by one.

``profile_layers`` runs the model's ONNX export (or any export file given) on
OpenVINO's CPU plugin with its performance counters on, one frame at a time
on ``threads`` threads, over a video's first frames shrunk as the predictor
shrinks them, and sums the counters' time over the frames: by operator type
and by node, in milliseconds a frame, with the wall time of each inference
beside them. The file is compiled for the frames' size, as `OpenVinoPredictor`
compiles it (``--dynamic``: for any size).

    python -m detector.bench.layers VIDEO [--model M] [--weights conditioned] [--onnx FILE] ...

prints the result as JSON. It is how docs/performance.md found what took the
320 px MobileNet's time outside its multiply-adds ("Against the machine's limit").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av

from detector.detection import DetectorSettings
from detector.detection.onnx_backend import OpenVinoPredictor, compile_openvino


def profile_layers(
    video: str | Path,
    model: str,
    weights: str,
    frames: int = 30,
    threads: int = 1,
    onnx: str | Path | None = None,
    static: bool = True,
    top: int = 12,
    warmup: int = 3,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Milliseconds a frame by operator type and by node, over ``frames`` frames after ``warmup``.

    Args:
        weights: as for the predictor; ``conditioned``: `conditioned_weights` for the video's size.
        onnx: an export file to profile instead of the settings' own (an older
            export, to compare); its input must be what the predictor feeds.
        cache_dir: where the export is cached (None: the default).
    """
    from detector.bench.runtimes import conditioned_weights

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        images = []
        for frame in container.decode(stream):
            images.append(frame.to_ndarray(format="bgr24"))
            if len(images) == frames + warmup:
                break
    if weights == "conditioned":
        weights = conditioned_weights(model, cache_dir, *size)
    settings = DetectorSettings(
        backend="openvino", model=model, weights=weights, device="cpu", streams=1, cache_dir=cache_dir
    )
    predictor = OpenVinoPredictor(settings, "cpu")
    path = Path(onnx) if onnx else predictor.path
    inputs = [predictor._resize(image)[0] for image in images]
    compiled = compile_openvino(path, "cpu", 1, threads, inputs[0].shape if static else None, profile=True)
    request = compiled.create_infer_request()
    by_type: Counter[str] = Counter()
    by_node: Counter[str] = Counter()
    walls = []
    for index, tensor in enumerate(inputs):
        start = time.perf_counter()
        request.infer({0: tensor})
        if index < warmup:
            continue
        walls.append(time.perf_counter() - start)
        for counter in request.profiling_info:
            ms = counter.real_time.total_seconds() * 1000
            by_type[counter.node_type] += ms
            by_node[f"{counter.node_name} ({counter.exec_type})"] += ms
    timed = len(walls)
    return {
        "model": model,
        "file": path.name,
        "input": list(inputs[0].shape),
        "static": static,
        "threads": threads,
        "frames": timed,
        "wall_ms_median": round(1000 * statistics.median(walls), 2),
        "counted_ms": round(sum(by_type.values()) / timed, 2),
        "by_type": {name: round(ms / timed, 2) for name, ms in by_type.most_common(top)},
        "by_node": {name: round(ms / timed, 2) for name, ms in by_node.most_common(top)},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m detector.bench.layers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("video")
    parser.add_argument("--model", default="fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument(
        "--weights", default="conditioned", help="default, a file, a URL, random or conditioned"
    )
    parser.add_argument("--onnx", default=None, help="an export file to profile instead of the model's own")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dynamic", action="store_true", help="compile for any frame size, not the video's")
    parser.add_argument("--top", type=int, default=12, help="operator types and nodes to list")
    args = parser.parse_args(argv)
    result = profile_layers(
        args.video,
        args.model,
        args.weights,
        frames=args.frames,
        threads=args.threads,
        onnx=args.onnx,
        static=not args.dynamic,
        top=args.top,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

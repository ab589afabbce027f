"""The benchmark's peak figure: each model's work per frame against what the machine can do.

For each model and each runtime that runs it, the figure reports the work per
frame in multiply-adds (MACs) at the input size the model really runs, the
runtime's frames/s, so the arithmetic it achieves (2 FLOP per MAC), and that
as a share of the machine's measured peak:

* the peak (`measure_peak`): a dense FP32 matrix multiply (``torch.mm``) and a
  3x3 convolution (``torch.nn.functional.conv2d``) run in this process on the
  threads the runtimes use (``detection.base.cpu_threads``), best of a few runs,
  before and after the models are timed; the best of those is the peak;
* the benchmark's torchvision model (``--model``, by default the default CPU model
  ``fasterrcnn_mobilenet_v3_large_320_fpn``) with the runtimes figure's weights
  (``--runtimes-weights``) on PyTorch eager, ONNX Runtime and OpenVINO: its MACs counted by torch's
  ``FlopCounterMode`` around the eager predictor's call on the figure's frames
  (`torch_macs`), which is the same network the runtimes run as its ONNX export;
* the shared SSD MobileNet V2 (``--testdata``) on ONNX Runtime and OpenVINO (the
  ONNX file) and LiteRT (the 8-bit TFLite file, the same network): its MACs
  summed over the ONNX graph's Conv, ConvTranspose, MatMul and Gemm nodes
  after ONNX shape inference (`onnx_macs`).

Only convolutions and matrix products are counted, in both counters: the
pre-processing, RoI Align, NMS and the element-wise operations are not work at
the peak's rate. Frames: every ``real_video_stride``-th frame of ``vtest.avi``
where the shared data is there, else the benchmark's own video; the SSD is
skipped without the shared data. Nothing here gates on timing: the figures are
for the report and docs/performance.md.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector.bench.figures import Bench
from detector.detection import DetectorSettings, build_predictor
from detector.detection.base import Predictor

#: The runtimes of each model of the figure, by backend name.
TORCHVISION_RUNTIMES = ("torchvision", "onnxruntime", "openvino")
SSD_RUNTIMES = ("onnxruntime", "openvino", "tflite")

#: The ONNX operators whose multiply-adds `onnx_macs` counts.
COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def onnx_macs(model: Any) -> dict[str, Any]:
    """The multiply-adds of one run of an ONNX model: Conv, ConvTranspose, MatMul and
    Gemm nodes of its main graph, with shapes from ONNX shape inference.

    Args:
        model: an ``onnx.ModelProto`` or the path of a ``.onnx`` file; its input
            shapes must be fixed for every node's shape to be known.

    Returns:
        ``{"macs": total, "by_op": {op: macs}, "nodes": nodes counted,
        "unknown": [names of counted-op nodes whose shapes inference left unknown]}``.
    """
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = inferred.graph
    shapes: dict[str, tuple[int, ...] | None] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        known = all(d.HasField("dim_value") for d in dims) and info.type.tensor_type.HasField("shape")
        shapes[info.name] = tuple(d.dim_value for d in dims) if known else None
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    for node in graph.node:  # constants folded into Constant nodes rather than initializers
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    shapes[node.output[0]] = tuple(attribute.t.dims)
    by_op: dict[str, int] = dict.fromkeys(COUNTED_OPS, 0)
    unknown: list[str] = []
    counted = 0
    for node in graph.node:
        if node.op_type not in COUNTED_OPS:
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            unknown.append(node.name or node.output[0])
            continue
        by_op[node.op_type] += macs
        counted += 1
    return {"macs": sum(by_op.values()), "by_op": by_op, "nodes": counted, "unknown": unknown}


def _node_macs(node: Any, shapes: Mapping[str, tuple[int, ...] | None]) -> int | None:
    """The multiply-adds of one counted node, or None where a shape it needs is unknown."""
    ins = [shapes.get(name) for name in node.input[:2]]
    out = shapes.get(node.output[0])
    if any(s is None for s in ins):
        return None
    a, b = ins[0], ins[1]
    assert a is not None and b is not None
    if node.op_type == "Conv":  # output elements x (input channels per group x kernel)
        return None if out is None else math.prod(out) * math.prod(b[1:])
    if node.op_type == "ConvTranspose":  # input elements x (output channels per group x kernel)
        return math.prod(a) * math.prod(b[1:])
    if node.op_type == "MatMul":  # output elements x the shared dimension
        return None if out is None else math.prod(out) * a[-1]
    attributes = {attribute.name: attribute.i for attribute in node.attribute}  # Gemm
    m, k = (a[1], a[0]) if attributes.get("transA") else (a[0], a[1])
    n = b[0] if attributes.get("transB") else b[1]
    return m * n * k


def torch_macs(run: Callable[[], Any]) -> int:
    """The multiply-adds torch's ``FlopCounterMode`` counts in ``run()`` (its FLOPs over 2:
    convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops()) // 2


@dataclass(frozen=True)
class Peak:
    """The machine's measured FP32 arithmetic rate, in GFLOP/s, on ``threads`` threads."""

    threads: int
    matmul_gflops: float
    conv_gflops: float
    matmul_size: int
    conv_shape: tuple[int, int, int]  # channels, height, width (3x3 kernel, as many channels out)

    @property
    def gflops(self) -> float:
        return max(self.matmul_gflops, self.conv_gflops)

    def as_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "gflops": round(self.gflops, 1),
            "matmul": {"n": self.matmul_size, "gflops": round(self.matmul_gflops, 1)},
            "conv": {"shape": list(self.conv_shape), "kernel": 3, "gflops": round(self.conv_gflops, 1)},
        }


def measure_peak(
    threads: int,
    matmul_size: int = 2048,
    conv_shape: tuple[int, int, int] = (256, 64, 64),
    seconds: float = 1.5,
) -> Peak:
    """The FP32 rate of a dense ``matmul_size``-square ``torch.mm`` and of a 3x3
    convolution of a ``conv_shape`` (channels, height, width) input to as many
    channels, on ``threads`` threads: the best run of each within about ``seconds``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(matmul_size, matmul_size, generator=generator)
        b = torch.randn(matmul_size, matmul_size, generator=generator)
        matmul = _best_rate(lambda: torch.mm(a, b), 2 * matmul_size**3, seconds)
        channels, height, width = conv_shape
        image = torch.randn(1, channels, height, width, generator=generator)
        kernel = torch.randn(channels, channels, 3, 3, generator=generator)
        conv_flops = 2 * channels * height * width * channels * 9
        with torch.no_grad():
            conv = _best_rate(
                lambda: torch.nn.functional.conv2d(image, kernel, padding=1), conv_flops, seconds
            )
    finally:
        torch.set_num_threads(before)
    return Peak(threads, matmul / 1e9, conv / 1e9, matmul_size, conv_shape)


def _best_rate(run: Callable[[], Any], flops: int, seconds: float) -> float:
    """FLOP/s of the fastest of the runs of ``run`` (one warm-up, then at least three,
    until ``seconds`` have passed)."""
    run()
    best = math.inf
    started = time.perf_counter()
    runs = 0
    while runs < 3 or time.perf_counter() - started < seconds:
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
        runs += 1
    return flops / best


@dataclass(frozen=True)
class Subject:
    """One model of the figure: its runtimes' settings, and its counted work per frame."""

    model: str
    runtimes: Mapping[str, DetectorSettings]
    macs: float  # per frame
    counted_with: str
    input_size: tuple[int, int]  # width, height the network sees


def time_runtimes(
    predictors: Mapping[str, Predictor], frames: Sequence[np.ndarray], score_threshold: float
) -> dict[str, float]:
    """Frames/s of each predictor over ``frames``, after one untimed batch; batch by
    batch (a batch for each of its streams at a time, as the pipeline hands them
    over), each predictor in turn, so load that comes and goes slows them alike."""
    if not predictors:
        return {}
    batch = max(p.batch_size * p.streams for p in predictors.values())
    for predictor in predictors.values():
        predictor.predict(frames[: predictor.batch_size * predictor.streams], score_threshold)
    seconds = dict.fromkeys(predictors, 0.0)
    for pos in range(0, len(frames), batch):
        part = frames[pos : pos + batch]
        for key, predictor in predictors.items():
            started = time.perf_counter()
            predictor.predict(part, score_threshold)
            seconds[key] += time.perf_counter() - started
    return {key: len(frames) / s for key, s in seconds.items()}


def against_peak(
    subjects: Sequence[Subject],
    frames: Sequence[np.ndarray],
    peak: Peak,
    score_threshold: float = 0.3,
    build: Callable[[DetectorSettings], Predictor] = build_predictor,
) -> list[dict[str, Any]]:
    """One row per model and runtime: MACs a frame, frames/s, achieved GFLOP/s and its
    share of ``peak`` (`share_of_peak`); ``build`` builds each runtime's predictor."""
    rows = []
    for subject in subjects:
        predictors = {name: build(s) for name, s in subject.runtimes.items()}
        fps = time_runtimes(predictors, frames, score_threshold)
        for runtime, rate in fps.items():
            gflops = 2 * subject.macs * rate / 1e9
            rows.append(
                {
                    "model": subject.model,
                    "runtime": runtime,
                    "input_size": list(subject.input_size),
                    "gmac_per_frame": round(subject.macs / 1e9, 3),
                    "counted_with": subject.counted_with,
                    "batch_size": predictors[runtime].batch_size,
                    "fps": round(rate, 2),
                    "gflops": round(gflops, 2),
                }
            )
        del predictors
    return share_of_peak(rows, peak)


def share_of_peak(rows: list[dict[str, Any]], peak: Peak) -> list[dict[str, Any]]:
    """The rows with ``share_of_peak``: their achieved GFLOP/s over ``peak``'s."""
    return [{**row, "share_of_peak": round(row["gflops"] / peak.gflops, 4)} for row in rows]


def torchvision_subject(
    settings: DetectorSettings, frames: Sequence[np.ndarray], runtimes: Sequence[str] = TORCHVISION_RUNTIMES
) -> Subject:
    """A torchvision model on ``runtimes``, its MACs a frame counted by `torch_macs` on the eager
    predictor's call over ``frames`` (the mean: the RoI heads' work follows the proposals)."""
    from dataclasses import replace

    eager: Any = build_predictor(replace(settings, backend="torchvision"))
    macs = torch_macs(lambda: eager.predict_batch(list(frames))) / len(frames)
    height, width = frames[0].shape[:2]
    return Subject(
        model=settings.model or "",
        runtimes={name: replace(settings, backend=name) for name in runtimes},
        macs=macs,
        counted_with="torch FlopCounterMode (eager model)",
        input_size=network_size(width, height, eager._input_short, eager._input_long),
    )


def network_size(width: int, height: int, short: int, long: int) -> tuple[int, int]:
    """The ``(width, height)`` a torchvision detector with input sizes ``short`` and
    ``long`` resizes a ``width`` x ``height`` frame to: rounded where the predictor
    shrinks the frame first, floored where the model's transform enlarges it."""
    scale = min(short / min(height, width), long / max(height, width))
    if scale == 1:
        return width, height
    to_size = round if scale < 1 else math.floor
    return int(to_size(width * scale)), int(to_size(height * scale))


def ssd_subject(testdata: Path, runtimes: Sequence[str] = SSD_RUNTIMES) -> Subject:
    """The shared SSD on ``runtimes``, its MACs a frame counted by `onnx_macs` on its ONNX file."""
    from detector.bench.realvideo import RealVideoData, ssd_settings
    from detector.detection.families import open_file_model

    data = RealVideoData(testdata)
    settings = {name: ssd_settings(data, name) for name in runtimes}
    onnx_file = data.model_file("onnxruntime")
    fmt = open_file_model(ssd_settings(data, "onnxruntime")).input
    return Subject(
        model=onnx_file.stem,
        runtimes=settings,
        macs=float(onnx_macs(onnx_file)["macs"]),
        counted_with="ONNX graph (Conv, MatMul, Gemm after shape inference)",
        input_size=(fmt.width, fmt.height),
    )


def peak_figure(bench: Bench) -> dict[str, Any]:
    """The benchmark's peak figure (see the module docstring): ``peak_frames`` frames,
    the peak, and one row per model and runtime."""
    from detector.bench.realvideo import RealVideoData, sampled_frames
    from detector.bench.runtimes import conditioned_weights, read_frames
    from detector.detection.base import cpu_threads
    from detector.detection.identity import TORCHVISION_CHECKPOINTS

    options = bench.options
    data = RealVideoData(Path(options.testdata))
    have_data = not data.missing()
    if have_data:
        frames = [f for _, f in sampled_frames(data.video, options.real_video_stride, options.peak_frames)]
        video = data.video.name
    else:
        frames = read_frames(bench.videos.main, options.peak_frames)
        video = bench.videos.main.name
    threads = cpu_threads()
    load_before = os.getloadavg()[0]
    peaks = [measure_peak(threads)]
    subjects = []
    notes = []
    if options.model in TORCHVISION_CHECKPOINTS:
        cache_dir = str(bench.out / "model-cache")
        weights = options.runtimes_weights or options.weights
        if weights == "conditioned":  # the runtimes figure's model: its export is cached
            weights = conditioned_weights(options.model, cache_dir, options.width, options.height)
        settings = DetectorSettings(
            backend="torchvision",
            model=options.model,
            weights=weights,
            device="cpu",
            min_score=float(bench.model_config["DETECTOR_MIN_SCORE"]),
            cache_dir=cache_dir,
        )
        subjects.append(torchvision_subject(settings, frames[:4]))
    else:
        notes.append(f"{options.model} is not a torchvision model: left out")
    if have_data:
        subjects.append(ssd_subject(data.root))
        notes.append("LiteRT runs the 8-bit TFLite file: its share is of the FP32 peak")
    else:
        notes.append(f"no shared test data at {data.root}: the SSD is left out")
    rows = against_peak(subjects, frames, peaks[0], options.score_threshold)
    peaks.append(measure_peak(threads))  # the machine's load comes and goes: the best of before and after
    peak = max(peaks, key=lambda p: p.gflops)
    rows = share_of_peak(rows, peak)
    bench.log(
        f"peak: {peak.matmul_gflops:.1f} GFLOP/s matmul, {peak.conv_gflops:.1f} GFLOP/s conv on {threads} "
        f"threads (before and after the models: {', '.join(f'{p.gflops:.1f}' for p in peaks)})"
    )
    for row in rows:
        bench.log(
            f"peak: {row['model']} on {row['runtime']}: {row['gmac_per_frame']} GMAC a frame, "
            f"{row['fps']} frames/s, {row['gflops']} GFLOP/s, {row['share_of_peak']:.1%} of the peak"
        )
    return {
        "peak": {
            **peak.as_dict(),
            "measured_gflops": [round(p.gflops, 1) for p in peaks],
            "video": video,
            "frames": len(frames),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "models": rows,
            "notes": notes,
        }
    }

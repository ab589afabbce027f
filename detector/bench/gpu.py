"""A GPU check: what this service gets out of an NVIDIA GPU, in one short run.

``python -m detector.bench.gpu`` (or ``scripts/gpu-check``) measures, on the
first CUDA device:

- ``detectron2``: Detectron2's Faster R-CNN R50-FPN frames/s at batch 1, 4, 8
  and 16, in FP32 and in FP16 (``torch.autocast``), and the peak GPU memory
  at each;
- ``onnxruntime``: the torchvision model's ONNX export and the SSD model file
  on ONNX Runtime's CUDA and TensorRT execution providers (and its CPU one,
  for reference);
- ``render``: the annotated video written with NVENC against libx264;
- ``pipeline``: a job through the service (API and workers) against
  ``detector predict``, both with the Detectron2 model on the GPU.

It writes a JSON report and prints a table. A section or measurement this
machine cannot run says ``skipped: <why>`` (``skipped: no CUDA``, an
onnxruntime without GPU providers, a GPU without NVENC); one that fails says
``error: <message>`` and the others still run.

``--smoke`` runs the same code on tiny inputs (the Detectron2 config on a
ResNet-18 at 96 px, a few small frames): on a machine without CUDA it measures on the CPU what can
run there and skips the rest, which is what the test runs. The figures of a
real run go in docs/performance.md ("A GPU check").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.detection import AnalysedFrame, Detections, DetectorSettings, Predictor, build_predictor

#: Detectron2's model: the zoo's Faster R-CNN R50-FPN (identity.DETECTRON2_DEFAULT_MODEL).
DETECTRON2_MODEL = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
#: The torchvision model whose ONNX export runs on ONNX Runtime (the bench's default).
TORCHVISION_MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"
#: The shared SSD MobileNet V2 (ONNX) and its labels, from the project's root.
SSD_FILE = Path("../shared/testdata/models/ssd_mobilenet_v2_coco.onnx")
SSD_LABELS = Path("../shared/testdata/models/coco_labels.txt")

NO_CUDA = "skipped: no CUDA"
SECTIONS = ("detectron2", "onnxruntime", "render", "pipeline")


@dataclass(frozen=True)
class Sizes:
    """How much each section runs: the real run's or the smoke run's."""

    width: int
    height: int
    batches: tuple[int, ...]
    batches_per_size: int  # timed batches at each batch size, after one warm-up batch
    ort_frames: int
    render_frames: int
    render_size: tuple[int, int]
    pipeline_frames: int
    detectron2_input: tuple[int, int] | None  # (shortest, longest edge); None: the config's own


REAL = Sizes(1280, 720, (1, 4, 8, 16), 4, 64, 240, (1920, 1080), 240, None)
SMOKE = Sizes(160, 96, (1, 2), 1, 2, 8, (320, 180), 8, (96, 160))


@dataclass
class GpuCheck:
    """The check's options and what it found, section by section."""

    out: Path
    sizes: Sizes
    weights: str = "random"
    ssd: Path = SSD_FILE
    ssd_labels: Path = SSD_LABELS
    sections: tuple[str, ...] = SECTIONS
    machine: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    @property
    def cuda(self) -> bool:
        import torch

        return bool(torch.cuda.is_available())

    @property
    def device(self) -> str:
        """Where the model runs: the GPU, or the CPU in a smoke run without one."""
        return "cuda:0" if self.cuda else "cpu"


def run(check: GpuCheck) -> dict[str, Any]:
    """Run every section of ``check.sections`` in turn; write ``gpu-check.json`` into
    ``check.out`` and return the report."""
    check.out.mkdir(parents=True, exist_ok=True)
    check.machine = machine()
    check.log(f"machine: {check.machine}")
    steps: dict[str, Callable[[GpuCheck], dict[str, Any]]] = {
        "detectron2": detectron2_figure,
        "onnxruntime": onnxruntime_figure,
        "render": render_figure,
        "pipeline": pipeline_figure,
    }
    for name in check.sections:
        check.log(f"--- {name}")
        started = time.perf_counter()
        try:
            check.results[name] = steps[name](check)
        except Exception as exc:  # one section's failure leaves the others to run
            check.log(traceback.format_exc())
            check.results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        check.log(f"{name}: {time.perf_counter() - started:.1f} s")
    report = {
        "machine": check.machine,
        "sizes": asdict(check.sizes),
        "weights": check.weights,
        "results": check.results,
    }
    (check.out / "gpu-check.json").write_text(json.dumps(report, indent=2))
    return report


def machine() -> dict[str, Any]:
    """The GPU, driver and library versions the figures were measured with."""
    import torch

    found: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpus": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found.update(
            gpu=props.name, gpu_memory_mb=round(props.total_memory / 2**20), gpus=torch.cuda.device_count()
        )
    else:
        found["gpu"] = None
    for package in ("detectron2", "onnxruntime", "av"):
        spec = importlib.util.find_spec(package)
        if spec is not None:
            found[package] = getattr(__import__(package), "__version__", "?")
    return found


# --- Detectron2 -------------------------------------------------------------------------------


def detectron2_config(check: GpuCheck) -> str:
    """The Detectron2 model: the zoo's R50-FPN, or in a smoke run a local config of the
    same architecture on a ResNet-18 at the smoke input size (seconds on a small CPU)."""
    if check.sizes.detectron2_input is None:
        return DETECTRON2_MODEL
    from detectron2 import model_zoo

    short, long = check.sizes.detectron2_input
    path = check.out / "faster_rcnn_R_18_FPN_small.yaml"
    path.write_text(
        f'_BASE_: "{model_zoo.get_config_file(DETECTRON2_MODEL)}"\n'
        f"INPUT:\n  MIN_SIZE_TEST: {short}\n  MAX_SIZE_TEST: {long}\n"
        "MODEL:\n  RESNETS:\n    DEPTH: 18\n    RES2_OUT_CHANNELS: 64\n"
        "  FPN:\n    OUT_CHANNELS: 64\n  RPN:\n    POST_NMS_TOPK_TEST: 50\n"
    )
    return str(path)


def detectron2_settings(check: GpuCheck, device: str) -> DetectorSettings:
    return DetectorSettings(
        backend="detectron2",
        model=detectron2_config(check),
        weights=check.weights,
        device=device,
        batch_size=max(check.sizes.batches),
        min_score=0.05,
    )


def detectron2_figure(check: GpuCheck) -> dict[str, Any]:
    """Frames/s and peak GPU memory of the Detectron2 model at each batch size, FP32 and FP16."""
    if importlib.util.find_spec("detectron2") is None:
        return {"skipped": "detectron2 is not importable"}
    sizes = check.sizes
    predictor = build_predictor(detectron2_settings(check, check.device))
    frames = synthetic_frames(max(sizes.batches), sizes.width, sizes.height)
    found: dict[str, Any] = {
        "model": predictor.name,
        "device": predictor.device,
        "frame_size": f"{sizes.width}x{sizes.height}",
    }
    for precision in ("fp32", "fp16"):
        if precision == "fp16" and not check.cuda:
            found[precision] = NO_CUDA
            continue
        by_batch = {}
        for batch in sizes.batches:
            by_batch[str(batch)] = time_batches(predictor, frames[:batch], sizes.batches_per_size, precision)
            check.log(f"detectron2 {precision} batch {batch}: {by_batch[str(batch)]}")
        found[precision] = by_batch
    return found


def time_batches(
    predictor: Predictor, batch: Sequence[np.ndarray], repeats: int, precision: str
) -> dict[str, Any]:
    """Frames/s of ``repeats`` forward passes of ``batch`` (after one untimed), the
    objects found per frame, and on CUDA the peak GPU memory (allocated by tensors,
    and reserved by torch's caching allocator) over those passes."""
    import torch

    cuda = predictor.device.startswith("cuda")
    predictor.batch_size = len(batch)

    def forward() -> list[Detections]:
        if precision == "fp16":
            with torch.autocast("cuda", dtype=torch.float16):
                return predictor.predict_batch(batch)
        return predictor.predict_batch(batch)

    forward()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    runs, objects = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        found = forward()
        if cuda:
            torch.cuda.synchronize()
        runs.append(len(batch) / (time.perf_counter() - started))
        objects += sum(len(d) for d in found)
    result: dict[str, Any] = {
        "frames_per_s": round(statistics.median(runs), 2),
        "objects_per_frame": round(objects / (repeats * len(batch)), 1),
    }
    if cuda:
        result["peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        result["peak_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20)
    else:
        result["gpu_memory"] = NO_CUDA
    return result


def synthetic_frames(count: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` seeded BGR frames: a grey ramp with coloured rectangles on it. NumPy
    only, so the model sections run where PyAV (detector.video) is not installed."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, width).astype(np.uint8)[None, :, None]
    frames = []
    for _ in range(count):
        frame = np.repeat(np.repeat(ramp, height, axis=0), 3, axis=2)
        for _ in range(6):
            w, h = int(rng.integers(width // 10, width // 3)), int(rng.integers(height // 10, height // 3))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            frame[y : y + h, x : x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
        frames.append(frame)
    return frames


# --- ONNX Runtime -----------------------------------------------------------------------------

#: ONNX Runtime's execution providers the check times, CPU for reference.
ORT_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider")


def onnxruntime_figure(check: GpuCheck) -> dict[str, Any]:
    """Frames/s of the torchvision export and the SSD file on each ONNX Runtime provider."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    found: dict[str, Any] = {"onnxruntime": ort.__version__, "available": available}
    models: dict[str, Callable[[], Predictor]] = {
        "torchvision": lambda: build_predictor(
            DetectorSettings(
                backend="onnxruntime",
                model=TORCHVISION_MODEL,
                weights=check.weights,
                device="cpu",
                batch_size=1,
                cache_dir=str(check.out / "cache"),
            )
        ),
    }
    if check.ssd.is_file() and check.ssd_labels.is_file():
        models["ssd"] = lambda: build_predictor(
            DetectorSettings(
                backend="onnxruntime",
                file=str(check.ssd),
                family="ssd",
                labels=str(check.ssd_labels),
                device="cpu",
                batch_size=1,
            )
        )
    else:
        found["ssd"] = f"skipped: no SSD model file at {check.ssd} (--ssd)"
    frames = synthetic_frames(check.sizes.ort_frames, check.sizes.width, check.sizes.height)
    for name, build in models.items():
        predictor = build()
        path = model_path(predictor)
        per_provider: dict[str, Any] = {}
        for provider in ORT_PROVIDERS:
            if provider != "CPUExecutionProvider" and not check.cuda:
                per_provider[provider] = NO_CUDA
            elif provider not in available:
                per_provider[provider] = f"skipped: this onnxruntime has no {provider} (onnxruntime-gpu has)"
            else:
                per_provider[provider] = time_provider(predictor, path, provider, frames)
            check.log(f"onnxruntime {name} {provider}: {per_provider[provider]}")
        found[name] = {"model": predictor.name, "providers": per_provider}
    return found


def model_path(predictor: Predictor) -> Path:
    """The ONNX file an ONNX Runtime predictor runs: the export, or the model file."""
    path = getattr(predictor, "path", None)
    if path is None:
        path = predictor.model.file.path  # type: ignore[attr-defined]
    return Path(path)


def time_provider(
    predictor: Predictor, path: Path, provider: str, frames: Sequence[np.ndarray]
) -> dict[str, Any]:
    """Frames/s of ``predictor`` with its session on ``provider`` (first frame untimed:
    TensorRT builds its engine then), and the providers the session really took."""
    import onnxruntime as ort

    chosen: list[Any] = ["CPUExecutionProvider"]
    if provider != "CPUExecutionProvider":  # on GPU 0, the CPU for the operators it lacks
        chosen.insert(0, (provider, {"device_id": 0}))
    started = time.perf_counter()
    predictor.session = ort.InferenceSession(str(path), providers=chosen)  # type: ignore[attr-defined]
    predictor.predict(frames[:1], 0.0)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    found = predictor.predict(frames, 0.0)
    seconds = time.perf_counter() - started
    return {
        "frames_per_s": round(len(frames) / seconds, 2),
        "session_and_first_frame_s": round(first_s, 2),
        "objects_per_frame": round(sum(len(d) for d in found) / len(frames), 1),
        "session_providers": predictor.session.get_providers(),  # type: ignore[attr-defined]
    }


# --- Render -----------------------------------------------------------------------------------


def render_figure(check: GpuCheck) -> dict[str, Any]:
    """Frames/s of writing the annotated video with NVENC and with libx264."""
    from detector.render.video import LIBX264, NVENC, RenderError, render_video
    from detector.video.synthetic import make_video

    sizes = check.sizes
    width, height = sizes.render_size
    video = make_video(
        check.out / "render-source.mp4", frames=sizes.render_frames, width=width, height=height, fps=25
    )
    boxes = np.array([[0.1, 0.1, 0.4, 0.5], [0.5, 0.3, 0.9, 0.8]], dtype=np.float32) * [
        width,
        height,
        width,
        height,
    ]
    detections = Detections.from_model(
        boxes, np.array([0.9, 0.7]), np.array([0, 2]), ["person", "bicycle", "car"]
    )
    frames = [AnalysedFrame(i, i / 25, detections) for i in range(sizes.render_frames)]
    found: dict[str, Any] = {"frames": sizes.render_frames, "size": f"{width}x{height}"}
    for encoder in (NVENC, LIBX264):
        if encoder == NVENC and not check.cuda:
            found[encoder] = NO_CUDA
            continue
        try:
            stats = render_video(video, check.out / f"render-{encoder}.mp4", frames, encoder=encoder)
        except RenderError as exc:
            found[encoder] = f"skipped: {exc}"
            continue
        found[encoder] = {"frames_per_s": round(stats.frames / stats.seconds, 1), "seconds": stats.seconds}
        check.log(f"render {encoder}: {found[encoder]}")
    return found


# --- A job against detector predict -----------------------------------------------------------


def pipeline_figure(check: GpuCheck) -> dict[str, Any]:
    """A job of the Detectron2 model through the service (the API, a processor and a
    detector worker, on embedded defaults) against `detector predict`, same video,
    same device."""
    if importlib.util.find_spec("detectron2") is None:
        return {"skipped": "detectron2 is not importable"}
    from detector.bench import figures
    from detector.bench.options import BenchOptions
    from detector.bench.run import service_env
    from detector.bench.service import Client, Service
    from detector.runtime.processes import detector_cli_argv
    from detector.video.synthetic import make_video

    sizes = check.sizes
    out = check.out / "pipeline"
    out.mkdir(exist_ok=True)
    settings = detectron2_settings(check, check.device)
    batch = 8 if check.cuda else max(sizes.batches)
    options = BenchOptions(
        out_dir=out,
        frames=sizes.pipeline_frames,
        width=sizes.width,
        height=sizes.height,
        batch_size=batch,
        chunk_frames=max(batch, sizes.pipeline_frames // 2),
        backend="detectron2",
        model=str(settings.model),
        weights=check.weights,
        device=check.device,
    )
    main = make_video(
        out / "job.mp4", frames=sizes.pipeline_frames, width=sizes.width, height=sizes.height, fps=25
    )
    warmup = make_video(out / "warmup.mp4", frames=batch, width=sizes.width, height=sizes.height, fps=25)
    bench = figures.Bench(
        options=options,
        out=out,
        videos=figures.Videos(main=main, warmup=warmup, short=warmup, long=main, large=warmup),
        model_config={
            "DETECTOR_BACKEND": "detectron2",
            "DETECTOR_MODEL": options.model,
            "DETECTOR_WEIGHTS": options.weights,
            "DETECTOR_DEVICE": options.device,
            "DETECTOR_BATCH_SIZE": batch,
            "DETECTOR_MIN_SCORE": 0.05,
            "DETECTOR_SEED": 0,
        },
        log=check.log,
    )
    predict = figures.predict_fps(bench, {**os.environ, **bench.model_env()})
    check.log(f"detector predict: {predict} frames/s")
    env = service_env(bench, out / "data")
    subprocess.run(detector_cli_argv("db", "upgrade"), env=env, check=True, capture_output=True)
    service = Service(env, out, background_detector=False)
    try:
        service.start_all()
        client = Client(service.base, check=service.check_running)
        client.run_job(warmup, options.score_threshold)  # the worker builds its model
        _, seconds = client.run_job(main, options.score_threshold)
    finally:
        service.stop_all()
    job = sizes.pipeline_frames / seconds
    check.log(f"a job: {job:.2f} frames/s")
    return {
        "device": check.device,
        "frames": sizes.pipeline_frames,
        "batch_size": batch,
        "predict_fps": round(predict, 2),
        "job_fps": round(job, 2),
        "job_per_predict": round(job / predict, 3),
    }


# --- The report -------------------------------------------------------------------------------


def format_report(report: dict[str, Any]) -> str:
    """The report as lines of text: one per measurement, skips and errors included."""
    lines = [f"machine: {json.dumps(report['machine'])}"]

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and not ("frames_per_s" in value or "job_fps" in value):
            for key, inner in value.items():
                walk(f"{prefix} {key}".strip(), inner)
        elif isinstance(value, dict):
            lines.append(f"{prefix}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
        else:
            lines.append(f"{prefix}: {value}")

    walk("", report["results"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpu-check", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--out", type=Path, default=Path("gpu-check"), help="scratch folder and gpu-check.json"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny inputs: checks that every section runs")
    parser.add_argument("--weights", default="random", help="Detectron2 weights: random (seeded) or a file")
    parser.add_argument("--ssd", type=Path, default=SSD_FILE, help="the SSD ONNX file")
    parser.add_argument("--ssd-labels", type=Path, default=SSD_LABELS, help="the SSD's labels file")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}"
    )
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    if unknown := [s for s in sections if s not in SECTIONS]:
        parser.error(f"unknown section {unknown[0]!r}; of {', '.join(SECTIONS)}")
    check = GpuCheck(
        out=args.out.resolve(),
        sizes=SMOKE if args.smoke else REAL,
        weights=args.weights,
        ssd=args.ssd,
        ssd_labels=args.ssd_labels,
        sections=sections,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    report = run(check)
    print(format_report(report))
    return 1 if any(isinstance(v, dict) and "error" in v for v in report["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())

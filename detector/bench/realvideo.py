"""The benchmark's real-video figure: a pretrained detector on a real recording.

The shared test data folder (``--testdata``; its README says what each file is)
holds SSD MobileNet V2 trained on COCO, as ONNX and as 8-bit TFLite, its labels,
and ``vtest.avi``, pedestrians crossing a square (768x576, 10 fps, 795 frames).
The figure measures, on every ``real_video_stride``-th frame of that video:

* each runtime that can run the model (ONNX Runtime and OpenVINO on the ONNX file,
  LiteRT on the TFLite file) at the batch size ``auto`` picks: frames/s, objects
  and people a frame, and its agreement with the first runtime (objects matched
  one to one by class and IoU, `agreement`);
* a job through the service (API, processor and detector processes, as `detector
  up` starts them) on the model named by a DETECTOR_MODELS file, against
  `detector predict` on the same frames: frames/s of each and their ratio.

Without the folder the figure is skipped with a note. Nothing here gates on
timing: the figures are for the report and docs/performance.md.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import av
import numpy as np

from detector.bench.figures import Bench
from detector.bench.service import Client, Service
from detector.detection import Detections, DetectorSettings, build_predictor
from detector.runtime.processes import detector_cli_argv
from detector.video import index_frames

#: The runtimes that can run the shared SSD, by backend name; the first is the reference.
SSD_RUNTIMES = ("onnxruntime", "openvino", "tflite")

#: Two objects of different runtimes are the same object when they have the same
#: class and at least this IoU (the quantized TFLite model's boxes move by a few pixels).
MATCH_IOU = 0.5

#: The model's name in the figure's DETECTOR_MODELS file.
MODEL_NAME = "ssd"

#: The class id of ``person`` in the model's labels.
PERSON = 0


@dataclass(frozen=True)
class RealVideoData:
    """The files of the shared test data folder that the figure uses."""

    root: Path

    @property
    def video(self) -> Path:
        return self.root / "videos" / "vtest.avi"

    @property
    def labels(self) -> Path:
        return self.root / "models" / "coco_labels.txt"

    def model_file(self, backend: str) -> Path:
        """The SSD file ``backend`` runs: the TFLite file on tflite, the ONNX file on the others."""
        name = "ssd_mobilenet_v2_coco_quant.tflite" if backend == "tflite" else "ssd_mobilenet_v2_coco.onnx"
        return self.root / "models" / name

    def missing(self) -> list[Path]:
        """The files that are not there."""
        wanted = [self.video, self.labels, *(self.model_file(b) for b in ("onnxruntime", "tflite"))]
        return [p for p in wanted if not p.is_file()]


def ssd_settings(
    data: RealVideoData, backend: str, batch_size: int | str = "auto", min_score: float = 0.3
) -> DetectorSettings:
    """The shared SSD on ``backend`` (on the CPU), as a catalog table declares it."""
    return DetectorSettings(
        backend=backend,
        file=str(data.model_file(backend)),
        family="ssd",
        labels=str(data.labels),
        device="cpu",
        batch_size=batch_size,
        min_score=min_score,
    )


def write_catalog(data: RealVideoData, backend: str, path: Path, min_score: float = 0.3) -> Path:
    """A DETECTOR_MODELS file at ``path`` whose one model, `MODEL_NAME`, is the SSD on ``backend``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'default = "{MODEL_NAME}"\n\n'
        f"[models.{MODEL_NAME}]\n"
        f'backend = "{backend}"\n'
        f'file = "{data.model_file(backend)}"\n'
        'family = "ssd"\n'
        f'labels = "{data.labels}"\n'
        f"min_score = {min_score}\n"
    )
    return path


def sampled_frames(video: Path, stride: int, count: int | None = None) -> list[tuple[int, np.ndarray]]:
    """Every ``stride``-th frame of ``video`` from the first (at most ``count`` of
    them), as (frame index, BGR ``uint8`` array)."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        every = (
            (i, frame.to_ndarray(format="bgr24"))
            for i, frame in enumerate(container.decode(stream))
            if i % stride == 0
        )
        return list(islice(every, count))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``[N, 4]`` with every box of ``b`` ``[M, 4]`` (``x1, y1, x2, y2``): ``[N, M]``."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def matched_pairs(
    expected: Detections, got: Detections, min_iou: float = MATCH_IOU
) -> list[tuple[int, int, float]]:
    """Objects of ``expected`` and ``got`` paired one to one: same class, IoU at least
    ``min_iou``, greedily best IoU first. Returns (position in expected, position
    in got, IoU) for each pair."""
    if not len(expected) or not len(got):
        return []
    overlaps = box_iou(expected.xyxy, got.xyxy)
    overlaps[expected.class_id[:, None] != got.class_id[None, :]] = 0.0
    pairs: list[tuple[int, int, float]] = []
    used_e: set[int] = set()
    used_g: set[int] = set()
    for flat in np.argsort(-overlaps, axis=None, kind="stable"):
        i, j = divmod(int(flat), overlaps.shape[1])
        if overlaps[i, j] < min_iou:
            break
        if i not in used_e and j not in used_g:
            used_e.add(i)
            used_g.add(j)
            pairs.append((i, j, float(overlaps[i, j])))
    return pairs


def agreement(
    expected: Sequence[Detections], got: Sequence[Detections], min_iou: float = MATCH_IOU
) -> dict[str, Any]:
    """How far two runtimes' objects on the same frames agree: objects matched
    (`matched_pairs`) out of the larger of the two counts, and the matched pairs'
    mean and lowest IoU."""
    ious = [iou for e, g in zip(expected, got, strict=True) for _, _, iou in matched_pairs(e, g, min_iou)]
    n_expected = sum(len(e) for e in expected)
    n_got = sum(len(g) for g in got)
    total = max(n_expected, n_got)
    return {
        "matched": len(ious),
        "objects_reference": n_expected,
        "objects": n_got,
        "match_rate": round(len(ious) / total, 4) if total else 1.0,
        "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
        "min_iou": round(float(np.min(ious)), 4) if ious else None,
    }


def compare_ssd_runtimes(
    data: RealVideoData,
    frames: Sequence[np.ndarray],
    score_threshold: float,
    runtimes: Sequence[str] = SSD_RUNTIMES,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Each runtime of ``runtimes`` on the same ``frames``, at the batch size ``auto``
    picks: build seconds, batch size, frames/s (after one untimed batch), objects,
    people a frame, and its `agreement` with the first runtime. A runtime that
    cannot be built here is reported with its error instead."""
    found: dict[str, list[Detections]] = {}
    result: dict[str, Any] = {}
    for backend in runtimes:
        started = time.perf_counter()
        try:
            predictor = build_predictor(ssd_settings(data, backend))
        except Exception as exc:  # a runtime missing on this machine: say so, measure the others
            result[backend] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"real video: {backend} cannot run here: {exc}")
            continue
        build_s = time.perf_counter() - started
        predictor.predict(frames[: predictor.batch_size * predictor.streams], score_threshold)  # warm-up
        started = time.perf_counter()
        found[backend] = predictor.predict(frames, score_threshold)
        seconds = time.perf_counter() - started
        people = [int(np.count_nonzero(d.class_id == PERSON)) for d in found[backend]]
        result[backend] = {
            "name": predictor.name,
            "build_s": round(build_s, 2),
            "batch_size": predictor.batch_size,
            "fps": round(len(frames) / seconds, 2),
            "seconds": round(seconds, 2),
            "objects": sum(len(d) for d in found[backend]),
            "people_per_frame": round(float(np.mean(people)), 2),
            "frames_without_people": people.count(0),
        }
        log(f"real video: {backend} {result[backend]['fps']} frames/s at batch {predictor.batch_size}")
    reference = next(iter(found), None)
    for backend, objects in found.items():
        if reference is not None and backend != reference:
            result[backend]["against"] = reference
            result[backend].update(agreement(found[reference], objects))
    return result


def _predict_fps(argv: list[str], env: dict[str, str]) -> float:
    """Frames/s that `detector predict` prints (model loading excluded)."""
    run = subprocess.run(argv, env=env, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"detector predict failed: {run.stderr[-500:]}")
    found = re.search(r"\(([\d.]+) frames/s", run.stderr)
    if found is None:
        raise RuntimeError(f"detector predict printed no timing: {run.stderr[-500:]}")
    return float(found.group(1))


def wait_online(client: Client, model: str, timeout: float = 600) -> None:
    """Wait until ``GET /api/models`` says a worker serving ``model`` is online: a job
    sent before then waits for one, and the job's time would include the worker's start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = client.get("/models", timeout=10).json()["models"]
        if any(m["name"] == model and m["online"] for m in models):
            return
        client.check()
        time.sleep(1)
    raise RuntimeError(f"no detector worker for model {model!r} came online in {timeout:.0f} s")


def job_against_predict(
    bench: Bench, data: RealVideoData, service_env: Callable[[Path], dict[str, str]]
) -> dict[str, Any]:
    """The video's every ``real_video_stride``-th frame as a job through the service,
    on the SSD on the first of ``SSD_RUNTIMES``, against `detector predict` on the
    same frames: frames/s of each (the job's from its upload to its success, after
    a warm-up job) and the ratio."""
    options = bench.options
    folder = bench.out / "real-video"
    data_dir = folder / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    backend = SSD_RUNTIMES[0]
    catalog = write_catalog(data, backend, folder / "models.toml")
    env = {
        **service_env(data_dir),
        "VIDEO_STORAGE": str(folder / "videos"),
        "DETECTOR_MODELS": str(catalog),
        "DETECTOR_BATCH_SIZE": "auto",
    }
    for name in ("DETECTOR_BACKEND", "DETECTOR_MODEL", "DETECTOR_WEIGHTS"):  # the benchmark's own model
        env.pop(name, None)
    stride = str(options.real_video_stride)
    analysed = len(range(0, len(index_frames(data.video)), options.real_video_stride))
    predict_argv = detector_cli_argv("predict", str(data.video), "--out", str(folder / "predict.json"))
    predict_argv += ["--score-threshold", str(options.score_threshold), "--frame-stride", stride]
    predict_fps = _predict_fps(predict_argv, env)
    bench.log(f"real video: detector predict {predict_fps} frames/s")
    subprocess.run(detector_cli_argv("db", "upgrade"), env=env, check=True, capture_output=True)
    service = Service(env, folder, background_detector=options.background_detector, models=(MODEL_NAME,))
    try:
        service.start_all()
        client = Client(service.base, check=service.check_running)
        wait_online(client, MODEL_NAME)
        client.run_job(data.video, options.score_threshold, frame_stride=stride, end="2")  # loads the model
        job_id, seconds = client.run_job(data.video, options.score_threshold, frame_stride=stride)
        job = client.job(job_id)
    finally:
        service.stop_all()
    frames = int(job["progress"]["frames_done"])
    if frames != analysed:
        raise RuntimeError(f"the real-video job analysed {frames} frames, not {analysed}")
    end_to_end = round(frames / seconds, 2)
    bench.log(f"real video: the job {end_to_end} frames/s")
    return {
        "backend": backend,
        "frame_stride": options.real_video_stride,
        "frames": frames,
        "objects": job["objects_total"],
        "predict_fps": predict_fps,
        "end_to_end_fps": end_to_end,
        "pipeline_efficiency": round(end_to_end / predict_fps, 3),
    }


def real_video(bench: Bench, service_env: Callable[[Path], dict[str, str]]) -> dict[str, Any]:
    """The figure (``real_video`` in the report): the runtimes on the sampled frames,
    then the job against `detector predict`; skipped, with a note, without the data."""
    options = bench.options
    data = RealVideoData(Path(options.testdata).expanduser().resolve())
    if missing := data.missing():
        note = f"the shared test data is missing: {', '.join(map(str, missing))}"
        bench.log(f"real video: skipped, {note}")
        return {"real_video": {"skipped": note}}
    frames = [image for _, image in sampled_frames(data.video, options.real_video_stride)]
    figure: dict[str, Any] = {
        "video": data.video.name,
        "frame_stride": options.real_video_stride,
        "frames": len(frames),
        "width": int(frames[0].shape[1]),
        "height": int(frames[0].shape[0]),
        "score_threshold": options.score_threshold,
        "runtimes": compare_ssd_runtimes(data, frames, options.score_threshold, log=bench.log),
    }
    if options.real_video_job:
        figure["job"] = job_against_predict(bench, data, service_env)
    return {"real_video": figure}

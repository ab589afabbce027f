"""The streams figure: each small model with one stream (every thread on each batch,
as before streams) against ``DETECTOR_STREAMS=auto`` (batches side by side, one
thread each), as `detector predict` and as a job through the service, and whether
the two find the same objects.

``detector bench --figure streams`` runs it alone. The models, one
``DETECTOR_MODELS`` catalog for all: the benchmark's own model (``--model`` on
``--backend``, with the runtimes figure's weights, ``conditioned`` by default,
so that its objects are worth comparing; a torchvision model also as its ONNX
export on OpenVINO and ONNX Runtime, compared with eager PyTorch on one stream
too) and, where the shared test data is
present, its SSD MobileNet V2 on ONNX Runtime, OpenVINO and LiteRT (the 8-bit
TFLite file). The video: every ``--real-video-stride``-th frame of the shared
``vtest.avi``, or, without the shared data, the benchmark's own video.

For each model and each setting: `detector predict`'s frames/s (model loading
excluded) and a job's, from upload to success, after a warm-up job, on a
service started as `detector up` starts it with that setting. Then, on the
service with ``auto``, the default CPU model before this round (`BEFORE`: the
benchmark's torchvision model on eager PyTorch, one stream) against what
`detector up` runs on a machine without a GPU now (`NOW`: the same network and
weights on OpenVINO, with streams), a job on each in turn, `PAIRS` times
(`paired_jobs`). Objects are
matched one to one between the settings' `detector predict` outputs: same
class, IoU at least 0.99, scores at most 1e-3 apart (`match_fraction`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from detector.bench.figures import Bench
from detector.bench.realvideo import RealVideoData, _predict_fps, wait_online
from detector.bench.runtimes import conditioned_weights
from detector.bench.service import Client, Service
from detector.runtime.processes import detector_cli_argv
from detector.video import index_frames, probe

#: The two settings compared: as before streams, and the default.
SETTINGS = ("1", "auto")

#: The runtimes the benchmark's torchvision model also runs on, as its ONNX export.
EXPORT_RUNTIMES = ("openvino", "onnxruntime")

#: The catalog's name for the benchmark's torchvision model as the default CPU model
#: ran before this round: eager PyTorch on one stream.
BEFORE = "bench-before"

#: What runs it now on a machine without a GPU (`detector.cli.common.local_backend`).
NOW = "bench-openvino"

#: Rounds of `paired_jobs`.
PAIRS = 3


def catalog(bench: Bench, data: RealVideoData | None, width: int, height: int, path: Path) -> list[str]:
    """Write the figure's DETECTOR_MODELS file at ``path``; the names of its models."""
    options = bench.options
    weights = options.weights
    if options.runtimes_weights == "conditioned":
        weights = conditioned_weights(options.model, None, width, height)
    tables: dict[str, dict[str, Any]] = {
        "bench": {"backend": options.backend, "model": options.model, "weights": weights}
    }
    if options.backend == "torchvision":  # the same network and weights on the CPU runtimes
        for backend in EXPORT_RUNTIMES:
            tables[f"bench-{backend}"] = {"backend": backend, "model": options.model, "weights": weights}
        # The default CPU model as it ran before this round, for the paired jobs (`paired_jobs`).
        tables[BEFORE] = {**tables["bench"], "streams": 1}
    if data is not None:
        for backend in ("onnxruntime", "openvino", "tflite"):
            tables[f"ssd-{backend}"] = {
                "backend": backend,
                "file": str(data.model_file(backend)),
                "family": "ssd",
                "labels": str(data.labels),
            }
    lines = ['default = "bench"', ""]
    for name, table in tables.items():
        lines.append(f"[models.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return list(tables)


def match_fraction(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """How many of two `detector predict` outputs' objects match one to one, frame by
    frame: same class, IoU at least 0.99, scores at most 1e-3 apart; out of the
    larger count."""
    from detector.bench.realvideo import box_iou

    matched = total = 0
    worst_score = 0.0
    for fa, fb in zip(a, b, strict=True):
        oa, ob = fa["objects"], fb["objects"]
        total += max(len(oa), len(ob))
        if not oa or not ob:
            continue
        iou = box_iou(np.array([o["box"] for o in oa], float), np.array([o["box"] for o in ob], float))
        taken: set[int] = set()
        for i, obj in enumerate(oa):
            for j in np.argsort(-iou[i]):
                if iou[i, j] < 0.99:
                    break
                other = ob[j]
                if j in taken or other["class_id"] != obj["class_id"]:
                    continue
                difference = abs(other["score"] - obj["score"])
                if difference > 1e-3:
                    continue
                taken.add(int(j))
                matched += 1
                worst_score = max(worst_score, difference)
                break
    return {
        "objects": total,
        "matched": round(matched / total, 5) if total else 1.0,
        "largest_score_difference": round(worst_score, 6),
    }


def job_fps(client: Client, video: Path, threshold: float, name: str, stride: int, analysed: int) -> float:
    """Frames/s of a job of the whole video on model ``name``, upload to success; it
    must have analysed ``analysed`` frames."""
    job_id, seconds = client.run_job(video, threshold, model=name, frame_stride=str(stride))
    frames = int(client.job(job_id)["progress"]["frames_done"])
    if frames != analysed:
        raise RuntimeError(f"the {name} job analysed {frames} frames, not {analysed}")
    return round(frames / seconds, 2)


def paired_jobs(bench: Bench, client: Client, video: Path, stride: int, analysed: int) -> dict[str, Any]:
    """The default CPU model before this round (`BEFORE`) against now (`NOW`): `PAIRS`
    rounds of a job on each, one after the other on the same service, and each
    round's ratio. Load that comes and goes on a shared machine moves both jobs of
    a round alike, where the figure's other rows are minutes apart."""
    wait_online(client, BEFORE)
    for name in (BEFORE, NOW):  # both loaded (MAX_LOADED_MODELS is 2) before any job is timed
        client.run_job(video, bench.options.score_threshold, model=name, frame_stride=str(stride), end="2")
    rounds = []
    for _ in range(PAIRS):
        fps = {
            name: job_fps(client, video, bench.options.score_threshold, name, stride, analysed)
            for name in (BEFORE, NOW)
        }
        rounds.append(
            {"before_fps": fps[BEFORE], "now_fps": fps[NOW], "ratio": round(fps[NOW] / fps[BEFORE], 2)}
        )
        bench.log(f"streams: the default CPU model, before and now: {rounds[-1]}")
    ratios = sorted(entry["ratio"] for entry in rounds)
    return {
        "before": f"{BEFORE}: eager PyTorch, one stream",
        "now": f"{NOW}: OpenVINO, DETECTOR_STREAMS=auto",
        "rounds": rounds,
        "median_ratio": ratios[len(ratios) // 2],
    }


def streams_figure(bench: Bench, service_env: Any) -> dict[str, Any]:
    """The figure (``streams`` in the report)."""
    options = bench.options
    folder = bench.out / "streams"
    folder.mkdir(parents=True, exist_ok=True)
    shared = RealVideoData(Path(options.testdata).expanduser().resolve())
    missing = shared.missing()
    if missing:
        bench.log(
            f"streams: the shared test data is missing ({', '.join(map(str, missing))}); "
            "the benchmark's own video and model only"
        )
    data = None if missing else shared
    video = data.video if data is not None else bench.videos.main
    stride = options.real_video_stride if data is not None else 1
    info = probe(video)
    declared = catalog(bench, data, info.width, info.height, folder / "models.toml")
    names = [name for name in declared if name != BEFORE]
    analysed = len(range(0, len(index_frames(video)), stride))
    figure: dict[str, Any] = {"video": video.name, "frame_stride": stride, "frames": analysed, "models": {}}
    outputs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for setting in SETTINGS:
        data_dir = folder / f"data-{setting}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **service_env(data_dir),
            "VIDEO_STORAGE": str(data_dir / "videos"),
            "DETECTOR_MODELS": str(folder / "models.toml"),
            "DETECTOR_BATCH_SIZE": "auto",
            "DETECTOR_STREAMS": setting,
        }
        for name in ("DETECTOR_BACKEND", "DETECTOR_MODEL", "DETECTOR_WEIGHTS"):  # in the catalog
            env.pop(name, None)
        for name in names:
            out = folder / f"predict-{name}-{setting}.json"
            argv = detector_cli_argv("predict", str(video), "--out", str(out), "--model", name)
            argv += ["--score-threshold", str(options.score_threshold), "--frame-stride", str(stride)]
            fps = _predict_fps(argv, env)
            outputs[name, setting] = json.loads(out.read_text())["frames"]
            figure["models"].setdefault(name, {})[setting] = {"predict_fps": fps}
            bench.log(f"streams: {name} with DETECTOR_STREAMS={setting}: detector predict {fps} frames/s")
        subprocess.run(detector_cli_argv("db", "upgrade"), env=env, check=True, capture_output=True)
        logs = folder / f"logs-{setting}"
        logs.mkdir(exist_ok=True)
        service = Service(
            env,
            logs,
            background_detector=options.background_detector,
            models=tuple(declared),
        )
        try:
            service.start_all()
            client = Client(service.base, check=service.check_running)
            for name in names:
                wait_online(client, name)
                form = {"frame_stride": str(stride), "model": name}
                client.run_job(video, options.score_threshold, **form, end="2")  # loads the model
                row = figure["models"][name][setting]
                row["end_to_end_fps"] = job_fps(
                    client, video, options.score_threshold, name, stride, analysed
                )
                row["pipeline_efficiency"] = round(row["end_to_end_fps"] / row["predict_fps"], 3)
                bench.log(f"streams: {name} with DETECTOR_STREAMS={setting}: {row}")
            if setting == "auto" and BEFORE in declared:
                figure["default_cpu_model"] = paired_jobs(bench, client, video, stride, analysed)
        finally:
            service.stop_all()
    for name in names:
        row = figure["models"][name]
        before, after = row["1"], row["auto"]
        row["predict_speedup"] = round(after["predict_fps"] / before["predict_fps"], 2)
        row["end_to_end_speedup"] = round(after["end_to_end_fps"] / before["end_to_end_fps"], 2)
        row["same_objects"] = match_fraction(outputs[name, "1"], outputs[name, "auto"])
        if name.startswith("bench-"):  # the export against the benchmark's model as it ran before
            today = figure["models"]["bench"]["1"]
            row["against_eager_one_stream"] = {
                "predict_speedup": round(after["predict_fps"] / today["predict_fps"], 2),
                "end_to_end_speedup": round(after["end_to_end_fps"] / today["end_to_end_fps"], 2),
                "same_objects": match_fraction(outputs["bench", "1"], outputs[name, "auto"]),
            }
        bench.log(f"streams: {name}: {row}")
    return {"streams": figure}

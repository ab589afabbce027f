"""The ONNX Runtime and OpenVINO backends: the cached ONNX export, and the same objects as eager.

Eager PyTorch is the reference. ``weights=random`` is too ill-conditioned on
video frames for any two float32 runtimes to agree box for box (eager does not
agree with itself across thread counts; see ``conditioned_checkpoint``), so
the comparison runs on seeded weights conditioned on synthetic frames, loaded
from a file through the same loading code; ``weights=random`` is checked to
build, run and be deterministic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.bench.runtimes import conditioned_checkpoint, match_objects, match_rate
from detector.detection import Detections, DetectorSettings, build_predictor, model_identity, onnx_export
from detector.detection.base import BACKENDS
from detector.detection.labels import TORCHVISION_COCO, label_list
from detector.detection.onnx_backend import OnnxRuntimePredictor, OpenVinoPredictor, _providers
from detector.detection.onnx_export import export_metadata, export_onnx, export_path
from detector.detection.registry import PREDICTOR_CLASSES
from detector.video.synthetic import frame_image

MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"
RUNTIMES = ("onnxruntime", "openvino")


def settings(**overrides: Any) -> DetectorSettings:
    values: dict[str, Any] = {
        "backend": "onnxruntime",
        "model": MODEL,
        "weights": "random",
        "device": "cpu",
        "batch_size": 4,
        "min_score": 0.05,
        "seed": 0,
    }
    values.update(overrides)
    return DetectorSettings(**values)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("onnx-cache"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(conditioned_checkpoint(MODEL, tmp_path_factory.mktemp("weights") / "conditioned.pth"))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Frames the 320 model shrinks on the host (640x360) and one it enlarges (320x240)."""
    return [frame_image(i * 9, 640, 360) for i in range(3)] + [frame_image(5, 320, 240)]


@pytest.fixture(scope="module")
def random_export(cache: str) -> Path:
    return export_onnx(settings(cache_dir=cache))


def test_the_backends_are_registered_named_and_labelled():
    for backend in RUNTIMES:
        assert backend in BACKENDS and backend in PREDICTOR_CLASSES
        assert DetectorSettings.from_config({"DETECTOR_BACKEND": backend}).backend == backend
        assert model_identity(settings(backend=backend)) == f"{backend}/{MODEL}@random(seed=0)"
        assert label_list(settings(backend=backend)) == list(TORCHVISION_COCO)
    assert model_identity(DetectorSettings(backend="openvino")) == (
        "openvino/fasterrcnn_mobilenet_v3_large_fpn@fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    )


def test_their_identity_needs_no_torch():
    code = (
        "import sys\n"
        "from detector.detection import DetectorSettings, model_identity\n"
        "from detector.detection.labels import label_list\n"
        "s = DetectorSettings(backend='onnxruntime', weights='random')\n"
        "print(model_identity(s), len(label_list(s)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnxruntime', 'openvino')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.splitlines() == [
        "onnxruntime/fasterrcnn_mobilenet_v3_large_fpn@random(seed=0) 91",
        "[]",
    ]


def test_unknown_model_is_a_clear_value_error(tmp_path):
    for backend in RUNTIMES:
        with pytest.raises(ValueError, match="unknown torchvision model 'nope'"):
            build_predictor(settings(backend=backend, model="nope", cache_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown model 'nope' for the onnxruntime backend"):
        export_path(settings(model="nope"))
    assert not any(tmp_path.iterdir())


def test_the_export_is_named_by_identity_score_floor_and_versions(cache, random_export):
    assert random_export == export_path(settings(cache_dir=cache))
    assert random_export.parent == Path(cache) / "onnx"
    assert random_export.name.startswith(f"{MODEL}-") and random_export.suffix == ".onnx"
    # Both runtimes share the export; what changes the graph changes the name.
    assert export_path(settings(backend="openvino", cache_dir=cache)) == random_export
    for other in ({"seed": 1}, {"min_score": 0.1}, {"model": "fasterrcnn_mobilenet_v3_large_fpn"}):
        assert export_path(settings(cache_dir=cache, **other)) != random_export
    metadata = export_metadata(random_export)
    assert metadata["model_identity"] == f"torchvision/{MODEL}@random(seed=0)"
    assert (metadata["input_short"], metadata["input_long"]) == ("320", "640")
    assert metadata["export_version"] == str(onnx_export.EXPORT_VERSION)
    assert json.loads(metadata["categories"]) == list(TORCHVISION_COCO)


def test_the_export_is_cached(cache, random_export, monkeypatch):
    def no_export(*_args: Any) -> None:
        raise AssertionError("the cached export should be used")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    monkeypatch.setattr(onnx_export, "build_torch_model", no_export)
    assert export_onnx(settings(cache_dir=cache)) == random_export
    predictor = build_predictor(settings(cache_dir=cache))
    assert isinstance(predictor, OnnxRuntimePredictor) and predictor.path == random_export
    assert [p.name for p in random_export.parent.iterdir()] == [random_export.name]  # no temp file left


def test_the_export_is_written_under_a_temporary_name_and_renamed(tmp_path, monkeypatch):
    target = export_path(settings(cache_dir=str(tmp_path)))
    seen: list[Path] = []

    def fake_export(_settings: DetectorSettings, temp: Path) -> None:
        assert not target.exists()
        assert temp.parent == target.parent and temp != target
        seen.append(temp)
        temp.write_bytes(b"graph")

    monkeypatch.setattr(onnx_export, "_export", fake_export)
    assert export_onnx(settings(cache_dir=str(tmp_path))) == target
    assert target.read_bytes() == b"graph" and not seen[0].exists()

    def failing_export(_settings: DetectorSettings, temp: Path) -> None:
        temp.write_bytes(b"half a gra")
        raise RuntimeError("killed mid-export")

    target.unlink()
    monkeypatch.setattr(onnx_export, "_export", failing_export)
    with pytest.raises(RuntimeError, match="killed"):
        export_onnx(settings(cache_dir=str(tmp_path)))
    assert list(target.parent.iterdir()) == []  # neither a partial export nor its temporary file


def test_temporary_files_of_killed_exports_are_removed_by_the_next_export(tmp_path, monkeypatch):
    """A process killed mid-export leaves its temporary file; the next export into the
    directory removes it once it is old, and leaves one that may be in use."""
    target = export_path(settings(cache_dir=str(tmp_path)))
    target.parent.mkdir(parents=True)
    killed, running = (
        target.parent / f".{target.stem}.killed.tmp",
        target.parent / f".{target.stem}.running.tmp",
    )
    for temp in (killed, running):
        temp.write_bytes(b"half a gra")
    long_ago = time.time() - onnx_export.STALE_TEMP_SECONDS - 60
    os.utime(killed, (long_ago, long_ago))
    monkeypatch.setattr(onnx_export, "_export", lambda _settings, temp: temp.write_bytes(b"graph"))
    assert export_onnx(settings(cache_dir=str(tmp_path))) == target
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, running.name])


@pytest.mark.slow
def test_the_export_is_reproducible(tmp_path, random_export):
    """The same settings, exported again into another cache, give the same bytes."""
    again = export_onnx(settings(cache_dir=str(tmp_path)))
    assert again != random_export
    assert again.read_bytes() == random_export.read_bytes()


@pytest.mark.parametrize("backend", RUNTIMES)
def test_the_runtimes_find_what_eager_finds(backend, cache, checkpoint, frames):
    """Weights from a file: one to one, same class, IoU >= 0.99, scores within 1e-3."""
    # Frames of one size per call: eager pads a batch to its largest frame, which
    # changes what it finds near the edges of the smaller ones; the export runs
    # each frame alone (a video's frames are all one size).
    reference = build_predictor(settings(backend="torchvision", weights=checkpoint))
    eager = reference.predict(frames[:3], 0.3) + reference.predict(frames[3:], 0.3)
    predictor = build_predictor(settings(backend=backend, weights=checkpoint, cache_dir=cache))
    assert isinstance(predictor, OnnxRuntimePredictor if backend == "onnxruntime" else OpenVinoPredictor)
    assert predictor.name == model_identity(settings(backend=backend, weights=checkpoint))
    assert predictor.name.startswith(f"{backend}/{MODEL}@sha256:")
    got = predictor.predict(frames, 0.3)
    rate = match_rate(eager, got)
    assert rate["objects_eager"] > 20, rate
    assert rate["match_rate"] >= 0.99, rate
    for found, frame in zip(got, frames, strict=True):
        height, width = frame.shape[:2]
        objects = found.to_objects()
        assert [o["score"] for o in objects] == sorted((o["score"] for o in objects), reverse=True)
        for o in objects:
            assert set(o) == {"label", "class_id", "score", "box"}
            assert o["label"] == TORCHVISION_COCO[o["class_id"]]
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
    # One frame at a time (OpenVINO's latency path) finds the same.
    single = [predictor.predict_batch([frame])[0] for frame in frames[:2]]
    assert match_rate(got[:2], [s[s.score >= 0.3] for s in single])["match_rate"] == 1.0


def test_random_weights_build_run_and_are_deterministic(cache, random_export, frames):
    predictor = build_predictor(settings(cache_dir=cache, device="auto"))
    assert predictor.name == f"onnxruntime/{MODEL}@random(seed=0)" and predictor.device == "cpu"
    first = predictor.predict(frames, 0.05)
    assert first == predictor.predict(frames, 0.05)
    assert sum(len(objects) for objects in first) > 10


def test_matching_is_one_to_one():
    box = {"label": "person", "class_id": 1, "score": 0.5, "box": [0.0, 0.0, 10.0, 10.0]}
    moved = {**box, "box": [0.0, 0.0, 10.0, 10.05]}
    other_class = {**box, "class_id": 2}
    other_score = {**box, "score": 0.502}
    assert match_objects(detections_of(box), detections_of(box, moved)) == 1
    assert match_objects(detections_of(box, box), detections_of(moved, box)) == 2
    assert (
        match_objects(detections_of(box), detections_of(other_class))
        == match_objects(detections_of(box), detections_of(other_score))
        == 0
    )
    assert match_rate([detections_of(box)], [detections_of(box, moved)])["match_rate"] == 0.5


def detections_of(*objects: dict[str, Any]) -> Detections:
    return Detections.from_objects(objects)


def test_execution_providers_for_each_device():
    cpu_only = ["CPUExecutionProvider"]
    assert _providers("cpu", cpu_only) == cpu_only
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert _providers("cuda:1", gpu) == [
        ("TensorrtExecutionProvider", {"device_id": 1}),
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        _providers("cuda:0", cpu_only)


@pytest.mark.slow
def test_compare_runtimes_reports_speed_and_agreement(cache, random_export, small_video):
    from detector.bench.runtimes import compare_runtimes

    result = compare_runtimes(MODEL, "random", small_video, batch_size=4, frames=8, cache_dir=cache)
    assert (result["frames"], result["width"], result["height"]) == (8, 160, 120)
    assert set(result["runtimes"]) == {"torchvision", *RUNTIMES} and set(result["speedup"]) == set(RUNTIMES)
    for backend in RUNTIMES:
        entry = result["runtimes"][backend]
        assert entry["fps"] > 0 and 0 <= entry["match_rate"] <= 1
        assert entry["name"] == f"{backend}/{MODEL}@random(seed=0)"


@pytest.mark.parametrize("allocator", ["mimalloc", "tcmalloc"])
def test_openvino_runs_on_the_allocator_the_workers_preload(allocator, cache, random_export):
    """Workers run on a preloaded tcmalloc or mimalloc (detector.runtime.allocator);
    OpenVINO's oneTBB used to abort the process on them as the model was compiled."""
    from detector.runtime.allocator import find_mimalloc, find_tcmalloc

    library = find_mimalloc() if allocator == "mimalloc" else find_tcmalloc()
    if library is None:
        pytest.skip(f"{allocator} is not installed")
    code = f"""
import numpy as np
from detector.detection import DetectorSettings, build_predictor
predictor = build_predictor(DetectorSettings(backend="openvino", model={MODEL!r}, weights="random",
                                             device="cpu", batch_size=2, cache_dir={cache!r}))
print(len(predictor.predict([np.zeros((96, 160, 3), np.uint8)] * 2, 0.3)))
"""
    env = {k: v for k, v in os.environ.items() if k != "TBB_ENABLE_SANITIZERS"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "LD_PRELOAD": library},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "2"


def test_the_export_merges_the_pooled_levels_by_a_gather(random_export):
    """The RoI heads' levels come back into RoI order by one gather, not by scattering
    each level's features (an index expanded to every element) into a zero tensor."""
    import onnx

    graph = onnx.load(str(random_export), load_external_data=False).graph
    pooling = [node for node in graph.node if "/box_roi_pool/" in node.name]
    ops = [node.op_type for node in pooling]
    assert ops.count("RoiAlign") >= 2  # one per level
    assert "Expand" not in ops
    # One scatter is left: the inverse of the levels' order, one index per RoI.
    assert ops.count("ScatterElements") == 1


def test_the_gathered_merge_moves_the_values_torchvision_scatters():
    import torch
    from torchvision.ops import poolers

    generator = torch.Generator().manual_seed(3)
    levels = torch.randint(0, 4, (37,), generator=generator)
    results = [torch.randn(int((levels == level).sum()), 8, 7, 7, generator=generator) for level in range(4)]
    expected = poolers._onnx_merge_levels(levels, results)
    with onnx_export._levels_merged_by_gather():
        merged = poolers._onnx_merge_levels(levels, results)
    assert poolers._onnx_merge_levels is not None and torch.equal(merged, expected)
    assert poolers._onnx_merge_levels(levels, results) is not merged  # restored: torchvision's own again


def test_openvino_compiles_once_for_each_frame_size_and_keeps_the_last_few(cache, random_export, monkeypatch):
    from detector.detection import onnx_backend

    compiled: list[tuple[int, ...]] = []
    compile_openvino = onnx_backend.compile_openvino

    def counting(path, device, streams, threads, shape=None):
        compiled.append(tuple(shape))
        return compile_openvino(path, device, streams, threads, shape)

    monkeypatch.setattr(onnx_backend, "compile_openvino", counting)
    # One stream, so that the sizes are used in the frames' order (test_streams runs several).
    predictor = build_predictor(settings(backend="openvino", cache_dir=cache, streams=1))
    assert compiled == []  # nothing before the first frame
    # Frames the 320 model does not resize, so each is its own input size.
    sizes = [(320 + 16 * i, 320) for i in range(onnx_backend.COMPILED_SIZES + 1)]
    frames = [frame_image(i, width, height) for i, (width, height) in enumerate(sizes)]
    first = predictor.predict(frames[:2] * 3, 0.05)  # two sizes, three times over
    assert sorted(compiled) == sorted((h, w, 3) for w, h in sizes[:2])
    assert [len(found) for found in first[2:]] == [len(found) for found in first[:4]]
    predictor.predict(frames, 0.05)
    assert len(compiled) == len(sizes)  # each size once
    assert list(predictor._sizes) == [(h, w, 3) for w, h in sizes[1:]]  # the oldest dropped
    again = predictor.predict(frames[:1], 0.05)
    assert compiled[-1] == (sizes[0][1], sizes[0][0], 3) and len(compiled) == len(sizes) + 1
    assert again[0] == first[0]


def test_with_streams_openvino_compiles_in_the_thread_that_hands_batches_over(
    cache, random_export, monkeypatch
):
    """The stream threads only run the model: each frame size is compiled once, by the
    caller, before a stream takes a batch of that size."""
    import threading

    from detector.detection import onnx_backend

    compiled: list[tuple[tuple[int, ...], str]] = []
    compile_openvino = onnx_backend.compile_openvino

    def recording(path, device, streams, threads, shape=None):
        compiled.append((tuple(shape), threading.current_thread().name))
        return compile_openvino(path, device, streams, threads, shape)

    monkeypatch.setattr(onnx_backend, "compile_openvino", recording)
    predictor = build_predictor(settings(backend="openvino", cache_dir=cache, streams=2, batch_size=1))
    # 640x360 is shrunk to 569x320, 320x240 enlarged to 426x320, 320x320 kept.
    frames = [frame_image(i, w, h) for i, (w, h) in enumerate([(640, 360), (320, 240), (320, 320)])] * 3
    found = predictor.predict(frames, 0.05)
    caller = threading.current_thread().name
    assert sorted(compiled) == sorted((predictor._resize(frame)[0].shape, caller) for frame in frames[:3])
    assert found[3:6] == found[:3]


def test_the_layer_profile_sums_the_export_operators_time(cache, random_export, small_video):
    from detector.bench.layers import profile_layers

    result = profile_layers(small_video, MODEL, "random", frames=2, warmup=1, cache_dir=cache, top=100)
    assert result["file"] == random_export.name and result["frames"] == 2
    assert result["input"] == [320, 426, 3]  # 160x120 enlarged to the model's 320 px
    assert {"RoiAlign", "ROIAlign"} & set(result["by_type"]) and "Convolution" in result["by_type"]
    assert sum(result["by_type"].values()) == pytest.approx(result["counted_ms"], abs=0.1)
    assert 0 < result["counted_ms"] <= result["wall_ms_median"] * 1.5
    dynamic = profile_layers(
        small_video, MODEL, "random", frames=1, warmup=1, cache_dir=cache, onnx=random_export, static=False
    )
    assert dynamic["static"] is False and dynamic["counted_ms"] > 0

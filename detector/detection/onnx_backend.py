"""The torchvision detectors on the CPU runtimes: ONNX Runtime and OpenVINO.

Both backends run the model's ONNX export (``onnx_export.export_onnx``: built
on first use, cached per model identity) and find the same objects as the
torchvision backend on the CPU: the same 8-bit pre-shrink of large frames,
the model's own transform inside the graph, boxes back in the original
frame's pixels (clipped to it), and the same `Detections`. Class
filtering stays outside the predictor, as for every backend.

The export takes one frame per run, so ``predict_batch`` runs a batch frame
by frame inside the one call. A small model runs several batches side by side
(``streams``, one thread each: ``Predictor.predict``): ONNX Runtime's session
takes runs from several threads at once, and OpenVINO gives each stream thread
an infer request of its own.

Devices: ``cpu``, and ``auto`` means the CPU (whatever GPUs there are: a job
that wants one names ``cuda``). ONNX Runtime with ``cuda``/``cuda:N`` takes
the TensorRT and CUDA execution providers the installed onnxruntime has
(``onnxruntime-gpu``), in that order, on GPU N, with the CPU provider for the
operators they lack (``_providers``); it refuses when it has neither. This
cannot be tested without a GPU build of onnxruntime. OpenVINO runs on the CPU
only here (its ``GPU`` is an Intel GPU).

Threads: the CPU threads torch would use (``base.cpu_threads``), shared among
the predictor's streams (``base.stream_threads``): ONNX Runtime runs each
stream's frames on its share, and OpenVINO compiles as many streams.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detector.detection.base import DetectorSettings, Predictor, boxes_in_frame, stream_threads
from detector.detection.detections import Detections
from detector.detection.identity import model_identity
from detector.detection.onnx_export import INPUT, export_metadata, export_onnx

#: One frame's outputs: boxes ``(N, 4)``, scores ``(N,)``, labels ``(N,)``.
Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]


class OnnxPredictor(Predictor):
    """What both runtimes share: the export, the pre-shrink, boxes to frame pixels."""

    #: The backend name, as in ``base.BACKENDS``.
    backend = ""

    def __init__(self, settings: DetectorSettings, device: str) -> None:
        self.name = model_identity(settings)
        self.device = "cpu" if settings.device.strip().lower() == "auto" else device
        self.path: Path = export_onnx(settings)
        metadata = export_metadata(self.path)
        self._input_short, self._input_long = int(metadata["input_short"]), int(metadata["input_long"])
        self.batch_size = settings.batch_size_on(self.device, (self._input_short, self._input_long))
        self.streams = settings.streams_on(self.device, (self._input_short, self._input_long))
        self.threads = stream_threads(self.streams)  # each stream's
        # torchvision's COCO labels (labels.TORCHVISION_COCO), as the export recorded them.
        self.labels: list[str] = json.loads(metadata["categories"])
        self._load(self.path)

    def _load(self, path: Path) -> None:
        """Load the export at ``path`` into the runtime."""
        raise NotImplementedError

    def _run(self, frames: Sequence[np.ndarray]) -> list[Outputs]:
        """The graph's outputs for each frame (from ``_resize``), in order."""
        raise NotImplementedError

    def _resize(self, frame: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The frame as the graph wants it (float32, at the model's input size), and
        the x and y factors back to the frame's pixels.

        Exactly what eager PyTorch sees on the CPU: a frame the model would
        shrink is shrunk while still 8-bit (``TorchvisionPredictor._shrink``,
        rounded sizes); one it would enlarge is enlarged in float as the
        model's transform does (``interpolate(scale_factor=s,
        recompute_scale_factor=True)``: floored sizes, bilinear, half-pixel
        centres, which is what OpenCV's ``INTER_LINEAR`` on floats does).
        """
        height, width = frame.shape[:2]
        scale = self._scale(height, width)
        size = self._input_size(height, width, scale)
        if scale == 1.0:
            return frame.astype(np.float32), 1.0, 1.0
        if scale < 1.0:
            small = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
            return small.astype(np.float32), width / size[0], height / size[1]
        large = cv2.resize(frame.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        return large, width / size[0], height / size[1]

    def _scale(self, height: int, width: int) -> float:
        """How much the model resizes a frame of ``height`` x ``width``."""
        return min(self._input_short / min(height, width), self._input_long / max(height, width))

    @staticmethod
    def _input_size(height: int, width: int, scale: float) -> tuple[int, int]:
        """The (width, height) `_resize` gives a frame of ``height`` x ``width`` that the
        model resizes by ``scale`` (`_scale`): shrunk to rounded sizes, enlarged to
        floored ones, or kept."""
        if scale == 1.0:
            return width, height
        if scale < 1.0:
            return max(1, round(width * scale)), max(1, round(height * scale))
        return math.floor(width * scale), math.floor(height * scale)

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        if not frames:
            return []
        shrunk = [self._resize(f) for f in frames]
        outputs = self._run([small for small, _, _ in shrunk])
        return [
            Detections.from_model(
                boxes_in_frame(boxes, (fx, fy), (frame.shape[1], frame.shape[0])),
                scores,
                labels,
                self.labels,
            )
            for (boxes, scores, labels), (_, fx, fy), frame in zip(outputs, shrunk, frames, strict=True)
        ]


class OnnxRuntimePredictor(OnnxPredictor):
    """The export on ONNX Runtime: full graph optimisation, frames one after another."""

    backend = "onnxruntime"

    def _load(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), options, providers=_providers(self.device, ort.get_available_providers())
        )

    def _run(self, frames: Sequence[np.ndarray]) -> list[Outputs]:
        results = []
        for frame in frames:
            boxes, scores, labels = self.session.run(None, {INPUT: frame})
            results.append((boxes, scores, labels))
        return results


def _providers(device: str, available: Sequence[str]) -> list[Any]:
    """ONNX Runtime's execution providers for ``device``, best first.

    Raises:
        RuntimeError: a GPU device, and this onnxruntime has no GPU provider.
    """
    if device == "cpu":
        return ["CPUExecutionProvider"]
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    gpu = [
        (name, {"device_id": index})
        for name in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
        if name in available
    ]
    if not gpu:
        raise RuntimeError(
            f"the onnxruntime backend on {device} needs onnxruntime-gpu (this onnxruntime has "
            f"{', '.join(available)}); use DETECTOR_DEVICE=cpu"
        )
    return [*gpu, "CPUExecutionProvider"]


class OpenVinoPredictor(OnnxPredictor):
    """The export on OpenVINO's CPU plugin, in full float32 precision.

    The export takes frames of any size, but OpenVINO runs a model whose input
    shape it knows ahead a little faster (it picks its kernels and plans its
    memory once; docs/performance.md, "Where the MobileNet's time went outside
    its multiply-adds"). So the model is compiled for each frame size it meets,
    on first use, and the last `COMPILED_SIZES` sizes are kept. A video's
    frames all come at one size, so a chunk compiles at most once.

    With several streams the model compiles with that many OpenVINO streams
    (``NUM_STREAMS``, the threads shared among them), and each of the
    predictor's stream threads runs its batch's frames on an infer request of
    its own; with one, it compiles with the latency hint, every thread on
    each frame. With streams, the model is compiled for a batch's frame size in
    the thread that hands the batch over (`_before_stream`), before a stream
    takes it: the stream threads only run the model.
    """

    backend = "openvino"

    def _load(self, path: Path) -> None:
        check_openvino_device(self.device)
        self._sizes: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._sizes_lock = threading.Lock()
        self._requests = threading.local()

    def compiled_for(self, shape: tuple[int, ...]) -> Any:
        """The model compiled for frames of ``shape`` (height, width, 3), compiled now
        if it is not among the last `COMPILED_SIZES` sizes."""
        with self._sizes_lock:
            compiled = self._sizes.get(shape)
            if compiled is None:
                compiled = compile_openvino(self.path, self.device, self.streams, self.threads, shape)
                self._sizes[shape] = compiled
                while len(self._sizes) > COMPILED_SIZES:
                    self._sizes.popitem(last=False)
            self._sizes.move_to_end(shape)
            return compiled

    def _before_stream(self, frames: Sequence[np.ndarray]) -> None:
        shapes = set()
        for frame in frames:
            height, width = frame.shape[:2]
            size = self._input_size(height, width, self._scale(height, width))
            shapes.add((size[1], size[0], *frame.shape[2:]))
        for shape in shapes:
            self.compiled_for(shape)

    def _request(self, shape: tuple[int, ...]) -> Any:
        """The calling stream thread's infer request for frames of ``shape``: one per
        thread and compiled model, made on first use; those of dropped sizes go with them."""
        compiled = self.compiled_for(shape)
        held: dict[tuple[int, ...], tuple[Any, Any]] | None = getattr(self._requests, "held", None)
        if held is None:
            held = self._requests.held = {}
        entry = held.get(shape)
        if entry is None or entry[0] is not compiled:
            for size in [size for size in held if size not in self._sizes]:
                del held[size]
            entry = held[shape] = (compiled, compiled.create_infer_request())
        return entry[1]

    def _run(self, frames: Sequence[np.ndarray]) -> list[Outputs]:
        results = []
        for frame in frames:
            request = self._request(frame.shape)
            request.infer({0: frame})
            results.append(_outputs(request))
        return results


#: The frame sizes an `OpenVinoPredictor` keeps a compiled model for, the most recent.
COMPILED_SIZES = 4


def compile_openvino(
    path: Path,
    device: str,
    streams: int,
    threads: int,
    shape: Sequence[int] | None = None,
    profile: bool = False,
) -> Any:
    """The model file at ``path`` (ONNX, or OpenVINO IR) compiled for OpenVINO's CPU plugin in float32: with
    ``streams`` side by side on ``threads`` threads each, or with the latency hint
    for one stream; for inputs of ``shape`` only, where given (its one input reshaped);
    with its performance counters on for ``profile`` (``detector.bench.layers``).

    Raises:
        ValueError: ``device`` is not the CPU.
    """
    # OpenVINO's threading library, oneTBB, loads its hwloc binding (tbbbind)
    # with RTLD_DEEPBIND, which binds it to glibc's malloc while the rest of
    # the process runs on a preloaded tcmalloc or mimalloc (runtime/allocator.py):
    # memory from one freed by the other aborts the process as the model is
    # compiled ("free(): invalid pointer"; openvinotoolkit/openvino#29025).
    # TBB_ENABLE_SANITIZERS turns the DEEPBIND off; TBB reads it when it
    # loads the binding, in this process, so setting it here is in time.
    if os.environ.get("LD_PRELOAD"):
        os.environ.setdefault("TBB_ENABLE_SANITIZERS", "1")
    import openvino as ov

    check_openvino_device(device)
    config: dict[str, Any] = {
        "INFERENCE_NUM_THREADS": streams * threads,
        # The CPU plugin may otherwise run in bf16 or f16 where the CPU has them.
        "INFERENCE_PRECISION_HINT": "f32",
    }
    if profile:
        config["PERF_COUNT"] = True
    if streams > 1:
        config.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=streams)
    else:
        config["PERFORMANCE_HINT"] = "LATENCY"
    core = ov.Core()
    model = core.read_model(str(path))
    if shape is not None:
        model.reshape({0: ov.PartialShape(list(shape))})
    return core.compile_model(model, "CPU", config)


def check_openvino_device(device: str) -> None:
    """Raises ValueError unless ``device`` is the CPU, the one device OpenVINO runs on here."""
    if device != "cpu":
        raise ValueError(f'the openvino backend runs on the CPU, not {device}; use device = "cpu"')


def openvino_request(compiled: Any, requests: threading.local) -> Any:
    """The calling stream thread's own infer request of ``compiled``, made on its first use."""
    request = getattr(requests, "request", None)
    if request is None:
        request = requests.request = compiled.create_infer_request()
    return request


def _outputs(request: Any) -> Outputs:
    """A finished OpenVINO request's outputs, copied out of its buffers."""
    boxes, scores, labels = (np.array(request.get_output_tensor(i).data) for i in range(3))
    return boxes, scores, labels

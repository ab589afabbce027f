"""Model files on the CPU runtimes: ONNX Runtime, OpenVINO and LiteRT (TFLite).

A catalog table with ``file`` and ``family`` builds one of these predictors
(``registry``): the file is checked and its input decided by
``families.open_file_model``, frames are prepared (`families.prepare`), run,
and each frame's outputs decoded by the family into `Detections` in the
frame's pixels.

Batching: a file whose input takes any batch size runs a batch in one call; a
file that fixes its batch (most exports fix it to 1) runs the frames of a batch
one after another inside the one ``predict_batch`` call.

Devices: the CPU (``auto`` means the CPU). ONNX Runtime with ``cuda``/``cuda:N``
takes the GPU providers of ``onnx_backend._providers`` (``onnxruntime-gpu``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from detector.detection.base import DetectorSettings, Predictor
from detector.detection.detections import Detections
from detector.detection.families import FileModel, Geometry, open_file_model, prepare
from detector.detection.identity import model_identity


class FilePredictor(Predictor):
    """What the three runtimes share: the checked file, the input, the decoding."""

    backend = ""

    def __init__(self, settings: DetectorSettings, device: str) -> None:
        from detector.detection.onnx_backend import cpu_threads

        self.name = model_identity(settings)
        self.settings = settings
        self.device = "cpu" if settings.device.strip().lower() == "auto" else device
        self.model: FileModel = open_file_model(settings)
        self.min_score = settings.min_score
        self.threads = cpu_threads()
        fmt = self.model.input
        self.batch_size = settings.batch_size_on(self.device, tuple(sorted((fmt.width, fmt.height))))  # type: ignore[arg-type]
        #: Frames per call of the runtime: the file's fixed batch, else the whole batch.
        self.per_call = self.model.batch
        self._load()

    def _load(self) -> None:
        raise NotImplementedError

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The file's outputs, in its order, for one call."""
        raise NotImplementedError

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        if not frames:
            return []
        step = self.per_call or len(frames)
        found: list[Detections] = []
        for start in range(0, len(frames), step):
            part = frames[start : start + step]
            inputs, geometries = self._inputs(part, step)
            outputs = self._run(inputs)
            for i, geometry in enumerate(geometries):
                found.append(self.model.detections([out[i] for out in outputs], geometry, self.min_score))
        return found

    def _inputs(self, part: Sequence[np.ndarray], step: int) -> tuple[dict[str, np.ndarray], list[Geometry]]:
        """The file's inputs for one call on the frames ``part`` (padded with copies of
        the last to ``step`` frames), and each frame's geometry."""
        fmt = self.model.input
        tensor, geometries = prepare(part, fmt)
        if len(part) < step:  # a fixed batch larger than what is left: pad with copies
            tensor = np.concatenate([tensor, np.repeat(tensor[-1:], step - len(part), axis=0)])
        inputs = {self.model.file.image_input.name: tensor}
        inputs.update(self.model.family.extra_inputs(self.model.file, len(tensor), (fmt.width, fmt.height)))
        return inputs, geometries


class OnnxRuntimeFilePredictor(FilePredictor):
    """A ``.onnx`` file on ONNX Runtime."""

    backend = "onnxruntime"

    def _load(self) -> None:
        import onnxruntime as ort

        from detector.detection.onnx_backend import _providers

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.model.file.path),
            options,
            providers=_providers(self.device, ort.get_available_providers()),
        )
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(self.output_names, inputs))


class OpenVinoFilePredictor(FilePredictor):
    """A ``.onnx`` file or OpenVINO IR (``.xml`` with its ``.bin``) on OpenVINO's CPU plugin, in
    float32, or at ``precision = "int8"`` its INT8 copy (``quantize.int8_model``)."""

    backend = "openvino"

    def _load(self) -> None:
        if os.environ.get("LD_PRELOAD"):  # see OpenVinoPredictor._load
            os.environ.setdefault("TBB_ENABLE_SANITIZERS", "1")
        import openvino as ov

        if self.device != "cpu":
            raise ValueError(f'the openvino backend runs on the CPU, not {self.device}; use device = "cpu"')
        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        path = self.model.file.path
        if self.settings.precision == "int8":
            from detector.detection.quantize import int8_model

            path = int8_model(self.settings, path, lambda frame: self._inputs([frame], self.per_call or 1)[0])
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = {port.get_any_name() for port in self.compiled.inputs}

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.request.infer(inputs)
        return [np.array(self.request.get_output_tensor(i).data) for i in range(len(self.compiled.outputs))]


class LiteRtFilePredictor(FilePredictor):
    """A ``.tflite`` file on LiteRT's interpreter (XNNPACK on the CPU).

    An input quantised to integers gets the frames quantised with its scale and
    zero point, unless it takes raw ``uint8`` pixels; quantised outputs are
    dequantised.
    """

    backend = "tflite"

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if self.device != "cpu":
            raise ValueError(f'the tflite backend runs on the CPU, not {self.device}; use device = "cpu"')
        self.interpreter = Interpreter(model_path=str(self.model.file.path), num_threads=self.threads)
        self.interpreter.allocate_tensors()
        self.inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        self.outputs = self.interpreter.get_output_details()

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name, value in inputs.items():
            detail = self.inputs[name]
            self.interpreter.set_tensor(detail["index"], _quantised(value, detail))
        self.interpreter.invoke()
        return [_dequantised(self.interpreter.get_tensor(d["index"]), d) for d in self.outputs]


def _quantised(value: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if value.dtype == dtype:
        return value
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        return np.clip(np.rint(value / scale + zero), info.min, info.max).astype(dtype)
    return value.astype(dtype)


def _dequantised(value: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(value.dtype, np.integer) and scale:
        return (value.astype(np.float32) - zero) * np.float32(scale)
    return np.array(value)

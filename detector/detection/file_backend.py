"""Model files on the CPU runtimes: ONNX Runtime, OpenVINO and LiteRT (TFLite).

A catalog table with ``file`` and ``family`` builds one of these predictors
(``registry``): the file is checked and its input decided by
``families.open_file_model``, frames are prepared (`families.prepare`), run,
and each frame's outputs decoded by the family into `Detections` in the
frame's pixels.

Batching: a file whose input takes any batch size runs a batch in one call; a
file that fixes its batch (most exports fix it to 1) runs the frames of a batch
one after another inside the one ``predict_batch`` call. A small model runs
several batches side by side (``streams``: ``Predictor.predict``), each stream
thread on its share of the threads: ONNX Runtime's session is shared, OpenVINO
and LiteRT give each stream thread an infer request or interpreter of its own.

Devices: the CPU (``auto`` means the CPU). ONNX Runtime with ``cuda``/``cuda:N``
takes the GPU providers of ``onnx_backend._providers`` (``onnxruntime-gpu``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from detector.detection.base import DetectorSettings, Predictor, stream_threads
from detector.detection.detections import Detections
from detector.detection.families import FileModel, Geometry, open_file_model, prepare
from detector.detection.identity import model_identity


class FilePredictor(Predictor):
    """What the three runtimes share: the checked file, the input, the decoding."""

    backend = ""

    def __init__(self, settings: DetectorSettings, device: str) -> None:
        self.name = model_identity(settings)
        self.settings = settings
        self.device = "cpu" if settings.device.strip().lower() == "auto" else device
        self.model: FileModel = open_file_model(settings)
        self.min_score = settings.min_score
        fmt = self.model.input
        input_size: tuple[int, int] = tuple(sorted((fmt.width, fmt.height)))  # type: ignore[assignment]
        self.batch_size = settings.batch_size_on(self.device, input_size)
        self.streams = settings.streams_on(self.device, input_size)
        self.threads = stream_threads(self.streams)  # each stream's
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
        from detector.detection.onnx_backend import compile_openvino

        path = self.model.file.path
        if self.settings.precision == "int8":
            from detector.detection.quantize import int8_model

            path = int8_model(self.settings, path, lambda frame: self._inputs([frame], self.per_call or 1)[0])
        self.compiled = compile_openvino(path, self.device, self.streams, self.threads)
        self.input_names = {port.get_any_name() for port in self.compiled.inputs}
        self._requests = threading.local()

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        from detector.detection.onnx_backend import openvino_request

        request = openvino_request(self.compiled, self._requests)
        request.infer(inputs)
        return [np.array(request.get_output_tensor(i).data) for i in range(len(self.compiled.outputs))]


class LiteRtFilePredictor(FilePredictor):
    """A ``.tflite`` file on LiteRT's interpreter (XNNPACK on the CPU).

    An input quantised to integers gets the frames quantised with its scale and
    zero point, unless it takes raw ``uint8`` pixels; quantised outputs are
    dequantised.
    """

    backend = "tflite"

    def _load(self) -> None:
        if self.device != "cpu":
            raise ValueError(f'the tflite backend runs on the CPU, not {self.device}; use device = "cpu"')
        self._interpreters = threading.local()
        interpreter = self._interpreter()  # opened now, so that a bad file fails at start
        self.inputs = {d["name"]: d for d in interpreter.get_input_details()}
        self.outputs = interpreter.get_output_details()

    def _interpreter(self) -> Any:
        """The calling stream thread's own interpreter (one is not safe to share), made
        on its first use."""
        interpreter = getattr(self._interpreters, "interpreter", None)
        if interpreter is None:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(self.model.file.path), num_threads=self.threads)
            interpreter.allocate_tensors()
            self._interpreters.interpreter = interpreter
        return interpreter

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        interpreter = self._interpreter()
        for name, value in inputs.items():
            detail = self.inputs[name]
            interpreter.set_tensor(detail["index"], _quantised(value, detail))
        interpreter.invoke()
        return [_dequantised(interpreter.get_tensor(d["index"]), d) for d in self.outputs]


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

"""What a model file declares, read without running it: its inputs, outputs and metadata.

ONNX files are read with ``onnx``'s protobuf reader (no weights loaded), OpenVINO
IR with OpenVINO's reader, TFLite files with LiteRT's interpreter (not
allocated). No torch: the API process reads these to check the catalog.
"""

from __future__ import annotations

import ast
import functools
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The file types a model file may be, by suffix.
SUFFIXES = (".onnx", ".xml", ".tflite")


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or does not fit what the catalog declares."""


@dataclass(frozen=True)
class TensorInfo:
    """One input or output: ``name``, ``shape`` (None for a dimension the file leaves
    open) and element type (``numpy`` name: ``uint8``, ``float32``, ``int64``, ...)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class ModelFile:
    """A model file's inputs and outputs in the file's order, and its metadata
    (ONNX ``metadata_props``, or the metadata Ultralytics packs into a TFLite file)."""

    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def image_input(self) -> TensorInfo:
        """The input the frames go to: the first of rank 4."""
        for tensor in self.inputs:
            if len(tensor.shape) == 4:
                return tensor
        raise ModelFileError(
            f"{self.path.name} has no image input (rank 4); its inputs are "
            + ", ".join(f"{t.name} {_shape(t.shape)}" for t in self.inputs)
        )

    def describe(self) -> str:
        """Its inputs and outputs, for an error message."""
        inputs = ", ".join(f"{t.name} {_shape(t.shape)} {t.dtype}" for t in self.inputs)
        outputs = ", ".join(f"{t.name} {_shape(t.shape)}" for t in self.outputs)
        return f"inputs {inputs}; outputs {outputs}"


def _shape(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def read_model_file(path: str | Path) -> ModelFile:
    """The description of the model file at ``path`` (remembered per path, size and
    modification time).

    Raises:
        ModelFileError: it does not exist, is not of a known type, or cannot be read.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if path.suffix.lower() not in SUFFIXES:
        raise ModelFileError(f"model file {path} must be one of {', '.join(SUFFIXES)}")
    stat = path.stat()
    return _read(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _read(path: str, size: int, mtime_ns: int) -> ModelFile:
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".onnx":
            return _read_onnx(Path(path))
        if suffix == ".xml":
            return _read_openvino(Path(path))
        return _read_tflite(Path(path))
    except ModelFileError:
        raise
    except Exception as exc:  # each reader has its own errors; all mean "cannot be read"
        raise ModelFileError(f"model file {path} cannot be read: {exc}") from None


def _read_onnx(path: Path) -> ModelFile:
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}

    def info(value: Any) -> TensorInfo:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        return TensorInfo(value.name, shape, str(tensor_dtype_to_np_dtype(tensor.elem_type)))

    return ModelFile(
        path=path,
        inputs=tuple(info(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(info(v) for v in model.graph.output),
        metadata={prop.key: prop.value for prop in model.metadata_props},
    )


def _read_openvino(path: Path) -> ModelFile:
    import openvino as ov

    model = ov.Core().read_model(str(path))

    def info(port: Any) -> TensorInfo:
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        names = port.get_names()
        name = port.get_any_name() if names else f"{port.get_node().get_friendly_name()}"
        return TensorInfo(name, shape, port.get_element_type().to_dtype().name)

    return ModelFile(
        path=path,
        inputs=tuple(info(p) for p in model.inputs),
        outputs=tuple(info(p) for p in model.outputs),
        metadata={},
    )


def _read_tflite(path: Path) -> ModelFile:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    # Outputs of custom operators (TFLite_Detection_PostProcess) get their shapes here.
    interpreter.allocate_tensors()

    def info(detail: Mapping[str, Any]) -> TensorInfo:
        signature = list(detail.get("shape_signature", []))
        shape = tuple(
            None if i < len(signature) and int(signature[i]) < 0 else int(d)
            for i, d in enumerate(detail["shape"])
        )
        return TensorInfo(str(detail["name"]), shape, detail["dtype"].__name__)

    return ModelFile(
        path=path,
        inputs=tuple(info(d) for d in interpreter.get_input_details()),
        outputs=tuple(info(d) for d in interpreter.get_output_details()),
        metadata=_tflite_metadata(path),
    )


def _tflite_metadata(path: Path) -> dict[str, str]:
    """The metadata Ultralytics appends to a TFLite file as a zip of one JSON or text file."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not names:
                return {}
            text = archive.read(names[0]).decode()
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError):
        return {}
    try:
        values = json.loads(text)
    except ValueError:
        try:
            values = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return {}
    if not isinstance(values, dict):
        return {}
    return {str(key): value if isinstance(value, str) else repr(value) for key, value in values.items()}


@dataclass(frozen=True)
class UltralyticsMetadata:
    """What an Ultralytics export says of itself: ``names`` by class id, ``imgsz``
    (height, width) and ``stride``; None where it does not say."""

    names: tuple[str, ...] | None
    imgsz: tuple[int, int] | None
    stride: int | None


def ultralytics_metadata(metadata: Mapping[str, str]) -> UltralyticsMetadata:
    """Ultralytics' ``names``, ``imgsz`` and ``stride`` from a file's metadata (Python
    literals, as Ultralytics writes them); a value that does not parse counts as absent."""
    names = _literal(metadata.get("names"))
    labels: tuple[str, ...] | None = None
    if isinstance(names, dict) and names and all(isinstance(k, int) for k in names):
        labels = tuple(str(names.get(i, "N/A")) for i in range(max(names) + 1))
    elif isinstance(names, list) and names:
        labels = tuple(str(name) for name in names)
    imgsz = _literal(metadata.get("imgsz"))
    size: tuple[int, int] | None = None
    if isinstance(imgsz, int):
        size = (imgsz, imgsz)
    elif isinstance(imgsz, list | tuple) and len(imgsz) == 2 and all(isinstance(v, int) for v in imgsz):
        size = (int(imgsz[0]), int(imgsz[1]))
    stride = _literal(metadata.get("stride"))
    return UltralyticsMetadata(labels, size, stride if isinstance(stride, int) else None)


def _literal(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None

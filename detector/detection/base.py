"""The predictor interface and its settings.

No backend is imported here: ``detector.detection.registry`` builds predictors.
What a predictor finds is `detector.detection.detections.Detections`.
"""

from __future__ import annotations

import functools
import logging
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from detector.detection.detections import Detections

log = logging.getLogger(__name__)

#: The backends ``DETECTOR_BACKEND`` may name (``registry`` knows how to build each).
BACKENDS = ("torchvision", "detectron2", "onnxruntime", "openvino", "tflite")

#: The runtimes that run a model from a file (``file`` and ``family`` set).
FILE_BACKENDS = ("onnxruntime", "openvino", "tflite")

#: The output layouts of exported detectors a file model may declare
#: (``detector.detection.families``).
FAMILIES = ("ssd", "yolo", "detr")

LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("uint8", "float32", "float16")
CHANNELS = ("RGB", "BGR")
RESIZES = ("stretch", "letterbox")

#: The precisions a model may run at: ``fp32`` always; ``int8`` for a model file on
#: OpenVINO only, an opt-in quantized copy of it (``detector.detection.quantize``).
PRECISIONS = ("fp32", "int8")


class WeightsError(RuntimeError):
    """Model weights cannot be had; the message says how to provide them."""


@dataclass(frozen=True)
class InputSpec:
    """How a file model wants its input frame: the ``[models.<name>.input]`` table.

    Every field is optional; one left out (None) takes the family's default or
    what the file itself says (its input shape, Ultralytics' ``imgsz``).

    Attributes:
        size: ``(width, height)`` the frame is resized to.
        layout: ``NCHW`` or ``NHWC``.
        dtype: ``uint8``, ``float32`` or ``float16``.
        channels: ``RGB`` or ``BGR``.
        scale: multiplies the pixel values after the cast (``1/255`` for 0-1).
        mean: subtracted per channel after ``scale``.
        std: divides per channel after ``mean``.
        resize: ``stretch`` (to ``size``, aspect ratio lost) or ``letterbox``
            (kept, padded with grey 114).
    """

    size: tuple[int, int] | None = None
    layout: str | None = None
    dtype: str | None = None
    channels: str | None = None
    scale: float | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: str | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> InputSpec:
        """From an ``input`` table; a bad key or value raises ValueError naming it."""
        if not isinstance(table, Mapping):
            raise ValueError(f"input must be a table, not {table!r}")
        names = [f.name for f in fields(cls)]
        if unknown := sorted(set(table) - set(names)):
            raise ValueError(f"input has unknown key {unknown[0]!r}; keys: {', '.join(names)}")
        values: dict[str, Any] = {}
        if (size := table.get("size")) is not None:
            if isinstance(size, int) and not isinstance(size, bool):
                size = [size, size]
            if (
                not isinstance(size, Sequence)
                or isinstance(size, str)
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            ):
                raise ValueError(f"input.size must be [width, height] in whole pixels, not {size!r}")
            values["size"] = (int(size[0]), int(size[1]))
        for key, allowed in (
            ("layout", LAYOUTS),
            ("dtype", DTYPES),
            ("channels", CHANNELS),
            ("resize", RESIZES),
        ):
            if (value := table.get(key)) is not None:
                if value not in allowed:
                    raise ValueError(f"input.{key} must be one of {', '.join(allowed)}, not {value!r}")
                values[key] = value
        if (scale := table.get("scale")) is not None:
            if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
                raise ValueError(f"input.scale must be a positive number, not {scale!r}")
            values["scale"] = float(scale)
        for key in ("mean", "std"):
            if (value := table.get(key)) is not None:
                if isinstance(value, int | float) and not isinstance(value, bool):
                    value = [value] * 3
                if (
                    not isinstance(value, Sequence)
                    or isinstance(value, str)
                    or len(value) != 3
                    or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
                ):
                    raise ValueError(f"input.{key} must be three numbers (one per channel), not {value!r}")
                if key == "std" and not all(v > 0 for v in value):
                    raise ValueError(f"input.std must be positive, not {value!r}")
                values[key] = tuple(float(v) for v in value)
        return cls(**values)


@dataclass(frozen=True)
class DetectorSettings:
    """How to build a predictor. Read from ``DETECTOR_*`` settings.

    Attributes:
        backend: ``torchvision``, ``detectron2``, or ``onnxruntime`` or
            ``openvino`` (the torchvision models, exported to ONNX and run on
            that CPU runtime: ``onnx_backend``).
        model: the backend's model name (torchvision builder, also for
            ``onnxruntime`` and ``openvino``, or Detectron2 zoo config / config
            file); None for the backend's default.
        weights: ``default`` (the model's pretrained COCO weights, downloaded
            once into ``cache_dir``), a local file, an http(s) URL, or
            ``random`` (seeded random weights, for tests and benchmarks only).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: frames per forward pass, at most (a predictor halves it
            when a batch runs out of GPU memory); ``auto`` (the default):
            `default_batch_size` of the device the predictor runs on.
        streams: on the CPU, how many batches run through the model side by
            side, each on its own share of the CPU threads (`cpu_threads`
            divided by the streams); ``auto`` (the default):
            `default_streams` for the model's input size. Always 1 on a GPU.
        min_score: the model's own score floor; no job gets objects below it.
        seed: the seed for ``random`` weights.
        cache_dir: where downloaded weights are kept.
        file: a model file to run instead of a built-in model (``.onnx``,
            OpenVINO IR ``.xml``, ``.tflite``) on one of ``FILE_BACKENDS``;
            needs ``family``.
        family: how the file's outputs are laid out, one of ``FAMILIES``
            (``detector.detection.families``).
        labels: the model's class names: a file (one name per line, or ``id
            name`` lines) or a list indexed by class id; None: the model's own
            (the file's metadata, the built-in model's label set). A list is
            kept as a tuple.
        input: how the file model wants its frames (`InputSpec`; a table is
            turned into one); None: the family's defaults.
        precision: ``fp32`` (the default), or ``int8``: the model quantized
            after training by NNCF on OpenVINO, calibrated on ``calibration``
            (``detector.detection.quantize``); for a model file on
            ``backend = "openvino"`` only.
        calibration: for ``int8``, the frames to calibrate on: a video or a
            folder of images from the deployment's own cameras.
    """

    backend: str = "torchvision"
    model: str | None = None
    weights: str = "default"
    device: str = "auto"
    batch_size: int | str = "auto"
    streams: int | str = "auto"
    min_score: float = 0.05
    seed: int = 0
    cache_dir: str | None = None
    file: str | None = None
    family: str | None = None
    labels: str | tuple[str, ...] | None = None
    input: InputSpec | None = None
    precision: str = "fp32"
    calibration: str | None = None

    def __post_init__(self) -> None:
        # Lists and tables become tuples and an InputSpec: settings are hashable
        # (registry caches predictors by them).
        if self.labels is not None and not isinstance(self.labels, str):
            labels = self.labels
            if not isinstance(labels, Sequence) or not all(isinstance(name, str) for name in labels):
                raise ValueError(f"labels must be a file name or a list of names, not {labels!r}")
            if not labels:
                raise ValueError("labels must not be an empty list")
            object.__setattr__(self, "labels", tuple(labels))
        elif isinstance(self.labels, str) and not self.labels.strip():
            raise ValueError("labels must not be empty")
        if self.input is not None and not isinstance(self.input, InputSpec):
            object.__setattr__(self, "input", InputSpec.from_table(self.input))
        if self.family is not None and self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        if self.file is not None:
            if not isinstance(self.file, str) or not self.file.strip():
                raise ValueError("file must be a path to a model file")
            if self.family is None:
                raise ValueError(f"file needs a family: one of {', '.join(FAMILIES)}")
            if self.backend not in FILE_BACKENDS:
                raise ValueError(
                    f"a model file runs on backend {', '.join(FILE_BACKENDS)}, not {self.backend!r}"
                )
        else:
            if self.family is not None or self.input is not None:
                raise ValueError("family and input are for a model file: set file too")
            if self.backend == "tflite":
                raise ValueError("the tflite backend runs a model file: set file and family")
            if self.labels is not None and self.backend != "detectron2":
                raise ValueError("labels are for a model file or a Detectron2 model")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.precision == "int8":
            if self.backend != "openvino" or self.file is None:
                raise ValueError(
                    'precision "int8" is for a model file on backend "openvino", '
                    f"not {self.backend!r}{'' if self.file else ' without a file'}"
                )
            if not isinstance(self.calibration, str) or not self.calibration.strip():
                raise ValueError('precision "int8" needs calibration: a video or a folder of frames')
        elif self.calibration is not None:
            raise ValueError('calibration is for precision = "int8"')

    @property
    def is_file_model(self) -> bool:
        """Whether these settings run a model file (``file`` and ``family``)."""
        return self.file is not None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DetectorSettings:
        """From a settings mapping with ``DETECTOR_BACKEND``, ``DETECTOR_MODEL``, ..."""
        values = {}
        for field in fields(cls):
            key = f"DETECTOR_{field.name.upper()}"
            if config.get(key) is not None:
                values[field.name] = config[key]
        for name in ("batch_size", "streams"):
            if name in values:
                values[name] = _auto_or_count(values[name], f"DETECTOR_{name.upper()}")
        settings = cls(**values)
        if settings.backend not in BACKENDS:
            raise ValueError(f"DETECTOR_BACKEND must be one of {', '.join(BACKENDS)}")
        return settings

    def batch_size_on(self, device: str, input_size: tuple[int, int] | None = None) -> int:
        """Frames per forward pass on ``device``: ``batch_size``, or for ``auto``
        `default_batch_size` for a model that sees frames at ``input_size``."""
        if self.batch_size == "auto":
            return default_batch_size(device, input_size)
        return int(self.batch_size)

    def streams_on(self, device: str, input_size: tuple[int, int] | None = None) -> int:
        """Batches run side by side on ``device``: 1 on a GPU; on the CPU ``streams``, or
        for ``auto`` `default_streams` for a model that sees frames at ``input_size``."""
        if device.strip().lower() != "cpu":
            return 1
        if self.streams == "auto":
            return default_streams(input_size)
        return int(self.streams)


#: Frames per forward pass when DETECTOR_BATCH_SIZE is ``auto``. On a GPU batching
#: is where the speed comes from: 8 frames. On the CPU a batch costs memory in
#: proportion to its pixels and buys speed only for small inputs, so ``auto``
#: takes as many frames as fit in CPU_BATCH_PIXELS at the model's input size
#: (its shortest and longest edge), 1 to 8: 8 for the 320 px MobileNet, 1 for
#: the 800 px models. Measured (docs/performance.md, "Against the 2021 prototype"
#: and "CPU runtimes"): Detectron2's Mask R-CNN at 800 px peaked at 1.9 GB at
#: batch 1, 2.2 GB at batch 2 and 5 GB at batch 8, and ran fastest at batch 1;
#: the 320 px MobileNet ran 17 % faster at batch 8 than at 1 on PyTorch, 41 %
#: on OpenVINO.
GPU_BATCH_SIZE = 8
CPU_BATCH_PIXELS = 8 * 320 * 640


def default_batch_size(device: str, input_size: tuple[int, int] | None = None) -> int:
    """The batch size ``auto`` means on ``device`` (a torch device: ``cpu``, ``cuda:N``, ...)
    for a model that sees frames at ``input_size`` (shortest, longest edge; None:
    unknown, 1 on the CPU)."""
    if device.strip().lower() != "cpu":
        return GPU_BATCH_SIZE
    if input_size is None:
        return 1
    short, long = input_size
    return max(1, min(GPU_BATCH_SIZE, CPU_BATCH_PIXELS // max(1, short * long)))


@functools.cache
def cpu_threads() -> int:
    """The CPU threads a predictor process may use, all streams together:
    ``OMP_NUM_THREADS``, else torch's default (the physical cores), read once,
    before any predictor divides them among its streams."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    import torch

    return torch.get_num_threads()


def stream_threads(streams: int) -> int:
    """The threads each of ``streams`` side-by-side batches runs on: its share of `cpu_threads`."""
    return max(1, cpu_threads() // max(1, streams))


def default_streams(input_size: tuple[int, int] | None = None) -> int:
    """The streams ``auto`` means on the CPU for a model that sees frames at ``input_size``
    (shortest, longest edge; None: unknown).

    A small model (one that ``auto`` batches, at most half of CPU_BATCH_PIXELS a
    frame: the 320 px MobileNet, the 300 px SSD, a 640 px YOLO) gets one stream
    per thread, each on one thread: its operators are too small to keep
    several threads busy, and two batches side by side on one thread each ran
    1.6 to 2 times as fast as one batch on two threads (docs/performance.md,
    "Streams"). A large model (the 800 px ones, batch 1) keeps its operators
    large enough to share out and runs one stream on every thread.
    """
    if input_size is None or default_batch_size("cpu", input_size) < 2:
        return 1
    return cpu_threads()


def _auto_or_count(value: Any, name: str) -> int | str:
    """A setting as ``auto`` or a whole number of at least 1."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be auto or a whole number, got {value!r}") from None
    if count < 1:
        raise ValueError(f"{name} must be at least 1")
    return count


#: Batches `Predictor.predict_batches` hands over for each stream at once: one running and
#: one waiting, so that a stream that finishes finds its next batch ready.
IN_FLIGHT = 2


class Predictor(ABC):
    """A detection model on one device, called on batches of frames.

    Attributes:
        name: ``model_identity`` of the settings it was built from, recorded on each job.
        device: the torch device it runs on.
        batch_size: frames per forward pass. It starts as the configured size
            and shrinks when a batch runs out of GPU memory (see ``predict``);
            the smaller size is kept for the rest of the process, and the
            pipeline reads it here to batch its frames and to publish it.
        streams: batches run side by side on the CPU (`DetectorSettings.streams_on`);
            the pipeline hands ``predict`` that many batches at a time.
    """

    name: str
    device: str
    batch_size: int
    #: Batches run side by side (threads of this process); ``predict_batch`` of a
    #: predictor with more than one must be safe to call from that many threads at once.
    streams: int = 1
    _pool: ThreadPoolExecutor | None = None

    @abstractmethod
    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Objects at or above the model's score floor, for each frame of one batch.

        Args:
            frames: BGR ``uint8`` arrays of shape ``(H, W, 3)``.
        Returns:
            One `Detections` per frame (`Detections.from_model`: rounded as
            stored), highest score first, boxes in pixels of that frame.
        """

    def _before_run(self) -> None:
        """Called as `predict` and `predict_batches` start: what the model needs set in
        the process before it runs (the torchvision backend's thread count)."""
        return None

    def _before_stream(self, frames: Sequence[np.ndarray]) -> None:
        """Called in the caller's thread with each batch before a stream takes it: work
        the streams then share, done once, outside their threads (OpenVINO compiles
        the model for the batch's frame size here)."""
        return None

    def predict(
        self,
        frames: Sequence[np.ndarray],
        score_threshold: float,
        on_forward: Callable[[int], None] | None = None,
    ) -> list[Detections]:
        """Objects scoring at least ``score_threshold`` in each frame, in batches of ``batch_size``.

        A batch that runs out of GPU memory is retried at half its size, and
        ``batch_size`` becomes that smaller size for every later call: the
        predictor lives as long as its process, and so does what it learnt
        about the device's memory. A batch of one frame that runs out of
        memory raises the error.

        Args:
            frames: BGR ``uint8`` arrays of shape ``(H, W, 3)``.
            score_threshold: objects scoring less are left out.
            on_forward: called with the number of frames of each forward pass
                that succeeded, in order (the real batch sizes, after any
                back-off); passes that ran out of memory are not reported.
        """
        if self.streams > 1:
            return self._predict_side_by_side(frames, score_threshold, on_forward)
        self._before_run()
        results: list[Detections] = []
        pos = 0
        while pos < len(frames):
            batch = frames[pos : pos + self.batch_size]
            out_of_memory = False
            try:
                found_in_batch = self.predict_batch(batch)
            except Exception as exc:
                if not _is_out_of_memory(exc) or len(batch) == 1:
                    raise
                out_of_memory = True
            if out_of_memory:
                # Outside the `except`: the error's traceback no longer holds the batch's tensors.
                _free_device_memory()
                self._shrink_batch(len(batch))
                continue
            if on_forward is not None:
                on_forward(len(batch))
            results.extend(found[found.score >= score_threshold] for found in found_in_batch)
            pos += len(batch)
        return results

    def predict_batches(
        self,
        batches: Iterable[Sequence[np.ndarray]],
        score_threshold: float,
        on_forward: Callable[[int], None] | None = None,
    ) -> Iterator[list[Detections]]:
        """`predict` on each batch of ``batches`` (at most ``batch_size`` frames each, as
        they come): each batch's objects, in the batches' order.

        With one stream each batch is a `predict` call. With several, batches
        are handed to the streams as they come, up to `IN_FLIGHT` for each
        stream at once, and a stream takes the next one as soon as it is
        free: no stream waits for another to finish its batch, and the caller
        handles one batch's objects (stores them, reports progress) while the
        streams work on the next ones. When the caller stops early, the
        batches not started are dropped and the running ones finish before this
        returns.
        """
        if self.streams == 1:
            for batch in batches:
                yield self.predict(batch, score_threshold, on_forward)
            return
        self._before_run()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="stream")
        pending: deque[tuple[int, Future[list[Detections]]]] = deque()
        try:
            for batch in batches:
                self._before_stream(batch)
                pending.append((len(batch), self._pool.submit(self.predict_batch, batch)))
                if len(pending) >= self.streams * IN_FLIGHT:
                    yield self._collect(pending.popleft(), score_threshold, on_forward)
            while pending:
                yield self._collect(pending.popleft(), score_threshold, on_forward)
        finally:
            for _, future in pending:
                future.cancel()
            wait([future for _, future in pending])

    @staticmethod
    def _collect(
        entry: tuple[int, Future[list[Detections]]],
        score_threshold: float,
        on_forward: Callable[[int], None] | None,
    ) -> list[Detections]:
        """A handed-over batch's objects at ``score_threshold``, once its stream is done with it."""
        size, future = entry
        found_in_batch = future.result()
        if on_forward is not None:
            on_forward(size)
        return [found[found.score >= score_threshold] for found in found_in_batch]

    def _predict_side_by_side(
        self,
        frames: Sequence[np.ndarray],
        score_threshold: float,
        on_forward: Callable[[int], None] | None,
    ) -> list[Detections]:
        """`predict` on the CPU with several streams: each batch of ``batch_size`` frames
        goes to the next free stream, and results come back in the frames' order.
        (No out-of-memory back-off: streams run on the CPU only.)"""
        batches = [frames[pos : pos + self.batch_size] for pos in range(0, len(frames), self.batch_size)]
        return [
            found
            for found_in_batch in self.predict_batches(batches, score_threshold, on_forward)
            for found in found_in_batch
        ]

    def _shrink_batch(self, failed: int) -> None:
        """Halve the working batch size after a batch of ``failed`` frames ran out of memory."""
        smaller = max(1, failed // 2)
        if smaller < self.batch_size:
            log.warning(
                "%s on %s ran out of memory at a batch of %d frames: batches of %d from now on in pid %d",
                self.name,
                self.device,
                failed,
                smaller,
                os.getpid(),
            )
            self.batch_size = smaller


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def boxes_in_frame(boxes: np.ndarray, factor: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """``[x1, y1, x2, y2]`` boxes found on a resized frame, in the original frame's
    pixels: scaled by the ``(x, y)`` factors and clipped to its ``(width, height)``."""
    (fx, fy), (width, height) = factor, size
    if fx == 1.0 and fy == 1.0:
        return boxes
    scaled = boxes * np.array([fx, fy, fx, fy], dtype=boxes.dtype)
    return np.clip(scaled, 0, [width, height, width, height]).astype(boxes.dtype)

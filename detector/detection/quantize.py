"""INT8 models on OpenVINO: post-training quantization with NNCF, calibrated on the deployment's frames.

A catalog table opts in with ``precision = "int8"`` and ``calibration``, a
video or a folder of images from the deployment's own cameras::

    [models.ssd-int8]
    backend = "openvino"
    file = "/models/ssd_mobilenet_v2_coco.onnx"
    family = "ssd"
    labels = "/models/coco_labels.txt"
    precision = "int8"
    calibration = "/models/calibration/"   # or "/models/calibration.mp4"

The OpenVINO file predictor then runs `int8_model` of the file instead of the
file itself: NNCF's
``quantize`` (the ``PERFORMANCE`` preset: symmetric 8-bit weights and
activations) with statistics gathered over up to `CALIBRATION_FRAMES` frames,
each prepared exactly as the predictor prepares a frame. It is built on first use
and cached beside the ONNX exports, in ``<cache>/int8/``, under a key that hashes
the FP32 model's identity, the calibration frames' checksum, the frame count and
the NNCF and OpenVINO versions; its ``.bin`` and then its ``.xml`` are renamed
into place, so a reader that finds the ``.xml`` finds both whole.

Why a catalog key and not a command that writes an INT8 file the catalog then
declares: the model's identity (``identity.precision_identity``), which every
job records and ``GET /api/models`` shows, then says that it runs in INT8 and
on which frames it was calibrated, where a declared file's checksum would tell
neither; and every process builds the same file from the same declaration.

Only model files: NNCF 3.4 cannot build its graph of the torchvision models'
ONNX export, whose NMS keeps two ``If`` nodes ("Could not find a node ... in
NNCFGraph").
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import version
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from detector.detection.base import DetectorSettings
from detector.detection.identity import IMAGE_SUFFIXES, calibration_files, model_identity
from detector.detection.weights import default_cache_dir

log = logging.getLogger(__name__)

#: At most this many calibration frames, spread evenly over the video or the folder
#: (NNCF's own default subset size).
CALIBRATION_FRAMES = 300

#: Bump when how the INT8 model is made changes: a new version is a new file.
QUANTIZE_VERSION = 1

#: One calibration frame as the model takes it: its inputs by name (or the one input).
ModelInputs = dict[str, np.ndarray] | np.ndarray


def calibration_frames(source: str | Path, count: int = CALIBRATION_FRAMES) -> list[np.ndarray]:
    """At most ``count`` BGR ``uint8`` frames of a calibration video or folder, spread
    evenly over it (a video is decoded once, keeping every k-th frame).

    Raises:
        WeightsError: nothing there (`identity.calibration_files`).
        ValueError: no frame could be read.
    """
    import cv2

    files = calibration_files(Path(source))
    if len(files) == 1 and files[0].suffix.lower() not in IMAGE_SUFFIXES:
        frames = _video_frames(files[0], count)
    else:
        step = max(1, -(-len(files) // count))
        frames = [image for p in files[::step] if (image := cv2.imread(str(p))) is not None]
    if not frames:
        raise ValueError(f"no frame could be read from calibration {source}")
    return frames[:count]


def _video_frames(path: Path, count: int) -> list[np.ndarray]:
    """Every k-th frame of the video, k such that about ``count`` are kept (where the
    container does not say how many frames it has: the first ``count``)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = stream.frames or 0
        step = max(1, -(-total // count)) if total else 1
        kept = (frame for i, frame in enumerate(container.decode(stream)) if i % step == 0)
        return [frame.to_ndarray(format="bgr24") for frame in islice(kept, count)]


def int8_key(settings: DetectorSettings, count: int = CALIBRATION_FRAMES) -> str:
    """16 hex digits naming the INT8 model of ``settings``: whatever changes it changes them."""
    parts = [
        model_identity(settings),  # the FP32 model, and the calibration frames' checksum
        f"min_score={float(settings.min_score)!r}",  # part of a torchvision export's graph
        f"frames={count}",
        f"quantize={QUANTIZE_VERSION}",
        f"nncf={version('nncf')}",
        f"openvino={version('openvino')}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def int8_path(settings: DetectorSettings, fp32: Path, count: int = CALIBRATION_FRAMES) -> Path:
    """Where the INT8 model (OpenVINO IR ``.xml``, its ``.bin`` beside it) of ``settings`` is cached."""
    cache = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
    return cache / "int8" / f"{fp32.stem}-{int8_key(settings, count)}.xml"


def int8_model(
    settings: DetectorSettings,
    fp32: Path,
    model_inputs: Callable[[np.ndarray], ModelInputs],
    count: int = CALIBRATION_FRAMES,
) -> Path:
    """The cached INT8 OpenVINO IR of the FP32 model file ``fp32``, quantized now if there is none.

    Args:
        settings: the model's settings, at ``precision = "int8"`` with ``calibration``.
        fp32: the FP32 model OpenVINO reads (``.onnx`` or ``.xml``).
        model_inputs: one BGR frame as the model's inputs for one call, prepared as
            the predictor prepares it.
        count: calibration frames at most.

    Raises:
        ValueError: ``settings`` are not at ``int8``.
        WeightsError: the calibration frames are not there.
    """
    if settings.precision != "int8" or settings.calibration is None:
        raise ValueError(f'an INT8 model needs precision = "int8" and calibration, not {settings.precision}')
    path = int8_path(settings, fp32, count)
    if path.is_file() and path.with_suffix(".bin").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".xml")
    os.close(fd)
    temp_xml = Path(temp)
    try:
        log.info(
            "quantizing %s to INT8 at %s",
            model_identity(replace(settings, precision="fp32", calibration=None)),
            path,
        )
        _quantize(fp32, calibration_frames(settings.calibration, count), model_inputs, temp_xml)
        os.replace(temp_xml.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(temp_xml, path)
    finally:
        for leftover in (temp_xml, temp_xml.with_suffix(".bin")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return path


def _quantize(
    fp32: Path, frames: list[np.ndarray], model_inputs: Callable[[np.ndarray], ModelInputs], target: Path
) -> None:
    """Quantize the model at ``fp32`` on ``frames`` and save it as IR at ``target`` (and its ``.bin``)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32))
    dataset: Any = nncf.Dataset([model_inputs(frame) for frame in frames])
    quantized = nncf.quantize(
        model,
        dataset,
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(frames),
    )
    ov.save_model(quantized, str(target), compress_to_fp16=False)

"""The torchvision detectors exported to ONNX, once per model identity, for the CPU runtimes.

``export_onnx(settings)`` gives the path of an ONNX file of the torchvision
model ``settings`` name (``settings.backend`` is ``onnxruntime`` or
``openvino``; the model and weights mean what they mean to the torchvision
backend), exporting it on first use. What is exported is the whole eval-mode
Faster R-CNN behind a thin wrapper, all but the transform's resize, which the
predictors do on the host exactly as eager PyTorch does it
(``onnx_backend.OnnxPredictor._resize``):

- input ``frame``: one BGR frame ``(H, W, 3)`` as float32 values in
  ``[0, 255]``, already at the model's input size, any height and width
  (dynamic axes). One image per run: torchvision's detection code loops over
  the images of a batch in Python, which tracing unrolls, so a batch is run
  frame by frame (the predictors do that inside one ``predict_batch``).
- in the graph: BGR to RGB in ``[0, 1]``, the transform's normalisation and
  padding to a multiple of 32, backbone, RPN, ROI heads (their FPN levels'
  pooled features merged by one gather: ``_levels_merged_by_gather``).
- outputs ``boxes`` ``(N, 4)`` float32 in the input's pixels, ``scores``
  ``(N,)`` float32 (at least ``settings.min_score``, highest first) and
  ``labels`` ``(N,)`` int64 (torchvision's COCO ids).

The resize stays out of the graph because ONNX's ``Resize`` maps pixels by the
scale factor it is given, where torch maps them by the ratio of the rounded
sizes: frames the model enlarges came out a fraction of a pixel shifted.

The exporter is torch's TorchScript-based one (``dynamo=False``) at opset 17,
the one torchvision tests Faster R-CNN with (its ``test/test_onnx.py``):
``torch.export`` cannot trace the data-dependent shapes after NMS. It is
deterministic: the same settings give a byte-identical file (tests/detection/test_onnx.py).

The file lives in ``<cache>/onnx/`` (``settings.cache_dir``, else the weights'
default cache dir), named ``<model>-<key>.onnx``, where the key hashes
``model_identity(settings)``, the score floor (it is part of the graph),
``EXPORT_VERSION``, the opset and the torch and torchvision versions. It is
written under a temporary name in that directory and renamed into place, so
two processes exporting at once each write their own file and the last rename
wins with identical bytes; a reader never sees a partial file. A temporary file
that a killed process left is removed by the next export into that directory once
it is `STALE_TEMP_SECONDS` old. The model's
input sizes and labels are kept in the file's metadata (``input_short``,
``input_long``, ``categories``: a JSON list),
so a predictor built from a cached export builds no torch model at all.

Loading the weights is the torchvision backend's: ``resolve_weights`` for
``default``/file/URL weights, ``torchvision_random_init`` for ``random``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detector.detection.base import DetectorSettings
from detector.detection.identity import model_identity
from detector.detection.torchvision_models import build_torch_model, categories, model_name
from detector.detection.weights import default_cache_dir

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Bump when what is exported changes: a new version is a new file name, never a stale file.
EXPORT_VERSION = 4

#: The ONNX opset of the export (RoiAlign with half-pixel coordinates needs 16 or more).
OPSET = 17

#: A temporary export file this old was left by a process killed mid-export (an
#: export takes minutes).
STALE_TEMP_SECONDS = 3600

#: The names of the graph's input and outputs.
INPUT = "frame"
OUTPUTS = ("boxes", "scores", "labels")


def export_key(settings: DetectorSettings) -> str:
    """16 hex digits naming the export of ``settings``: whatever changes the file changes it."""
    parts = [
        # The identity names the model and weights; the backend part is left out
        # (onnxruntime and openvino share one export).
        model_identity(replace(settings, backend="torchvision")),
        f"min_score={float(settings.min_score)!r}",
        f"export={EXPORT_VERSION}",
        f"opset={OPSET}",
        f"torch={version('torch')}",
        f"torchvision={version('torchvision')}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def export_path(settings: DetectorSettings) -> Path:
    """Where the export of ``settings`` is (or will be) cached."""
    cache = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
    return cache / "onnx" / f"{model_name(settings)}-{export_key(settings)}.onnx"


def export_onnx(settings: DetectorSettings) -> Path:
    """The cached ONNX export of the model ``settings`` describe, exported now if there is none.

    Raises:
        ValueError: an unknown model.
        WeightsError: the weights cannot be had (as for the torchvision backend).
    """
    path = export_path(settings)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_temp_files(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        log.info("exporting %s to ONNX at %s", model_identity(settings), path)
        _export(settings, Path(temp))
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return path


def _sweep_temp_files(folder: Path) -> None:
    """Remove the temporary files of exports into ``folder`` that were killed mid-way."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for temp in folder.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):  # renamed or removed meanwhile
            if temp.stat().st_mtime < cutoff:
                temp.unlink()


def _export(settings: DetectorSettings, target: Path) -> None:
    """Export the model of ``settings`` to ``target`` (see the module docstring)."""
    import onnx
    import torch

    model = build_torch_model(settings)
    transform: Any = model.transform
    short, long = int(transform.min_size[-1]), int(transform.max_size)
    wrapper = _frame_model_class()(model).eval()
    # A seeded noise frame at the model's input size: any frame would do (the
    # axes are dynamic), but the trace takes the branches of a frame with boxes.
    generator = torch.Generator().manual_seed(0)
    example = torch.randint(0, 256, (short, short * 16 // 9, 3), generator=generator).float()
    with warnings.catch_warnings(), torch.no_grad(), _levels_merged_by_gather():
        # Tracer warnings about Python values in the graph, and the deprecation
        # of the TorchScript exporter: known and harmless here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (example,),
            str(target),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_axes={INPUT: [0, 1], **{name: [0] for name in OUTPUTS}},
            do_constant_folding=True,
        )
    exported = onnx.load(str(target))
    metadata = {
        "model_identity": model_identity(replace(settings, backend="torchvision")),
        "min_score": repr(float(settings.min_score)),
        "export_version": str(EXPORT_VERSION),
        "input_short": str(short),
        "input_long": str(long),
        "categories": json.dumps(categories(model_name(settings))),
    }
    onnx.helper.set_model_props(exported, metadata)
    onnx.save(exported, str(target))


def export_metadata(path: Path) -> dict[str, str]:
    """The metadata ``export_onnx`` wrote into the file at ``path``."""
    import onnx

    exported = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in exported.metadata_props}


def _frame_model_class() -> type[torch.nn.Module]:
    """The export's wrapper module (defined on use: importing this module imports no torch)."""
    import torch

    class FrameModel(torch.nn.Module):
        """One BGR float frame ``(H, W, 3)`` in ``[0, 255]``, at the model's input size, in;
        boxes, scores and labels out."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model
            # The frame comes resized (see the module docstring): the transform only normalises and pads.
            transform: Any = model.transform
            transform.resize = _no_resize

        def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            image = frame.permute(2, 0, 1).flip(0) / 255
            out = self.model([image])[0]
            return out["boxes"], out["scores"], out["labels"]

    return FrameModel


@contextlib.contextmanager
def _levels_merged_by_gather() -> Iterator[None]:
    """Trace the RoI heads' multi-level pooling with its levels merged by one gather.

    ``MultiScaleRoIAlign`` pools each RoI on the FPN level its size maps it to,
    and traced, torchvision puts the levels' results back in RoI order by
    scattering each into a zero tensor of every RoI's features
    (``poolers._onnx_merge_levels``): a ``ScatterElements`` whose index is
    expanded to every element. The runtimes have no fast kernel for that: on
    OpenVINO it and its index took about a sixth of the 320 px MobileNet's time
    (docs/performance.md, "Against the machine's limit"). Here the levels'
    results are concatenated in level order and gathered back into RoI order
    by the inverse of that order, which moves the same values: the outputs are
    the same, bit for bit.
    """
    import torch
    from torchvision.ops import poolers

    def merge_levels(levels: torch.Tensor, unmerged_results: list[torch.Tensor]) -> torch.Tensor:
        order = torch.cat([torch.where(levels == level)[0] for level in range(len(unmerged_results))])
        # position[order[i]] = i: where each RoI's features are in the concatenation.
        position = torch.zeros_like(order).scatter(0, order, torch.arange(order.size(0), dtype=order.dtype))
        return torch.cat(unmerged_results, dim=0).index_select(0, position)

    original = poolers._onnx_merge_levels
    poolers._onnx_merge_levels = merge_levels
    try:
        yield
    finally:
        poolers._onnx_merge_levels = original


def _no_resize(image: Any, target: Any = None) -> tuple[Any, Any]:
    """``GeneralizedRCNNTransform.resize`` for frames that come at the model's input size."""
    return image, target

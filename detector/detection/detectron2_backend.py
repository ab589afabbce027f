"""Detectron2 models (Faster R-CNN, RetinaNet, Mask R-CNN boxes, ...): the GPU backend."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data.transforms import ResizeShortestEdge
from detectron2.modeling import build_model
from torch import nn

from detector.detection.base import DetectorSettings, Predictor, WeightsError
from detector.detection.batching import frames_to_device
from detector.detection.detections import Detections
from detector.detection.families.labels import LabelsError, read_labels
from detector.detection.identity import DETECTRON2_DEFAULT_MODEL as DEFAULT_MODEL
from detector.detection.identity import model_identity
from detector.detection.random_weights import detectron2_input_size, detectron2_random_init
from detector.detection.weights import HOW_TO_PROVIDE, resolve_weights

log = logging.getLogger(__name__)

# Model-zoo architectures that give no object boxes.
_NOT_DETECTORS = ("ProposalNetwork", "SemanticSegmentor")


class Detectron2Predictor(Predictor):
    """A Detectron2 detector built from a model-zoo config name or a local config file.

    The model is built with ``build_model`` and its weights loaded with
    ``DetectionCheckpointer`` (not ``DefaultPredictor``), so frames go through
    the model in batches. Each frame gets the config's test-time resize
    (``INPUT.MIN_SIZE_TEST`` / ``INPUT.MAX_SIZE_TEST``) and channel order
    (``INPUT.FORMAT``); boxes come back in pixels of the original frame.

    Only boxes are kept, so the mask head (``MODEL.MASK_ON``) and keypoint head
    (``MODEL.KEYPOINT_ON``) are turned off: a Mask R-CNN config runs as its
    box detector and spends no time on masks that would be thrown away. Its
    checkpoint still loads; the mask weights are simply not used.
    """

    def __init__(self, settings: DetectorSettings, device: str) -> None:
        """Build the model and load its weights.

        Args:
            settings: ``model`` is a zoo config name such as
                ``COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml`` (the default) or a
                local ``.yaml`` config file; ``weights`` is ``default`` (the zoo
                checkpoint; a local config has none), a file (``.pth`` or the
                zoo's ``.pkl``), a URL or ``random``; ``labels`` names the
                classes (a file or a list), else the config's test dataset does.
            device: a torch device, ``cpu`` or ``cuda:N``.

        Raises:
            ValueError: unknown config, or a config that does not detect objects.
            LabelsError: the labels cannot be read, or their number is not the
                config's number of classes.
            WeightsError: the weights cannot be had or do not fit the model.
        """
        config_name = settings.model or DEFAULT_MODEL
        config_file, default_url = _config_source(config_name)
        self.device = device
        self.cfg = _build_config(config_file, device, settings.min_score)
        input_size = (int(self.cfg.INPUT.MIN_SIZE_TEST), int(self.cfg.INPUT.MAX_SIZE_TEST))
        self.batch_size = settings.batch_size_on(device, input_size)
        self.input_format: str = self.cfg.INPUT.FORMAT
        self.resize = ResizeShortestEdge(self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MAX_SIZE_TEST)
        self.labels = _model_labels(settings, self.cfg, config_name)

        checkpoint = resolve_weights(settings.weights, default_url, settings.cache_dir)
        self.name = model_identity(settings)
        torch.manual_seed(settings.seed)
        model = build_model(self.cfg)
        if checkpoint is None:
            # Initialised on the CPU, so the same seed gives the same weights anywhere.
            model.to("cpu")
            detectron2_random_init(model, settings.seed, detectron2_input_size(self.cfg))
            model.to(device)
        else:
            load_checkpoint(model, checkpoint)
        self.model = model.eval()

    @torch.inference_mode()
    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Objects at or above ``min_score`` in each frame of one batch.

        Args:
            frames: BGR ``uint8`` arrays of shape ``(H, W, 3)``; sizes may differ.
        Returns:
            One `Detections` per frame, highest score first, boxes
            ``[x1, y1, x2, y2]`` in pixels of that frame.
        """
        if not frames:
            return []
        resized = [self.resize.get_transform(f).apply_image(f) for f in frames]
        images = frames_to_device(resized, self.device)
        if self.input_format == "RGB":
            images = [image.flip(0) for image in images]
        inputs = [
            {"image": image.float(), "height": frame.shape[0], "width": frame.shape[1]}
            for image, frame in zip(images, frames, strict=True)
        ]
        outputs = self.model(inputs)
        return [self._objects(out) for out in outputs]

    def _objects(self, output: dict[str, Any]) -> Detections:
        """One frame's detections, highest score first.

        Args:
            output: the model's output for one frame; its ``instances`` hold
                ``pred_boxes`` ``(N, 4)`` already in frame pixels (the model
                rescales them to the ``height``/``width`` it was given),
                ``scores`` ``(N,)`` and ``pred_classes`` ``(N,)``.
        """
        instances = output["instances"]
        scores = instances.scores
        order = torch.sort(scores, descending=True, stable=True).indices
        return Detections.from_model(
            instances.pred_boxes.tensor[order].cpu().numpy(),
            scores[order].cpu().numpy(),
            instances.pred_classes[order].cpu().numpy(),
            self.labels,
        )


def _config_source(config_name: str) -> tuple[str, str | None]:
    """The config file for ``config_name`` and its zoo checkpoint URL (None for a local file)."""
    if config_name.endswith(".py"):
        raise ValueError(f"{config_name}: Python (LazyConfig) configs are not supported; use a .yaml config")
    if Path(config_name).expanduser().is_file():
        return str(Path(config_name).expanduser()), None
    try:
        config_file = model_zoo.get_config_file(config_name)
    except RuntimeError:
        raise ValueError(
            f"{config_name!r} is neither a config file nor a Detectron2 model-zoo config "
            "(e.g. COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml)"
        ) from None
    try:
        url: str | None = model_zoo.get_checkpoint_url(config_name)
    except RuntimeError:
        url = None  # a zoo config without a trained checkpoint
    return config_file, url


def _build_config(config_file: str, device: str, min_score: float) -> CfgNode:
    """The frozen inference config: device, score floor, box heads only."""
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    if cfg.MODEL.META_ARCHITECTURE in _NOT_DETECTORS:
        raise ValueError(f"{config_file}: {cfg.MODEL.META_ARCHITECTURE} does not detect objects")
    if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
        raise ValueError(f"{config_file}: INPUT.FORMAT {cfg.INPUT.FORMAT} is not supported (BGR or RGB)")
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = min_score
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = min_score
    cfg.MODEL.MASK_ON = False
    cfg.MODEL.KEYPOINT_ON = False
    cfg.freeze()
    return cfg


def _num_classes(cfg: CfgNode) -> tuple[str, int] | None:
    """The config key that sets how many classes the model tells apart, and its value;
    None for an architecture whose number of classes is not known here."""
    if cfg.MODEL.META_ARCHITECTURE == "RetinaNet":
        return "MODEL.RETINANET.NUM_CLASSES", int(cfg.MODEL.RETINANET.NUM_CLASSES)
    if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
        return "MODEL.ROI_HEADS.NUM_CLASSES", int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    return None


def _model_labels(settings: DetectorSettings, cfg: CfgNode, config_name: str) -> list[str]:
    """The class names of the model, by class id: the ``labels`` the settings declare,
    else the config's test dataset's (empty when it has none: ids become labels).

    Raises:
        LabelsError: the labels cannot be read, or name another number of classes
            than the config's ``NUM_CLASSES``.
    """
    classes = _num_classes(cfg)
    if settings.labels is not None:
        labels = read_labels(settings.labels)
        if classes is not None and len(labels) != classes[1]:
            source = (
                f"labels file {settings.labels}" if isinstance(settings.labels, str) else "the labels list"
            )
            raise LabelsError(
                f"{source} names {len(labels)} classes, but {config_name} has {classes[0]} {classes[1]}"
            )
        return labels
    labels = _dataset_labels(cfg)
    if labels and classes is not None and len(labels) != classes[1]:
        raise LabelsError(
            f"{config_name} has {classes[0]} {classes[1]}, but its test dataset {cfg.DATASETS.TEST[0]} "
            f"names {len(labels)} classes: declare the model's labels (a file with one name per line)"
        )
    return labels


def _dataset_labels(cfg: CfgNode) -> list[str]:
    """Class names from the test dataset's metadata; empty when it has none."""
    if not cfg.DATASETS.TEST:
        return []
    return list(getattr(MetadataCatalog.get(cfg.DATASETS.TEST[0]), "thing_classes", None) or [])


class _Checkpointer(DetectionCheckpointer):
    """A ``DetectionCheckpointer`` that keeps what did not fit, instead of only logging it."""

    incompatible: Any = None

    def _load_model(self, checkpoint: Any) -> Any:
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def load_checkpoint(model: nn.Module, path: Path) -> None:
    """Load a Detectron2 checkpoint (``.pkl`` from the zoo or ``.pth``) into ``model``.

    Raises:
        WeightsError: the file cannot be read, or parameters of the model are
            missing from it or have other shapes (the model would silently keep
            random weights there).
    """
    log.info("loading weights from %s", path)
    checkpointer = _Checkpointer(model)
    try:
        checkpointer.load(str(path))
    except Exception as exc:
        raise WeightsError(f"could not load weights from {path} ({exc}). {HOW_TO_PROVIDE}") from exc
    incompatible = checkpointer.incompatible
    if incompatible is None:
        return
    # A parameter of another shape is left out of the load, so it is missing too.
    missing = list(dict.fromkeys([k for k, *_ in incompatible.incorrect_shapes] + incompatible.missing_keys))
    if missing:
        raise WeightsError(
            f"weights file {path} does not fit this model: {len(missing)} parameters are missing "
            f"or have other shapes (e.g. {', '.join(missing[:3])}). {HOW_TO_PROVIDE}"
        )


def config_labels(settings: DetectorSettings) -> list[str]:
    """The labels of the model ``settings`` name, as its predictor reports them (see
    ``Detectron2Predictor``), without building it.

    Raises:
        ValueError: unknown config, or a config that does not detect objects.
        LabelsError: the labels cannot be read, or their number is not the config's
            number of classes.
    """
    config_name = settings.model or DEFAULT_MODEL
    config_file, _ = _config_source(config_name)
    return _model_labels(settings, _build_config(config_file, "cpu", settings.min_score), config_name)

"""The ``detr`` family: RT-DETR, RF-DETR, D-FINE and other DETR-style exports (no NMS).

Three output layouts, told apart by the outputs' names and shapes:

- one output ``[B, Q, 4 + C]`` (Ultralytics' RT-DETR): per query the box ``cx, cy,
  w, h`` normalised to 0-1, then C class scores;
- boxes ``[B, Q, 4]`` (``cx, cy, w, h`` normalised) and per-class ``[B, Q, C]``
  logits or scores: RF-DETR's ``dets`` and ``labels`` (logits), Hugging Face's
  ``pred_boxes`` and ``logits``. Logits (an output named ``logits`` or
  ``labels``, or values outside 0-1) go through a sigmoid;
- ``labels [B, N]``, ``boxes [B, N, 4]``, ``scores [B, N]`` with the
  post-processor inside (D-FINE's and RT-DETR's PyTorch exports): boxes ``x1,
  y1, x2, y2`` in the pixels of their second input, ``orig_target_sizes``
  ``[B, 2]`` (width, height), which gets the input size.

For the first two the top Q (query, class) pairs by score are kept, as the
models' own post-processors do. RF-DETR (outputs ``dets``, ``labels``) takes
ImageNet's mean and std by default; the others 0-1 values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.detection.families.family import (
    Decoded,
    Family,
    Normalisation,
    boxes_output,
    cxcywh_to_xyxy,
    to_pixels,
)
from detector.detection.families.files import ModelFile

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DETR(Family):
    name = "detr"

    def default_normalisation(self, model: ModelFile, dtype: str) -> Normalisation:
        names = {t.name for t in model.outputs}
        if dtype != "uint8" and {"dets", "labels"} <= names:
            return 1 / 255, IMAGENET_MEAN, IMAGENET_STD
        return super().default_normalisation(model, dtype)

    def _roles(self, model: ModelFile) -> tuple[str, int, int | None, int | None]:
        """The layout (``joint``, ``split`` or ``postprocessed``) and the positions of the
        boxes, the class scores (or labels) and the scores."""
        outputs = model.outputs
        ranks = [len(t.shape) for t in outputs]
        if len(outputs) == 1 and ranks[0] == 3 and (outputs[0].shape[2] or 0) > 4:
            return "joint", 0, None, None
        boxes = boxes_output(outputs, "box", "dets")
        if boxes is None:
            raise self._fail(model, "no boxes output [batch, queries, 4]")
        rest = [i for i in range(len(outputs)) if i != boxes]
        per_class = [i for i in rest if ranks[i] == 3]
        if per_class:
            return "split", boxes, per_class[0], None
        flat = [i for i in rest if ranks[i] == 2]
        if len(flat) < 2:
            raise self._fail(
                model, "no class scores [batch, queries, classes] nor labels and scores [batch, N]"
            )
        labels = next(
            (i for i in flat if "label" in outputs[i].name.lower() or "class" in outputs[i].name.lower()),
            None,
        )
        scores = next((i for i in flat if "score" in outputs[i].name.lower()), None)
        if labels is None or scores is None:
            ints = [i for i in flat if outputs[i].dtype.startswith("int")]
            labels = ints[0] if ints else flat[0]
            scores = next(i for i in flat if i != labels)
        return "postprocessed", boxes, labels, scores

    def check(self, model: ModelFile, labels: Sequence[str]) -> None:
        layout, boxes, classes, _ = self._roles(model)
        if layout == "postprocessed":
            if len(model.inputs) < 2:
                raise self._fail(model, "labels, boxes and scores outputs need an orig_target_sizes input")
            return
        shape = model.outputs[boxes].shape
        count = (shape[2] or 0) - 4 if layout == "joint" else model.outputs[classes or 0].shape[2]
        if count is None or count < 1:
            raise self._fail(model, "no class scores")
        if not len(labels) <= count <= len(labels) + 1:
            raise self._fail(
                model, f"it scores {count} classes per query but the labels name {len(labels)} classes"
            )

    def extra_inputs(
        self, model: ModelFile, batch: int, input_size: tuple[int, int]
    ) -> dict[str, np.ndarray]:
        if self._roles(model)[0] != "postprocessed":
            return {}
        image = model.image_input.name
        sizes = [t for t in model.inputs if t.name != image]
        dtype = np.dtype(sizes[0].dtype) if sizes[0].dtype.startswith("int") else np.dtype(np.int64)
        return {sizes[0].name: np.tile(np.array([input_size], dtype=dtype), (batch, 1))}

    def decode(
        self,
        model: ModelFile,
        outputs: Sequence[np.ndarray],
        input_size: tuple[int, int],
        min_score: float,
    ) -> Decoded:
        layout, boxes_at, classes_at, scores_at = self._roles(model)
        if layout == "postprocessed":
            assert classes_at is not None and scores_at is not None
            return Decoded.scoring(outputs[boxes_at], outputs[scores_at], outputs[classes_at], min_score)
        if layout == "joint":
            joint = np.asarray(outputs[0], dtype=np.float64)
            joint = joint.reshape(joint.shape[-2], joint.shape[-1])
            cxcywh, per_class = joint[:, :4], joint[:, 4:]
            logits = False
        else:
            assert classes_at is not None
            cxcywh = np.asarray(outputs[boxes_at], dtype=np.float64).reshape(-1, 4)
            per_class = np.asarray(outputs[classes_at], dtype=np.float64).reshape(len(cxcywh), -1)
            name = model.outputs[classes_at].name.lower()
            logits = "logit" in name or "label" in name or bool(per_class.min() < 0 or per_class.max() > 1)
        if logits:
            per_class = 1 / (1 + np.exp(-per_class))
        queries, count = per_class.shape
        flat = per_class.reshape(-1)
        top = np.argsort(-flat, kind="stable")[:queries]
        top = top[flat[top] >= min_score]
        query, classes = np.divmod(top, count)
        boxes = to_pixels(cxcywh_to_xyxy(cxcywh[query]), input_size)
        return Decoded.of(boxes, flat[top], classes)

"""The ``ssd`` family: TensorFlow Object Detection API and TFLite detection outputs.

With NMS inside the graph (TF OD API's exports, TFLite's
``TFLite_Detection_PostProcess``): boxes ``[B, N, 4]`` as ``ymin, xmin, ymax,
xmax`` normalised to 0-1, classes ``[B, N]`` (float class ids), scores
``[B, N]`` and the count of valid rows ``[B]``. Outputs named like TF's
(``detection_boxes``, ``detection_classes``, ``detection_scores``,
``num_detections``) are found by name; otherwise in that order (TFLite's).

Without NMS inside: boxes ``[B, N, 4]`` as above and per-class scores ``[B, N,
C]``; each box takes its best class, and the service runs the NMS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.detection.families.family import Decoded, Family, Normalisation, boxes_output, named, to_pixels
from detector.detection.families.files import ModelFile


class SSD(Family):
    name = "ssd"
    default_size = (300, 300)
    default_layout = "NHWC"

    def default_normalisation(self, model: ModelFile, dtype: str) -> Normalisation:
        # Float SSD MobileNets from TF take -1..1: x / 127.5 - 1.
        if dtype == "uint8":
            return super().default_normalisation(model, dtype)
        return 1 / 127.5, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)

    def _roles(self, model: ModelFile) -> tuple[int, int | None, int, int | None]:
        """Positions of boxes, classes (None: per-class scores), scores and count."""
        outputs = model.outputs
        avoid = ("raw", "multiclass", "anchor")
        boxes = boxes_output(outputs, "box", avoid=avoid)
        if boxes is None:
            raise self._fail(model, "no boxes output [batch, N, 4]")
        rest = [i for i in range(len(outputs)) if i != boxes]
        per_class = [i for i in rest if len(outputs[i].shape) == 3 and named([outputs[i]], *avoid) is None]
        classes = named(outputs, "class", avoid=avoid)
        scores = named(outputs, "score", avoid=avoid)
        count = named(outputs, "num", "count", avoid=avoid)
        if classes is None and scores is None and per_class:
            return boxes, None, per_class[0], None
        flat = [i for i in rest if len(outputs[i].shape) == 2]
        if classes is None or scores is None:
            if len(flat) < 2:
                raise self._fail(model, "no classes and scores outputs [batch, N]")
            classes, scores = flat[0], flat[1]
        if count is None:
            count = next((i for i in rest if len(outputs[i].shape) == 1), None)
        return boxes, classes, scores, count

    def check(self, model: ModelFile, labels: Sequence[str]) -> None:
        boxes, classes, scores, _ = self._roles(model)
        n = model.outputs[boxes].shape[1]
        other = model.outputs[scores].shape
        if classes is not None and (model.outputs[classes].shape[1:] != (n,) or other[1:] != (n,)):
            raise self._fail(model, f"classes and scores must be [batch, {n}] like the boxes")
        if classes is None and other[1] != n:
            raise self._fail(model, f"per-class scores must be [batch, {n}, classes] like the boxes")

    def decode(
        self,
        model: ModelFile,
        outputs: Sequence[np.ndarray],
        input_size: tuple[int, int],
        min_score: float,
    ) -> Decoded:
        boxes_at, classes_at, scores_at, count_at = self._roles(model)
        yxyx = np.asarray(outputs[boxes_at], dtype=np.float64).reshape(-1, 4)
        boxes = to_pixels(yxyx[:, [1, 0, 3, 2]], input_size)
        if classes_at is None:
            per_class = np.asarray(outputs[scores_at], dtype=np.float64)
            return Decoded.best_class(boxes, per_class, min_score)
        scores = np.asarray(outputs[scores_at], dtype=np.float64).reshape(-1)
        classes = np.asarray(outputs[classes_at], dtype=np.float64).reshape(-1)
        valid = len(scores)
        if count_at is not None:
            valid = min(valid, int(np.asarray(outputs[count_at]).reshape(-1)[0]))
        return Decoded.scoring(boxes[:valid], scores[:valid], classes[:valid], min_score)

"""The ``yolo`` family: Ultralytics YOLO exports (v5u, v8, 11, 26).

Raw heads: one output ``[B, 4 + C, A]``, for each of A anchors the box ``cx, cy,
w, h`` in input pixels and C class scores (sigmoid applied, no objectness); each
anchor takes its best class and the service runs class-aware NMS. End-to-end
exports (``nms=True``, YOLO26): ``[B, N, 6]`` rows ``x1, y1, x2, y2, score,
class`` in input pixels, NMS done. Inputs: letterboxed (grey 114), RGB, NCHW,
scaled to 0-1; Ultralytics writes ``names``, ``imgsz`` and ``stride`` into the
ONNX metadata.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.detection.families.family import Decoded, Family, cxcywh_to_xyxy
from detector.detection.families.files import ModelFile


class YOLO(Family):
    name = "yolo"
    default_resize = "letterbox"

    def _layout(self, model: ModelFile) -> str:
        """``raw`` or ``end2end``, from the first output's shape."""
        if len(model.outputs) != 1:
            raise self._fail(
                model, f"Ultralytics detection exports have one output, this has {len(model.outputs)}"
            )
        shape = model.outputs[0].shape
        if len(shape) != 3:
            raise self._fail(model, "the first output must be [batch, 4 + classes, anchors] or [batch, N, 6]")
        if shape[2] == 6:
            return "end2end"
        return "raw"

    def check(self, model: ModelFile, labels: Sequence[str]) -> None:
        shape = model.outputs[0].shape if model.outputs else ()
        if self._layout(model) == "raw":
            channels = shape[1]
            if channels is None or channels < 5:
                raise self._fail(model, "the first output must be [batch, 4 + classes, anchors]")
            if channels - 4 != len(labels):
                raise self._fail(
                    model,
                    f"its output has {channels - 4} class scores per box (4 + {channels - 4} = "
                    f"{channels}) but the labels name {len(labels)} classes",
                )

    def decode(
        self,
        model: ModelFile,
        outputs: Sequence[np.ndarray],
        input_size: tuple[int, int],
        min_score: float,
    ) -> Decoded:
        head = np.asarray(outputs[0], dtype=np.float32)
        if self._layout(model) == "end2end":
            rows = head.reshape(-1, 6)
            return Decoded.scoring(rows[:, :4], rows[:, 4], rows[:, 5], min_score)
        per_anchor = head.reshape(head.shape[-2], head.shape[-1]).T  # [A, 4 + C]
        return Decoded.best_class(cxcywh_to_xyxy(per_anchor[:, :4]), per_anchor[:, 4:], min_score)

"""COCO object-detection JSON, streamed.

The document is ``{"info", "licenses", "annotations", "images", "categories"}``:

- ``images``: one per analysed frame. COCO ids start at 1, so a frame's image
  ``id`` is its 0-based index plus 1; ``file_name`` is ``frame_000123.jpg``
  (the 0-based index), and ``frame_index`` and ``timestamp`` say where it is
  in the video.
- ``annotations``: one per object, ``id`` from 1, ``bbox`` as ``[x, y, w, h]``,
  ``area`` = w * h, ``category_id`` the model's class id, ``score``,
  ``iscrowd`` 0 and, for a tracked job, ``track_id``.
- ``categories``: every label of the model (``id`` its class id), and any
  class an object has that the label set lacks.

The frames are read once, yet both arrays depend on every frame. The
annotations, the bulk of the document, are sent as they are made; each
frame's image entry (a tenth of the size or less) goes meanwhile to a spooled
temporary file (in memory up to :data:`SPOOL_BYTES`, on disk past that), which
is sent back after the annotations. Key order does not matter to a JSON
reader, so ``images`` after ``annotations`` is still plain COCO. Numbers are
written exactly (JSON's shortest round-tripping form).
"""

from __future__ import annotations

import json
import tempfile

import detector.exports.common as common
from detector.exports.common import Document, ExportSource, Frames, Pieces

SPOOL_BYTES = 1024 * 1024
"""How much of the images array is kept in memory before it goes to disk."""


def image_file_name(frame: int) -> str:
    """The ``file_name`` of a frame's image: ``frame_000123.jpg``, from its 0-based index."""
    return f"frame_{frame:06d}.jpg"


def write_coco(source: ExportSource, frames: Frames) -> Document:
    """The COCO JSON of a job's frames, in pieces."""
    head = {
        "info": {
            "description": f"Objects detected in {source.name}",
            "version": "1.0",
            "contributor": "detector",
            "video": {
                "name": source.name,
                "width": source.width,
                "height": source.height,
                "frame_count": source.frame_count,
                "fps": source.fps,
            },
        },
        "licenses": [],
    }
    yield json.dumps(head)[:-1] + ', "annotations": ['
    extra_categories: dict[int, str] = {}
    pieces = Pieces()
    annotation_id = 0
    images_written = False
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+", encoding="utf-8") as images:
        for frame, timestamp, found in frames:
            image_id = frame + 1
            image = {
                "id": image_id,
                "file_name": image_file_name(frame),
                "width": source.width,
                "height": source.height,
                "frame_index": frame,
                "timestamp": timestamp,
            }
            images.write((", " if images_written else "") + json.dumps(image))
            images_written = True
            objects = zip(
                found.xyxy.tolist(),
                found.class_id.tolist(),
                found.score.tolist(),
                found.label.tolist(),
                found.track_ids(),
                strict=True,
            )
            for (x1, y1, x2, y2), class_id, score, label, track_id in objects:
                width, height = x2 - x1, y2 - y1
                annotation = {
                    "id": annotation_id + 1,
                    "image_id": image_id,
                    "category_id": class_id,
                    "bbox": [x1, y1, width, height],
                    "area": width * height,
                    "score": score,
                    "iscrowd": 0,
                }
                if source.tracked and track_id is not None:
                    annotation["track_id"] = track_id
                pieces.write((", " if annotation_id else "") + json.dumps(annotation))
                annotation_id += 1
                if class_id not in source.labels:
                    extra_categories.setdefault(class_id, label)
            if pieces.full:
                yield pieces.take()
        pieces.write('], "images": [')
        yield pieces.take()
        images.seek(0)
        while chunk := images.read(common.PIECE_CHARS):
            yield chunk
    labels = {**source.labels, **extra_categories}
    categories = [
        {"id": class_id, "name": labels[class_id], "supercategory": "object"} for class_id in sorted(labels)
    ]
    yield '], "categories": ' + json.dumps(categories) + "}\n"

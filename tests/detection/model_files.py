"""Tiny ONNX model files for tests of file models (docs/models.md): graphs whose
outputs are known, so a decoder's every step can be checked exactly, and a yolo
head computed from the frame, so a pipeline's results differ from frame to frame.

tests/detection/test_families.py, tests/api/test_file_models.py and
tests/pipeline/test_file_models.py build their files here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: The class names of `ultralytics_metadata`'s default and of `yolo_head`'s three scores.
NAMES = {0: "cat", 1: "dog", 2: "bird"}


def graph_file(
    path: Path,
    outputs: dict[str, np.ndarray],
    image: tuple[str, list[int | str], int] = ("images", [1, 3, 64, 64], TensorProto.FLOAT),
    metadata: dict[str, str] | None = None,
    extra_inputs: list[onnx.ValueInfoProto] = (),  # type: ignore[assignment]
    nodes: list[onnx.NodeProto] = (),  # type: ignore[assignment]
    computed: list[onnx.ValueInfoProto] = (),  # type: ignore[assignment]
) -> Path:
    """An ONNX file whose outputs are the constants ``outputs`` (and ``computed`` ones,
    made by ``nodes``), with ``metadata`` as its metadata_props."""
    graph_nodes = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value.astype(np.float32)))
        for name, value in outputs.items()
    ]
    graph = helper.make_graph(
        graph_nodes + list(nodes),
        "test",
        [helper.make_tensor_value_info(image[0], image[2], image[1]), *extra_inputs],
        [
            *(helper.make_tensor_value_info(n, TensorProto.FLOAT, list(v.shape)) for n, v in outputs.items()),
            *computed,
        ],
    )
    return _save(graph, path, metadata)


def ultralytics_metadata(names: dict[int, str] = NAMES, size: int = 64) -> dict[str, str]:
    """The metadata an Ultralytics ONNX export carries: class names and input size."""
    return {"names": repr(names), "imgsz": f"[{size}, {size}]", "stride": "32", "task": "detect"}


def yolo_head() -> np.ndarray:
    """A raw head [1, 4 + 3, 8]: columns are anchors, rows cx, cy, w, h, 3 class scores."""
    anchors = [
        # cx, cy, w, h, cat, dog, bird
        (32, 32, 16, 8, 0.0, 0.9, 0.0),  # a dog
        (33, 32, 16, 8, 0.0, 0.8, 0.0),  # the same dog, lower: NMS drops it
        (33, 32, 16, 8, 0.7, 0.0, 0.0),  # a cat at the same place: another class, kept
        (10, 40, 4, 4, 0.0, 0.0, 0.1),  # below min_score
        (50, 20, 8, 8, 0.0, 0.0, 0.3),  # a bird
        (0, 0, 0, 0, 0.0, 0.0, 0.0),
        (0, 0, 0, 0, 0.0, 0.0, 0.0),
        (0, 0, 0, 0, 0.0, 0.0, 0.0),
    ]
    return np.array(anchors, dtype=np.float32).T[None]


#: The classes of `colour_grid_file`: its input's channels, in RGB order.
COLOURS = {0: "red", 1: "green", 2: "blue"}


def colour_grid_file(path: Path, size: int = 64, cell: int = 8) -> Path:
    """A yolo-shaped raw head computed from the frame: an Ultralytics-like ONNX file.

    The input (``images``, [1, 3, size, size], RGB scaled to 0-1) is cut into
    ``cell`` x ``cell`` squares; each square is an anchor whose box is the square
    and whose three class scores (red, green, blue, named in the metadata) are its
    mean red, green and blue. So a frame's objects are the squares where one colour
    fills most of it: they move with what the video shows.
    """
    grid = size // cell
    centres = (np.arange(grid, dtype=np.float32) + 0.5) * cell
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    boxes = np.stack([cx.ravel(), cy.ravel(), np.full(grid * grid, cell), np.full(grid * grid, cell)])
    nodes = [
        helper.make_node(
            "AveragePool", ["images"], ["means"], kernel_shape=[cell, cell], strides=[cell, cell]
        ),
        helper.make_node(
            "Constant", [], ["flat"], value=numpy_helper.from_array(np.array([1, 3, grid * grid], np.int64))
        ),
        helper.make_node("Reshape", ["means", "flat"], ["scores"]),
        helper.make_node(
            "Constant", [], ["boxes"], value=numpy_helper.from_array(boxes[None].astype(np.float32))
        ),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "colour_grid",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + 3, grid * grid])],
    )
    return _save(graph, path, ultralytics_metadata(COLOURS, size))


def _save(graph: onnx.GraphProto, path: Path, metadata: dict[str, str] | None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path

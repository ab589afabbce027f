"""The peak figure's counters (multiply-adds of an ONNX graph and of a torch run) on graphs
whose counts are worked out by hand, and the figure's rows on a tiny run. No timing is asserted."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from detector.bench.peak import (
    Peak,
    Subject,
    against_peak,
    measure_peak,
    network_size,
    onnx_macs,
    share_of_peak,
    torch_macs,
)
from detector.bench.report import BenchReport, format_table
from detector.detection import Detections, DetectorSettings
from detector.detection.base import Predictor


def _weights(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def small_graph(batch: int | str = 1) -> onnx.ModelProto:
    """x [B, 3, 8, 8] -> 3x3 conv to 4 channels (pad 1) -> depthwise 3x3 conv, stride 2 ->
    flatten [B, 64] -> Gemm to 10 (B transposed) -> MatMul to 5."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=4),
        helper.make_node("Flatten", ["c2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3"], ["g"], transB=1),
        helper.make_node("MatMul", ["g", "w4"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            _weights("w1", 4, 3, 3, 3),
            _weights("w2", 4, 1, 3, 3),
            _weights("w3", 10, 64),
            _weights("w4", 10, 5),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_macs_of_a_small_graph_are_the_hand_count():
    found = onnx_macs(small_graph())
    conv = 4 * 8 * 8 * (3 * 3 * 3)  # output elements x input channels x kernel
    depthwise = 4 * 4 * 4 * (1 * 3 * 3)  # stride 2: 4x4 out, one input channel per group
    gemm = 1 * 10 * 64
    matmul = 1 * 5 * 10
    assert found["by_op"] == {"Conv": conv + depthwise, "ConvTranspose": 0, "MatMul": matmul, "Gemm": gemm}
    assert found["macs"] == conv + depthwise + gemm + matmul == 8178
    assert found["nodes"] == 4 and found["unknown"] == []


def test_onnx_macs_scale_with_the_batch_and_name_what_they_cannot_count(tmp_path):
    path = tmp_path / "small.onnx"
    onnx.save(small_graph(batch=3), path)
    assert onnx_macs(path)["macs"] == 3 * 8178
    unknown = onnx_macs(small_graph(batch="B"))
    assert unknown["macs"] == 0 and len(unknown["unknown"]) == 4


def test_torch_macs_count_convolutions_and_matrix_products():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    linear = torch.nn.Linear(16, 8)
    with torch.no_grad():
        assert torch_macs(lambda: conv(torch.zeros(1, 3, 8, 8))) == 4 * 8 * 8 * 27
        assert torch_macs(lambda: linear(torch.zeros(2, 16))) == 2 * 8 * 16
        assert torch_macs(lambda: torch.relu(torch.zeros(100))) == 0


def test_the_peak_is_the_faster_of_its_two_kernels():
    peak = measure_peak(1, matmul_size=64, conv_shape=(8, 16, 16), seconds=0.01)
    assert peak.threads == 1 and peak.matmul_gflops > 0 and peak.conv_gflops > 0
    assert peak.gflops == max(peak.matmul_gflops, peak.conv_gflops)
    assert peak.as_dict()["matmul"]["n"] == 64 and peak.as_dict()["conv"]["shape"] == [8, 16, 16]


class CountingPredictor(Predictor):
    """Finds nothing; counts the frames it is given."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.name, self.device, self.batch_size = settings.backend, "cpu", 2
        self.frames = 0

    def predict_batch(self, frames):
        self.frames += len(frames)
        return [Detections.empty() for _ in frames]


def test_the_figure_has_a_row_per_runtime_with_its_share_of_the_peak():
    frames = [np.zeros((120, 160, 3), dtype=np.uint8)] * 5
    runtimes = {
        name: DetectorSettings(backend=name, weights="random") for name in ("torchvision", "openvino")
    }
    subject = Subject("m", runtimes, 2e9, "by hand", (160, 120))
    built: list[CountingPredictor] = []

    def build(settings):
        built.append(CountingPredictor(settings))
        return built[-1]

    rows = against_peak([subject], frames, Peak(1, 10.0, 5.0, 64, (8, 16, 16)), build=build)
    assert [(r["model"], r["runtime"], r["batch_size"]) for r in rows] == [
        ("m", "torchvision", 2),
        ("m", "openvino", 2),
    ]
    assert [p.frames for p in built] == [2 + 5, 2 + 5]  # one untimed batch, then every frame
    for row in rows:
        assert row["gmac_per_frame"] == 2.0 and row["input_size"] == [160, 120] and row["fps"] > 0
        assert row["gflops"] == pytest.approx(2 * 2.0 * row["fps"], rel=0.01)
        assert row["share_of_peak"] == pytest.approx(row["gflops"] / 10.0, abs=1e-4)
    [halved] = share_of_peak(rows[:1], Peak(1, 20.0, 5.0, 64, (8, 16, 16)))
    assert halved["share_of_peak"] == pytest.approx(rows[0]["share_of_peak"] / 2, abs=1e-4)


@pytest.mark.parametrize(
    ("frame", "size"),
    [
        ((768, 576), (427, 320)),  # vtest.avi: shrunk by the predictor, rounded
        ((160, 120), (426, 320)),  # enlarged by the model's transform, floored
        ((1920, 480), (640, 160)),  # the long side binds
        ((427, 320), (427, 320)),
    ],
)
def test_the_network_size_is_the_torchvision_models_resize(frame, size):
    assert network_size(*frame, 320, 640) == size


def test_a_subject_without_runtimes_gives_no_rows():
    subject = Subject("none", {}, 1.0, "by hand", (1, 1))
    assert against_peak([subject], [], Peak(1, 1.0, 1.0, 1, (1, 1, 1))) == []


def test_the_table_shows_each_runtimes_share_of_the_peak_and_the_int8_figure():
    row = {
        "model": "ssd",
        "runtime": "openvino",
        "gmac_per_frame": 0.773,
        "gflops": 4.7,
        "share_of_peak": 0.111,
    }
    int8 = {
        "frame_stride": 10,
        "ssd": {"speedup": 1.87, "agreement": {"match_rate": 0.958}, "average_precision": {"ap": 0.949}},
    }
    figures = {"peak": {"threads": 2, "gflops": 42.3, "models": [row]}, "int8": int8}
    table = format_table(BenchReport(machine={}, options={}, figures=figures))
    assert "machine's FP32 peak, 2 threads (GFLOP/s)" in table and "42.3" in table
    assert "ssd on openvino, 0.773 GMAC/frame" in table and "4.7 (11.1%)" in table
    assert "every 10th frame: speed-up" in table and "95.8% / 0.949" in table

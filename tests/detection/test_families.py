"""Model files of the yolo, detr and ssd families (detector.detection.families,
detector.detection.file_backend).

The yolo and detr decoders run on ONNX graphs whose outputs are known
(constants, or computed from an input; tests/detection/model_files.py builds
them), so every step is checked exactly: box format, letterbox undo, NMS,
thresholds, labels from metadata. The ssd family
runs on the shared real SSD MobileNet (../shared/testdata).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from detector.detection.base import DetectorSettings
from detector.detection.catalog import CatalogError, load_catalog
from detector.detection.families import ModelFileError, open_file_model, prepare
from detector.detection.families.input import LETTERBOX_PAD, InputFormat
from detector.detection.identity import file_checksum, model_identity
from detector.detection.labels import label_set
from detector.detection.registry import build_predictor
from tests.detection.model_files import NAMES, graph_file, ultralytics_metadata, yolo_head
from tests.shared_data import PERSON, SharedData


def _frame(width: int = 128, height: int = 64) -> np.ndarray:
    return np.full((height, width, 3), 50, dtype=np.uint8)


def _settings(path: Path, family: str, **values: object) -> DetectorSettings:
    return DetectorSettings(
        backend=str(values.pop("backend", "onnxruntime")),
        file=str(path),
        family=family,
        device="cpu",
        min_score=float(values.pop("min_score", 0.25)),  # type: ignore[arg-type]
        **values,  # type: ignore[arg-type]
    )


# --- input ------------------------------------------------------------------------


def test_letterbox_pads_grey_around_the_frame_scaled_and_undo_is_exact():
    frame = np.zeros((64, 128, 3), dtype=np.uint8)
    frame[:, :, 2] = 255  # red in BGR
    fmt = InputFormat(width=64, height=64, resize="letterbox", scale=1 / 255)
    tensor, (geometry,) = prepare([frame], fmt)
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    # 128x64 -> 64x32, 16 rows of grey above and below; RGB: red is channel 0.
    assert np.allclose(tensor[0, :, :16, :], LETTERBOX_PAD / 255)
    assert np.allclose(tensor[0, :, 48:, :], LETTERBOX_PAD / 255)
    assert np.allclose(tensor[0, 0, 16:48, :], 1.0) and np.allclose(tensor[0, 1:, 16:48, :], 0.0)
    assert geometry.gain == (0.5, 0.5) and geometry.pad == (0.0, 16.0)
    assert geometry.to_frame(np.array([[24, 28, 40, 36]])).tolist() == [[48, 24, 80, 40]]


def test_stretch_nhwc_uint8_keeps_raw_pixels_and_bgr_order_when_asked():
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    tensor, (geometry,) = prepare(
        [frame], InputFormat(width=6, height=4, layout="NHWC", dtype="uint8", channels="BGR")
    )
    assert tensor.dtype == np.uint8 and np.array_equal(tensor[0], frame)
    rgb, _ = prepare([frame], InputFormat(width=6, height=4, layout="NHWC", dtype="uint8"))
    assert np.array_equal(rgb[0], frame[:, :, ::-1])
    assert geometry.gain == (1.0, 1.0)


def test_mean_and_std_apply_after_scale():
    frame = np.full((2, 2, 3), 255, dtype=np.uint8)
    fmt = InputFormat(width=2, height=2, scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    tensor, _ = prepare([frame], fmt)
    assert np.allclose(tensor[0, :, 0, 0], [2.0, 1.0, 0.5])


# --- yolo -------------------------------------------------------------------------


def test_yolo_raw_head_nms_thresholds_letterbox_and_names_from_metadata(tmp_path):
    path = graph_file(tmp_path / "yolo.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata())
    predictor = build_predictor(_settings(path, "yolo"))
    (found,) = predictor.predict_batch([_frame()])
    # Highest first; the lower dog is suppressed, the cat at the same place is not.
    assert found.label.tolist() == ["dog", "cat", "bird"]
    assert found.score.tolist() == pytest.approx([0.9, 0.7, 0.3])
    # Input (letterboxed 128x64 -> 64x64, 16 px bars): x / 0.5, (y - 16) / 0.5.
    assert found.xyxy.tolist() == [[48, 24, 80, 40], [50, 24, 82, 40], [92, 0, 108, 16]]
    assert label_set(_settings(path, "yolo")) == NAMES


def test_yolo_min_score_is_the_floor(tmp_path):
    path = graph_file(tmp_path / "yolo.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata())
    (found,) = build_predictor(_settings(path, "yolo", min_score=0.75)).predict_batch([_frame()])
    assert found.label.tolist() == ["dog"]


def test_yolo_end_to_end_rows_are_boxes_in_input_pixels(tmp_path):
    rows = np.array(
        [[[24, 28, 40, 36, 0.8, 2], [0, 0, 8, 8, 0.1, 0], [8, 16, 16, 32, 0.6, 1]]], dtype=np.float32
    )
    path = graph_file(tmp_path / "e2e.onnx", {"output0": rows}, metadata=ultralytics_metadata())
    (found,) = build_predictor(_settings(path, "yolo")).predict_batch([_frame()])
    assert found.label.tolist() == ["bird", "dog"]
    assert found.xyxy.tolist() == [[48, 24, 80, 40], [16, 0, 32, 32]]


def test_a_dynamic_batch_runs_in_one_call_and_each_frame_gets_its_own_geometry(tmp_path):
    path = graph_file(
        tmp_path / "yolo.onnx",
        {"output0": yolo_head()[[0, 0]]},
        image=("images", ["batch", 3, 64, 64], TensorProto.FLOAT),
        metadata=ultralytics_metadata(),
    )
    predictor = build_predictor(_settings(path, "yolo", batch_size=2))
    assert predictor.per_call is None
    wide, tall = predictor.predict_batch([_frame(128, 64), _frame(64, 128)])
    assert wide.xyxy[0].tolist() == [48, 24, 80, 40]
    assert tall.xyxy[0].tolist() == [(24 - 16) * 2, 28 * 2, (40 - 16) * 2, 36 * 2]


def test_labels_declared_override_the_metadata(tmp_path):
    path = graph_file(tmp_path / "yolo.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata())
    labels = tmp_path / "labels.txt"
    labels.write_text("kitten\npuppy\nchick\n")
    (found,) = build_predictor(_settings(path, "yolo", labels=str(labels))).predict_batch([_frame()])
    assert found.label.tolist() == ["puppy", "kitten", "chick"]


# --- detr -------------------------------------------------------------------------


def test_detr_boxes_and_logits_take_a_sigmoid_and_the_top_pairs(tmp_path):
    boxes = np.array([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]]], dtype=np.float32)
    logits = np.full((1, 3, 3), -10.0, dtype=np.float32)
    logits[0, 0, 1] = 2.0  # sigmoid 0.8808
    logits[0, 1, 0] = 0.0  # 0.5
    logits[0, 2, 2] = -2.0  # 0.1192: below min_score
    path = graph_file(tmp_path / "detr.onnx", {"pred_boxes": boxes, "logits": logits})
    settings = _settings(path, "detr", labels=("cat", "dog", "bird"))
    (found,) = build_predictor(settings).predict_batch([_frame(200, 100)])
    assert found.label.tolist() == ["dog", "cat"]
    assert found.score.tolist() == pytest.approx([1 / (1 + np.exp(-2.0)), 0.5], abs=1e-6)
    # Stretched: normalised cx, cy, w, h times the frame's size.
    assert found.xyxy.tolist() == [[80, 30, 120, 70], [40, 20, 60, 30]]


def test_detr_joint_output_holds_scores_already(tmp_path):
    joint = np.array(
        [[[0.5, 0.5, 0.2, 0.4, 0.1, 0.2, 0.6], [0.5, 0.5, 0.2, 0.4, 0.3, 0.0, 0.0]]], dtype=np.float32
    )
    path = graph_file(tmp_path / "rtdetr.onnx", {"output0": joint}, metadata=ultralytics_metadata())
    (found,) = build_predictor(_settings(path, "detr")).predict_batch([_frame(200, 100)])
    assert found.label.tolist() == ["bird", "cat"]
    assert found.score.tolist() == pytest.approx([0.6, 0.3])


def test_detr_postprocessed_outputs_get_the_input_size_as_orig_target_sizes(tmp_path):
    # boxes = [0, 0, w, h] from the orig_target_sizes input: the whole input, so the whole frame.
    nodes = [
        helper.make_node("Cast", ["orig_target_sizes"], ["sizes"], to=TensorProto.FLOAT),
        helper.make_node(
            "Constant", [], ["zeros"], value=numpy_helper.from_array(np.zeros((1, 2), np.float32))
        ),
        helper.make_node("Concat", ["zeros", "sizes"], ["flat"], axis=1),
        helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("Unsqueeze", ["flat", "axes"], ["boxes"]),
    ]
    path = graph_file(
        tmp_path / "dfine.onnx",
        {"labels": np.array([[1]], dtype=np.float32), "scores": np.array([[0.9]], dtype=np.float32)},
        extra_inputs=[helper.make_tensor_value_info("orig_target_sizes", TensorProto.INT64, [1, 2])],
        nodes=nodes,
        computed=[helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 1, 4])],
    )
    (found,) = build_predictor(_settings(path, "detr", labels=("cat", "dog"))).predict_batch(
        [_frame(200, 100)]
    )
    assert found.label.tolist() == ["dog"] and found.xyxy.tolist() == [[0, 0, 200, 100]]


# --- bad files --------------------------------------------------------------------


def test_labels_that_do_not_fit_the_head_are_refused(tmp_path):
    path = graph_file(
        tmp_path / "yolo.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata({0: "a", 1: "b"})
    )
    with pytest.raises(ModelFileError, match=r"3 class scores per box .* the labels name 2 classes"):
        open_file_model(_settings(path, "yolo"))


def test_a_file_without_labels_needs_them_declared(tmp_path):
    path = graph_file(tmp_path / "yolo.onnx", {"output0": yolo_head()})
    with pytest.raises(ModelFileError, match="names no labels in its metadata: declare labels"):
        open_file_model(_settings(path, "yolo"))


def test_the_wrong_family_is_refused(tmp_path):
    path = graph_file(tmp_path / "yolo.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata())
    with pytest.raises(ModelFileError, match="is not a ssd model: no boxes output"):
        open_file_model(_settings(path, "ssd"))
    boxes = np.zeros((1, 3, 4), dtype=np.float32)
    two = graph_file(tmp_path / "two.onnx", {"boxes": boxes, "scores": np.zeros((1, 3), np.float32)})
    with pytest.raises(
        ModelFileError, match="is not a yolo model: Ultralytics detection exports have one output"
    ):
        open_file_model(_settings(two, "yolo", labels=("a",)))


def test_an_input_size_the_file_does_not_take_is_refused(tmp_path):
    path = graph_file(tmp_path / "yolo.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata())
    with pytest.raises(ModelFileError, match=r"input.size is \[320, 320\] .* takes \[64, 64\]"):
        open_file_model(_settings(path, "yolo", input={"size": [320, 320]}))


def test_a_missing_or_foreign_file_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        open_file_model(_settings(tmp_path / "absent.onnx", "yolo"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="cannot be read"):
        open_file_model(_settings(junk, "yolo"))
    with pytest.raises(ModelFileError, match=r"backend tflite reads \.tflite files"):
        path = graph_file(tmp_path / "yolo.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata())
        open_file_model(_settings(path, "yolo", backend="tflite"))


def test_the_catalog_stops_on_a_bad_file_naming_the_table(tmp_path):
    path = graph_file(tmp_path / "yolo.onnx", {"output0": yolo_head()})
    catalog = tmp_path / "models.toml"
    catalog.write_text('[models.mine]\nfile = "yolo.onnx"\nfamily = "yolo"\n')
    with pytest.raises(CatalogError, match=r"\[models.mine\]: model file yolo.onnx names no labels"):
        load_catalog({"DETECTOR_MODELS": str(catalog)})
    (tmp_path / "names.txt").write_text("0 cat\n1 dog\n2 bird\n")
    catalog.write_text('[models.mine]\nfile = "yolo.onnx"\nfamily = "yolo"\nlabels = "names.txt"\n')
    settings = load_catalog({"DETECTOR_MODELS": str(catalog)}).settings("mine")
    assert (settings.backend, settings.file, settings.labels) == (
        "onnxruntime",
        str(path),
        str(tmp_path / "names.txt"),
    )


def test_identity_names_family_file_and_checksum(tmp_path):
    path = graph_file(tmp_path / "yolo.onnx", {"output0": yolo_head()}, metadata=ultralytics_metadata())
    identity = model_identity(_settings(path, "yolo"))
    assert identity == f"onnxruntime/yolo:yolo.onnx@sha256:{file_checksum(path)}"
    other = graph_file(
        tmp_path / "yolo.onnx", {"output0": yolo_head() * 0.5}, metadata=ultralytics_metadata()
    )
    assert model_identity(_settings(other, "yolo")) != identity


# --- the real SSD -----------------------------------------------------------------


def _vtest_frame(data: SharedData) -> np.ndarray:
    import av

    with av.open(str(data.video)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="bgr24")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "tflite"])
def test_the_real_ssd_finds_people_in_vtest_on_each_runtime(testdata: SharedData, backend):
    settings = _settings(
        testdata.model_file(backend), "ssd", backend=backend, labels=str(testdata.labels), min_score=0.5
    )
    predictor = build_predictor(settings)
    frame = _vtest_frame(testdata)
    (found,) = predictor.predict_batch([frame])
    people = found[found.class_id == PERSON]
    assert len(people) >= 2 and set(people.label.tolist()) == {"person"}
    height, width = frame.shape[:2]
    assert (people.xyxy >= 0).all() and (people.xyxy[:, [0, 2]] <= width).all()
    # People stand: boxes taller than wide, far smaller than the frame.
    sizes = people.xyxy[:, 2:] - people.xyxy[:, :2]
    assert (sizes[:, 1] > sizes[:, 0]).all() and (sizes[:, 1] < height / 2).all()
    assert found.score.tolist() == sorted(found.score.tolist(), reverse=True)

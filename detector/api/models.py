"""``GET /api/models``: the models a job may choose, and whether a worker serves each."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace, Resource, fields

from detector.api.authn import SECURITY, authenticated
from detector.api.errors import error_model
from detector.api.fields import NullableBoolean, NullableInteger, NullableList, NullableString
from detector.api.jobs import UNAUTHORIZED
from detector.services import models

ns = Namespace("models", description="The detection models a job may choose", decorators=[authenticated()])

model_model = ns.model(
    "Model",
    {
        "name": fields.String(required=True, description="What a job's `model` field names", example="fast"),
        "default": fields.Boolean(
            required=True, description="Whether jobs that name no model run it", example=True
        ),
        "backend": fields.String(
            required=True,
            description="torchvision, detectron2, onnxruntime, openvino or tflite",
            example="torchvision",
        ),
        "model": NullableString(
            required=True,
            description="The backend's model (a torchvision builder or a Detectron2 config), "
            "or family:file for a model file",
            example="fasterrcnn_mobilenet_v3_large_320_fpn",
        ),
        "weights": fields.String(
            required=True,
            description="The weights' identity: the pretrained checkpoint's file name, sha256:<prefix> "
            "of a weights file, a URL, or random(seed=N)",
            example="fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
        ),
        "weights_checksum": NullableString(
            required=True,
            description="sha256:<prefix> of the weights file, where the weights are a file",
            example="sha256:5f1c0a9e2b7d4c11",
        ),
        "identity": NullableString(
            required=True,
            description="backend/model@weights, as a job of this model reports it in `model`; "
            "null when it cannot be told here (see error)",
            example="torchvision/fasterrcnn_mobilenet_v3_large_320_fpn@fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
        ),
        "device": fields.String(required=True, description="The device it runs on", example="auto"),
        "batch_size": NullableInteger(
            required=True,
            description="Frames per forward pass; null when the worker chooses it for its device",
            example=8,
        ),
        "precision": fields.String(
            required=True,
            description="fp32, or int8: a model file quantized on OpenVINO, calibrated on the "
            "deployment's frames (its identity then ends in +int8(calibration=sha256:<prefix>))",
            example="fp32",
        ),
        "queue": fields.String(
            required=True, description="The queue its chunks go to", example="detector.fast"
        ),
        "labels": fields.List(
            fields.String, required=True, description="The classes it detects", example=["person", "car"]
        ),
        "online": NullableBoolean(
            required=True,
            description="Whether a worker serving it is online; null when the workers could not be asked",
            example=True,
        ),
        "workers": fields.List(
            fields.String,
            required=True,
            description="The Celery nodes serving it now",
            example=["detector@gpu-node-1"],
        ),
        "family": NullableString(
            required=True,
            description="For a model file: how its outputs are laid out (ssd, yolo or detr); else null",
            example="yolo",
        ),
        "runtime": fields.String(
            required=True,
            description="What runs it: torchvision, detectron2, onnxruntime, openvino or tflite",
            example="onnxruntime",
        ),
        "input_size": NullableList(
            fields.Integer,
            required=True,
            description="For a model file: the [width, height] its frames are resized to; else null",
            example=[640, 640],
        ),
        "file": NullableString(
            required=True, description="For a model file: the file's name; else null", example="yolo11n.onnx"
        ),
        "file_sha256": NullableString(
            required=True,
            description="For a model file: the SHA-256 of its content, in hex; else null",
            example="01c2e148122f111f1e86aedfb84fe084ae6704c582011f425e6d38ca97d0609a",
        ),
        "error": NullableString(
            required=True,
            description="Why its identity cannot be told here; else null",
            example="the model cannot be identified: weights file /models/a.pth does not exist",
        ),
    },
)
models_model = ns.model(
    "Models",
    {"models": fields.List(fields.Nested(model_model), required=True, description="The default first")},
)
ns.add_model(error_model.name, error_model)


@ns.route("")
@ns.response(401, UNAUTHORIZED, error_model)
class Models(Resource):
    @ns.doc(id="list_models", security=SECURITY)
    @ns.response(200, "The deployment's models", models_model)
    @ns.response(503, "The deployment's model settings cannot be used here", error_model)
    def get(self) -> dict[str, Any]:
        """The models a job may choose (field `model` of a new job), the default first."""
        return {"models": models.listing()}

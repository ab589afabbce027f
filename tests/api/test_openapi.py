"""The API document (/api/swagger.json): valid Swagger 2.0, and complete enough for
generated clients and the Swagger UI.

Every operation has a snake_case operationId that says what it does, every model
property a description (and an example where it is a plain value), every error
response the one Error model, every parameter a description, and the upload's
score_threshold shows the app's own floor and default.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from detector.app import create_app
from detector.db.migrate import upgrade
from tests.conftest import base_config

OPERATIONS = {
    ("/auth/register", "post"): "register",
    ("/auth/login", "post"): "login",
    ("/auth/refresh", "post"): "refresh",
    ("/auth/logout", "post"): "logout",
    ("/auth/me", "get"): "get_current_user",
    ("/auth/password", "post"): "change_password",
    ("/auth/logout-everywhere", "post"): "logout_everywhere",
    ("/jobs", "get"): "list_jobs",
    ("/jobs", "post"): "create_job",
    ("/jobs/{job_id}", "get"): "get_job",
    ("/jobs/{job_id}", "delete"): "delete_job",
    ("/jobs/{job_id}/cancel", "post"): "cancel_job",
    ("/jobs/{job_id}/detections", "get"): "list_detections",
    ("/keys", "get"): "list_api_keys",
    ("/keys", "post"): "create_api_key",
    ("/keys/{key_id}", "delete"): "revoke_api_key",
    ("/auth/webhook-secret", "post"): "rotate_webhook_secret",
    ("/jobs/{job_id}/webhook", "get"): "get_job_webhook",
    ("/auth/session", "post"): "create_session",
    ("/auth/session", "delete"): "delete_session",
    ("/auth/session/refresh", "post"): "refresh_session",
    ("/jobs/{job_id}/tracks", "get"): "list_tracks",
    ("/jobs/{job_id}/export", "get"): "export_job",
    ("/labels", "get"): "list_labels",
    ("/models", "get"): "list_models",
    ("/jobs/{job_id}/render", "post"): "render_job",
    ("/jobs/{job_id}/media-token", "post"): "create_media_token",
    ("/jobs/{job_id}/video", "get"): "get_video",
    ("/jobs/{job_id}/video/annotated", "get"): "get_annotated_video",
    ("/search", "get"): "search_moments",
    ("/jobs/{job_id}/tracks/{track_id}/thumbnail", "get"): "get_track_thumbnail",
    ("/jobs/{job_id}/analytics", "get"): "list_analytics",
    ("/jobs/{job_id}/analytics", "post"): "start_analytics",
    ("/jobs/{job_id}/analytics/{analytics_id}", "get"): "get_analytics",
    ("/jobs/{job_id}/analytics/{analytics_id}", "delete"): "delete_analytics",
    ("/jobs/{job_id}/analytics/{analytics_id}/heatmap", "get"): "get_analytics_heatmap",
    ("/jobs/{job_id}/analytics/{analytics_id}/export", "get"): "export_analytics",
    ("/jobs/{job_id}/analytics/{analytics_id}/render", "post"): "render_analytics",
}
# Request bodies may have optional fields; every response field is always there.
OPTIONAL_REQUEST_FIELDS = {
    "ApiKeyRequest": {"expires_at", "scopes"},
    # An analytics spec: everything but its zones' and lines' names and points has a default.
    "AnalyticsSpec": {
        "name",
        "anchor",
        "interval",
        "min_dwell",
        "hysteresis",
        "zones",
        "lines",
        "calibration",
    },
    "AnalyticsZone": {"classes"},
    "AnalyticsLine": {"in", "classes"},
}
# Response fields present only for some answers: an error's `status` comes with
# error `job_ended` alone (a cancel of a job that had already ended).
OPTIONAL_RESPONSE_FIELDS = {"Error": {"status"}}
# Optional parameters whose absence turns their option off, so they have no default.
OFF_WHEN_ABSENT = {("/jobs", "post", "sample_fps"), ("/jobs", "post", "end")}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def spec(client) -> dict[str, Any]:
    response = client.get("/api/swagger.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json
    return document


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_document_is_valid_swagger_2(spec):
    validate(spec)  # raises on the first error


def test_operation_ids_say_what_they_do(spec):
    found = {(path, method): op.get("operationId") for path, method, op in operations(spec)}
    assert found == OPERATIONS
    for operation_id in found.values():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", operation_id), operation_id


def test_every_operation_has_a_summary_and_tags(spec):
    for path, method, operation in operations(spec):
        assert operation.get("summary"), (path, method)
        assert operation.get("tags"), (path, method)


def _properties(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, prop_name, prop)
        for name, model in spec["definitions"].items()
        for prop_name, prop in model.get("properties", {}).items()
    ]


def test_every_model_and_property_is_described(spec):
    assert spec["definitions"], "no models"
    for name, prop_name, prop in _properties(spec):
        assert prop.get("description"), f"{name}.{prop_name} has no description"


def test_every_plain_property_has_an_example(spec):
    for name, prop_name, prop in _properties(spec):
        nested = "$ref" in prop or "allOf" in prop or "$ref" in prop.get("items", {})
        if not nested:
            assert "example" in prop, f"{name}.{prop_name} has no example"


def test_properties_that_are_always_present_are_required(spec):
    # Every response model's every field is always in the answer (null where
    # it says x-nullable), so all are required, but for the few listed above.
    for name, model in spec["definitions"].items():
        optional = OPTIONAL_REQUEST_FIELDS.get(name, set()) | OPTIONAL_RESPONSE_FIELDS.get(name, set())
        assert sorted(model.get("required", [])) == sorted(set(model["properties"]) - optional), name


def test_every_error_response_is_the_error_model(spec):
    error = spec["definitions"]["Error"]
    assert error["required"] == ["error", "message"] or sorted(error["required"]) == ["error", "message"]
    for path, method, operation in operations(spec):
        errors = {code: r for code, r in operation["responses"].items() if int(code) >= 400}
        assert errors, (path, method)
        for code, response in errors.items():
            assert response.get("description"), (path, method, code)
            assert response.get("schema") == {"$ref": "#/definitions/Error"}, (path, method, code)
    for name, response in spec.get("responses", {}).items():
        assert response.get("description"), name


def test_authenticated_operations_declare_401_and_the_bearer_scheme(spec):
    assert spec["securityDefinitions"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": spec["securityDefinitions"]["ApiKey"]["description"],
    }
    for path, method, operation in operations(spec):
        if path in {"/auth/register", "/auth/login"} or path.startswith("/auth/session"):
            # Credentials in the body, or the web app's session cookie (detector.api.auth).
            assert "security" not in operation
            continue
        if path in {"/auth/refresh", "/auth/logout", "/auth/me", "/auth/password", "/auth/logout-everywhere"}:
            # About the token itself: a token only.
            assert operation.get("security") == [{"Bearer": []}], (path, method)
        else:
            # Everything else takes an access token or an API key (detector.api.authn).
            assert operation.get("security") == [{"Bearer": []}, {"ApiKey": []}], (path, method)
        assert "401" in operation["responses"], (path, method)


def test_upload_declares_the_idempotency_key_header(spec):
    upload = spec["paths"]["/jobs"]["post"]
    header = {p["name"]: p for p in upload["parameters"]}["Idempotency-Key"]
    assert header["in"] == "header" and header["type"] == "string" and not header.get("required")
    assert upload["responses"]["200"]["schema"] == {"$ref": "#/definitions/Job"}


def test_login_declares_its_rate_limit_with_retry_after(spec):
    too_many = spec["paths"]["/auth/login"]["post"]["responses"]["429"]
    assert too_many["headers"]["Retry-After"]["type"] == "integer"


def test_every_parameter_is_described_and_bounded(spec):
    for path, method, operation in operations(spec):
        for parameter in operation.get("parameters", []) + spec["paths"][path].get("parameters", []):
            assert parameter.get("description"), (path, method, parameter["name"])
            if parameter.get("type") in {"integer", "number"}:
                assert "minimum" in parameter and "maximum" in parameter, (path, method, parameter["name"])
                if not parameter.get("required") and (path, method, parameter["name"]) not in OFF_WHEN_ABSENT:
                    assert "default" in parameter, (path, method, parameter["name"])


def test_paging_parameters(spec):
    jobs = {p["name"]: p for p in spec["paths"]["/jobs"]["get"]["parameters"]}
    assert (jobs["page"]["minimum"], jobs["page"]["default"]) == (1, 1)
    assert (jobs["per_page"]["minimum"], jobs["per_page"]["maximum"], jobs["per_page"]["default"]) == (
        1,
        100,
        20,
    )
    detections = {p["name"]: p for p in spec["paths"]["/jobs/{job_id}/detections"]["get"]["parameters"]}
    assert (detections["start"]["minimum"], detections["start"]["default"]) == (0, 0)
    assert (detections["limit"]["maximum"], detections["limit"]["default"]) == (1000, 100)


def test_upload_declares_location_and_score_threshold(spec, app):
    upload = spec["paths"]["/jobs"]["post"]
    assert upload["consumes"] == ["multipart/form-data"]
    assert upload["responses"]["202"]["headers"]["Location"]["type"] == "string"
    fields = {p["name"]: p for p in upload["parameters"]}
    # Exactly one of video and source_url (a 400 otherwise): neither is required alone.
    assert fields["video"]["type"] == "file" and not fields["video"].get("required")
    for name in ("source_url", "callback_url"):
        assert fields[name]["in"] == "formData" and fields[name]["type"] == "string"
    assert upload["responses"]["202"]["headers"]["Detector-Webhook-Secret"]["type"] == "string"
    threshold = fields["score_threshold"]
    assert threshold["in"] == "formData" and threshold["type"] == "number"
    assert threshold["minimum"] == app.config["DETECTOR_MIN_SCORE"] == 0.05
    assert threshold["maximum"] == 1
    assert threshold["default"] == app.config["DEFAULT_SCORE_THRESHOLD"]


def test_score_threshold_bounds_come_from_each_apps_settings(tmp_path):
    config = base_config(tmp_path, DETECTOR_MIN_SCORE=0.2, DEFAULT_SCORE_THRESHOLD=0.6)
    (tmp_path / "data").mkdir()
    upgrade(config["DATABASE_URL"])
    spec = create_app(config).test_client().get("/api/swagger.json").json
    fields = {p["name"]: p for p in spec["paths"]["/jobs"]["post"]["parameters"]}
    assert fields["score_threshold"]["minimum"] == 0.2
    assert fields["score_threshold"]["default"] == 0.6

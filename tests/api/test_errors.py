"""Every error of the service is JSON in one model, {"error": code, "message": text}:
unmatched URLs, wrong methods and trailing-slash redirects too, inside /api and
outside it. No HTML error page anywhere."""

from __future__ import annotations

import pytest

from tests.api.test_jobs import stored_videos, upload
from tests.conftest import Auth


def assert_error_model(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert set(response.json) == {"error", "message"}, response.json
    assert response.json["error"] == code
    assert response.json["message"]
    assert b"<html" not in response.data.lower()


@pytest.mark.parametrize("url", ["/nope", "/api/nope", "/api/jobs/", "/api/auth/login/", "/api/auth/me/x"])
def test_unmatched_urls_are_json_404(client, url):
    assert_error_model(client.get(url), 404, "not_found")


@pytest.mark.parametrize(
    "method, url", [("post", "/healthz"), ("delete", "/api/auth/login"), ("put", "/api/jobs")]
)
def test_wrong_methods_are_json_405_with_allow(client, method, url):
    response = getattr(client, method)(url)
    assert_error_model(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


def test_a_trailing_slash_redirect_is_json_with_location(client):
    response = client.get("/api")
    assert_error_model(response, 308, "permanent_redirect")
    assert response.headers["Location"].endswith("/api/")
    assert "/api/" in response.json["message"]


def test_a_trailing_slash_after_a_job_id_is_json(client, auth: Auth):
    response = client.get("/api/jobs/abc/", headers=auth.headers())
    assert_error_model(response, 404, "not_found")


def test_an_authenticated_endpoint_without_a_token_is_the_error_model(client):
    assert_error_model(client.get("/api/jobs"), 401, "unauthorized")
    assert_error_model(client.get("/api/auth/me"), 401, "unauthorized")


def test_auth_errors_use_the_error_model(client, auth: Auth):
    assert_error_model(client.post("/api/auth/register", json={"username": "x"}), 400, "invalid_input")
    auth.register("grace")
    assert_error_model(
        client.post("/api/auth/register", json={"username": "grace", "password": "password123"}),
        409,
        "conflict",
    )
    assert_error_model(
        client.post("/api/auth/login", json={"username": "grace", "password": "wrong-password"}),
        401,
        "unauthorized",
    )


def test_upload_too_large_states_the_limit(app, client, auth: Auth, small_video):
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024 // 4  # 0.25 MB, below the video with padding
    headers = auth.headers()
    response = upload(client, headers, data=small_video.read_bytes() + b"\0" * (1024 * 1024))
    assert_error_model(response, 413, "request_entity_too_large")
    assert "0.25 MB" in response.json["message"]
    assert "MAX_UPLOAD_MB" in response.json["message"]
    assert stored_videos(app) == []


def test_a_whole_megabyte_limit_is_named_as_such(app, client, auth: Auth, small_video):
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # MAX_UPLOAD_MB=1
    headers = auth.headers()
    response = upload(client, headers, data=small_video.read_bytes() + b"\0" * (1024 * 1024))
    assert_error_model(response, 413, "request_entity_too_large")
    assert "limit of 1 MB" in response.json["message"]

"""The web app's cookie session (/api/auth/session): the access token in the body, the
refresh token in an HttpOnly cookie guarded by a double-submit CSRF token, and no
cookie ever standing in for a Bearer token anywhere else."""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from detector.app import create_app
from detector.config import Settings, load_config
from detector.db.migrate import upgrade
from tests.conftest import Auth, base_config, reconfigure

PASSWORD = "password123"
REFRESH_COOKIE = "refresh_token_cookie"
CSRF_COOKIE = "csrf_refresh_token"
SESSION = "/api/auth/session"


def cookies_of(response: Any) -> dict[str, Any]:
    """The cookies a response sets, by name, with their attributes (lower-case keys)."""
    found: dict[str, Any] = {}
    for header in response.headers.getlist("Set-Cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            attributes = {key: morsel[key] for key in morsel if morsel[key]}
            # SimpleCookie reads flags without a value as True; keep the header to check them.
            found[name] = {"value": morsel.value, "header": header, **attributes}
    return found


def flags(header: str) -> set[str]:
    """The attributes of one Set-Cookie header, lower-cased: {"httponly", "samesite=strict", ...}."""
    return {part.strip().lower() for part in header.split(";")[1:]}


def sign_in(client: FlaskClient, username: str = "alice") -> Any:
    client.post("/api/auth/register", json={"username": username, "password": PASSWORD})
    response = client.post(SESSION, json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.json
    return response


def csrf_of(client: FlaskClient) -> str:
    cookie = client.get_cookie(CSRF_COOKIE, path="/")
    assert cookie is not None
    return cookie.value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_sign_in_answers_an_access_token_and_sets_strict_httponly_cookies(client):
    response = sign_in(client)
    body = response.json
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 60 * 60  # JWT_ACCESS_MINUTES' default
    assert "refresh" not in response.get_data(as_text=True)  # the refresh token is in no body

    cookies = cookies_of(response)
    assert set(cookies) == {REFRESH_COOKIE, CSRF_COOKIE}
    refresh, csrf = cookies[REFRESH_COOKIE], cookies[CSRF_COOKIE]
    assert flags(refresh["header"]) >= {"httponly", "samesite=strict", "path=/api/auth/session"}
    assert f"max-age={30 * 86400}" in flags(refresh["header"])  # as long as the refresh token lives
    assert "secure" not in flags(refresh["header"])  # the test profile: http://127.0.0.1
    # The CSRF cookie is for the page to read: not HttpOnly, and its path covers the page at /.
    assert flags(csrf["header"]) >= {"samesite=strict", "path=/"}
    assert "httponly" not in flags(csrf["header"])

    claims = pyjwt.decode(refresh["value"], options={"verify_signature": False})
    assert claims["type"] == "refresh"
    assert claims["csrf"] == csrf["value"]  # the double-submit value is bound to this token
    access_claims = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    assert access_claims["type"] == "access" and "csrf" not in access_claims

    # The access token is an ordinary Bearer token.
    jobs = client.get("/api/jobs", headers=bearer(body["access_token"]))
    assert jobs.status_code == 200 and jobs.json["total"] == 0
    assert client.get("/api/auth/me", headers=bearer(body["access_token"])).json["username"] == "alice"


def test_the_secure_flag_follows_the_setting(app, client):
    reconfigure(app, SESSION_COOKIE_SECURE=True)
    cookies = cookies_of(sign_in(client))
    assert "secure" in flags(cookies[REFRESH_COOKIE]["header"])
    assert "secure" in flags(cookies[CSRF_COOKIE]["header"])


@pytest.mark.parametrize(
    "profile, value, expected",
    [
        ("production", None, True),
        ("development", None, False),
        ("test", None, False),
        ("production", "false", False),
        ("development", "true", True),
    ],
)
def test_secure_cookies_by_default_in_production_only(monkeypatch, tmp_path, profile, value, expected):
    if value is None:
        monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    else:
        monkeypatch.setenv("SESSION_COOKIE_SECURE", value)
    secrets = {"SECRET_KEY": "a-real-secret-" * 4, "JWT_SECRET_KEY": "another-real-secret-" * 4}
    config = load_config(base_config(tmp_path, ENV=profile, **secrets))
    assert Settings.from_config(config).session_cookie_secure is expected


def test_wrong_password_or_bad_body_sets_no_cookie(client, auth: Auth):
    auth.register("alice", PASSWORD)
    wrong = client.post(SESSION, json={"username": "alice", "password": "not-the-password"})
    assert wrong.status_code == 401
    assert wrong.json == {"error": "unauthorized", "message": "wrong username or password"}
    assert "Set-Cookie" not in wrong.headers
    bad = client.post(SESSION, json=["alice"])
    assert bad.status_code == 400 and bad.json["error"] == "invalid_input"
    assert "Set-Cookie" not in bad.headers


def test_refresh_needs_the_cookie_and_the_matching_csrf_header(app: Flask, client):
    first = sign_in(client).json["access_token"]
    csrf = csrf_of(client)

    no_header = client.post(f"{SESSION}/refresh")
    assert no_header.status_code == 401
    assert no_header.json["error"] == "unauthorized"
    assert "X-CSRF-TOKEN" in no_header.json["message"]
    wrong = client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf[::-1]})
    assert wrong.status_code == 401
    assert wrong.json == {
        "error": "unauthorized",
        "message": "the CSRF token does not match the session cookie",
    }

    refreshed = client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf})
    assert refreshed.status_code == 200, refreshed.json
    assert set(refreshed.json) == {"access_token", "token_type", "expires_in"}
    assert refreshed.json["access_token"] != first
    # The session's refresh cookie is replaced by the next one; the CSRF value stays.
    assert set(cookies_of(refreshed)) == {REFRESH_COOKIE, CSRF_COOKIE}
    assert csrf_of(client) == csrf
    assert client.get("/api/jobs", headers=bearer(refreshed.json["access_token"])).status_code == 200

    # Without the cookie (another client), even with the right CSRF value: 401.
    stranger = app.test_client()
    missing = stranger.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf})
    assert missing.status_code == 401
    assert missing.json["error"] == "unauthorized" and REFRESH_COOKIE in missing.json["message"]


def test_the_session_endpoints_take_the_refresh_token_from_the_cookie_only(app: Flask, client):
    sign_in(client)
    refresh_token = client.get_cookie(REFRESH_COOKIE, path=SESSION).value
    csrf = csrf_of(client)
    stranger = app.test_client()
    as_header = {**bearer(refresh_token), "X-CSRF-TOKEN": csrf}
    assert stranger.post(f"{SESSION}/refresh", headers=as_header).status_code == 401
    assert stranger.delete(SESSION, headers=as_header).status_code == 401


def test_an_access_token_cookie_is_no_session(app: Flask, client):
    access = sign_in(client).json["access_token"]
    stranger = app.test_client()
    stranger.set_cookie(REFRESH_COOKIE, access, path=SESSION)  # an access token where the refresh goes
    refused = stranger.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": "anything"})
    assert refused.status_code == 401 and refused.json["error"] == "unauthorized"


def test_sign_out_revokes_the_refresh_token_and_clears_the_cookies(app: Flask, client):
    sign_in(client)
    refresh_token = client.get_cookie(REFRESH_COOKIE, path=SESSION).value
    csrf = csrf_of(client)

    # Without the CSRF header, sign-out is refused and the session still works.
    refused = client.delete(SESSION)
    assert refused.status_code == 401 and refused.json["error"] == "unauthorized"
    assert client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf}).status_code == 200

    out = client.delete(SESSION, headers={"X-CSRF-TOKEN": csrf})
    assert out.status_code == 200
    assert out.json == {"message": "session ended"}
    cleared = cookies_of(out)
    assert set(cleared) == {REFRESH_COOKIE, CSRF_COOKIE}
    for name, path in ((REFRESH_COOKIE, SESSION), (CSRF_COOKIE, "/")):
        assert cleared[name]["value"] == ""
        assert {"max-age=0", f"path={path}"} <= flags(cleared[name]["header"])
    assert client.get_cookie(REFRESH_COOKIE, path=SESSION) is None
    assert client.get_cookie(CSRF_COOKIE, path="/") is None

    # The old cookie, kept by an attacker (or a stale tab), is revoked.
    client.set_cookie(REFRESH_COOKIE, refresh_token, path=SESSION)
    client.set_cookie(CSRF_COOKIE, csrf, path="/")
    again = client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf})
    assert again.status_code == 401
    assert again.json == {"error": "unauthorized", "message": "Token has been revoked"}
    # Signing out twice is no error: the cookies are cleared again.
    assert client.delete(SESSION, headers={"X-CSRF-TOKEN": csrf}).status_code == 200


def test_ordinary_endpoints_do_not_take_a_cookie_for_the_bearer_token(app: Flask, client):
    access = sign_in(client).json["access_token"]
    refresh_token = client.get_cookie(REFRESH_COOKIE, path=SESSION).value
    stranger = app.test_client()
    # Every cookie the session uses, and flask-jwt-extended's access cookie, on every path.
    stranger.set_cookie("access_token_cookie", access, path="/")
    stranger.set_cookie(REFRESH_COOKIE, refresh_token, path="/")
    stranger.set_cookie(CSRF_COOKIE, csrf_of(client), path="/")
    csrf = {"X-CSRF-TOKEN": csrf_of(client)}
    assert stranger.get("/api/jobs", headers=csrf).status_code == 401
    assert stranger.get("/api/auth/me", headers=csrf).status_code == 401
    assert stranger.post("/api/auth/refresh", headers=csrf).status_code == 401
    assert stranger.post("/api/auth/logout", headers=csrf).status_code == 401
    assert stranger.get("/api/keys", headers=csrf).status_code == 401
    # The same access token as a Bearer header is accepted.
    assert stranger.get("/api/jobs", headers=bearer(access)).status_code == 200


def test_logout_with_the_session_access_token_revokes_it(client):
    access = sign_in(client).json["access_token"]
    assert client.post("/api/auth/logout", headers=bearer(access)).status_code == 200
    assert client.get("/api/jobs", headers=bearer(access)).status_code == 401
    # The session itself lives on until DELETE /api/auth/session.
    refreshed = client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf_of(client)})
    assert refreshed.status_code == 200


def test_a_used_refresh_cookie_sent_again_ends_the_session(app: Flask, client):
    reconfigure(app, SESSION_REFRESH_GRACE_SECONDS=0)
    first_access = sign_in(client).json["access_token"]
    csrf = csrf_of(client)
    first_cookie = client.get_cookie(REFRESH_COOKIE, path=SESSION).value
    refreshed = client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf})
    assert refreshed.status_code == 200
    second_cookie = client.get_cookie(REFRESH_COOKIE, path=SESSION).value
    assert second_cookie != first_cookie

    # A copy of the first cookie (taken by an attacker) is sent again: refused, and the
    # session is over for everyone holding any of its tokens.
    thief = app.test_client()
    thief.set_cookie(REFRESH_COOKIE, first_cookie, path=SESSION)
    reused = thief.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf})
    assert reused.status_code == 401 and "already used" in reused.json["message"]
    assert "Set-Cookie" not in reused.headers
    assert client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf}).status_code == 401
    for access in (first_access, refreshed.json["access_token"]):
        assert client.get("/api/auth/me", headers=bearer(access)).status_code == 401


def test_tabs_refreshing_at_once_share_one_rotation(app: Flask, client):
    reconfigure(app, SESSION_REFRESH_GRACE_SECONDS=60)
    sign_in(client)
    csrf = csrf_of(client)
    cookie = client.get_cookie(REFRESH_COOKIE, path=SESSION).value
    # Two tabs send the same cookie; the first one's answer sets the next cookie.
    first = client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf})
    other_tab = app.test_client()
    other_tab.set_cookie(REFRESH_COOKIE, cookie, path=SESSION)
    second = other_tab.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf})
    assert first.status_code == second.status_code == 200
    assert REFRESH_COOKIE in cookies_of(first) and "Set-Cookie" not in second.headers
    assert client.get("/api/auth/me", headers=bearer(second.json["access_token"])).status_code == 200
    # The session goes on with the cookie the first answer set.
    assert client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf}).status_code == 200
    # Once replaced twice, the first cookie is a reuse even within the grace.
    assert other_tab.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf}).status_code == 401


def test_sign_out_everywhere_ends_the_web_session(client):
    access = sign_in(client).json["access_token"]
    out = client.post("/api/auth/logout-everywhere", headers=bearer(access))
    assert out.status_code == 200
    refused = client.post(f"{SESSION}/refresh", headers={"X-CSRF-TOKEN": csrf_of(client)})
    assert refused.status_code == 401 and refused.json["message"] == "Token has been revoked"
    assert client.get("/api/jobs", headers=bearer(access)).status_code == 401


def test_session_and_login_share_the_login_rate_limit(tmp_path: Path):
    config = base_config(
        tmp_path, RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3 per minute", RATELIMIT_STORAGE_URI="memory://"
    )
    (tmp_path / "data").mkdir()
    upgrade(config["DATABASE_URL"])
    client = create_app(config).test_client()
    client.post("/api/auth/register", json={"username": "mallory", "password": PASSWORD})
    wrong = {"username": "mallory", "password": "wrong-password"}
    answers = [
        client.post("/api/auth/login", json=wrong).status_code,
        client.post(SESSION, json=wrong).status_code,
        client.post("/api/auth/login", json=wrong).status_code,
    ]
    assert answers == [401, 401, 401]
    limited = client.post(SESSION, json={"username": "mallory", "password": PASSWORD})
    assert limited.status_code == 429
    assert limited.json["error"] == "too_many_requests"
    # A one-minute window; the limiter rounds the wait up, so a full minute can read 61.
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert "Set-Cookie" not in limited.headers
    assert client.post("/api/auth/login", json=wrong).status_code == 429
    # Signing out and refreshing are not login attempts: they are not limited.
    assert client.delete(SESSION).status_code == 401

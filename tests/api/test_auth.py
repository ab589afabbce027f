"""Accounts and JWT: every token problem is a 401 JSON answer, never a 500."""

import time

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token, create_refresh_token

from tests.conftest import Auth, reconfigure


def test_register_login_me(client, auth: Auth):
    auth.register("bob", "s3cret-password")
    tokens = auth.login("bob", "s3cret-password")
    assert tokens["token_type"] == "Bearer"
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json["username"] == "bob"
    assert "password" not in str(me.json)


def test_tokens_are_for_headers_only_and_no_cookie_is_set(client, auth: Auth):
    auth.register("carol", "s3cret-password")
    login = client.post("/api/auth/login", json={"username": "carol", "password": "s3cret-password"})
    assert "Set-Cookie" not in login.headers
    for kind in ("access_token", "refresh_token"):
        claims = pyjwt.decode(login.json[kind], options={"verify_signature": False})
        assert "csrf" not in claims  # a cookie-only claim
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {login.json['access_token']}"})
    assert me.status_code == 200 and "Set-Cookie" not in me.headers
    assert set(me.json) == {"id", "username", "created_at", "storage"}


def test_passwords_are_hashed_slowly(app, auth: Auth):
    from detector.db import db
    from detector.models import User

    auth.register("carol", "password123")
    with app.app_context():
        user = db.session.query(User).filter_by(username="carol").one()
        assert user.password_hash.startswith("scrypt:")
        assert "password123" not in user.password_hash


@pytest.mark.parametrize(
    "body, status",
    [
        ({"username": "ab", "password": "password123"}, 400),
        ({"username": "has space", "password": "password123"}, 400),
        # "$" of a pattern would let a trailing newline through: the name must match whole.
        ({"username": "dave\n", "password": "password123"}, 400),
        ({"username": "dave", "password": "short"}, 400),
        ({"username": "dave"}, 400),
        ("not an object", 400),
    ],
)
def test_register_rejects_bad_input(client, body, status):
    response = client.post("/api/auth/register", json=body)
    assert response.status_code == status
    assert response.json["message"]


def test_duplicate_username_is_a_conflict(client, auth: Auth):
    auth.register("erin")
    response = client.post("/api/auth/register", json={"username": "erin", "password": "password123"})
    assert response.status_code == 409


def test_login_answers_the_same_for_unknown_user_and_wrong_password(client, auth: Auth):
    auth.register("frank", "password123")
    wrong = client.post("/api/auth/login", json={"username": "frank", "password": "wrong-password"})
    unknown = client.post("/api/auth/login", json={"username": "nobody", "password": "wrong-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json


def _me(client, token, prefix="Bearer "):
    return client.get("/api/auth/me", headers={"Authorization": f"{prefix}{token}"})


def test_missing_token_is_401(client):
    response = client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.is_json


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "Bearer"])
def test_malformed_token_is_401(client, token):
    response = _me(client, token)
    assert response.status_code == 401
    assert response.is_json and response.json["message"]


def test_expired_token_is_401(app, client, auth: Auth):
    auth.register("gina")
    with app.app_context():
        token = create_access_token(identity="1", expires_delta=-__import__("datetime").timedelta(seconds=5))
    response = _me(client, token)
    assert response.status_code == 401
    assert "expired" in response.json["message"]


def test_forged_signature_and_alg_none_are_401(client, auth: Auth):
    auth.register("hank")
    now = int(time.time())
    claims = {
        "sub": "1",
        "type": "access",
        "jti": "x",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "fresh": False,
    }
    forged = pyjwt.encode(claims, "not-the-server-secret-but-long-enough-1234", algorithm="HS256")
    unsigned = pyjwt.encode(claims, None, algorithm="none")
    assert _me(client, forged).status_code == 401
    assert _me(client, unsigned).status_code == 401


def test_logout_revokes_the_presented_token(client, auth: Auth):
    auth.register("ivy")
    tokens = auth.login("ivy")
    access = tokens["access_token"]
    assert _me(client, access).status_code == 200
    out = client.post("/api/auth/logout", headers={"Authorization": f"Bearer {access}"})
    assert out.status_code == 200
    after = _me(client, access)
    assert after.status_code == 401
    assert after.is_json


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_refresh_gives_a_new_access_token_and_refresh_tokens_can_be_revoked(client, auth: Auth):
    auth.register("jack")
    tokens = auth.login("jack")
    new = client.post("/api/auth/refresh", headers=_bearer(tokens["refresh_token"]))
    assert new.status_code == 200
    assert set(new.json) == {"access_token", "refresh_token", "token_type"}
    assert _me(client, new.json["access_token"]).status_code == 200
    refresh = _bearer(new.json["refresh_token"])
    assert client.post("/api/auth/logout", headers=refresh).status_code == 200
    assert client.post("/api/auth/refresh", headers=refresh).status_code == 401
    # Logging out a refresh token ends its login: the access tokens of that login too.
    assert _me(client, new.json["access_token"]).status_code == 401


def test_a_refresh_token_works_once_and_its_reuse_revokes_the_whole_login(client, auth: Auth):
    auth.register("rita")
    first = auth.login("rita")
    other_login = auth.login("rita")  # another device: not affected
    second = client.post("/api/auth/refresh", headers=_bearer(first["refresh_token"])).json
    assert second["refresh_token"] != first["refresh_token"]
    third = client.post("/api/auth/refresh", headers=_bearer(second["refresh_token"])).json
    assert _me(client, third["access_token"]).status_code == 200

    # The first token, used again (stolen, say): refused, and the login's tokens with it.
    reused = client.post("/api/auth/refresh", headers=_bearer(first["refresh_token"]))
    assert reused.status_code == 401
    assert reused.json["error"] == "unauthorized" and "already used" in reused.json["message"]
    assert client.post("/api/auth/refresh", headers=_bearer(third["refresh_token"])).status_code == 401
    for token in (first["access_token"], second["access_token"], third["access_token"]):
        assert _me(client, token).status_code == 401
    # The user's other login goes on.
    assert _me(client, other_login["access_token"]).status_code == 200
    assert client.post("/api/auth/refresh", headers=_bearer(other_login["refresh_token"])).status_code == 200


def test_a_refresh_token_from_before_families_is_exchanged_once(app, client, auth: Auth):
    auth.register("olga")
    with app.app_context():
        legacy = create_refresh_token(identity="1")  # no family claim, as issued before them
    exchanged = client.post("/api/auth/refresh", headers=_bearer(legacy))
    assert exchanged.status_code == 200
    assert _me(client, exchanged.json["access_token"]).status_code == 200
    assert client.post("/api/auth/refresh", headers=_bearer(legacy)).status_code == 401
    assert (
        client.post("/api/auth/refresh", headers=_bearer(exchanged.json["refresh_token"])).status_code == 200
    )


def test_sign_out_everywhere_revokes_every_token_but_not_api_keys(client, auth: Auth):
    auth.register("sam")
    logins = [auth.login("sam") for _ in range(2)]
    key = client.post("/api/keys", headers=_bearer(logins[0]["access_token"]), json={"name": "ci"}).json[
        "key"
    ]
    out = client.post("/api/auth/logout-everywhere", headers=_bearer(logins[1]["access_token"]))
    assert out.status_code == 200 and out.json == {"message": "every token and session is revoked"}
    for tokens in logins:
        assert _me(client, tokens["access_token"]).status_code == 401
        assert client.post("/api/auth/refresh", headers=_bearer(tokens["refresh_token"])).status_code == 401
    assert client.get("/api/jobs", headers={"X-API-Key": key}).status_code == 200
    # A new login works at once.
    assert _me(client, auth.login("sam")["access_token"]).status_code == 200
    # It takes an access token only.
    assert client.post("/api/auth/logout-everywhere", headers={"X-API-Key": key}).status_code == 401
    assert client.post("/api/auth/logout-everywhere").status_code == 401


def test_changing_the_password_revokes_every_token(client, auth: Auth):
    auth.register("tess", "old-password")
    tokens, other = auth.login("tess", "old-password"), auth.login("tess", "old-password")
    headers = _bearer(tokens["access_token"])
    change = {"current_password": "old-password", "new_password": "new-password"}

    wrong = client.post(
        "/api/auth/password", headers=headers, json={**change, "current_password": "nope-nope"}
    )
    assert wrong.status_code == 403 and wrong.json["error"] == "forbidden"
    short = client.post("/api/auth/password", headers=headers, json={**change, "new_password": "short"})
    assert short.status_code == 400 and "new_password" in short.json["message"]
    assert client.post("/api/auth/password", headers=headers, json=["x"]).status_code == 400
    assert client.post("/api/auth/password", json=change).status_code == 401
    assert _me(client, tokens["access_token"]).status_code == 200  # refusals changed nothing

    done = client.post("/api/auth/password", headers=headers, json=change)
    assert done.status_code == 200, done.json
    for login in (tokens, other):
        assert _me(client, login["access_token"]).status_code == 401
        assert client.post("/api/auth/refresh", headers=_bearer(login["refresh_token"])).status_code == 401
    assert (
        client.post("/api/auth/login", json={"username": "tess", "password": "old-password"}).status_code
        == 401
    )
    assert _me(client, auth.login("tess", "new-password")["access_token"]).status_code == 200


def test_registration_can_be_closed(app, client, auth: Auth):
    reconfigure(app, REGISTRATION_OPEN=False)
    closed = client.post("/api/auth/register", json={"username": "uma", "password": "password123"})
    assert closed.status_code == 403
    assert closed.json["error"] == "forbidden" and "registration is closed" in closed.json["message"]
    reconfigure(app, REGISTRATION_OPEN=True)
    auth.register("uma")


def test_every_answer_carries_the_security_headers(client, auth: Auth):
    headers = auth.headers()
    answers = [
        client.get("/api/auth/me", headers=headers),  # the API
        client.get("/api/jobs/nope/video", headers=headers),  # media (an error here)
        client.get("/api/auth/me"),  # 401
        client.get("/nope"),  # 404 outside the API
        client.get("/api"),  # the JSON redirect
        client.get("/healthz"),
        client.get("/metrics"),
        client.get("/api/swagger.json"),
        client.get("/"),  # the web app, with its own policy as well
    ]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.request.path
        assert answer.headers["X-Frame-Options"] == "DENY", answer.request.path
        assert answer.headers["Referrer-Policy"] == "no-referrer", answer.request.path


def test_refresh_token_is_not_an_access_token(client, auth: Auth):
    auth.register("kate")
    tokens = auth.login("kate")
    assert _me(client, tokens["refresh_token"]).status_code == 401
    assert (
        client.post(
            "/api/auth/refresh", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        ).status_code
        == 401
    )


def test_token_of_a_deleted_user_is_401(app, client, auth: Auth):
    from detector.db import db
    from detector.models import User

    auth.register("liam")
    access = auth.login("liam")["access_token"]
    with app.app_context():
        db.session.delete(db.session.query(User).filter_by(username="liam").one())
        db.session.commit()
    assert _me(client, access).status_code == 401


def test_debug_is_off_and_errors_do_not_propagate(app):
    assert app.debug is False
    assert not app.config.get("PROPAGATE_EXCEPTIONS")


def test_login_is_rate_limited(tmp_path):
    from detector.app import create_app
    from detector.db.migrate import upgrade
    from tests.conftest import base_config

    config = base_config(tmp_path, RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3 per minute")
    (tmp_path / "data").mkdir()
    upgrade(config["DATABASE_URL"])
    client = create_app(config).test_client()
    codes = [
        client.post("/api/auth/login", json={"username": "x", "password": "wrong-password"}).status_code
        for _ in range(5)
    ]
    assert codes[:3] == [401, 401, 401]
    assert codes[3:] == [429, 429]

"""Accounts and JWT: every token problem is a 401 JSON answer, never a 500."""

import time

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token

from tests.conftest import Auth


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


def test_refresh_gives_a_new_access_token_and_refresh_tokens_can_be_revoked(client, auth: Auth):
    auth.register("jack")
    tokens = auth.login("jack")
    refresh = {"Authorization": f"Bearer {tokens['refresh_token']}"}
    new = client.post("/api/auth/refresh", headers=refresh)
    assert new.status_code == 200
    assert _me(client, new.json["access_token"]).status_code == 200
    assert client.post("/api/auth/logout", headers=refresh).status_code == 200
    assert client.post("/api/auth/refresh", headers=refresh).status_code == 401


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

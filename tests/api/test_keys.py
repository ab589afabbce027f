"""Personal API keys: create, use (X-API-Key and Bearer), list, revoke, expire, ownership."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

from detector.db import db
from detector.models import ApiKey
from tests.api.test_jobs import upload
from tests.conftest import Auth

KEY_RE = re.compile(r"dk_live_[A-Za-z0-9_-]{43}")


def create_key(client, headers, name="laptop", **extra):
    response = client.post("/api/keys", headers=headers, json={"name": name, **extra})
    assert response.status_code == 201, response.json
    return response.json


def test_create_shows_the_secret_once_and_stores_only_its_hash(app, client, auth: Auth):
    headers = auth.headers()
    created = create_key(client, headers, "ci")
    assert set(created) == {"id", "name", "key", "prefix", "created_at", "expires_at", "scopes"}
    assert created["scopes"] == []
    assert KEY_RE.fullmatch(created["key"])
    assert created["key"].startswith(created["prefix"]) and created["prefix"].startswith("dk_live_")
    assert created["name"] == "ci" and created["expires_at"] is None
    with app.app_context():
        [row] = db.session.query(ApiKey).all()
        assert row.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()
        stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
        assert created["key"] not in stored

    listed = client.get("/api/keys", headers=headers)
    assert listed.status_code == 200
    [key] = listed.json["keys"]
    assert "key" not in key and created["key"] not in listed.text
    assert key == {k: v for k, v in created.items() if k != "key"}


def test_key_works_as_x_api_key_and_as_bearer_on_jobs_and_keys(client, auth: Auth, small_video):
    secret = create_key(client, auth.headers())["key"]
    for headers in ({"X-API-Key": secret}, {"Authorization": f"Bearer {secret}"}):
        response = upload(client, headers, small_video)
        assert response.status_code == 202, response.json
        job_id = response.json["id"]
        assert client.get(f"/api/jobs/{job_id}", headers=headers).status_code == 200
        assert client.get("/api/jobs", headers=headers).json["total"] >= 1
        assert client.get("/api/keys", headers=headers).status_code == 200


def test_no_credentials_or_a_bad_key_is_401_in_the_error_model(client, auth: Auth):
    assert client.get("/api/keys").status_code == 401
    for headers in (
        {"X-API-Key": "dk_live_" + "A" * 43},
        {"X-API-Key": "nonsense"},
        {"Authorization": "Bearer dk_live_" + "B" * 43},
    ):
        response = client.get("/api/jobs", headers=headers)
        assert response.status_code == 401, headers
        assert set(response.json) == {"error", "message"}
        assert response.json["error"] == "unauthorized"


def test_revoked_key_is_refused(client, auth: Auth):
    headers = auth.headers()
    created = create_key(client, headers)
    key_headers = {"X-API-Key": created["key"]}
    assert client.get("/api/jobs", headers=key_headers).status_code == 200
    assert client.delete(f"/api/keys/{created['id']}", headers=headers).status_code == 204
    for h in (key_headers, {"Authorization": f"Bearer {created['key']}"}):
        response = client.get("/api/jobs", headers=h)
        assert response.status_code == 401
        assert response.json == {"error": "unauthorized", "message": "unknown or revoked API key"}
    assert client.get("/api/keys", headers=headers).json["keys"] == []
    assert client.delete(f"/api/keys/{created['id']}", headers=headers).status_code == 404


def test_expired_key_is_refused(app, client, auth: Auth):
    headers = auth.headers()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = create_key(client, headers, expires_at=soon)
    assert datetime.fromisoformat(created["expires_at"]) == datetime.fromisoformat(soon)
    key_headers = {"X-API-Key": created["key"]}
    assert client.get("/api/jobs", headers=key_headers).status_code == 200
    with app.app_context():
        row = db.session.get(ApiKey, created["id"])
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        db.session.commit()
    response = client.get("/api/jobs", headers=key_headers)
    assert response.status_code == 401
    assert response.json == {"error": "unauthorized", "message": "API key has expired"}


def test_bad_create_requests(client, auth: Auth):
    headers = auth.headers()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for body in (
        {},
        {"name": ""},
        {"name": 3},
        {"name": "x" * 101},
        {"name": "a", "expires_at": past},
        {"name": "a", "expires_at": "tomorrow"},
        {"name": "a", "expires_at": "2030-01-01T00:00:00"},
    ):
        response = client.post("/api/keys", headers=headers, json=body)
        assert response.status_code == 400, body
        assert response.json["error"] == "invalid_input"


def test_keys_belong_to_their_user(client, auth: Auth, small_video):
    alice, bob = auth.headers("alice"), auth.headers("bob")
    alice_key = create_key(client, alice)
    bob_key = create_key(client, bob)
    # Bob cannot see or delete Alice's key, with his token or his key.
    for headers in (bob, {"X-API-Key": bob_key["key"]}):
        assert [k["id"] for k in client.get("/api/keys", headers=headers).json["keys"]] == [bob_key["id"]]
        response = client.delete(f"/api/keys/{alice_key['id']}", headers=headers)
        assert response.status_code == 404 and response.json["error"] == "not_found"
    assert client.get("/api/jobs", headers={"X-API-Key": alice_key["key"]}).status_code == 200

    # A key sees only its user's jobs.
    job_id = upload(client, alice, small_video).json["id"]
    alice_by_key = {"X-API-Key": alice_key["key"]}
    bob_by_key = {"X-API-Key": bob_key["key"]}
    assert [j["id"] for j in client.get("/api/jobs", headers=alice_by_key).json["jobs"]] == [job_id]
    assert client.get("/api/jobs", headers=bob_by_key).json["jobs"] == []
    assert client.get(f"/api/jobs/{job_id}", headers=bob_by_key).status_code == 404
    assert client.delete(f"/api/jobs/{job_id}", headers=bob_by_key).status_code == 404
    assert client.get(f"/api/jobs/{job_id}", headers=alice_by_key).status_code == 200


def test_jwt_access_tokens_still_work_and_refresh_tokens_do_not(client, auth: Auth):
    auth.register()
    tokens = auth.login()
    assert (
        client.get("/api/keys", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code
        == 200
    )
    refresh = client.get("/api/keys", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert refresh.status_code == 401


def test_a_key_without_the_keys_scope_cannot_make_keys_or_rotate_the_webhook_secret(client, auth: Auth):
    secret = create_key(client, auth.headers())["key"]
    for headers in ({"X-API-Key": secret}, {"Authorization": f"Bearer {secret}"}):
        refused = client.post("/api/keys", headers=headers, json={"name": "successor"})
        assert refused.status_code == 403
        assert refused.json["error"] == "forbidden" and "'keys'" in refused.json["message"]
        rotate = client.post("/api/auth/webhook-secret", headers=headers)
        assert rotate.status_code == 403 and "'webhook_secret'" in rotate.json["message"]
    # It made nothing; it can still list and revoke keys, and work with jobs.
    listed = client.get("/api/keys", headers={"X-API-Key": secret})
    assert [k["name"] for k in listed.json["keys"]] == ["laptop"]


def test_a_key_made_with_a_scope_can_do_that_and_grant_no_more(client, auth: Auth):
    session = auth.headers()
    keys_only = create_key(client, session, "admin", scopes=["keys"])
    assert keys_only["scopes"] == ["keys"]
    by_key = {"X-API-Key": keys_only["key"]}
    made = create_key(client, by_key, "made by a key", scopes=["keys"])
    assert made["scopes"] == ["keys"]
    # Not a scope it lacks itself, and not the webhook secret.
    wider = client.post("/api/keys", headers=by_key, json={"name": "wider", "scopes": ["webhook_secret"]})
    assert wider.status_code == 403 and "'webhook_secret'" in wider.json["message"]
    assert client.post("/api/auth/webhook-secret", headers=by_key).status_code == 403

    rotator = create_key(client, session, "rotator", scopes=["webhook_secret"])
    rotated = client.post("/api/auth/webhook-secret", headers={"X-API-Key": rotator["key"]})
    assert rotated.status_code == 201 and rotated.json["secret"].startswith("whsec_")
    listed = {k["name"]: k["scopes"] for k in client.get("/api/keys", headers=session).json["keys"]}
    assert listed == {"admin": ["keys"], "made by a key": ["keys"], "rotator": ["webhook_secret"]}


def test_unknown_or_malformed_scopes_are_400(client, auth: Auth):
    headers = auth.headers()
    for scopes in (["admin"], "keys", [1], {"keys": True}):
        response = client.post("/api/keys", headers=headers, json={"name": "x", "scopes": scopes})
        assert response.status_code == 400, scopes
        assert response.json["error"] == "invalid_input"
    assert client.get("/api/keys", headers=headers).json["keys"] == []


def test_access_tokens_can_do_everything_keys_need_scopes_for(client, auth: Auth):
    headers = auth.headers()
    assert client.post("/api/keys", headers=headers, json={"name": "x"}).status_code == 201
    assert client.post("/api/auth/webhook-secret", headers=headers).status_code == 201

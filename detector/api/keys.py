"""/api/keys: personal API keys (create, list, revoke).

A key works like an access token on every jobs and keys endpoint, as
``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. Its secret is shown
once, when it is created; the service keeps only its SHA-256.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request
from flask_restx import Namespace, Resource, fields

from detector.api.authn import SECURITY, authenticated, current_user
from detector.api.errors import error_model
from detector.api.fields import NullableDateTime
from detector.services import apikeys
from detector.services.errors import InvalidInput

ns = Namespace(
    "keys",
    description="Personal API keys. Every endpoint needs a Bearer access token or an API key; "
    "another user's key answers 404 like a key that does not exist.",
    decorators=[authenticated()],
)

KEY_ID = "7d1f0c2b9e8a4f3d8c6b5a4e3d2c1b0a"
SECRET_EXAMPLE = "dk_live_" + "Vq3k9XrT0bJmW2sYc5nLhA8uDfG1eZoPiK7tRyQwE4M"


key_request = ns.model(
    "ApiKeyRequest",
    {
        "name": fields.String(
            required=True,
            min_length=1,
            max_length=apikeys.MAX_NAME,
            description="What the key is for, to tell your keys apart",
            example="laptop CLI",
        ),
        "expires_at": NullableDateTime(
            required=False,
            description="When the key stops working (ISO 8601 with a time zone); "
            "absent or null: it works until revoked",
            example="2027-06-01T00:00:00+00:00",
        ),
    },
)
_KEY_FIELDS = {
    "id": fields.String(required=True, description="The key's id, to revoke it", example=KEY_ID),
    "name": fields.String(required=True, description="The name given at creation", example="laptop CLI"),
    "prefix": fields.String(
        required=True,
        description="The key's first characters (the secret is not kept)",
        example=SECRET_EXAMPLE[:16],
    ),
    "created_at": fields.DateTime(
        required=True,
        description="When the key was created (ISO 8601, UTC)",
        example="2026-12-02T08:00:00.000000+00:00",
    ),
    "expires_at": NullableDateTime(
        required=True,
        description="When the key stops working; null: until revoked",
        example="2027-06-01T00:00:00+00:00",
    ),
}
key_model = ns.model("ApiKey", _KEY_FIELDS)
new_key_model = ns.model(
    "NewApiKey",
    {
        **_KEY_FIELDS,
        "key": fields.String(
            required=True,
            description="The secret, shown only in this answer: send it as `X-API-Key: <key>` "
            "or `Authorization: Bearer <key>`. It matches dk_live_[A-Za-z0-9_-]{43}.",
            example=SECRET_EXAMPLE,
        ),
    },
)
key_list_model = ns.model(
    "ApiKeyList",
    {"keys": fields.List(fields.Nested(key_model), required=True, description="Your keys, newest first")},
)
ns.add_model(error_model.name, error_model)
UNAUTHORIZED = "Missing, malformed, expired or revoked access token or API key"


def key_dict(key: Any) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


def _expires_at(raw: Any) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise InvalidInput("expires_at must be an ISO 8601 date and time with a time zone, or null")
    return value


@ns.route("")
@ns.response(401, UNAUTHORIZED, error_model)
class KeyList(Resource):
    @ns.doc(id="list_api_keys", security=SECURITY)
    @ns.response(200, "Your keys, without their secrets", key_list_model)
    def get(self) -> dict[str, Any]:
        """List your API keys (never their secrets)."""
        return {"keys": [key_dict(k) for k in apikeys.list_keys(current_user.id)]}

    @ns.doc(id="create_api_key", security=SECURITY)
    @ns.expect((key_request, "The key's name and optional expiry, as JSON"))
    @ns.response(201, "Created; the secret is in `key`, shown this once", new_key_model)
    @ns.response(400, "A missing or bad name or expires_at", error_model)
    def post(self) -> tuple[dict[str, Any], int]:
        """Create an API key; its secret is in the answer and nowhere else."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise InvalidInput("send a JSON object with a name (and optionally expires_at)")
        key, secret = apikeys.create_key(current_user.id, body["name"], _expires_at(body.get("expires_at")))
        return {**key_dict(key), "key": secret}, 201


@ns.route("/<string:key_id>")
@ns.param("key_id", "The key's id, as create_api_key or list_api_keys answered it")
@ns.response(401, UNAUTHORIZED, error_model)
@ns.response(404, "No such key (or not yours)", error_model)
class KeyResource(Resource):
    @ns.doc(id="revoke_api_key", security=SECURITY)
    @ns.response(204, "Revoked: the key gets 401 from now on")
    def delete(self, key_id: str) -> tuple[str, int]:
        """Revoke an API key."""
        apikeys.revoke_key(current_user.id, key_id)
        return "", 204

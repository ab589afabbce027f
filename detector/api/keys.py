"""/api/keys: personal API keys (create, list, revoke).

A key works like an access token on every jobs and keys endpoint, as
``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. Its secret is shown
once, when it is created; the service keeps only its SHA-256. Creating a key
with a key needs the ``keys`` scope (detector.auth.apikeys.SCOPES).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import request
from flask_restx import Namespace, Resource, fields

from detector.api.authn import SECURITY, authenticated, current_user, require_scopes
from detector.api.errors import error_model
from detector.api.fields import NullableDateTime
from detector.auth.apikeys import SCOPES
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
# The expiry in the document's examples: a fixed date far enough ahead that the
# example stays one the API accepts (an expiry must be in the future).
FAR_FUTURE = "2099-01-01T00:00:00+00:00"


key_request = ns.model(
    "ApiKeyRequest",
    {
        "name": fields.String(
            required=True,
            min_length=1,
            max_length=apikeys.MAX_NAME,
            pattern=apikeys.NAME_PATTERN.pattern,
            description=f"What the key is for, to tell your keys apart: 1 to {apikeys.MAX_NAME} characters, "
            "not all white space, no NUL (kept without its outer white space)",
            example="laptop CLI",
        ),
        "expires_at": NullableDateTime(
            required=False,
            description="When the key stops working: a time in the future, before the year 10000 "
            "in UTC (RFC 3339, with a time zone); a time already past is a 400. "
            "Absent or null: it works until revoked",
            example=FAR_FUTURE,
        ),
        "scopes": fields.List(
            fields.String(enum=sorted(SCOPES)),
            required=False,
            description="What the key may do beyond jobs and keys: "
            + "; ".join(f"`{name}`: {what}" for name, what in SCOPES.items())
            + ". Absent: none. A key may only make keys with scopes it has itself.",
            example=["keys"],
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
        example=FAR_FUTURE,
    ),
    "scopes": fields.List(
        fields.String(enum=sorted(SCOPES)),
        required=True,
        description="The scopes the key was made with (empty: none)",
        example=["keys"],
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
        "scopes": key.scopes.split(),
    }


# An RFC 3339 date and time (JSON Schema's date-time, which the document declares).
RFC_3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _expires_at(raw: Any) -> datetime | None:
    """The expiry sent, in UTC; None for none.

    Raises:
        InvalidInput: not an RFC 3339 date and time, or one past the year 9999 in UTC.
    """
    if raw is None:
        return None
    try:
        value = (
            datetime.fromisoformat(raw.upper()) if isinstance(raw, str) and RFC_3339.fullmatch(raw) else None
        )
    except ValueError:
        value = None
    if value is None:
        raise InvalidInput(
            f"expires_at must be an RFC 3339 date and time with a time zone (such as {FAR_FUTURE}), or null"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("expires_at must be in the future and before the year 10000 (UTC)") from None


def _scopes(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(scope, str) for scope in raw):
        raise InvalidInput("scopes must be a list of scope names")
    unknown = sorted(set(raw) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    return list(raw)


@ns.route("")
@ns.response(401, UNAUTHORIZED, error_model)
class KeyList(Resource):
    @ns.doc(id="list_api_keys", security=SECURITY)
    @ns.response(200, "Your keys, without their secrets", key_list_model)
    def get(self) -> dict[str, Any]:
        """List your API keys (never their secrets)."""
        return {"keys": [key_dict(k) for k in apikeys.list_keys(current_user.id)]}

    @ns.doc(id="create_api_key", security=SECURITY)
    @ns.expect((key_request, "The key's name, and optional expiry and scopes, as JSON"))
    @ns.response(201, "Created; the secret is in `key`, shown this once", new_key_model)
    @ns.response(400, "A missing or bad name, expires_at or scopes", error_model)
    @ns.response(
        403, "Sent with an API key that lacks the `keys` scope, or one of the scopes asked for", error_model
    )
    def post(self) -> tuple[dict[str, Any], int]:
        """Create an API key; its secret is in the answer and nowhere else."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise InvalidInput("send a JSON object with a name (and optionally expires_at)")
        scopes = _scopes(body.get("scopes"))
        require_scopes("keys", *scopes)
        key, secret = apikeys.create_key(
            current_user.id, body["name"], _expires_at(body.get("expires_at")), scopes
        )
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

"""Authentication for the resource endpoints: a JWT access token or a personal API key.

`authenticated()` is the one decorator of the jobs and keys namespaces. It accepts

- ``X-API-Key: dk_live_…`` (an API key, see detector.auth.apikeys),
- ``Authorization: Bearer dk_live_…`` (the same key as a Bearer token), or
- ``Authorization: Bearer <JWT access token>`` (from /api/auth/login),

and keeps the caller for the request: `current_user` is it (``current_user.id``,
``.username``, ``.created_at``) whichever credential was used. A revoked,
expired or unknown key is a 401 in the error model, as a bad token is.

A JWT access token may do everything; an API key only what its scopes allow
(`require_scopes`, a 403 otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, request
from flask_jwt_extended import current_user as jwt_current_user
from flask_jwt_extended import verify_jwt_in_request
from werkzeug.exceptions import Unauthorized
from werkzeug.local import LocalProxy

from detector.auth.apikeys import KeyOwner, KeyRefused, looks_like_key, owner_of
from detector.config import current_settings
from detector.services import media
from detector.services.errors import Forbidden

API_KEY_HEADER = "X-API-Key"
# The security requirements of an endpoint that `authenticated()` guards, for @ns.doc.
SECURITY = ["Bearer", "ApiKey"]

_View = TypeVar("_View", bound=Callable[..., Any])


def presented_key() -> str | None:
    """The API key the request presents, if it presents one (not a JWT)."""
    key = request.headers.get(API_KEY_HEADER)
    if key is not None:
        return key.strip()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and looks_like_key(value):
        return value
    return None


def authenticate() -> Any:
    """The caller of this request, from its API key or JWT access token.

    Raises:
        Unauthorized: a refused API key (a 401 in the error model).
        JWTExtendedException, PyJWTError: no credential, or an unusable token
            (the API's error handlers make them 401s).
    """
    key = presented_key()
    if key is not None:
        try:
            return owner_of(key)
        except KeyRefused as exc:
            raise Unauthorized(str(exc)) from None
    verify_jwt_in_request()
    return jwt_current_user._get_current_object()


def media_viewer(job_id: str) -> int:
    """The id of the user a request for the job's media (its videos, its tracks'
    thumbnails) is for: its ``media_token`` query parameter's (a ``<video>`` or
    ``<img>`` cannot send headers), else its credential's, kept as `current_user`.

    Raises:
        MediaTokenRefused: a bad or expired media token, or one for another job (a 401).
        Unauthorized, JWTExtendedException, PyJWTError: as `authenticate`.
    """
    token = request.args.get("media_token")
    if token is not None:
        return media.media_token_user(
            current_app.config["SECRET_KEY"], token, job_id, current_settings().media_url_seconds
        )
    g.caller = authenticate()
    return int(g.caller.id)


def authenticated() -> Callable[[_View], _View]:
    """A view decorator: the request must carry a JWT access token or an API key."""

    def decorator(view: _View) -> _View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.caller = authenticate()
            return view(*args, **kwargs)

        return cast(_View, wrapper)

    return decorator


def require_scopes(*scopes: str) -> None:
    """Refuse this request unless its credential may use ``scopes``: a JWT may use all;
    an API key the scopes it was made with.

    Raises:
        Forbidden: an API key without one of them (a 403 in the error model).
    """
    caller = _caller()
    if isinstance(caller, KeyOwner):
        missing = [scope for scope in scopes if scope not in caller.scopes]
        if missing:
            raise Forbidden(
                f"this API key was not made with the scope {missing[0]!r}; use an access token, "
                f"or a key made with it"
            )


def _caller() -> Any:
    caller = g.get("caller")
    if caller is None:
        raise RuntimeError("current_user outside an authenticated() view")
    return caller


# The authenticated caller (an API key's owner or a token's user): `.id`, `.username`.
current_user: Any = LocalProxy(_caller)

"""/api/auth: register, log in, refresh, log out, who am I; and the web app's cookie session.

Scripts log in with /login and send the tokens as Bearer headers. The web app
at ``/`` (detector.web) uses /session instead, so that an injected script
cannot read a long-lived credential:

- the access token is answered in the JSON body and kept only in the page's
  memory (it lasts JWT_ACCESS_MINUTES);
- the refresh token is set as an HttpOnly, SameSite=Strict cookie whose path is
  /api/auth/session, so the browser sends it to the session endpoints only and
  no script can read it;
- a second cookie, ``csrf_refresh_token``, readable by the page (path /), holds
  a random value that is also a claim of the refresh token. The session
  endpoints that use the cookie want that value back in the ``X-CSRF-TOKEN``
  header (double submit): another site can make the browser send the cookie,
  but cannot read the value to put in the header.

Only the session endpoints read a cookie (``locations=["cookies"]``); every
other endpoint takes its token from the Authorization header alone
(JWT_TOKEN_LOCATION is ``["headers"]``), so a cookie never stands in for a
Bearer token.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from hmac import compare_digest
from typing import Any

from flask import Response, jsonify, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    current_user,
    get_jwt,
    jwt_required,
)
from flask_jwt_extended.config import config as jwt_config
from flask_jwt_extended.exceptions import CSRFError
from flask_restx import Namespace, Resource, fields

from detector.api.errors import error_body, error_model
from detector.api.extensions import limiter
from detector.api.fields import NullableInteger
from detector.auth.tokens import revoke_token
from detector.config import current_settings
from detector.services import quota, users
from detector.services.errors import InvalidInput

ns = Namespace("auth", description="Accounts and JWT tokens")

credentials = ns.model(
    "Credentials",
    {
        "username": fields.String(
            required=True,
            min_length=3,
            max_length=64,
            pattern=r"^[A-Za-z0-9_.-]{3,64}$",
            description="3 to 64 letters, digits, '.', '_' or '-'",
            example="alice",
        ),
        "password": fields.String(
            required=True,
            min_length=8,
            max_length=1024,
            description="8 to 1024 characters",
            example="correct horse battery",
        ),
    },
)
storage_model = ns.model(
    "StorageUse",
    {
        "used_bytes": fields.Integer(
            required=True,
            min=0,
            description="Bytes of stored video: your uploads and annotated videos not deleted yet",
            example=503540531,
        ),
        "quota_bytes": NullableInteger(
            required=True,
            min=0,
            description="Your storage quota in bytes (STORAGE_QUOTA_MB); null: unlimited. A video "
            "that would take used_bytes past it is refused with 413 quota_exceeded.",
            example=524288000,
        ),
    },
)
user_model = ns.model(
    "User",
    {
        "id": fields.Integer(required=True, description="The user's id", example=1),
        "username": fields.String(required=True, description="The user's name", example="alice"),
        "created_at": fields.DateTime(
            required=True,
            description="When the account was created (ISO 8601, UTC)",
            example="2026-11-22T18:20:01.125000+00:00",
        ),
        "storage": fields.Nested(
            storage_model, required=True, description="The video storage you use, and your quota"
        ),
    },
)
ACCESS_TOKEN = fields.String(
    required=True,
    description="Send as `Authorization: Bearer <access_token>`",
    example="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwidHlwZSI6ImFjY2VzcyJ9.c2lnbmF0dXJl",
)
TOKEN_TYPE = fields.String(
    required=True, enum=["Bearer"], description="How to send the tokens: always Bearer", example="Bearer"
)
tokens_model = ns.model(
    "Tokens",
    {
        "access_token": ACCESS_TOKEN,
        "refresh_token": fields.String(
            required=True,
            description="Send as the Bearer token to /auth/refresh for a new access token",
            example="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwidHlwZSI6InJlZnJlc2gifQ.c2lnbmF0dXJl",
        ),
        "token_type": TOKEN_TYPE,
    },
)
access_model = ns.model("AccessToken", {"access_token": ACCESS_TOKEN, "token_type": TOKEN_TYPE})
revoked_model = ns.model(
    "Revoked",
    {"message": fields.String(required=True, description="What happened", example="token revoked")},
)
ns.add_model(error_model.name, error_model)
UNAUTHORIZED = "Missing, malformed, expired or revoked token"


def _credentials() -> tuple[str, str]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object with username and password")
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidInput("username and password are required strings")
    return username, password


def user_dict(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "created_at": user.created_at.isoformat(),
        "storage": quota.storage_use(user.id).as_dict(),
    }


@ns.route("/register")
class Register(Resource):
    @ns.doc(id="register")
    @ns.expect((credentials, "The username and password, as JSON"))
    @ns.response(201, "Created", user_model)
    @ns.response(400, "Bad username or password", error_model)
    @ns.response(409, "Username taken", error_model)
    def post(self) -> tuple[dict[str, Any], int]:
        """Create an account."""
        return user_dict(users.register(*_credentials())), 201


RETRY_AFTER = {"Retry-After": {"type": "integer", "description": "Seconds to wait before trying again"}}


def _login_limit() -> str:
    return current_settings().login_rate_limit


# /login and /session count against one limit: trying passwords on both gains nothing.
login_limit = limiter.shared_limit(_login_limit, scope="login", methods=["POST"])


@ns.route("/login")
class Login(Resource):
    decorators = [login_limit]

    @ns.doc(id="login")
    @ns.expect((credentials, "The username and password, as JSON"))
    @ns.response(200, "Logged in", tokens_model)
    @ns.response(400, "Not a JSON object with a username and a password", error_model)
    @ns.response(401, "Wrong username or password", error_model)
    @ns.response(429, "Too many login attempts; wait Retry-After seconds", error_model, headers=RETRY_AFTER)
    def post(self) -> tuple[dict[str, Any], int]:
        """Exchange a username and password for an access and a refresh token."""
        user = users.authenticate(*_credentials())
        if user is None:
            return error_body("unauthorized", "wrong username or password"), 401
        return {
            "access_token": create_access_token(identity=user),
            "refresh_token": create_refresh_token(identity=user),
            "token_type": "Bearer",
        }, 200


@ns.route("/refresh")
class Refresh(Resource):
    @ns.doc(id="refresh", security="Bearer", description="Send the refresh token as the Bearer token.")
    @ns.response(200, "A new access token", access_model)
    @ns.response(401, "Missing, invalid, expired or revoked refresh token", error_model)
    @jwt_required(refresh=True)
    def post(self) -> dict[str, Any]:
        """Get a new access token with a refresh token."""
        return {"access_token": create_access_token(identity=current_user), "token_type": "Bearer"}


@ns.route("/logout")
class Logout(Resource):
    @ns.doc(id="logout", security="Bearer")
    @ns.response(200, "The presented token is revoked", revoked_model)
    @ns.response(401, UNAUTHORIZED, error_model)
    @jwt_required(verify_type=False)
    def post(self) -> dict[str, str]:
        """Revoke the presented token (access or refresh); it gets 401 from now on."""
        revoke_token(get_jwt())
        return {"message": "token revoked"}


@ns.route("/me")
class Me(Resource):
    @ns.doc(id="get_current_user", security="Bearer")
    @ns.response(200, "The logged-in user, with their video storage use and quota", user_model)
    @ns.response(401, UNAUTHORIZED, error_model)
    @jwt_required()
    def get(self) -> dict[str, Any]:
        """Who the access token belongs to, and how much video storage they use of their quota."""
        return user_dict(current_user)


# --- The web app's session: access token in the body, refresh token in a cookie ---------

SESSION_PATH = "/api/auth/session"
# The page reads the CSRF cookie with document.cookie, so its path covers the page (/).
CSRF_COOKIE_PATH = "/"
CSRF_CLAIM = "csrf"
CSRF_HEADER_DOC = {
    "X-CSRF-TOKEN": {
        "in": "header",
        "type": "string",
        "required": True,
        "description": "The value of the csrf_refresh_token cookie (double-submit CSRF protection)",
    }
}
COOKIE_DOC = (
    "Sends the refresh_token_cookie that POST /auth/session set (the browser does that by "
    "itself) and needs the X-CSRF-TOKEN header: the value of the csrf_refresh_token cookie."
)
SET_COOKIE = {
    "Set-Cookie": {
        "type": "string",
        "description": "refresh_token_cookie (HttpOnly, SameSite=Strict, Path=/api/auth/session) "
        "and csrf_refresh_token (SameSite=Strict, Path=/, readable by the page)",
    }
}
session_access_model = ns.model(
    "SessionAccessToken",
    {
        "access_token": ACCESS_TOKEN,
        "token_type": TOKEN_TYPE,
        "expires_in": fields.Integer(
            required=True,
            min=1,
            description="Seconds the access token is valid; get a new one from /auth/session/refresh",
            example=3600,
        ),
    },
)


def _seconds(value: timedelta | bool) -> int:
    """A flask-jwt-extended lifetime (a timedelta, or False for none) in seconds."""
    return int(value.total_seconds()) if isinstance(value, timedelta) else 0


def _access_answer(user: Any) -> dict[str, Any]:
    return {
        "access_token": create_access_token(identity=user),
        "token_type": "Bearer",
        "expires_in": _seconds(jwt_config.access_expires),
    }


def _set_session_cookies(response: Response, refresh_token: str, csrf: str) -> None:
    secure = current_settings().session_cookie_secure
    max_age = _seconds(jwt_config.refresh_expires) or None
    response.set_cookie(
        jwt_config.refresh_cookie_name,
        refresh_token,
        max_age=max_age,
        path=SESSION_PATH,
        secure=secure,
        httponly=True,
        samesite="Strict",
    )
    response.set_cookie(
        jwt_config.refresh_csrf_cookie_name,
        csrf,
        max_age=max_age,
        path=CSRF_COOKIE_PATH,
        secure=secure,
        httponly=False,
        samesite="Strict",
    )


def _clear_session_cookies(response: Response) -> None:
    secure = current_settings().session_cookie_secure
    for name, path, httponly in (
        (jwt_config.refresh_cookie_name, SESSION_PATH, True),
        (jwt_config.refresh_csrf_cookie_name, CSRF_COOKIE_PATH, False),
    ):
        response.delete_cookie(name, path=path, secure=secure, httponly=httponly, samesite="Strict")


def _check_csrf() -> None:
    """The X-CSRF-TOKEN header must equal the csrf claim of the cookie's refresh token.

    Raises:
        CSRFError: no header, or another value (the API answers 401 ``unauthorized``).
    """
    sent = request.headers.get(jwt_config.refresh_csrf_header_name, "")
    if not sent:
        raise CSRFError(
            f"missing CSRF token: send the csrf_refresh_token cookie's value as {jwt_config.refresh_csrf_header_name}"
        )
    expected = get_jwt().get(CSRF_CLAIM)
    if not isinstance(expected, str) or not compare_digest(expected.encode(), sent.encode()):
        raise CSRFError("the CSRF token does not match the session cookie")


def _session_cookie(refresh: bool = True, skip_revocation_check: bool = False) -> Any:
    """The refresh token from the session cookie only: never from a header."""
    return jwt_required(refresh=refresh, locations=["cookies"], skip_revocation_check=skip_revocation_check)


@ns.route("/session")
class Session(Resource):
    decorators = [login_limit]

    @ns.doc(
        id="create_session",
        description="For the web app: like /auth/login, but the refresh token is set as an "
        "HttpOnly cookie (with a CSRF cookie) instead of being answered. Shares the login rate limit.",
    )
    @ns.expect((credentials, "The username and password, as JSON"))
    @ns.response(
        200, "Signed in; the refresh and CSRF cookies are set", session_access_model, headers=SET_COOKIE
    )
    @ns.response(400, "Not a JSON object with a username and a password", error_model)
    @ns.response(401, "Wrong username or password", error_model)
    @ns.response(429, "Too many login attempts; wait Retry-After seconds", error_model, headers=RETRY_AFTER)
    def post(self) -> Response | tuple[dict[str, Any], int]:
        """Sign in the web app: an access token in the body, the refresh token in a cookie."""
        user = users.authenticate(*_credentials())
        if user is None:
            return error_body("unauthorized", "wrong username or password"), 401
        csrf = secrets.token_urlsafe(32)
        refresh_token = create_refresh_token(identity=user, additional_claims={CSRF_CLAIM: csrf})
        response = jsonify(_access_answer(user))
        _set_session_cookies(response, refresh_token, csrf)
        return response

    @ns.doc(id="delete_session", description=COOKIE_DOC, params=CSRF_HEADER_DOC)
    @ns.response(200, "Signed out: the refresh token is revoked and the cookies cleared", revoked_model)
    @ns.response(401, "No session cookie, a bad or missing X-CSRF-TOKEN, or an expired session", error_model)
    @_session_cookie(skip_revocation_check=True)
    def delete(self) -> Response:
        """Sign out of the web app: revoke the session's refresh token and clear its cookies."""
        _check_csrf()
        revoke_token(get_jwt())
        response = jsonify({"message": "session ended"})
        _clear_session_cookies(response)
        return response


@ns.route("/session/refresh")
class SessionRefresh(Resource):
    @ns.doc(id="refresh_session", description=COOKIE_DOC, params=CSRF_HEADER_DOC)
    @ns.response(200, "A new access token", session_access_model)
    @ns.response(
        401, "No session cookie, a bad or missing X-CSRF-TOKEN, or a revoked or expired session", error_model
    )
    @_session_cookie()
    def post(self) -> dict[str, Any]:
        """Get a new access token for the web app with its session cookie."""
        _check_csrf()
        return _access_answer(current_user)

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

Refresh tokens rotate: each refresh answers a new refresh token (for the web app, a
new cookie) and the one presented stops working; presenting a used one again revokes
every token of its login (detector.auth.tokens). ``POST /password`` and
``POST /logout-everywhere`` revoke every token and session of the user.

Login is limited per client address (LOGIN_RATE_LIMIT, all attempts) and per
account (LOGIN_ACCOUNT_RATE_LIMIT, failed attempts, from any address);
registration per address (REGISTER_RATE_LIMIT), and it can be closed
(REGISTRATION_OPEN).

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
from flask_jwt_extended import current_user, get_jwt, jwt_required
from flask_jwt_extended.config import config as jwt_config
from flask_jwt_extended.exceptions import CSRFError
from flask_restx import Namespace, Resource, fields

from detector.api.errors import error_body, error_model
from detector.api.extensions import limiter
from detector.api.fields import NullableInteger
from detector.auth.tokens import RefreshTokenReused, access_token, revoke_token, rotate, start_family
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
            description="Send as the Bearer token to /auth/refresh for new tokens; it works once "
            "(the answer has the next one), and sending it again revokes this login's tokens",
            example="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwidHlwZSI6InJlZnJlc2gifQ.c2lnbmF0dXJl",
        ),
        "token_type": TOKEN_TYPE,
    },
)
password_change = ns.model(
    "PasswordChange",
    {
        "current_password": fields.String(
            required=True,
            min_length=1,
            max_length=1024,
            description="The password now",
            example="correct horse battery",
        ),
        "new_password": fields.String(
            required=True,
            min_length=8,
            max_length=1024,
            description="The new password: 8 to 1024 characters",
            example="staple battery horse correct",
        ),
    },
)
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


RETRY_AFTER = {"Retry-After": {"type": "integer", "description": "Seconds to wait before trying again"}}


def _login_limit() -> str:
    return current_settings().login_rate_limit


def _account_limit() -> str:
    return current_settings().login_account_rate_limit


def _register_limit() -> str:
    return current_settings().register_rate_limit


def _account(username: object) -> str:
    """The per-account limit's key; names that no account can have share one."""
    valid = isinstance(username, str) and users.USERNAME.fullmatch(username)
    return f"account:{username}" if valid else "account:?"


def _named_account() -> str:
    """The account a login names in its body."""
    body = request.get_json(silent=True)
    return _account(body.get("username") if isinstance(body, dict) else None)


def _signed_in_account() -> str:
    """The account of the request's (verified) access token."""
    return _account(current_user.username)


def _refused(response: Response) -> bool:
    """A wrong password: 401 from a login, 403 from a password change."""
    return response.status_code in (401, 403)


# /login, /session and /password count against one limit per client address: trying
# passwords on all of them gains nothing.
login_limit = limiter.shared_limit(_login_limit, scope="login", methods=["POST"])
# And the wrong passwords tried on one account count against it, from any address
# (so many addresses behind a botnet gain nothing either).
account_limit = limiter.shared_limit(
    _account_limit, scope="login-account", key_func=_named_account, deduct_when=_refused, methods=["POST"]
)
signed_in_account_limit = limiter.shared_limit(
    _account_limit, scope="login-account", key_func=_signed_in_account, deduct_when=_refused, methods=["POST"]
)
register_limit = limiter.limit(_register_limit, methods=["POST"])
TOO_MANY_LOGINS = (
    "Too many login attempts from this address, or failed ones for this account; wait Retry-After seconds"
)


@ns.route("/register")
class Register(Resource):
    decorators = [register_limit]

    @ns.doc(id="register")
    @ns.expect((credentials, "The username and password, as JSON"))
    @ns.response(201, "Created", user_model)
    @ns.response(400, "Bad username or password", error_model)
    @ns.response(403, "Registration is closed here (REGISTRATION_OPEN)", error_model)
    @ns.response(409, "Username taken", error_model)
    @ns.response(
        429,
        "Too many accounts made from this address; wait Retry-After seconds",
        error_model,
        headers=RETRY_AFTER,
    )
    def post(self) -> tuple[dict[str, Any], int]:
        """Create an account."""
        return user_dict(users.register(*_credentials())), 201


@ns.route("/login")
class Login(Resource):
    decorators = [account_limit, login_limit]

    @ns.doc(id="login")
    @ns.expect((credentials, "The username and password, as JSON"))
    @ns.response(200, "Logged in", tokens_model)
    @ns.response(400, "Not a JSON object with a username and a password", error_model)
    @ns.response(401, "Wrong username or password", error_model)
    @ns.response(429, TOO_MANY_LOGINS, error_model, headers=RETRY_AFTER)
    def post(self) -> tuple[dict[str, Any], int]:
        """Exchange a username and password for an access and a refresh token."""
        user = users.authenticate(*_credentials())
        if user is None:
            return error_body("unauthorized", "wrong username or password"), 401
        family = start_family(user)
        return {
            "access_token": access_token(user, family.id),
            "refresh_token": family.refresh_token,
            "token_type": "Bearer",
        }, 200


REUSED = "Missing, invalid, expired or revoked refresh token, or one used before (which revokes its login's tokens)"


@ns.route("/refresh")
class Refresh(Resource):
    @ns.doc(
        id="refresh",
        security="Bearer",
        description="Send the refresh token as the Bearer token. It works once: keep the new "
        "refresh_token of the answer; sending a used one again revokes every token of that login.",
    )
    @ns.response(200, "A new access token and the next refresh token", tokens_model)
    @ns.response(401, REUSED, error_model)
    @jwt_required(refresh=True)
    def post(self) -> tuple[dict[str, Any], int]:
        """Exchange a refresh token for a new access token and the next refresh token."""
        try:
            family = rotate(current_user, get_jwt())
        except RefreshTokenReused as exc:
            return error_body("unauthorized", str(exc)), 401
        return {
            "access_token": access_token(current_user, family.id),
            "refresh_token": family.refresh_token,  # never None without a grace
            "token_type": "Bearer",
        }, 200


@ns.route("/logout")
class Logout(Resource):
    @ns.doc(id="logout", security="Bearer")
    @ns.response(200, "The presented token is revoked", revoked_model)
    @ns.response(401, UNAUTHORIZED, error_model)
    @jwt_required(verify_type=False)
    def post(self) -> dict[str, str]:
        """Revoke the presented token; a refresh token ends its whole login (its access tokens too)."""
        revoke_token(get_jwt())
        return {"message": "token revoked"}


@ns.route("/logout-everywhere")
class LogoutEverywhere(Resource):
    @ns.doc(id="logout_everywhere", security="Bearer")
    @ns.response(200, "Every token and session of the user is revoked", revoked_model)
    @ns.response(401, UNAUTHORIZED, error_model)
    @jwt_required()
    def post(self) -> dict[str, str]:
        """Sign out everywhere: revoke every access and refresh token and web session of
        the user, this one included (API keys stay; revoke them at /keys)."""
        users.sign_out_everywhere(current_user.id)
        return {"message": "every token and session is revoked"}


@ns.route("/password")
class Password(Resource):
    decorators = [login_limit]
    # The per-account limit needs the token's user: jwt_required runs first.
    method_decorators = [signed_in_account_limit, jwt_required()]

    @ns.doc(id="change_password", security="Bearer")
    @ns.expect((password_change, "The current and the new password, as JSON"))
    @ns.response(200, "Changed; every token and session of the user is revoked: log in again", revoked_model)
    @ns.response(400, "Not a JSON object with both passwords, or a new password of a bad length", error_model)
    @ns.response(401, UNAUTHORIZED, error_model)
    @ns.response(403, "The current password is wrong", error_model)
    @ns.response(429, TOO_MANY_LOGINS, error_model, headers=RETRY_AFTER)
    def post(self) -> dict[str, str]:
        """Change your password; every token and session (this one too) is revoked."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidInput("send a JSON object with current_password and new_password")
        users.change_password(current_user.id, body.get("current_password"), body.get("new_password"))
        return {"message": "password changed; every token and session is revoked: log in again"}


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


def _access_answer(user: Any, family: str) -> dict[str, Any]:
    return {
        "access_token": access_token(user, family),
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
    decorators = [account_limit, login_limit]

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
    @ns.response(429, TOO_MANY_LOGINS, error_model, headers=RETRY_AFTER)
    def post(self) -> Response | tuple[dict[str, Any], int]:
        """Sign in the web app: an access token in the body, the refresh token in a cookie."""
        user = users.authenticate(*_credentials())
        if user is None:
            return error_body("unauthorized", "wrong username or password"), 401
        csrf = secrets.token_urlsafe(32)
        family = start_family(user, {CSRF_CLAIM: csrf})
        assert family.refresh_token is not None
        response = jsonify(_access_answer(user, family.id))
        _set_session_cookies(response, family.refresh_token, csrf)
        return response

    @ns.doc(id="delete_session", description=COOKIE_DOC, params=CSRF_HEADER_DOC)
    @ns.response(
        200, "Signed out: the session's refresh tokens are revoked and the cookies cleared", revoked_model
    )
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
    @ns.doc(
        id="refresh_session",
        description=COOKIE_DOC + " The refresh cookie is replaced by the next one; a used one sent "
        "again ends the session (tabs refreshing at the same moment, within "
        "SESSION_REFRESH_GRACE_SECONDS, share one replacement).",
        params=CSRF_HEADER_DOC,
    )
    @ns.response(
        200, "A new access token; the next refresh cookie is set", session_access_model, headers=SET_COOKIE
    )
    @ns.response(
        401,
        "No session cookie, a bad or missing X-CSRF-TOKEN, a revoked or expired session, or a used "
        "refresh cookie (which ends the session)",
        error_model,
    )
    @_session_cookie()
    def post(self) -> Response | tuple[dict[str, Any], int]:
        """Get a new access token for the web app with its session cookie (which is replaced)."""
        _check_csrf()
        csrf = get_jwt()[CSRF_CLAIM]
        grace = timedelta(seconds=current_settings().session_refresh_grace_seconds)
        try:
            family = rotate(current_user, get_jwt(), {CSRF_CLAIM: csrf}, grace=grace)
        except RefreshTokenReused as exc:
            return error_body("unauthorized", str(exc)), 401
        response = jsonify(_access_answer(current_user, family.id))
        if family.refresh_token is not None:  # None: another tab's refresh set the next cookie just now
            _set_session_cookies(response, family.refresh_token, csrf)
        return response

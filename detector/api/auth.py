"""/api/auth: register, log in, refresh, log out, who am I."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    current_user,
    get_jwt,
    jwt_required,
)
from flask_restx import Namespace, Resource, fields

from detector.api.errors import error_body, error_model
from detector.api.extensions import limiter
from detector.auth.tokens import revoke_token
from detector.config import current_settings
from detector.services import users
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
    return {"id": user.id, "username": user.username, "created_at": user.created_at.isoformat()}


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


@ns.route("/login")
class Login(Resource):
    decorators = [limiter.limit(_login_limit, methods=["POST"])]

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
    @ns.response(200, "The logged-in user", user_model)
    @ns.response(401, UNAUTHORIZED, error_model)
    @jwt_required()
    def get(self) -> dict[str, Any]:
        """Who the access token belongs to."""
        return user_dict(current_user)

"""/api/auth: register, log in, refresh, log out, who am I."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    current_user,
    get_jwt,
    jwt_required,
)
from flask_restx import Namespace, Resource, fields

from detector.api.extensions import limiter
from detector.auth.tokens import revoke_token
from detector.services import users
from detector.services.errors import InvalidInput

ns = Namespace("auth", description="Accounts and JWT tokens")

credentials = ns.model(
    "Credentials",
    {
        "username": fields.String(required=True, example="alice", min_length=3, max_length=64),
        "password": fields.String(required=True, example="correct horse battery", min_length=8),
    },
)
user_model = ns.model(
    "User",
    {
        "id": fields.Integer,
        "username": fields.String,
        "created_at": fields.DateTime,
    },
)
tokens_model = ns.model(
    "Tokens",
    {
        "access_token": fields.String,
        "refresh_token": fields.String,
        "token_type": fields.String,
    },
)
access_model = ns.model("AccessToken", {"access_token": fields.String, "token_type": fields.String})
message_model = ns.model("Message", {"message": fields.String})


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
    @ns.expect(credentials)
    @ns.response(201, "Created", user_model)
    @ns.response(400, "Bad username or password", message_model)
    @ns.response(409, "Username taken", message_model)
    def post(self) -> tuple[dict[str, Any], int]:
        """Create an account."""
        return user_dict(users.register(*_credentials())), 201


def _login_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


@ns.route("/login")
class Login(Resource):
    decorators = [limiter.limit(_login_limit, methods=["POST"])]

    @ns.expect(credentials)
    @ns.response(200, "Logged in", tokens_model)
    @ns.response(401, "Wrong username or password", message_model)
    @ns.response(429, "Too many login attempts", message_model)
    def post(self) -> tuple[dict[str, Any], int]:
        """Exchange a username and password for an access and a refresh token."""
        user = users.authenticate(*_credentials())
        if user is None:
            return {"message": "wrong username or password", "error": "unauthorized"}, 401
        return {
            "access_token": create_access_token(identity=user),
            "refresh_token": create_refresh_token(identity=user),
            "token_type": "Bearer",
        }, 200


@ns.route("/refresh")
class Refresh(Resource):
    @ns.doc(security="Bearer", description="Send the refresh token as the Bearer token.")
    @ns.response(200, "A new access token", access_model)
    @ns.response(401, "Missing, invalid, expired or revoked refresh token", message_model)
    @jwt_required(refresh=True)
    def post(self) -> dict[str, Any]:
        """Get a new access token with a refresh token."""
        return {"access_token": create_access_token(identity=current_user), "token_type": "Bearer"}


@ns.route("/logout")
class Logout(Resource):
    @ns.doc(security="Bearer")
    @ns.response(200, "The presented token is revoked", message_model)
    @ns.response(401, "Missing, invalid, expired or revoked token", message_model)
    @jwt_required(verify_type=False)
    def post(self) -> dict[str, str]:
        """Revoke the presented token (access or refresh); it gets 401 from now on."""
        revoke_token(get_jwt())
        return {"message": "token revoked"}


@ns.route("/me")
class Me(Resource):
    @ns.doc(security="Bearer")
    @ns.response(200, "The logged-in user", user_model)
    @ns.response(401, "Missing, invalid, expired or revoked token", message_model)
    @jwt_required()
    def get(self) -> dict[str, Any]:
        """Who the access token belongs to."""
        return user_dict(current_user)

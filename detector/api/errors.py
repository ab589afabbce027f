"""Every error the API returns is JSON: ``{"message": ..., "error": code}``.

Domain errors map to their status here, in one place. JWT errors become 401
(flask-restx would otherwise turn them into 500s unless exceptions propagate).
"""

from __future__ import annotations

from typing import Any

from flask_jwt_extended.exceptions import JWTExtendedException
from flask_restx import Api
from jwt.exceptions import ExpiredSignatureError, PyJWTError
from werkzeug.exceptions import HTTPException

from detector.services.errors import ServiceError


def register(api: Api) -> None:
    @api.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[dict[str, Any], int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return {"message": exc.description or exc.name, "error": code}, exc.code or 500

    @api.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> tuple[dict[str, Any], int]:
        return {"message": exc.message, "error": exc.code}, exc.status

    @api.errorhandler(JWTExtendedException)
    def _jwt_error(exc: JWTExtendedException) -> tuple[dict[str, Any], int]:
        return {"message": str(exc) or "invalid token", "error": "unauthorized"}, 401

    @api.errorhandler(PyJWTError)
    def _token_error(exc: PyJWTError) -> tuple[dict[str, Any], int]:
        message = "token has expired" if isinstance(exc, ExpiredSignatureError) else "invalid token"
        return {"message": message, "error": "unauthorized"}, 401

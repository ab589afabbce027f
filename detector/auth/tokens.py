"""flask-jwt-extended callbacks: who a token belongs to, and whether it was revoked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask_jwt_extended import JWTManager
from sqlalchemy import delete

from detector.db import db
from detector.models import RevokedToken, User, utcnow


def init_jwt(jwt: JWTManager) -> None:
    @jwt.user_identity_loader
    def _identity(user: User | int | str) -> str:
        return str(user.id if isinstance(user, User) else user)

    @jwt.user_lookup_loader
    def _lookup(_header: dict[str, Any], payload: dict[str, Any]) -> User | None:
        try:
            return db.session.get(User, int(payload["sub"]))
        except (KeyError, ValueError):
            return None

    @jwt.token_in_blocklist_loader
    def _revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return db.session.get(RevokedToken, payload["jti"]) is not None


def revoke_token(payload: dict[str, Any]) -> None:
    """Revoke the token whose decoded ``payload`` is given; forget expired revocations."""
    expires = datetime.fromtimestamp(payload["exp"], tz=UTC)
    session = db.session
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
    if session.get(RevokedToken, payload["jti"]) is None:
        session.add(RevokedToken(jti=payload["jti"], expires_at=expires))
    session.commit()

"""flask-jwt-extended callbacks: who a token belongs to, and whether it was revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import g
from flask_jwt_extended import JWTManager
from sqlalchemy import bindparam, delete, select

from detector.db import db
from detector.models import RevokedToken, User, utcnow


@dataclass(frozen=True, slots=True)
class Caller:
    """The user a request's token belongs to (``current_user``): what the API needs of them."""

    id: int
    username: str
    created_at: datetime


# Built once: every authenticated request runs it. Plain columns on the session's
# connection, not ORM entities: the ORM's bookkeeping cost more than the query.
_USER_AND_REVOCATION = (
    select(User.id, User.username, User.created_at, RevokedToken.jti)
    .outerjoin(RevokedToken, RevokedToken.jti == bindparam("jti"))
    .where(User.id == bindparam("user_id"))
)


def _user_and_revocation(payload: dict[str, Any]) -> tuple[Caller | None, bool]:
    """The token's user and whether the token is revoked, in one query per request.

    flask-jwt-extended asks twice (blocklist first, then the user); both answers
    come from this query, kept on ``g`` for the request.
    """
    cached = g.get("_token_lookup")
    if cached is not None and cached[0] == payload.get("jti"):
        return cached[1], cached[2]
    try:
        user_id = int(payload["sub"])
        jti = str(payload["jti"])
    except (KeyError, ValueError):
        return None, False
    row = db.session.connection().execute(_USER_AND_REVOCATION, {"user_id": user_id, "jti": jti}).first()
    user, revoked = (Caller(row[0], row[1], row[2]), row[3] is not None) if row is not None else (None, False)
    g._token_lookup = (jti, user, revoked)
    return user, revoked


def init_jwt(jwt: JWTManager) -> None:
    @jwt.user_identity_loader
    def _identity(user: User | Caller | int | str) -> str:
        return str(user.id if isinstance(user, User | Caller) else user)

    @jwt.user_lookup_loader
    def _lookup(_header: dict[str, Any], payload: dict[str, Any]) -> Caller | None:
        return _user_and_revocation(payload)[0]

    @jwt.token_in_blocklist_loader
    def _revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return _user_and_revocation(payload)[1]


def revoke_token(payload: dict[str, Any]) -> None:
    """Revoke the token whose decoded ``payload`` is given; forget expired revocations."""
    expires = datetime.fromtimestamp(payload["exp"], tz=UTC)
    session = db.session
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
    if session.get(RevokedToken, payload["jti"]) is None:
        session.add(RevokedToken(jti=payload["jti"], expires_at=expires))
    session.commit()

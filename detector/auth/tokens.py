"""flask-jwt-extended callbacks (who a token belongs to, whether it was revoked), and the
refresh tokens' families.

Every token carries its user's token generation (claim ``gen``): signing out everywhere
and changing the password add one to it (`revoke_all`), and every token of an earlier
generation is refused from then on.

Each login starts a family (claim ``fam`` of its refresh and access tokens, a row of
``token_families`` holding the current refresh token's ``jti``). A refresh replaces
the current refresh token by a new one with one conditional UPDATE (`rotate`); a token
that is no longer the current one has been used before, so presenting it again
revokes the whole family: the thief's tokens and the owner's all stop working.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import g
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token
from flask_jwt_extended.config import config as jwt_config
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from detector.db import db
from detector.models import RevokedToken, TokenFamily, User, utcnow

GENERATION_CLAIM = "gen"
FAMILY_CLAIM = "fam"
# A refresh token that never expires (JWT_REFRESH_TOKEN_EXPIRES false) keeps its family this long.
_NO_EXPIRY = timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class Caller:
    """The user a request's token belongs to (``current_user``): what the API needs of them."""

    id: int
    username: str
    created_at: datetime
    token_generation: int = 0


@dataclass(frozen=True, slots=True)
class Family:
    """A login's family id, and its refresh token just issued (None: none was)."""

    id: str
    refresh_token: str | None


class RefreshTokenReused(Exception):
    """A refresh token that was already exchanged was presented again; its family is revoked."""


# Built once: every authenticated request runs it. Plain columns on the session's
# connection, not ORM entities: the ORM's bookkeeping cost more than the query.
# A refresh token's family comes in the same query (none for an access token).
_USER_AND_REVOCATION = (
    select(
        User.id,
        User.username,
        User.created_at,
        User.token_generation,
        RevokedToken.jti,
        TokenFamily.id,
        TokenFamily.revoked_at,
    )
    .select_from(User)
    .outerjoin(RevokedToken, RevokedToken.jti == bindparam("jti"))
    .outerjoin(TokenFamily, TokenFamily.id == bindparam("family"))
    .where(User.id == bindparam("user_id"))
)


def _user_and_revocation(payload: dict[str, Any]) -> tuple[Caller | None, bool]:
    """The token's user and whether the token is revoked, in one query per request.

    A token is revoked when it was logged out, when it is of an earlier token
    generation than its user's, or when its family was revoked.
    flask-jwt-extended asks twice (blocklist first, then the user); both answers
    come from this query, kept on ``g`` for the request.
    """
    cached = g.get("_token_lookup")
    if cached is not None and cached[0] == payload.get("jti"):
        return cached[1], cached[2]
    try:
        user_id = int(payload["sub"])
        jti = str(payload["jti"])
        generation = int(payload.get(GENERATION_CLAIM, 0))
    except (KeyError, TypeError, ValueError):
        return None, False
    family = payload.get(FAMILY_CLAIM)
    family = family if isinstance(family, str) else None
    row = (
        db.session.connection()
        .execute(_USER_AND_REVOCATION, {"user_id": user_id, "jti": jti, "family": family})
        .first()
    )
    if row is None:
        user, revoked = None, False
    else:
        user = Caller(row[0], row[1], row[2], row[3])
        family_revoked = family is not None and (row[5] is None or row[6] is not None)
        revoked = row[4] is not None or generation != row[3] or family_revoked
    g._token_lookup = (jti, user, revoked)
    return user, revoked


def init_jwt(jwt: JWTManager) -> None:
    @jwt.user_identity_loader
    def _identity(user: User | Caller | int | str) -> str:
        return str(user.id if isinstance(user, User | Caller) else user)

    @jwt.additional_claims_loader
    def _claims(user: User | Caller | int | str) -> dict[str, Any]:
        if isinstance(user, User | Caller):
            return {GENERATION_CLAIM: user.token_generation or 0}
        return {}

    @jwt.user_lookup_loader
    def _lookup(_header: dict[str, Any], payload: dict[str, Any]) -> Caller | None:
        return _user_and_revocation(payload)[0]

    @jwt.token_in_blocklist_loader
    def _revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return _user_and_revocation(payload)[1]


def access_token(user: User | Caller, family: str) -> str:
    """An access token of the login ``family``."""
    return create_access_token(identity=user, additional_claims={FAMILY_CLAIM: family})


def revoke_token(payload: dict[str, Any]) -> None:
    """Revoke the token whose decoded ``payload`` is given, and its family (the whole
    login) if it is a refresh token; forget expired revocations."""
    expires = datetime.fromtimestamp(payload["exp"], tz=UTC)
    session = db.session
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
    if session.get(RevokedToken, payload["jti"]) is None:
        session.add(RevokedToken(jti=payload["jti"], expires_at=expires))
    family = payload.get(FAMILY_CLAIM)
    if isinstance(family, str) and payload.get("type") == "refresh":
        session.execute(_revoke_family(family))
    session.commit()


def _refresh_expiry(now: datetime) -> datetime:
    lifetime = jwt_config.refresh_expires
    return now + (lifetime if isinstance(lifetime, timedelta) else _NO_EXPIRY)


def _revoke_family(family: str) -> Any:
    return (
        update(TokenFamily)
        .where(TokenFamily.id == family, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _refresh_token(user: User | Caller, family: str, jti: str, claims: dict[str, Any]) -> str:
    return create_refresh_token(identity=user, additional_claims={**claims, FAMILY_CLAIM: family, "jti": jti})


def start_family(user: User | Caller, claims: dict[str, Any] | None = None) -> Family:
    """A new login: a new family and its first refresh token (committed here).

    ``claims`` are more claims for the token (the web app's CSRF value).
    """
    now = utcnow()
    family, jti = uuid.uuid4().hex, str(uuid.uuid4())
    session = db.session
    # Forget families whose tokens have all expired, so the table stays small.
    session.execute(delete(TokenFamily).where(TokenFamily.expires_at < now))
    session.add(
        TokenFamily(
            id=family, user_id=user.id, current_jti=jti, created_at=now, expires_at=_refresh_expiry(now)
        )
    )
    session.commit()
    return Family(family, _refresh_token(user, family, jti, claims or {}))


def rotate(
    user: Caller,
    payload: dict[str, Any],
    claims: dict[str, Any] | None = None,
    grace: timedelta | None = None,
) -> Family:
    """Exchange the refresh token ``payload`` for the next one of its family.

    One conditional UPDATE moves the family from this token to the new one; when it
    changes no row, the token was exchanged before: the family is revoked.
    ``grace``: a token replaced less than this long ago gets no new refresh token
    (``refresh_token`` None) and revokes nothing, for the web app's tabs that
    refresh with the same cookie at the same moment. A token without a family
    (issued before families existed) is exchanged once, for a new family's first.

    Raises:
        RefreshTokenReused: the token was exchanged before; its family is now revoked.
    """
    claims = claims or {}
    family = payload.get(FAMILY_CLAIM)
    old = str(payload["jti"])
    session = db.session
    if not isinstance(family, str):
        try:
            session.add(RevokedToken(jti=old, expires_at=datetime.fromtimestamp(payload["exp"], tz=UTC)))
            session.flush()
        except IntegrityError:
            session.rollback()
            raise RefreshTokenReused("this refresh token was already used") from None
        return start_family(user, claims)
    now = utcnow()
    new = str(uuid.uuid4())
    moved = session.execute(
        update(TokenFamily)
        .where(TokenFamily.id == family, TokenFamily.current_jti == old, TokenFamily.revoked_at.is_(None))
        .values(current_jti=new, previous_jti=old, rotated_at=now, expires_at=_refresh_expiry(now))
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount == 1:  # type: ignore[attr-defined]
        session.commit()
        return Family(family, _refresh_token(user, family, new, claims))
    if grace is not None:
        just_replaced = session.scalar(
            select(TokenFamily.id).where(
                TokenFamily.id == family,
                TokenFamily.previous_jti == old,
                TokenFamily.rotated_at > now - grace,
                TokenFamily.revoked_at.is_(None),
            )
        )
        if just_replaced is not None:
            session.rollback()
            return Family(family, None)
    session.execute(_revoke_family(family))
    session.commit()
    raise RefreshTokenReused("this refresh token was already used: every token of its session is revoked")


def revoke_all(user_id: int) -> None:
    """Revoke every token of the user: all refresh-token families, and every token
    issued until now (its generation is left behind). The caller commits."""
    session = db.session
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(token_generation=User.token_generation + 1)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(TokenFamily)
        .where(TokenFamily.user_id == user_id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )

"""Creating, listing and revoking a user's personal API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from detector.auth.apikeys import SHOWN_PREFIX_LENGTH, key_hash, new_secret
from detector.db import db
from detector.models import ApiKey, utcnow
from detector.services.errors import InvalidInput, NotFound

MAX_NAME = 100


def create_key(owner_id: int, name: str, expires_at: datetime | None) -> tuple[ApiKey, str]:
    """A new key for ``owner_id`` and its secret (which is not stored: only its hash is)."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"name must be 1 to {MAX_NAME} characters")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at must be in the future")
    secret = new_secret()
    key = ApiKey(
        owner_id=owner_id,
        name=name,
        prefix=secret[:SHOWN_PREFIX_LENGTH],
        key_hash=key_hash(secret),
        created_at=utcnow(),
        expires_at=expires_at,
    )
    db.session.add(key)
    db.session.commit()
    return key, secret


def list_keys(owner_id: int) -> list[ApiKey]:
    """The user's keys, newest first (expired ones too, until revoked)."""
    rows = db.session.scalars(
        select(ApiKey).where(ApiKey.owner_id == owner_id).order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return list(rows.all())


def revoke_key(owner_id: int, key_id: str) -> None:
    """Delete the user's key; someone else's key is "not found", like a missing one."""
    key = db.session.get(ApiKey, key_id) if isinstance(key_id, str) and len(key_id) <= 32 else None
    if key is None or key.owner_id != owner_id:
        raise NotFound(f"API key {key_id} not found")
    db.session.delete(key)
    db.session.commit()

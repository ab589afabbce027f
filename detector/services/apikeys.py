"""Creating, listing and revoking a user's personal API keys."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select

from detector.auth.apikeys import SCOPES, SHOWN_PREFIX_LENGTH, key_hash, new_secret
from detector.db import db
from detector.models import ApiKey, utcnow
from detector.services.errors import InvalidInput, NotFound

MAX_NAME = 100
# A key's name: a character that is not white space, and no NUL (PostgreSQL's text
# cannot hold it). The API document declares this pattern as it is; white space is
# spelled out so that it means the same in every regex dialect (Python's \s also
# takes \x1c-\x1f, JSON Schema validators' does not).
NAME_PATTERN = re.compile(r"^[^\x00]*[^\x00 \t\n\r\f\v][^\x00]*$")
WHITE_SPACE = " \t\n\r\f\v"


def create_key(
    owner_id: int, name: str, expires_at: datetime | None, scopes: Collection[str] = ()
) -> tuple[ApiKey, str]:
    """A new key for ``owner_id`` and its secret (which is not stored: only its hash is).

    ``scopes`` are names of detector.auth.apikeys.SCOPES (whether the caller may
    grant them is the API's question).

    ``name`` is judged as sent, as the API document's NAME_PATTERN declares it (1 to
    MAX_NAME characters, not all white space, no NUL), then kept without its outer
    white space.
    """
    if not 1 <= len(name) <= MAX_NAME or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"name must be 1 to {MAX_NAME} characters, not all white space, without NUL; "
            f"got {len(name)} characters"
        )
    name = name.strip(WHITE_SPACE)
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at must be in the future")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    secret = new_secret()
    key = ApiKey(
        owner_id=owner_id,
        name=name,
        prefix=secret[:SHOWN_PREFIX_LENGTH],
        key_hash=key_hash(secret),
        created_at=utcnow(),
        expires_at=expires_at,
        scopes=" ".join(sorted(set(scopes))),
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

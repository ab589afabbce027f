"""Personal API keys: making secrets, hashing them, and finding the key a request presents.

A key is ``dk_live_`` followed by 43 URL-safe base64 characters (32 random bytes
from `secrets`), so it matches ``dk_live_[A-Za-z0-9_-]{43}`` and secret scanners
can find leaked ones. Only its SHA-256 is stored: with 256 bits of randomness a
key cannot be guessed or brute-forced from its hash, so a slow password hash
(which would cost every request) adds nothing; a plain digest also lets the
lookup be one indexed equality query.

A key can do what its user can with jobs, and list and revoke keys. What could
take over the account's other credentials needs a scope given when the key was
made (`SCOPES`): a stolen key without them cannot mint itself successors or read
webhook signatures in advance.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, select

from detector.db import db
from detector.models import ApiKey, User, utcnow

KEY_PREFIX = "dk_live_"
KEY_PATTERN = re.compile(r"dk_live_[A-Za-z0-9_-]{43}")
# How much of a key is kept in clear, to tell a user's keys apart.
SHOWN_PREFIX_LENGTH = len(KEY_PREFIX) + 8

# The scopes a key can be made with, and what each allows beyond the jobs and keys endpoints.
SCOPES = {
    "keys": "create API keys (with at most this key's own scopes)",
    "webhook_secret": "make a new webhook signing secret (POST /api/auth/webhook-secret)",
}


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_key(value: str) -> bool:
    """Whether a presented credential is meant as an API key (rather than a JWT)."""
    return value.startswith(KEY_PREFIX)


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """The user an API key belongs to: the same fields as a token's Caller."""

    id: int
    username: str
    created_at: datetime
    # The scopes the key was made with (a subset of SCOPES).
    scopes: frozenset[str] = frozenset()


class KeyRefused(Exception):
    """The presented API key is unknown, revoked or expired; the message says which."""


_KEY_AND_OWNER = (
    select(User.id, User.username, User.created_at, ApiKey.expires_at, ApiKey.scopes)
    .join(ApiKey, ApiKey.owner_id == User.id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)


def owner_of(secret: str) -> KeyOwner:
    """The user of the API key ``secret``.

    Raises:
        KeyRefused: no such key (never issued, or revoked), or it has expired.
    """
    if not KEY_PATTERN.fullmatch(secret):
        raise KeyRefused("malformed API key")
    row = db.session.connection().execute(_KEY_AND_OWNER, {"key_hash": key_hash(secret)}).first()
    if row is None:
        raise KeyRefused("unknown or revoked API key")
    expires_at = row[3]
    if expires_at is not None:
        if expires_at.tzinfo is None:  # SQLite, should the column type not convert it
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= utcnow():
            raise KeyRefused("API key has expired")
    return KeyOwner(row[0], row[1], row[2], frozenset((row[4] or "").split()))

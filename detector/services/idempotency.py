"""Idempotent job submits: the ``Idempotency-Key`` of POST /api/jobs.

The same user sending the same key within the key's lifetime
(IDEMPOTENCY_KEY_HOURS, 24 h by default) gets the job the first request made;
the same key with other parameters or another upload is refused
(`IdempotencyKeyReused`, 422). A key record is committed in the job's own
transaction, and (owner, key) is unique: when two requests with one key race,
one insert wins, the other fails with an IntegrityError, discards its upload and
answers the winner's job. Only the winner sends ``process_video``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from detector.db import db
from detector.models import IdempotencyKey, Job, utcnow
from detector.services.errors import InvalidInput, ServiceError

MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(ServiceError):
    """The key was used for a request with other parameters or another upload."""

    status = 422
    code = "idempotency_key_reused"


def check_key(raw: str) -> str:
    key = raw.strip()
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def fingerprint(parameters: dict[str, Any]) -> str:
    """A digest of a request's parameters (form fields, the upload's name, size and SHA-256)."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _live_record(owner_id: int, key: str, lifetime: timedelta) -> IdempotencyKey | None:
    return db.session.scalars(
        select(IdempotencyKey).where(
            IdempotencyKey.owner_id == owner_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at > utcnow() - lifetime,
        )
    ).first()


def _replay(record: IdempotencyKey, print_: str) -> Job:
    if record.fingerprint != print_:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a request with other parameters or another "
            "video; send a new key for a new job"
        )
    job = db.session.get(Job, record.job_id)
    if job is None:  # deleted between the lookup and here: the record went with it
        raise IdempotencyKeyReused("the job made with this Idempotency-Key was deleted; send a new key")
    return job


def submit(
    *,
    owner_id: int,
    key: str,
    print_: str,
    lifetime: timedelta,
    create: Callable[[Callable[[Job], None]], Job],
    discard: Callable[[], None],
) -> tuple[Job, bool]:
    """The job for ``key``: the one it made before (True), or a new one from ``create`` (False).

    ``create(attach)`` makes the job (`detector.services.jobs.create_job`), calling
    ``attach(job)`` before its commit; ``discard()`` drops this request's upload
    when an earlier job is answered instead.
    """
    session = db.session
    record = _live_record(owner_id, key, lifetime)
    if record is not None:
        discard()
        return _replay(record, print_), True
    # An expired record of this key (older than the lifetime) makes way for the new job.
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner_id == owner_id, IdempotencyKey.created_at <= utcnow() - lifetime
        )
    )
    session.commit()

    def attach(job: Job) -> None:
        session.flush()  # gives the job its id
        session.add(IdempotencyKey(owner_id=owner_id, key=key, fingerprint=print_, job_id=job.id))

    try:
        return create(attach), False
    except IntegrityError:
        # Lost the race: create_job rolled back and deleted this request's upload.
        session.rollback()
        record = _live_record(owner_id, key, lifetime)
        if record is None:
            raise
        return _replay(record, print_), True

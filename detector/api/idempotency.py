"""The ``Idempotency-Key`` header of POST /api/jobs (see detector.services.idempotency)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import IO, Any

from flask import request

from detector.config import current_settings
from detector.models import Job
from detector.services import idempotency

HEADER = "Idempotency-Key"
HEADER_DOC = {
    HEADER: {
        "in": "header",
        "type": "string",
        "required": False,
        "maxLength": idempotency.MAX_KEY_LENGTH,
        "description": "Any unique string (a UUID): a retry with the same key within 24 h "
        "(IDEMPOTENCY_KEY_HOURS) answers the job the first request made, with 200, instead of "
        "making another; the same key with other parameters is a 422 idempotency_key_reused.",
    }
}


def _sha256(stream: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    stream.seek(0)
    while block := stream.read(1 << 20):
        digest.update(block)
        size += len(block)
    stream.seek(0)
    return digest.hexdigest(), size


def request_parameters() -> dict[str, Any]:
    """Everything that makes a submit what it is: every form field, each file's name,
    size and SHA-256."""
    form = {name: request.form.getlist(name) for name in sorted(request.form)}
    files: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(request.files):
        files[name] = []
        for upload in request.files.getlist(name):
            checksum, size = _sha256(upload.stream)
            files[name].append({"filename": upload.filename, "size": size, "sha256": checksum})
    return {"form": form, "files": files}


def idempotent(
    owner_id: int,
    create: Callable[[Callable[[Job], None] | None], Job],
    discard: Callable[[], None],
) -> tuple[Job, bool]:
    """The job of this submit, and whether it was made by an earlier request with its key.

    Without the header this is ``create(None)``, False.
    """
    raw = request.headers.get(HEADER)
    if raw is None:
        return create(None), False
    key = idempotency.check_key(raw)
    lifetime = timedelta(hours=current_settings().idempotency_key_hours)
    return idempotency.submit(
        owner_id=owner_id,
        key=key,
        print_=idempotency.fingerprint(request_parameters()),
        lifetime=lifetime,
        create=create,
        discard=discard,
    )

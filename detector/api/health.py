"""Liveness (/healthz) and readiness (/readyz: database, broker, result backend)."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from sqlalchemy import text

from detector.db import db


def _check_database() -> None:
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _check_broker() -> None:
    with current_app.extensions["celery"].connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)


def _check_result_backend() -> None:
    backend = current_app.extensions["celery"].backend
    client = getattr(backend, "client", None)
    if client is not None and hasattr(client, "ping"):
        client.ping()
    else:  # the file store: a read of its directory
        backend.get(b"readyz")


CHECKS = {
    "database": _check_database,
    "broker": _check_broker,
    "result_backend": _check_result_backend,
}


def init_app(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        """Whether the database, the broker and the result backend answer."""
        results: dict[str, str] = {}
        for name, check in CHECKS.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unreachable: {type(exc).__name__}"
        ready = all(v == "ok" for v in results.values())
        return {"status": "ready" if ready else "not ready", "checks": results}, 200 if ready else 503

"""The SQLAlchemy engine and session, bound to the app (or a worker) at start-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, scoped_session, sessionmaker

if TYPE_CHECKING:
    from flask import Flask


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        # Several processes share the file: wait for a writer instead of failing with
        # "database is locked". Pooled connections are dropped after a fork (after_fork).
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # Safe with WAL (no corruption); a power cut may lose the last commits.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    """Holds the engine and a thread-local session; ``db.session`` is the session."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self.session = scoped_session(sessionmaker(expire_on_commit=False))

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the database is not configured; call init_app first")
        return self._engine

    def configure(self, url: str) -> None:
        if self._engine is not None:
            self.session.remove()
            self._engine.dispose()
        self._engine = make_engine(url)
        self.session.configure(bind=self._engine)

    def init_app(self, app: Flask) -> None:
        self.configure(app.extensions["settings"].database_url)
        app.extensions["database"] = self

        @app.teardown_appcontext
        def _remove_session(_exc: BaseException | None) -> None:
            self.session.remove()

    def after_fork(self) -> None:
        """Drop connections inherited from a parent process (Celery prefork)."""
        if self._engine is not None:
            self._engine.dispose(close=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        session = self.session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


db = Database()

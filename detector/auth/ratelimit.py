"""Where the login rate limit keeps its counters, so that it holds across processes.

flask-limiter counts in memory by default: each gunicorn process would then
have its own count, and a client would get ``API_WORKERS`` times the limit.
The counters live where every API process can see them:

- ``RATELIMIT_STORAGE_URI``, when it is set (any storage of the ``limits``
  library, e.g. ``redis://host:6379/1``);
- otherwise the Redis of ``CELERY_RESULT_BACKEND``, when that is Redis;
- otherwise the service's own database (``database://``): the ``rate_limits``
  table, one row per client and window. SQLite and PostgreSQL are shared by
  every process of a deployment, so this works in the embedded mode too.
"""

from __future__ import annotations

import time
from typing import Any, cast

from limits.storage import Storage
from sqlalchemy import Table, case, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from detector.config import Settings
from detector.db import db
from detector.models import RateLimitCounter

DATABASE_SCHEME = "database"


_TABLE = cast(Table, RateLimitCounter.__table__)


def storage_uri(settings: Settings) -> str:
    """The storage for the rate limits: RATELIMIT_STORAGE_URI when set, else the Redis
    result backend, else the database."""
    if settings.ratelimit_storage_uri:
        return settings.ratelimit_storage_uri
    if settings.celery_result_backend.startswith(("redis://", "rediss://")):
        return settings.celery_result_backend
    return f"{DATABASE_SCHEME}://"


class DatabaseStorage(Storage):
    """A ``limits`` storage (fixed windows) in the service's database.

    It uses the engine of ``detector.db`` (DATABASE_URL), on a connection of its
    own, so a count is committed whatever the request does afterwards. Each hit is
    one atomic upsert, so concurrent processes never lose a count.
    """

    STORAGE_SCHEME = [DATABASE_SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count ``amount`` hits on ``key``; a window that has ended starts again."""
        now = time.time()
        engine = db.engine
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(_TABLE).values(key=key, hits=amount, expires_at=now + expiry)
        ended = _TABLE.c.expires_at <= now
        upsert = insert.on_conflict_do_update(
            index_elements=[_TABLE.c.key],
            set_={
                "hits": case((ended, insert.excluded.hits), else_=_TABLE.c.hits + insert.excluded.hits),
                "expires_at": case((ended, insert.excluded.expires_at), else_=_TABLE.c.expires_at),
            },
        ).returning(_TABLE.c.hits)
        with engine.begin() as connection:
            hits = connection.execute(upsert).scalar_one()
            # Forget ended windows of other clients, so the table stays small.
            connection.execute(delete(_TABLE).where(_TABLE.c.expires_at <= now, _TABLE.c.key != key))
        return int(hits)

    def _window(self, key: str) -> tuple[int, float] | None:
        with db.engine.connect() as connection:
            row = connection.execute(
                select(_TABLE.c.hits, _TABLE.c.expires_at).where(_TABLE.c.key == key)
            ).first()
        if row is None or row.expires_at <= time.time():
            return None
        return int(row.hits), float(row.expires_at)

    def get(self, key: str) -> int:
        window = self._window(key)
        return window[0] if window else 0

    def get_expiry(self, key: str) -> float:
        window = self._window(key)
        return window[1] if window else time.time()

    def check(self) -> bool:
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        with db.engine.begin() as connection:
            return int(connection.execute(delete(_TABLE)).rowcount)

    def clear(self, key: str) -> None:
        with db.engine.begin() as connection:
            connection.execute(delete(_TABLE).where(_TABLE.c.key == key))

"""The API tests run on both databases the service supports: embedded SQLite and
PostgreSQL (the local server; skipped when it is down, except under CI=true)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import base_config, postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield base_config(tmp_path)
        return
    with postgres_schema() as url:
        yield base_config(tmp_path, DATABASE_URL=url)

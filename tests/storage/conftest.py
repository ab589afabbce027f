"""An S3-compatible server for the object-storage tests: moto's standalone server,
started on a free loopback port, once per test session (`moto_server`, which the
benchmark's storage figure starts too, is in detector/bench/storage.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from detector.bench.storage import MOTO_ENV, moto_server
from tests.conftest import missing_tool


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a running moto server (skipped without moto, failed under CI=true)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        missing_tool("moto[server] is not installed (pip install -e '.[dev]')")
    with moto_server(tmp_path_factory.mktemp("moto") / "server.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS settings and S3_ENDPOINT_URL pointing at the moto server, set in
    this process's environment (which worker processes the test starts inherit)."""
    env = {"S3_ENDPOINT_URL": s3_endpoint, **MOTO_ENV}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> str:
    """A new, empty bucket on the moto server."""
    import boto3

    name = f"videos-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_env["S3_ENDPOINT_URL"]).create_bucket(Bucket=name)
    return name


def objects(bucket: str, endpoint: str) -> list[dict[str, Any]]:
    """The bucket's objects, as listed."""
    import boto3

    answer = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return list(answer.get("Contents", []))

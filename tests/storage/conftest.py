"""An S3-compatible server for the object-storage tests: moto's standalone server,
started on a free loopback port, once per test session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_tool


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """Run moto's standalone S3 server on a free loopback port; its URL.

    Raises:
        RuntimeError: it did not answer within 30 s (its output is in ``log``).
    """
    port = _free_port()
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


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
    env = {
        "S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
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

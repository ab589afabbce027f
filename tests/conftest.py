"""Shared fixtures: an app on embedded defaults in a temporary directory, a client,
an `auth` helper, synthetic videos, and access to the local servers."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from detector.app import create_app
from detector.config import Settings
from detector.db.migrate import upgrade
from detector.net import urls
from detector.video.synthetic import make_video
from tests.shared_data import testdata  # noqa: F401  (the fixture of the shared real model and video)

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL guard resolves only IP literals and localhost here: a test (the API
    fuzzer's random callback URLs, say) never sends a DNS query off this machine.
    Worker processes the tests start only ever get loopback IP literals."""

    def offline(host: str, port: int, family: int = 0, type: int = 0) -> list[tuple[Any, ...]]:
        if host != "localhost":
            try:
                ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no names ({host})") from None
        return socket.getaddrinfo(host, port, family, type)

    monkeypatch.setattr(urls, "system_resolver", offline)


def missing_tool(message: str) -> NoReturn:
    """Skip for want of a server or tool, except under CI=true (.ci/run provides them), where it fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true requires it)")
    pytest.skip(message)


#: Where `make install` looks for a Detectron2 wheel (the Makefile's DETECTRON2_WHEELS,
#: relative to the project's root): Detectron2 is not on PyPI.
DETECTRON2_WHEELS = Path(__file__).resolve().parent.parent / os.environ.get(
    "DETECTRON2_WHEELS", "../shared/wheels"
)


def require_detectron2() -> None:
    """Skip the calling test (or module) when Detectron2 does not import; under
    CI=true with a wheel of it in DETECTRON2_WHEELS, which `make install` installs
    (.ci/run's case), fail instead."""
    try:
        import detectron2.modeling  # noqa: F401  (loads its compiled operators: a wheel for another torch fails here)
    except ImportError as exc:
        message = f"detectron2 is not importable ({exc})"
        if os.environ.get("CI") == "true" and any(DETECTRON2_WHEELS.glob("detectron2-*.whl")):
            pytest.fail(f"{message}, though {DETECTRON2_WHEELS} has its wheel (CI=true requires it)")
        pytest.skip(message, allow_module_level=True)


def require_server(url: str) -> None:
    """Skip when the server at ``url`` is unreachable, except under CI=true, where it fails."""
    parsed = urlparse(url.replace("postgresql+psycopg", "postgresql"))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout=2):
            return
    except OSError:
        missing_tool(f"{parsed.scheme} server at {parsed.hostname}:{parsed.port} is unreachable")


# Names a test module imports from here when its tests use the shared RabbitMQ and Redis.
SHARED_SERVER_NAMES = ("RABBITMQ_URL", "REDIS_URL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that use RabbitMQ or Redis one after another, on one xdist worker.

    They share the broker's queues and Redis database 15, and some restart those
    servers, so two of them at once would disturb each other. A test counts as
    one when its module imports RABBITMQ_URL or REDIS_URL from here; with
    ``--dist loadgroup`` (make test) the "servers" group stays on one worker and
    every other test goes wherever a worker is free. PostgreSQL tests each get a
    schema of their own (postgres_schema) and may run side by side.
    """
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and any(hasattr(module, name) for name in SHARED_SERVER_NAMES):
            item.add_marker(pytest.mark.xdist_group("servers"))


def reconfigure(app: Flask, **values: Any) -> None:
    """Change settings of a running test app: Flask's config and the typed `Settings`
    the service reads (built once per app, so it is rebuilt here)."""
    app.config.update(values)
    app.extensions["settings"] = Settings.from_config(app.config)
    app.extensions.pop("models", None)  # the model catalog is read again from the new settings


def base_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Settings for a test app (and its workers) living entirely under ``tmp_path``."""
    config: dict[str, Any] = {
        "ENV": "test",
        "DATA_DIR": str(tmp_path / "data"),
        "VIDEO_STORAGE": str(tmp_path / "videos"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'detector.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_RESULT_BACKEND": f"file://{tmp_path / 'data' / 'results'}",
        "SECRET_KEY": "test-secret",
        "JWT_SECRET_KEY": "test-jwt-secret-that-is-long-enough-for-hs256",
        "RATELIMIT_ENABLED": False,
    }
    config.update(overrides)
    return config


def server_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """`base_config` on RabbitMQ and Redis (skipped without them, failed under CI=true)."""
    require_server(RABBITMQ_URL)
    require_server(REDIS_URL)
    return base_config(tmp_path, CELERY_BROKER_URL=RABBITMQ_URL, CELERY_RESULT_BACKEND=REDIS_URL, **overrides)


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    return base_config(tmp_path)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL for a fresh schema on the local PostgreSQL, dropped afterwards."""
    require_server(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def app(config: dict[str, Any]) -> Iterator[Flask]:
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    yield app
    from detector.db import db

    db.session.remove()
    db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Auth:
    """Registers users and hands out their Authorization headers."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def register(self, username: str = "alice", password: str = "password123") -> None:
        response = self.client.post("/api/auth/register", json={"username": username, "password": password})
        assert response.status_code == 201, response.json

    def login(self, username: str = "alice", password: str = "password123") -> dict[str, str]:
        response = self.client.post("/api/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.json
        return response.json

    def headers(self, username: str = "alice", password: str = "password123") -> dict[str, str]:
        """Register ``username`` (if new) and return a Bearer header for it."""
        self.client.post("/api/auth/register", json={"username": username, "password": password})
        return {"Authorization": f"Bearer {self.login(username, password)['access_token']}"}


@pytest.fixture
def auth(client: FlaskClient) -> Auth:
    return Auth(client)


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def small_video(video_dir: Path) -> Path:
    """2 s, 160x120, 10 fps, a keyframe every 8 frames."""
    return make_video(video_dir / "small.mp4", frames=20, width=160, height=120, fps=10, gop=8)

"""A live API on loopback (werkzeug in a thread) for the command-line client, and a way
to run `detector` commands as a script would."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from detector.runtime.processes import detector_cli_argv
from tests.conftest import Auth


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@dataclass
class Cli:
    """`detector` run in a subprocess with DETECTOR_SERVER and DETECTOR_API_KEY set."""

    server: str
    api_key: str
    headers: dict[str, str]
    tmp_path: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
        env.update(
            DETECTOR_SERVER=self.server,
            DETECTOR_API_KEY=self.api_key,
            DETECTOR_CLIENT_CONFIG=str(self.tmp_path / "client.toml"),
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            detector_cli_argv(*args),
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp_path,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            detector_cli_argv(*args),
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.tmp_path,
        )


def make_cli(app: Flask, server: str, tmp_path: Path) -> Cli:
    client = app.test_client()
    headers = Auth(client).headers()
    key = client.post("/api/keys", headers=headers, json={"name": "cli test"}).json["key"]
    return Cli(server=server, api_key=key, headers=headers, tmp_path=tmp_path)


@pytest.fixture
def cli(app: Flask, tmp_path: Path) -> Iterator[Cli]:
    with live_server(app) as server:
        yield make_cli(app, server, tmp_path)


def api_get(app: Flask, cli: Cli, path: str, **kwargs: Any) -> Any:
    return app.test_client().get(path, headers=cli.headers, **kwargs).json

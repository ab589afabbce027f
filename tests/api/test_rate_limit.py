"""The login rate limit holds across API processes: its counters live in storage
every process shares (the database in the embedded mode), not in each process's memory.
Login is limited per client address and per account; registration per address; the
client address behind trusted reverse proxies comes from X-Forwarded-For."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detector.auth.ratelimit import DATABASE_SCHEME, DatabaseStorage, storage_uri
from detector.config import Settings, load_config
from detector.db.migrate import upgrade
from tests.conftest import base_config

# One API process: builds the app from the settings in argv[1], tries argv[2]
# wrong logins from the same client address and prints what each answered.
LOGIN_BURST = """
import json, sys
from detector.app import create_app
config, attempts = json.loads(sys.argv[1]), int(sys.argv[2])
client = create_app(config).test_client()
answers = []
for _ in range(attempts):
    r = client.post("/api/auth/login", json={"username": "mallory", "password": "wrong-password"})
    answers.append([r.status_code, r.headers.get("Retry-After"), r.json])
print(json.dumps(answers))
"""


def _login_burst(config: dict, attempts: int) -> list[list]:
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", LOGIN_BURST, json.dumps(config), str(attempts)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers: list[list] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


def test_the_limit_holds_across_two_processes_on_one_database(tmp_path):
    config = base_config(tmp_path, RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3 per minute")
    (tmp_path / "data").mkdir()
    upgrade(config["DATABASE_URL"])

    first = _login_burst(config, 3)
    assert [status for status, _, _ in first] == [401, 401, 401]
    # A second process (another gunicorn worker) sees the first one's attempts.
    second = _login_burst(config, 2)
    assert [status for status, _, _ in second] == [429, 429]
    for _, retry_after, body in second:
        # A one-minute window; the limiter rounds the wait up, so a full minute can read 61.
        assert 1 <= int(retry_after) <= 61
        assert body["error"] == "too_many_requests"
        assert f"{retry_after} s" in body["message"]


def test_the_storage_is_shared_unless_one_is_configured(tmp_path, monkeypatch):
    monkeypatch.delenv("RATELIMIT_STORAGE_URI", raising=False)

    def settings(**values):
        return Settings.from_config(load_config(base_config(tmp_path, **values)))

    assert storage_uri(settings(CELERY_RESULT_BACKEND="file:///tmp/results")) == f"{DATABASE_SCHEME}://"
    assert storage_uri(settings(CELERY_RESULT_BACKEND="redis://cache:6379/0")) == "redis://cache:6379/0"
    configured = settings(CELERY_RESULT_BACKEND="redis://cache:6379/0", RATELIMIT_STORAGE_URI="memory://")
    assert storage_uri(configured) == "memory://"


def test_the_app_uses_the_database_by_default_and_a_set_uri_as_it_is(tmp_path, monkeypatch):
    from detector.app import create_app

    (tmp_path / "data").mkdir()
    monkeypatch.delenv("RATELIMIT_STORAGE_URI", raising=False)
    assert create_app(base_config(tmp_path)).config["RATELIMIT_STORAGE_URI"] == "database://"
    explicit = base_config(tmp_path, RATELIMIT_STORAGE_URI="memory://")
    assert create_app(explicit).config["RATELIMIT_STORAGE_URI"] == "memory://"
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "redis://127.0.0.1:1/3")
    assert create_app(base_config(tmp_path)).config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:1/3"


@pytest.fixture
def storage(tmp_path):
    from detector.db import db

    url = f"sqlite:///{tmp_path / 'limits.sqlite3'}"
    upgrade(url)
    db.configure(url)
    yield DatabaseStorage()
    db.session.remove()
    db.engine.dispose()


def test_database_storage_counts_windows(storage, monkeypatch):
    from detector.auth import ratelimit

    now = [1000.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: now[0])
    assert storage.check()
    assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert storage.get("k") == 3 and storage.get_expiry("k") == 1060.0
    assert storage.incr("other", 10) == 1
    now[0] = 1061.0  # k's window has ended: it starts again, and "other" is forgotten
    assert storage.get("k") == 0
    assert storage.incr("k", 60) == 1
    assert storage.get_expiry("k") == 1121.0
    assert storage.get("other") == 0
    storage.clear("k")
    assert storage.get("k") == 0
    storage.incr("k", 60, amount=2)
    assert storage.reset() == 1


def _limited_client(tmp_path, **settings):
    from detector.app import create_app

    config = base_config(tmp_path, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://", **settings)
    (tmp_path / "data").mkdir()
    upgrade(config["DATABASE_URL"])
    return create_app(config).test_client()


def _login(client, username, password, address="192.0.2.1", **headers):
    return client.post(
        "/api/auth/login",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
        headers=headers,
    )


def test_failed_logins_are_limited_per_account_from_any_address(tmp_path):
    client = _limited_client(
        tmp_path, LOGIN_RATE_LIMIT="100 per minute", LOGIN_ACCOUNT_RATE_LIMIT="3 per minute"
    )
    for name in ("victim", "bystander"):
        client.post("/api/auth/register", json={"username": name, "password": "password123"})
    # A right password does not count against the account.
    assert _login(client, "victim", "password123").status_code == 200
    # Three wrong ones from three addresses use up the account's limit...
    assert [_login(client, "victim", "wrong-password", f"198.51.100.{i}").status_code for i in range(3)] == [
        401
    ] * 3
    limited = _login(client, "victim", "password123", "203.0.113.9")
    assert limited.status_code == 429 and limited.json["error"] == "too_many_requests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    # ...for that account only, and the web app's sign-in shares it.
    assert _login(client, "bystander", "password123", "203.0.113.9").status_code == 200
    session = client.post("/api/auth/session", json={"username": "victim", "password": "password123"})
    assert session.status_code == 429


def test_wrong_current_passwords_count_against_the_account(tmp_path):
    client = _limited_client(
        tmp_path, LOGIN_RATE_LIMIT="100 per minute", LOGIN_ACCOUNT_RATE_LIMIT="2 per minute"
    )
    client.post("/api/auth/register", json={"username": "pat", "password": "password123"})
    token = _login(client, "pat", "password123").json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    wrong = {"current_password": "guess-guess", "new_password": "new-password"}
    assert [client.post("/api/auth/password", headers=headers, json=wrong).status_code for _ in range(2)] == [
        403,
        403,
    ]
    assert client.post("/api/auth/password", headers=headers, json=wrong).status_code == 429
    assert _login(client, "pat", "password123", "203.0.113.50").status_code == 429


def test_behind_trusted_proxies_each_client_address_has_its_own_limit(tmp_path):
    client = _limited_client(tmp_path, LOGIN_RATE_LIMIT="2 per minute", TRUSTED_PROXIES=1)
    proxy = "10.0.0.2"  # every request comes from the proxy

    def attempt(forwarded_for):
        return _login(
            client, "nobody", "wrong-password", proxy, **{"X-Forwarded-For": forwarded_for}
        ).status_code

    assert [attempt("198.51.100.7") for _ in range(3)] == [401, 401, 429]
    # Another client behind the same proxy is not limited by the first one's attempts.
    assert attempt("198.51.100.8") == 401
    # A client cannot pose as another by sending its own X-Forwarded-For: the proxy
    # appends the address it saw, and only that last entry is trusted.
    assert attempt("192.0.2.99, 198.51.100.7") == 429


def test_without_trusted_proxies_x_forwarded_for_is_ignored(tmp_path):
    client = _limited_client(tmp_path, LOGIN_RATE_LIMIT="2 per minute")
    codes = [
        _login(
            client, "nobody", "wrong-password", "192.0.2.1", **{"X-Forwarded-For": f"198.51.100.{i}"}
        ).status_code
        for i in range(3)
    ]
    assert codes == [401, 401, 429]


def test_registration_is_limited_per_address(tmp_path):
    client = _limited_client(tmp_path, REGISTER_RATE_LIMIT="2 per hour")

    def register(name, address):
        body = {"username": name, "password": "password123"}
        return client.post("/api/auth/register", json=body, environ_base={"REMOTE_ADDR": address})

    assert [register(f"user{i}", "192.0.2.1").status_code for i in range(3)] == [201, 201, 429]
    assert register("other", "192.0.2.2").status_code == 201

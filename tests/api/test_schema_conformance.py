"""The API and its document (/api/swagger.json) agree.

The first test is ``st run --checks all`` in Python: every phase of schemathesis's
engine (the document's examples, coverage of each parameter's edges, fuzzing, and
stateful sequences that follow the responses' links) with every check it has:
no server error; status codes, content types, headers and bodies as documented;
schema-valid requests accepted and schema-violating ones refused; missing or
ignored credentials; methods the document does not list. It runs over HTTP against
the test app served in a thread, on both databases, and must find nothing.

Credentials: a fresh access token of a test user on every request, so that a
generated logout (or logout-everywhere) revokes only tokens nothing else uses; on
PostgreSQL the user's API key instead, wherever the operation takes one. The login
limit is off in the test app, as in every API test (RATELIMIT_ENABLED=False;
tests/api/test_rate_limit.py tests the limit).

What the document states only in words, because Swagger 2.0 cannot say it, is
excused here, and nothing else (`_excused`): the groups of create_job's fields in
its ``x-exactly-one-of`` and ``x-at-most-one-of`` extensions, and the
properties of a real upload or key that no schema can check (`WORDS_ONLY`).

The other tests hold the server to single rules of the document.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask_jwt_extended import create_access_token
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.openapi.checks import RejectedPositiveData
from werkzeug.serving import make_server

from detector.app import create_app
from detector.db import db
from detector.db.migrate import upgrade
from detector.models import User
from tests.api.test_jobs import upload
from tests.conftest import Auth, base_config, postgres_schema, reconfigure

MAX_EXAMPLES = 10  # per operation, phase and generation mode
SEED = 20261207

# Refusals of schema-valid requests for a rule the document states in words only,
# by operation: (HTTP status, the answer's message). Each names its field.
WORDS_ONLY: dict[str, list[tuple[int, re.Pattern[str]]]] = {
    "POST /jobs": [
        # `type: file` is any bytes; the description says "any container FFmpeg reads".
        (415, re.compile(r"^not a video: ")),
        (422, re.compile(r"^unusable video: ")),
        # An Idempotency-Key is for one request: what an earlier one sent decides.
        (
            422,
            re.compile(
                r"^this Idempotency-Key was used for a request with other parameters|"
                r"^the job made with this Idempotency-Key was deleted"
            ),
        ),
        # An http(s) URL whose host resolves to a public address, checked when it is sent.
        (400, re.compile(r"^(source|callback)_url: ")),
        # Labels or class ids of the chosen model (GET /api/labels).
        (400, re.compile(r"^classes: unknown label|^classes must name")),
        # A span with frames in it: end after start, start before the video's end.
        (400, re.compile(r"^end \(.*\) must be after start|^start \(.*\) is at or after the end")),
    ],
    "POST /jobs/{job_id}/analytics": [
        # Points inside the job's frame, polygons whose edges do not cross, lines of some
        # length, names used once, calibration points not three on a line, at most 10,000
        # intervals, a hysteresis within the frame: each refusal names its field.
        (400, re.compile(r"^(zones|lines|calibration|interval|hysteresis)\b[^:]*: ")),
    ],
    "POST /keys": [
        # A date-time in the future (and one a date can hold in UTC).
        (400, re.compile(r"^expires_at must be in the future")),
    ],
    "GET /search": [
        # Base64url text, but only a next_cursor the API handed out is a cursor.
        (400, re.compile(r"^cursor: not a next_cursor of this API")),
        # <analytics id>:<zone name> of an analytics one of your jobs ran.
        (400, re.compile(r"^zone: none of your jobs has analytics |^zone: analytics \S+ has no zone ")),
    ],
}


def _given(body: Any, name: str) -> bool:
    """Whether the form field was sent with a value (the API reads an empty one as absent)."""
    return isinstance(body, dict) and body.get(name) not in (None, "")


def _breaks_a_declared_group(operation: dict[str, Any], body: Any) -> bool:
    """Whether the form breaks a group of the operation's x-exactly-one-of or x-at-most-one-of."""

    def sent(group: list[str]) -> int:
        return sum(_given(body, name) for name in group)

    return any(sent(group) != 1 for group in operation.get("x-exactly-one-of", [])) or any(
        sent(group) > 1 for group in operation.get("x-at-most-one-of", [])
    )


def _excused(failure: Any, case: Any, response: Any) -> bool:
    """Whether a failure is a refusal the document announces in words (module docstring)."""
    if not isinstance(failure, RejectedPositiveData):
        return False
    if response.status_code == 400 and _breaks_a_declared_group(case.operation.definition.raw, case.body):
        return True
    try:
        message = str(response.json().get("message", ""))
    except Exception:  # not JSON: no excuse
        return False
    return any(
        response.status_code == status and rule.search(message)
        for status, rule in WORDS_ONLY.get(case.operation.label, [])
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Flask, str, str]]:
    """The test app over HTTP on a loopback port (database, base URL).

    Over HTTP rather than in-process: schemathesis 4.32.5's WSGI transport fails in
    its ignored_auth check (it passes ``max_redirects`` to werkzeug's EnvironBuilder).
    """
    with postgres_schema() if request.param == "postgresql" else nullcontext() as url:
        config = base_config(tmp_path, **({"DATABASE_URL": url} if url else {}))
        Path(config["DATA_DIR"]).mkdir(parents=True)
        upgrade(config["DATABASE_URL"])
        app = create_app(config)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield app, request.param, f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join()
            db.session.remove()
            db.engine.dispose()


def _credentials(app: Flask, use_api_key: bool) -> Any:
    """A schemathesis auth provider: a fresh access token of user "fuzzer" on every
    request, or, with ``use_api_key``, fuzzer's API key where the operation takes one."""
    client = app.test_client()
    Auth(client).register("fuzzer")
    with app.app_context():
        user_id = db.session.query(User).filter_by(username="fuzzer").one().id
    key = None
    if use_api_key:
        headers = Auth(client).headers("fuzzer")
        # Every scope the document offers, so that no operation is refused for want of one.
        request = client.get("/api/swagger.json").json["definitions"]["ApiKeyRequest"]["properties"]
        scopes = request.get("scopes", {}).get("items", {}).get("enum", [])
        response = client.post("/api/keys", headers=headers, json={"name": "schemathesis", "scopes": scopes})
        assert response.status_code == 201, response.json
        key = response.json["key"]

    class Credentials:
        def get(self, case: Any, context: Any) -> dict[str, str]:
            takes_key = {"ApiKey": []} in case.operation.definition.raw.get("security", [])
            if key is not None and takes_key:
                return {"X-API-Key": key}
            with app.app_context():
                # Made from the user as stored now, so that it is of the token generation
                # a generated logout-everywhere or password change has moved to.
                token = create_access_token(identity=db.session.get(User, user_id))
                return {"Authorization": f"Bearer {token}"}

        def set(self, case: Any, data: dict[str, str], context: Any) -> None:
            case.headers = {**(case.headers or {}), **data}

    return Credentials


@pytest.mark.slow
def test_schemathesis_with_every_check_finds_nothing(served):
    app, database, base_url = served
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "continue-on-failure": True,
            "checks": {"enabled": True},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "mode": "all"},
        }
    )
    schema = schemathesis.openapi.from_url(f"{base_url}/api/swagger.json", config=config)
    schema.auth(refresh_interval=None)(_credentials(app, use_api_key=database == "postgresql"))

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        return not _excused(failure, case, response)

    failures: list[str] = []
    errors: list[str] = []
    tested: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            tested.update(node.value.operation.label for node in event.recorder.cases.values())
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status is Status.FAILURE and check.failure_info is not None:
                        case = event.recorder.cases[case_id].value
                        failures.append(
                            f"{event.phase.value} {case.operation.label} {check.name}: "
                            f"{check.failure_info.failure.title}\n{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(repr(getattr(event, "value", None) or getattr(event, "exception", None)))
        elif isinstance(event, events.EngineFinished):
            failures.extend(f"after the run: {failure.title}" for failure in event.failures)
    assert not errors, "\n".join(errors)
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    documented = {operation.ok().label for operation in schema.get_all_operations()}
    assert documented <= tested, documented - tested


# -- single rules ------------------------------------------------------------------------


def _spec(client) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/api/swagger.json").json
    return document


def _parameters(spec: dict[str, Any], path: str, method: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in spec["paths"][path][method]["parameters"]}


def test_the_documents_api_key_example_is_accepted(client, auth: Auth):
    request = _spec(client)["definitions"]["ApiKeyRequest"]["properties"]
    example = {name: prop["example"] for name, prop in request.items() if "example" in prop}
    assert set(example) >= {"name", "expires_at"}
    response = client.post("/api/keys", headers=auth.headers(), json=example)
    assert response.status_code == 201, response.json
    assert datetime.fromisoformat(response.json["expires_at"]) == datetime.fromisoformat(
        example["expires_at"]
    )


# (name as sent, name as kept; None: refused)
KEY_NAMES = [
    ("x" * 100, "x" * 100),
    ("  laptop CLI\t", "laptop CLI"),
    ("\u00a0", "\u00a0"),  # not white space in the document's pattern, nor here
    (" " + "x" * 100, None),  # 101 characters as sent, 100 without the space
    ("x" * 100 + "\n", None),
    (" \t\n", None),
    ("", None),
    ("lap\x00top", None),  # PostgreSQL's text cannot hold NUL: a 400, not a 500
]


def test_a_key_name_is_judged_as_sent_by_the_documents_rules(client, auth: Auth):
    spec = _spec(client)["definitions"]["ApiKeyRequest"]["properties"]["name"]
    headers = auth.headers()
    for name, kept in KEY_NAMES:
        fits = 1 <= len(name) <= spec["maxLength"] and re.search(spec["pattern"], name) is not None
        assert fits == (kept is not None), name
        response = client.post("/api/keys", headers=headers, json={"name": name})
        if kept is None:
            assert response.status_code == 400, name
            assert response.json["message"].startswith("name must be 1 to 100 characters"), response.json
        else:
            assert response.status_code == 201, (name, response.json)
            assert response.json["name"] == kept


# (expires_at, whether the API takes it)
EXPIRIES = [
    ("2099-01-01t00:00:00.5z", True),  # RFC 3339 allows the lower case
    ("2099-06-01T12:00:00+02:00", True),
    ("9999-12-31T23:59:59-14:00", False),  # after the year 9999 in UTC: a 400, not a 500
    ("2099-01-01 00:00:00+00:00", False),  # ISO 8601, not RFC 3339 (the document's date-time)
    ("2099-01-01T00:00+00:00", False),
    ("2099-01-01T00:00:00", False),
    ("2000-01-01T00:00:00Z", False),  # past
]


def test_expires_at_is_a_future_rfc_3339_date_time(client, auth: Auth):
    headers = auth.headers()
    for expires_at, taken in EXPIRIES:
        response = client.post("/api/keys", headers=headers, json={"name": "a", "expires_at": expires_at})
        assert response.status_code == (201 if taken else 400), (expires_at, response.json)
        if not taken:
            assert response.json["message"].startswith("expires_at must be"), response.json


def test_the_labels_model_example_is_what_the_default_deployment_answers(client, auth: Auth):
    example = _spec(client)["definitions"]["Labels"]["properties"]["model"]["example"]
    assert client.get("/api/labels", headers=auth.headers()).json["model"] == example


@pytest.fixture
def two_models(app: Flask, tmp_path: Path) -> Flask:
    path = tmp_path / "models.toml"
    path.write_text(
        'default = "fast"\n[models.fast]\nweights = "random"\n[models.slow]\nweights = "random"\n'
    )
    reconfigure(app, DETECTOR_MODELS=str(path))
    return app


def test_model_fields_list_the_deployments_models(two_models, client, auth: Auth):
    spec = _spec(client)
    listed = [m["name"] for m in client.get("/api/models", headers=auth.headers()).json["models"]]
    for parameter in (
        _parameters(spec, "/labels", "get")["model"],
        _parameters(spec, "/jobs", "post")["model"],
    ):
        assert sorted(parameter["enum"]) == sorted(listed) == ["fast", "slow"]
        assert parameter["default"] == "fast"
    for name in listed:
        assert client.get(f"/api/labels?model={name}", headers=auth.headers()).status_code == 200
    # Only a name in the enum: not an empty or a space-padded one.
    for name in ("", " fast", "fast ", "FAST", "default"):
        response = client.get("/api/labels", query_string={"model": name}, headers=auth.headers())
        assert response.status_code == 400, name
        assert response.json["message"].startswith("model must be one of fast, slow"), response.json


def test_upload_exclusions_are_declared_and_enforced(client, auth: Auth, small_video):
    spec = _spec(client)
    create_job = spec["paths"]["/jobs"]["post"]
    fields = _parameters(spec, "/jobs", "post")
    assert create_job["x-at-most-one-of"] == [["sample_fps", "frame_stride"]]
    assert create_job["x-exactly-one-of"] == [["video", "source_url"]]
    assert "Not with frame_stride" in fields["sample_fps"]["description"]
    assert "Not with sample_fps" in fields["frame_stride"]["description"]
    for name in ("video", "source_url"):
        assert "exactly one of video and source_url" in fields[name]["description"]

    headers = auth.headers()
    both = upload(client, headers, small_video, sample_fps=2, frame_stride=3)
    assert both.status_code == 400
    assert both.json["message"] == "sample_fps and frame_stride: give one or the other, not both"
    assert upload(client, headers, small_video, sample_fps=2).status_code == 202
    assert upload(client, headers, small_video, frame_stride=3).status_code == 202
    neither = upload(client, headers, None, frame_stride=3)
    assert neither.status_code == 400 and "'video'" in neither.json["message"]
    both = upload(client, headers, small_video, source_url="https://93.184.215.14/clip.mp4")
    assert both.status_code == 400 and "not both" in both.json["message"]

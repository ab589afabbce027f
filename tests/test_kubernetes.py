"""The Helm chart in deploy/kubernetes: rendered, validated, and held to the service.

No cluster and no network. The chart is rendered by Helm's own engine
(helm-python-sdk: Helm v4's Go SDK in a wheel, since no helm binary installs from
the registries this project uses) with its default values and with
deploy/kubernetes/examples/two-models.yaml, then every object is checked:
Kubernetes kinds against the API's schemas with kubernetes-validate (strict:
unknown fields fail), KEDA's against the openAPIV3Schema of its CRDs, vendored in
deploy/kubernetes/schemas/keda (see the README there), made strict the same way.
Then what the service needs: one scheduler, a detector per model with its queue,
PDB and ScaledObject, commands, images and env as docker-compose.yaml has them.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from detector.config import load_config
from detector.detection.catalog import NAME as CATALOG_NAME
from detector.detection.catalog import catalog_from
from detector.models import WAIT_WORKER, Base, Job, JobStatus, User
from detector.pipeline.limits import GRACE_SECONDS
from detector.runtime.queues import model_queue
from tests.conftest import missing_tool
from tests.helm_process import HelmProcess
from tests.test_deployment import MAIN, check_command, env_example, environment, load, services

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
CHART = KUBERNETES / "detector"
TWO_MODELS = KUBERNETES / "examples" / "two-models.yaml"
KEDA_SCHEMAS = KUBERNETES / "schemas" / "keda"
# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest
# kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
RELEASE = "detector"
# The keys of the RabbitMQ and PostgreSQL scalers' trigger metadata, from
# pkg/scalers/rabbitmq_scaler.go and postgresql_scaler.go of KEDA v2.20.2 (the CRD
# types them only as a map of strings); the subset this chart may use.
RABBITMQ_TRIGGER_KEYS = {
    "queueName", "mode", "value", "activationValue", "protocol", "vhostName",
    "excludeUnacknowledged", "useRegex", "pageSize", "operation", "timeout", "unsafeSsl",
}  # fmt: skip
POSTGRESQL_TRIGGER_KEYS = {"query", "targetQueryValue", "activationTargetQueryValue"}
SECRET_KEYS = {
    "SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
    "RATELIMIT_STORAGE_URI", "KEDA_RABBITMQ_URL", "KEDA_POSTGRES_URL",
}  # fmt: skip


_HELM = HelmProcess()


def helm(op: str, **args: Any) -> Any:
    """Helm's ``op`` (render, lint) on ``args``, run in a process of its own (tests/helm_process.py)."""
    if importlib.util.find_spec("helm_python") is None:  # not imported here: see tests/helm_process.py
        missing_tool("helm-python-sdk is not installed (pip install -e '.[dev]')")
    return _HELM.request(op, **args)


def values_of(path: Path | None) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) if path else {}


@cache
def _render(values_json: str) -> tuple[dict[str, Any], ...]:
    manifests = helm(
        "render", chart=str(CHART), values=json.loads(values_json), name=RELEASE, namespace="detector"
    )
    objects = []
    for source, manifest in sorted(manifests.items()):
        if source.endswith((".txt", ".tpl")):
            continue
        objects += [{**doc, "_source": source} for doc in yaml.safe_load_all(manifest) if doc]
    return tuple(objects)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's objects for ``values``, each with the template it came from in ``_source``."""
    return copy.deepcopy(list(_render(json.dumps(values, sort_keys=True))))


def without_source(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "_source"}


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(workload)["containers"]
    return only


def env_of(workload: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(workload).get("env", []) if "value" in e}


def component(objects: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet", "Job"}
        and o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == name
    ]


VALUES = {"default values": None, "two models and the trial servers": TWO_MODELS}


@pytest.fixture(params=list(VALUES), ids=list(VALUES))
def rendered(request: pytest.FixtureRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    values = values_of(VALUES[request.param])
    return values, render(values)


def merged_values(values: dict[str, Any]) -> dict[str, Any]:
    """The chart's values.yaml with ``values`` over it, as Helm merges them (maps merge, lists replace)."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    return merge(values_of(CHART / "values.yaml"), values)


# --- the schemas -----------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as `kubectl apply` (strict field
    validation) does: every object with properties and no escape hatch gets
    additionalProperties: false."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def keda_validators() -> dict[tuple[str, str], Any]:
    validators = {}
    for path in sorted(KEDA_SCHEMAS.glob("*.json")):
        crd = json.loads(path.read_text())
        validators[(crd["apiVersion"], crd["kind"])] = jsonschema.Draft7Validator(
            strict(crd["openAPIV3Schema"])
        )
    return validators


def schema_errors(obj: dict[str, Any]) -> Iterator[str]:
    """What the Kubernetes API (or KEDA's CRD) would refuse in ``obj``."""
    try:
        import kubernetes_validate
    except ImportError:
        missing_tool("kubernetes-validate is not installed (pip install -e '.[dev]')")
    where = f"{obj['kind']} {obj['metadata'].get('name')}"
    if obj["apiVersion"].startswith("keda.sh/"):
        validator = keda_validators().get((obj["apiVersion"], obj["kind"]))
        if validator is None:
            yield f"{where}: no vendored schema for {obj['apiVersion']} {obj['kind']}"
            return
        for error in validator.iter_errors(obj):
            yield f"{where}: {'/'.join(map(str, error.path))}: {error.message}"
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            yield f"{where} (Kubernetes {version}): {'/'.join(map(str, exc.path))}: {exc.message}"
        except kubernetes_validate.SchemaNotFoundError:
            yield f"{where}: Kubernetes {version} has no {obj['apiVersion']} {obj['kind']}"


def test_every_object_is_valid(rendered: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _values, objects = rendered
    errors = [e for obj in objects for e in schema_errors(without_source(obj))]
    assert not errors, "\n".join(errors)


def test_the_checks_catch_mistakes() -> None:
    objects = render({})
    scaled = without_source(of_kind(objects, "ScaledObject")[0])
    scaled["spec"]["cooldownPeriod"] = "300"  # a string
    scaled["spec"]["scaleTargetRef"]["nmae"] = "typo"
    deployment = without_source(of_kind(objects, "Deployment")[0])
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    auth = without_source(of_kind(objects, "TriggerAuthentication")[0])
    del auth["spec"]["secretTargetRef"][0]["key"]
    assert len(list(schema_errors(scaled))) == 2
    assert len(list(schema_errors(deployment))) == len(KUBERNETES_VERSIONS)
    assert len(list(schema_errors(auth))) == 1


@pytest.mark.parametrize("path", [None, TWO_MODELS], ids=["default values", "two models"])
def test_helm_lint_finds_nothing(path: Path | None) -> None:
    report = helm("lint", chart=str(CHART), values=values_of(path))
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


def test_values_are_checked_against_the_chart_schema() -> None:
    """values.schema.json refuses a misspelt key and a model name the catalog refuses."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    model = schema["properties"]["models"]["items"]
    assert model["properties"]["name"]["pattern"] == CATALOG_NAME.pattern
    fast = values_of(TWO_MODELS)["models"][0]
    misspelt = {**fast, "scaling": {**fast["scaling"], "messagesPerReplca": 3}}
    with pytest.raises(Exception, match="messagesPerReplca"):
        render({"models": [misspelt]})
    with pytest.raises(Exception, match="name"):
        render({"models": [{**fast, "name": "Fast Model"}]})


def test_a_trial_server_needs_a_password() -> None:
    with pytest.raises(Exception, match=r"trial\.postgres\.password is required"):
        render({"trial": {"postgres": {"enabled": True}}})


# --- the service's invariants --------------------------------------------------------


def test_exactly_one_scheduler_replaced_never_doubled(rendered: Any) -> None:
    _values, objects = rendered
    beats = [o for o in of_kind(objects, "Deployment") if "--beat" in container(o)["command"]]
    assert len(beats) == 1, [o["metadata"]["name"] for o in beats]
    (scheduler,) = beats
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"] == {"type": "Recreate"}
    targets = {o["spec"]["scaleTargetRef"]["name"] for o in of_kind(objects, "ScaledObject")}
    targets |= {o["spec"]["scaleTargetRef"]["name"] for o in of_kind(objects, "HorizontalPodAutoscaler")}
    assert scheduler["metadata"]["name"] not in targets


def test_every_model_has_a_detector_on_its_queue_with_a_pdb_and_a_scaled_object(rendered: Any) -> None:
    values, objects = rendered
    models = merged_values(values)["models"]
    detectors = component(objects, "detector")
    assert len(detectors) == len(models)
    for model in models:
        name = model["name"]
        (deployment,) = [
            d for d in detectors if ["--model", name] == _option(container(d)["command"], "--model")
        ]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert "replicas" not in deployment["spec"], "with KEDA, its HPA owns the replica count"

        pdbs = [p for p in of_kind(objects, "PodDisruptionBudget") if _selects(p["spec"]["selector"], labels)]
        assert len(pdbs) == 1, f"model {name}: {len(pdbs)} PodDisruptionBudgets"
        assert pdbs[0]["spec"]["maxUnavailable"] >= 1, "a drain must be able to move a detector"

        (scaled,) = [
            s
            for s in of_kind(objects, "ScaledObject")
            if s["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        ]
        assert scaled["spec"].get("scaleTargetRef", {}).get("kind", "Deployment") == "Deployment"
        assert scaled["spec"]["minReplicaCount"] == model["scaling"]["minReplicas"]
        assert scaled["spec"]["maxReplicaCount"] == model["scaling"]["maxReplicas"]
        triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
        rabbitmq = triggers["rabbitmq"]["metadata"]
        assert rabbitmq["queueName"] == model_queue(name)
        assert set(rabbitmq) <= RABBITMQ_TRIGGER_KEYS
        assert rabbitmq["mode"] == "QueueLength" and float(rabbitmq["value"]) > 0
        # Over HTTP KEDA counts ready and unacknowledged messages: running chunks keep their pods.
        assert rabbitmq["protocol"] == "http" and rabbitmq.get("excludeUnacknowledged") != "true"
        waiting = triggers["postgresql"]["metadata"]
        assert set(waiting) <= POSTGRESQL_TRIGGER_KEYS
        assert f"model_key = '{name}'" in waiting["query"]
        for trigger in triggers.values():
            auth = named(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
            (ref,) = auth["spec"]["secretTargetRef"]
            assert ref["parameter"] == {"rabbitmq": "host", "postgresql": "connection"}[trigger["type"]]
            assert ref["key"] in SECRET_KEYS


def _option(argv: list[str], option: str) -> list[str]:
    return argv[argv.index(option) : argv.index(option) + 2] if option in argv else []


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_the_waiting_jobs_query_runs_on_the_schema(tmp_path: Path) -> None:
    """The ScaledObject's second trigger counts queued jobs that wait for a worker
    of its model (detector.pipeline.admission), in the tables the service has; the
    default model's also counts jobs from before jobs named their model."""
    objects = render(values_of(TWO_MODELS))
    queries = {
        s["metadata"]["labels"]["detector.model"]: t["metadata"]["query"]
        for s in of_kind(objects, "ScaledObject")
        for t in s["spec"]["triggers"]
        if t["type"] == "postgresql"
    }
    assert set(queries) == {"fast", "accurate"}
    assert "model_key IS NULL" in queries["fast"] and "model_key IS NULL" not in queries["accurate"]
    engine = create_engine(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(User(id=1, username="u", password_hash="x"))
        for status, waiting, model in [
            (JobStatus.QUEUED, WAIT_WORKER, "fast"),
            (JobStatus.QUEUED, WAIT_WORKER, None),  # a job from before jobs named their model
            (JobStatus.QUEUED, WAIT_WORKER, "accurate"),
            (JobStatus.QUEUED, None, "accurate"),
            (JobStatus.PROCESSING, None, "accurate"),
        ]:
            session.add(
                Job(
                    owner_id=1,
                    original_filename="v.mp4",
                    storage_key="k",
                    score_threshold=0.5,
                    status=status,
                    waiting_for=waiting,
                    model_key=model,
                )
            )
        session.commit()
        counts = {model: session.execute(text(query)).scalar() for model, query in queries.items()}
    assert counts == {"fast": 2, "accurate": 1}


def test_the_catalog_is_the_models_of_the_values(rendered: Any) -> None:
    values, objects = rendered
    merged = merged_values(values)
    toml = named(objects, "ConfigMap", f"{RELEASE}-models")["data"]["models.toml"]
    declared = tomllib.loads(toml)
    catalog = catalog_from(declared, load_config({"ENV": "test"}), where="models.toml", check_files=False)
    assert list(catalog) == [m["name"] for m in merged["models"]]
    assert catalog.default == (merged["defaultModel"] or merged["models"][0]["name"])
    for model in merged["models"]:
        assert declared["models"][model["name"]] == model["catalog"]
    for workload in component(objects, "detector") + component(objects, "api"):
        assert env_of(workload)["DETECTOR_MODELS"] == "/etc/detector/models.toml"
        mounts = {m["name"]: m["mountPath"] for m in container(workload)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert mounts["models"] == "/etc/detector"
        assert volumes["models"]["configMap"]["name"] == f"{RELEASE}-models"


# The chart's workloads and the compose services they run as.
COMPOSE_SERVICE = {
    "api": "api",
    "migrate": "migrate",
    "processor": "processor",
    "scheduler": "scheduler",
    "render": "render",
    "detector": "detector",
}


def compose_image(service: str, values: dict[str, Any]) -> str:
    """The compose service's image, with the chart's registry and tag for IMAGE_PREFIX and IMAGE_TAG."""
    image = services(MAIN)[service]["image"]
    chart = merged_values(values)["image"]
    return f"{chart['registry']}{image.partition(':')[0]}:{chart['tag']}"


def test_images_commands_and_env_agree_with_docker_compose(rendered: Any) -> None:
    values, objects = rendered
    merged = merged_values(values)
    compose = services(MAIN)
    for name, service in COMPOSE_SERVICE.items():
        workloads = component(objects, name)
        assert workloads, f"no {name} in the chart"
        for workload in workloads:
            where = f"{workload['kind']} {workload['metadata']['name']}"
            argv = container(workload)["command"]
            check_command(argv, where)
            expected_env = fixed_env(service)
            env = env_of(workload)
            if name == "detector":
                model = next(
                    m for m in merged["models"] if _option(argv, "--model") == ["--model", m["name"]]
                )
                image = {"gpu": "detector", "worker": "processor"}[model.get("image", "gpu")]
                assert container(workload)["image"] == compose_image(image, values), where
                assert env["DETECTOR_BACKEND"] == model["catalog"]["backend"], where
                assert argv[:4] == ["detector", "worker", "-Q", "detector"], where
                assert [a for a in argv if a.startswith("--concurrency=")] == [
                    f"--concurrency={model['concurrency']}"
                ]
            else:
                assert container(workload)["image"] == compose_image(service, values), where
                assert argv == _compose_argv(compose[service]), where
            missing = {k: v for k, v in expected_env.items() if env.get(k) != v}
            assert not missing, f"{where}: compose sets {missing}, the chart {env}"


def fixed_env(service: str) -> dict[str, str]:
    """The environment compose gives ``service`` itself (paths, ports), less what it
    takes from .env (``${...}``), which the chart has in its ConfigMap and Secret."""
    raw = environment(load(MAIN)["services"][service])
    return {k: v for k, v in environment(services(MAIN)[service]).items() if "${" not in raw.get(k, "")}


def _compose_argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def test_probes_are_real_commands_and_the_api_uses_its_health_endpoints(rendered: Any) -> None:
    _values, objects = rendered
    for workload in of_kind(objects, "Deployment"):
        probe = container(workload).get("livenessProbe", {})
        if "exec" in probe:
            check_command(probe["exec"]["command"], workload["metadata"]["name"])
    (api,) = component(objects, "api")
    assert container(api)["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container(api)["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (service,) = [s for s in of_kind(objects, "Service") if s["metadata"]["name"] == f"{RELEASE}-api"]
    assert _selects(
        {"matchLabels": service["spec"]["selector"]}, api["spec"]["template"]["metadata"]["labels"]
    )


def test_a_detector_may_finish_its_chunk_when_stopped(rendered: Any) -> None:
    """SIGTERM is Celery's warm shutdown; the grace covers a chunk's whole time limit
    (CHUNK_TIME_LIMIT, then the worker's soft and hard limits GRACE_SECONDS apart)."""
    values, objects = rendered
    chunk_limit = int(merged_values(values)["config"]["CHUNK_TIME_LIMIT"])
    for workload in component(objects, "detector"):
        assert pod_spec(workload)["terminationGracePeriodSeconds"] >= chunk_limit + 2 * GRACE_SECONDS


def test_gpu_models_ask_for_gpus_and_cpu_models_for_none(rendered: Any) -> None:
    values, objects = rendered
    for model in merged_values(values)["models"]:
        (workload,) = [
            w
            for w in component(objects, "detector")
            if w["metadata"]["labels"]["detector.model"] == model["name"]
        ]
        limits = container(workload)["resources"].get("limits", {})
        assert limits.get("nvidia.com/gpu", 0) == model["gpus"]
        assert pod_spec(workload).get("nodeSelector", {}) == model["nodeSelector"]
        assert pod_spec(workload).get("tolerations", []) == model["tolerations"]


def test_app_pods_run_as_non_root_on_a_read_only_root(rendered: Any) -> None:
    _values, objects = rendered
    for workload in objects:
        if workload["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        where = workload["metadata"]["name"]
        security = pod_spec(workload)["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0, where
        for each in pod_spec(workload)["containers"]:
            assert each["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert each["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            if workload["kind"] != "StatefulSet":  # the trial servers write where their images say
                assert each["securityContext"]["readOnlyRootFilesystem"] is True, where
                assert security["runAsUser"] == 10001, where  # the images' user (docker/Dockerfile.*)
        assert pod_spec(workload)["automountServiceAccountToken"] is False, where


def test_settings_are_real_and_secrets_stay_secret(rendered: Any) -> None:
    _values, objects = rendered
    documented = env_example(include_commented=True)
    config = named(objects, "ConfigMap", f"{RELEASE}-config")["data"]
    assert set(config) <= set(documented), set(config) - set(documented)
    assert not set(config) & SECRET_KEYS
    (secret,) = [s for s in of_kind(objects, "Secret") if s["metadata"]["name"] == f"{RELEASE}-secrets"]
    assert set(secret["stringData"]) >= SECRET_KEYS
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        assert secret["stringData"][key], key


def test_the_trial_servers_are_those_of_docker_compose() -> None:
    objects = render(values_of(TWO_MODELS))
    compose = services(MAIN)
    secret = named(objects, "Secret", f"{RELEASE}-secrets")["stringData"]
    for server in ("postgres", "rabbitmq", "redis"):
        statefulset = named(objects, "StatefulSet", f"{RELEASE}-{server}")
        assert container(statefulset)["image"] == compose[server]["image"]
        named(objects, "Service", f"{RELEASE}-{server}")  # the host in the URLs below
    assert container(named(objects, "StatefulSet", f"{RELEASE}-redis"))["command"] == _compose_argv(
        compose["redis"]
    )
    conf = named(objects, "ConfigMap", f"{RELEASE}-rabbitmq")["data"]["90-detector.conf"]
    compose_conf = (ROOT / "docker" / "rabbitmq" / "detector.conf").read_text()
    settings = [line for line in compose_conf.splitlines() if line.strip() and not line.startswith("#")]
    assert conf.splitlines() == settings
    assert re.fullmatch(
        rf"postgresql\+psycopg://detector:[^@]+@{RELEASE}-postgres:5432/detector", secret["DATABASE_URL"]
    )
    assert re.fullmatch(rf"amqp://detector:[^@]+@{RELEASE}-rabbitmq:5672//", secret["CELERY_BROKER_URL"])
    assert secret["CELERY_RESULT_BACKEND"] == f"redis://{RELEASE}-redis:6379/0"
    assert re.fullmatch(rf"http://detector:[^@]+@{RELEASE}-rabbitmq:15672", secret["KEDA_RABBITMQ_URL"])
    assert secret["KEDA_POSTGRES_URL"] == secret["DATABASE_URL"].replace(
        "postgresql+psycopg://", "postgresql://"
    )


def test_migrations_run_after_install_and_before_each_upgrade() -> None:
    (job,) = component(render({}), "migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    assert container(job)["command"] == ["sh", "/app/docker/boot.sh"]


# --- videos in a bucket (storage.s3) ---------------------------------------------------

S3_VALUES = {
    "storage": {
        "s3": {
            "bucket": "detector-videos",
            "prefix": "/videos/",
            "endpoint": "https://s3.example.com",
            "region": "eu-west-1",
            "accessKeyId": "AKIAEXAMPLE",
            "secretAccessKey": "example-secret",
        }
    }
}
MINIO_VALUES = {
    "storage": {"s3": {"bucket": "detector-videos"}},
    "trial": {"minio": {"enabled": True, "password": "change-me-minio"}},
}
APP_COMPONENTS = ("api", "migrate", "processor", "scheduler", "render", "detector")


def _secret_refs(workload: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The container's env variables taken from Secrets: name -> (Secret, key)."""
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container(workload).get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def assert_no_video_volume(objects: list[dict[str, Any]]) -> None:
    """No PersistentVolumeClaim for the videos, and no app pod mounts a claim at all
    (nor /videos): the pods share nothing but the network."""
    claims = [o["metadata"]["name"] for o in of_kind(objects, "PersistentVolumeClaim")]
    assert f"{RELEASE}-videos" not in claims, claims
    for name in APP_COMPONENTS:
        workloads = component(objects, name)
        assert workloads, name
        for workload in workloads:
            where = workload["metadata"]["name"]
            volumes = pod_spec(workload)["volumes"]
            assert not [v for v in volumes if "persistentVolumeClaim" in v], where
            mounts = {m["mountPath"]: m["name"] for m in container(workload)["volumeMounts"]}
            assert "/videos" not in mounts, where
            # The render's scratch file (detector/storage/s3.py, new_scratch) goes to /tmp.
            assert {v["name"]: v for v in volumes}[mounts["/tmp"]]["emptyDir"] is not None, where
            assert "VIDEO_STORAGE" not in env_of(workload), f"{where}: the ConfigMap's would be overridden"


@pytest.mark.parametrize("values", [S3_VALUES, MINIO_VALUES], ids=["a bucket", "the trial MinIO"])
def test_videos_in_a_bucket_render_valid_objects(values: dict[str, Any]) -> None:
    objects = render(values)
    errors = [e for obj in objects for e in schema_errors(without_source(obj))]
    assert not errors, "\n".join(errors)
    report = helm("lint", chart=str(CHART), values=values)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


def test_videos_in_a_bucket_are_settings_and_keys_and_no_shared_volume() -> None:
    objects = render(S3_VALUES)
    config = named(objects, "ConfigMap", f"{RELEASE}-config")["data"]
    assert config["VIDEO_STORAGE"] == "s3://detector-videos/videos"
    assert config["S3_ENDPOINT_URL"] == "https://s3.example.com"
    assert config["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert set(config) <= set(env_example(include_commented=True)), set(config) - set(env_example(True))
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(config)
    keys = named(objects, "Secret", f"{RELEASE}-s3")["stringData"]
    assert keys == {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret"}
    for name in APP_COMPONENTS:
        for workload in component(objects, name):
            assert _secret_refs(workload) == {
                "AWS_ACCESS_KEY_ID": (f"{RELEASE}-s3", "AWS_ACCESS_KEY_ID"),
                "AWS_SECRET_ACCESS_KEY": (f"{RELEASE}-s3", "AWS_SECRET_ACCESS_KEY"),
            }, workload["metadata"]["name"]
    assert_no_video_volume(objects)
    # The storage the pods would build from these settings.
    from detector.storage.s3 import S3VideoStorage

    storage = S3VideoStorage.from_url(config["VIDEO_STORAGE"])
    assert (storage.bucket, storage.prefix) == ("detector-videos", "videos/")


def test_the_bucket_keys_may_come_from_a_secret_of_your_own_or_a_pod_role() -> None:
    own = render({"storage": {"s3": {"bucket": "detector-videos", "existingSecret": "my-keys"}}})
    assert not [s for s in of_kind(own, "Secret") if s["metadata"]["name"] == f"{RELEASE}-s3"]
    for workload in component(own, "processor") + component(own, "api"):
        assert {secret for secret, _key in _secret_refs(workload).values()} == {"my-keys"}
    config = named(own, "ConfigMap", f"{RELEASE}-config")["data"]
    assert "S3_ENDPOINT_URL" not in config and "AWS_DEFAULT_REGION" not in config  # AWS, boto3's default
    role = render({"storage": {"s3": {"bucket": "detector-videos", "prefix": ""}}})
    assert named(role, "ConfigMap", f"{RELEASE}-config")["data"]["VIDEO_STORAGE"] == "s3://detector-videos"
    for workload in component(role, "render"):
        assert _secret_refs(workload) == {}
    assert_no_video_volume(role)


def test_without_a_bucket_the_videos_are_on_the_shared_volume() -> None:
    objects = render({})
    named(objects, "PersistentVolumeClaim", f"{RELEASE}-videos")
    for workload in component(objects, "detector") + component(objects, "render"):
        mounts = {m["name"]: m["mountPath"] for m in container(workload)["volumeMounts"]}
        assert mounts["videos"] == env_of(workload)["VIDEO_STORAGE"] == "/videos"
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(_secret_refs(workload))
    assert "VIDEO_STORAGE" not in named(objects, "ConfigMap", f"{RELEASE}-config")["data"]


def test_the_trial_minio_is_that_of_docker_compose_and_makes_the_bucket() -> None:
    objects = render(MINIO_VALUES)
    s3_compose = load(ROOT / "docker-compose.s3.yaml")["services"]
    (server,) = component(objects, "minio")
    assert server["kind"] == "Deployment" and server["spec"]["strategy"] == {"type": "Recreate"}
    assert container(server)["image"] == s3_compose["minio"]["image"]
    claim = named(objects, "PersistentVolumeClaim", f"{RELEASE}-minio")
    assert {v["name"]: v for v in pod_spec(server)["volumes"]}["data"]["persistentVolumeClaim"] == {
        "claimName": claim["metadata"]["name"]
    }
    service = named(objects, "Service", f"{RELEASE}-minio")
    assert [p["port"] for p in service["spec"]["ports"]] == [9000]
    assert _selects(
        {"matchLabels": service["spec"]["selector"]}, server["spec"]["template"]["metadata"]["labels"]
    )

    (job,) = component(objects, "minio-bucket")
    assert container(job)["image"] == s3_compose["minio-bucket"]["image"]
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert "post-install" in hooks and "post-upgrade" in hooks
    script = container(job)["command"][-1]
    assert f"http://{RELEASE}-minio:9000" in script and 'mc mb --ignore-existing "store/$S3_BUCKET"' in script
    assert env_of(job)["S3_BUCKET"] == "detector-videos"

    # MinIO's root user and password are the pods' keys; its endpoint and region are theirs.
    trial = named(objects, "Secret", f"{RELEASE}-trial")["stringData"]
    keys = named(objects, "Secret", f"{RELEASE}-s3")["stringData"]
    assert keys == {"AWS_ACCESS_KEY_ID": "detector", "AWS_SECRET_ACCESS_KEY": trial["MINIO_ROOT_PASSWORD"]}
    for workload in (server, job):
        assert env_of(workload)["MINIO_ROOT_USER"] == keys["AWS_ACCESS_KEY_ID"]
        assert _secret_refs(workload)["MINIO_ROOT_PASSWORD"] == (f"{RELEASE}-trial", "MINIO_ROOT_PASSWORD")
    config = named(objects, "ConfigMap", f"{RELEASE}-config")["data"]
    assert config["S3_ENDPOINT_URL"] == f"http://{RELEASE}-minio:9000"
    assert config["VIDEO_STORAGE"] == "s3://detector-videos/videos"
    assert config["AWS_DEFAULT_REGION"] == "us-east-1"
    assert_no_video_volume(objects)
    test_app_pods_run_as_non_root_on_a_read_only_root((MINIO_VALUES, objects))


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"storage": {"s3": {"bucket": "Detector_Videos"}}}, r"/storage/s3/bucket"),
        ({"storage": {"s3": {"bucket": "ab"}}}, r"/storage/s3/bucket"),
        ({"storage": {"s3": {"bucket": "-videos"}}}, r"/storage/s3/bucket"),
        ({"storage": {"s3": {"bucket": "s3://videos"}}}, r"/storage/s3/bucket"),
        ({"storage": {"s3": {"bucket": "videos", "endpoint": "minio:9000"}}}, r"/storage/s3/endpoint"),
        ({"storage": {"s3": {"bucket": "videos", "buckte": "x"}}}, r"buckte"),
        ({"storage": {"s3": {"bucket": "videos", "accessKeyId": "AK"}}}, r"secretAccessKey"),
        (
            {"storage": {"s3": {"bucket": "videos", "existingSecret": "k", "accessKeyId": "a", "secretAccessKey": "b"}}},
            r"accessKeyId",
        ),
        ({"trial": {"minio": {"enabled": True, "password": "long-enough"}}}, r"/storage/s3/bucket"),
        ({**MINIO_VALUES, "trial": {"minio": {"enabled": True, "password": "short"}}}, r"/trial/minio/password"),
        ({"storage": {"s3": {"bucket": "videos"}}, "trial": {"minio": {"enabled": True}}}, r"trial\.minio\.password is required"),
    ],
    ids=[
        "upper case and underscore", "too short", "a hyphen first", "a URL", "an endpoint without a scheme",
        "a misspelt key", "a key without its secret", "a Secret and keys", "the trial MinIO without a bucket",
        "a short MinIO password", "the trial MinIO without a password",
    ],
)  # fmt: skip
def test_the_chart_refuses_a_bad_bucket_setting(values: dict[str, Any], error: str) -> None:
    with pytest.raises(Exception, match=error):
        render(values)

"""Settings for every process of the service, read from the environment and `.env`.

Three profiles, chosen by ``DETECTOR_ENV``: ``development`` (the default),
``test`` and ``production``. With no servers configured the service runs on
embedded defaults: SQLite for the database, kombu's filesystem transport for the
broker and Celery's file result store, all under ``DATA_DIR``.

`load_config` gives the settings as Flask's config mapping (upper-case names,
as in the environment); `Settings` is the same settings typed and frozen, read
once per app (`current_settings()` inside an app context). Code reads
``settings.chunk_frames``, never ``int(config["CHUNK_FRAMES"])``.

This module imports nothing else from ``detector``.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dotenv import find_dotenv, load_dotenv

PROFILES = ("development", "test", "production")

# The placeholder secrets shipped in .env.example; production refuses them.
EXAMPLE_SECRETS = frozenset({"change-me", "change-me-too", ""})


# No task may run longer: a task acknowledges its message when it ends, and RabbitMQ
# takes back a message held unacknowledged for its consumer_timeout and delivers it
# again (docker/rabbitmq/detector.conf sets that to 24 hours; docs/operations.md,
# "Time limits").
LONGEST_TASK_SECONDS = 23 * 3600


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says what to change."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _video_storage(value: str) -> str:
    """VIDEO_STORAGE as the app uses it: an object store's URL as given, a directory made
    absolute."""
    return value if value.startswith("s3://") else str(Path(value).resolve())


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment; a clear error when it is not one."""
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    return raw.lower() in TRUE_WORDS


def _dev_secret(data_dir: Path, name: str) -> str:
    """A random secret kept in DATA_DIR so development tokens survive restarts."""
    path = data_dir / f".{name.lower()}"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value)
    path.chmod(0o600)
    return value


def load_env_file() -> None:
    """Put the settings of a ``.env`` file into the environment, below what is set there.

    The file is the working directory's ``.env``, or the nearest one above it.
    """
    load_dotenv(find_dotenv(usecwd=True), override=False)


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the settings dict for `create_app` and the Celery workers.

    Values come from ``overrides`` first, then environment variables (a ``.env``
    file in the working directory is loaded without overriding the environment),
    then the profile's defaults.
    """
    load_env_file()
    overrides = dict(overrides or {})
    profile = overrides.get("ENV") or _env("DETECTOR_ENV", "development")
    if profile not in PROFILES:
        raise ConfigError(f"DETECTOR_ENV must be one of {', '.join(PROFILES)}, got {profile!r}")

    data_dir = Path(str(overrides.get("DATA_DIR") or _env("DATA_DIR", "instance"))).resolve()
    broker_url = overrides.get("CELERY_BROKER_URL") or _env("CELERY_BROKER_URL", "filesystem://")
    result_backend = overrides.get("CELERY_RESULT_BACKEND") or _env(
        "CELERY_RESULT_BACKEND", f"file://{data_dir / 'results'}"
    )

    config: dict[str, Any] = {
        "ENV": profile,
        "TESTING": profile == "test",
        "DEBUG": False,
        "DATA_DIR": str(data_dir),
        "SECRET_KEY": _env("SECRET_KEY"),
        "JWT_SECRET_KEY": _env("JWT_SECRET_KEY"),
        "JWT_ACCESS_TOKEN_EXPIRES": env_int("JWT_ACCESS_MINUTES", 60) * 60,
        "JWT_REFRESH_TOKEN_EXPIRES": env_int("JWT_REFRESH_DAYS", 30) * 86400,
        "DATABASE_URL": _env("DATABASE_URL", f"sqlite:///{data_dir / 'detector.sqlite3'}"),
        # A local directory (a volume, NFS), or s3://bucket/prefix (detector.storage.s3).
        "VIDEO_STORAGE": _video_storage(_env("VIDEO_STORAGE", "video_storage") or ""),
        # Uploads larger than this are refused with 413 before they are read.
        "MAX_CONTENT_LENGTH": env_int("MAX_UPLOAD_MB", 2048) * 1024 * 1024,
        # Videos larger than this many pixels per frame are refused (8K UHD by default).
        "MAX_FRAME_PIXELS": env_int("MAX_FRAME_PIXELS", 7680 * 4320),
        # Login attempts (POST /api/auth/login and /session) per client address...
        "LOGIN_RATE_LIMIT": _env("LOGIN_RATE_LIMIT", "10 per minute"),
        # ...and failed ones per account, whatever address they come from.
        "LOGIN_ACCOUNT_RATE_LIMIT": _env("LOGIN_ACCOUNT_RATE_LIMIT", "20 per hour"),
        # Accounts made (POST /api/auth/register) per client address.
        "REGISTER_RATE_LIMIT": _env("REGISTER_RATE_LIMIT", "10 per hour"),
        # False: POST /api/auth/register answers 403; accounts come from the operator
        # (`detector user add`).
        "REGISTRATION_OPEN": _env_bool("REGISTRATION_OPEN", True),
        # Reverse proxies in front of the API that append to X-Forwarded-For (and set
        # X-Forwarded-Proto): the client address is the one the last of them saw.
        # 0: none, the peer's address is the client's.
        "TRUSTED_PROXIES": env_int("TRUSTED_PROXIES", 0),
        # The web app's tabs that refresh with the same session cookie within this many
        # seconds of each other share one refresh-token rotation (detector.auth.tokens).
        "SESSION_REFRESH_GRACE_SECONDS": env_int("SESSION_REFRESH_GRACE_SECONDS", 10),
        # How long a media token (POST /api/jobs/<id>/media-token) plays a job's videos.
        "MEDIA_URL_SECONDS": env_int("MEDIA_URL_SECONDS", 3600),
        # The web app's session cookies (POST /api/auth/session) are sent over HTTPS only
        # when this is true; the default is true in production, false elsewhere (http://127.0.0.1).
        "SESSION_COOKIE_SECURE": _env_bool("SESSION_COOKIE_SECURE", profile == "production"),
        # Where the login rate limit counts (detector.auth.ratelimit): unset means
        # the Redis result backend, else the database, so all API processes share it.
        "RATELIMIT_STORAGE_URI": _env("RATELIMIT_STORAGE_URI"),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": result_backend,
        # Embedded broker only: keep consumed messages in DATA_DIR/broker/processed
        # (to inspect them; the benchmark measures broker bytes per frame this way).
        "BROKER_STORE_PROCESSED": _env_bool("BROKER_STORE_PROCESSED", False),
        # RabbitMQ only: seconds between AMQP heartbeats of a worker's connection (the
        # lower of this and the server's value is used; 0 turns them off). A worker that
        # went silent (host down, network cut) loses its connection, and RabbitMQ gives
        # its unacknowledged chunk to another worker, after one to two of these.
        "BROKER_HEARTBEAT": env_int("BROKER_HEARTBEAT", 10),
        # Frames per detect_frames task; chunk starts snap to nearby keyframes.
        "CHUNK_FRAMES": env_int("CHUNK_FRAMES", 100),
        # How often a chunk may be delivered before the job fails (worker crashes).
        "MAX_CHUNK_DELIVERIES": env_int("MAX_CHUNK_DELIVERIES", 3),
        # Seconds one chunk (detect_frames) may run; the worker kills it 60 s later.
        # Every task's limit: docs/operations.md, "Time limits".
        "CHUNK_TIME_LIMIT": env_int("CHUNK_TIME_LIMIT", 20 * 60),
        # An annotated video may take RENDER_BASE_SECONDS plus this per frame of the
        # video (a frame of more pixels than 1920x1080 counts as that many times one).
        "RENDER_SECONDS_PER_FRAME": _env_float("RENDER_SECONDS_PER_FRAME", 0.2),
        "RENDER_BASE_SECONDS": _env_float("RENDER_BASE_SECONDS", 600.0),
        # A tracked job's tracking step may take TRACK_BASE_SECONDS plus this per analysed frame.
        "TRACK_SECONDS_PER_FRAME": _env_float("TRACK_SECONDS_PER_FRAME", 0.1),
        "TRACK_BASE_SECONDS": _env_float("TRACK_BASE_SECONDS", 300.0),
        # A processing job with no progress for this long is failed by the watchdog.
        "JOB_STALL_SECONDS": env_int("JOB_STALL_SECONDS", 30 * 60),
        "WATCHDOG_INTERVAL": env_int("WATCHDOG_INTERVAL", 60),
        "DEFAULT_SCORE_THRESHOLD": _env_float("DEFAULT_SCORE_THRESHOLD", 0.5),
        # A job submit's Idempotency-Key answers its first job for this long, then may be reused.
        "IDEMPOTENCY_KEY_HOURS": env_int("IDEMPOTENCY_KEY_HOURS", 24),
        # The detection engine; see detector.detection.DetectorSettings.
        "DETECTOR_BACKEND": _env("DETECTOR_BACKEND", "torchvision"),
        "DETECTOR_MODEL": _env("DETECTOR_MODEL"),
        "DETECTOR_WEIGHTS": _env("DETECTOR_WEIGHTS", "default"),
        "DETECTOR_DEVICE": _env("DETECTOR_DEVICE", "auto"),
        # Frames per forward pass: auto (8 on a GPU; on the CPU by the model's input size: detection.base.default_batch_size)
        # or a whole number; DetectorSettings.from_config checks it.
        "DETECTOR_BATCH_SIZE": _env("DETECTOR_BATCH_SIZE", "auto"),
        # Batches run side by side on the CPU, each on its share of the threads: auto (one
        # per thread for small models, 1 for large: detection.base.default_streams) or a number.
        "DETECTOR_STREAMS": _env("DETECTOR_STREAMS", "auto"),
        "DETECTOR_MIN_SCORE": _env_float("DETECTOR_MIN_SCORE", 0.05),
        "DETECTOR_SEED": env_int("DETECTOR_SEED", 0),
        "DETECTOR_CACHE_DIR": _env("DETECTOR_CACHE_DIR"),
        # A TOML file declaring the deployment's named models (detector.detection.catalog);
        # unset: one model, "default", made of the DETECTOR_* settings above.
        "DETECTOR_MODELS": _env("DETECTOR_MODELS"),
        # Predictors a detector process keeps built at once (it serves every model of
        # its queues and builds each on first use; the least recently used goes first).
        "MAX_LOADED_MODELS": env_int("MAX_LOADED_MODELS", 2),
        # Jobs of one user processing at once; the others wait, queued, with their
        # position in line (0: no limit).
        "MAX_PROCESSING_JOBS_PER_USER": env_int("MAX_PROCESSING_JOBS_PER_USER", 0),
        # A job's first chunks go to the detectors before other jobs' later ones
        # (detector.runtime.queues.chunk_priority); false: first come, first served.
        "CHUNK_PRIORITY": _env_bool("CHUNK_PRIORITY", True),
        # URLs users give (callback_url, source_url) may point at loopback, private
        # or link-local addresses only when this is true (tests, closed networks).
        "ALLOW_PRIVATE_URLS": _env_bool("ALLOW_PRIVATE_URLS", False),
        # Redirects a source_url download follows, each target checked like the URL.
        "URL_MAX_REDIRECTS": env_int("URL_MAX_REDIRECTS", 3),
        # A webhook event is retried (exponential back-off) for this many hours.
        "WEBHOOK_RETRY_HOURS": _env_float("WEBHOOK_RETRY_HOURS", 24.0),
        # The first retry's delay in seconds; it doubles, up to 15 minutes.
        "WEBHOOK_BACKOFF_SECONDS": _env_float("WEBHOOK_BACKOFF_SECONDS", 30.0),
        # Connect and read timeout of one webhook POST, in seconds.
        "WEBHOOK_TIMEOUT_SECONDS": _env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0),
        # A source_url download stalls when the server answers nothing (no connection, no
        # byte of the video) for this long; it is then tried again, then failed. A download
        # has no limit on its total time.
        "DOWNLOAD_TIMEOUT_SECONDS": _env_float("DOWNLOAD_TIMEOUT_SECONDS", 30.0),
        # Tries of one download (resumed with Range where the server allows) before it fails.
        "DOWNLOAD_ATTEMPTS": env_int("DOWNLOAD_ATTEMPTS", 5),
        # A finished job's stored videos (upload and annotated render) are deleted this
        # many days after it ended (detector.pipeline.retention); 0 keeps them forever.
        "VIDEO_RETENTION_DAYS": _env_float("VIDEO_RETENTION_DAYS", 0.0),
        # Megabytes of stored video (uploads and renders not yet deleted) per user; 0: unlimited.
        "STORAGE_QUOTA_MB": _env_float("STORAGE_QUOTA_MB", 0.0),
        "LOG_FORMAT": _env("LOG_FORMAT", "text"),
        "LOG_LEVEL": _env("LOG_LEVEL", "INFO"),
    }
    config.update(overrides)

    if config["ENV"] == "production":
        for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
            if (config.get(name) or "") in EXAMPLE_SECRETS:
                raise ConfigError(
                    f"{name} is missing or still the example value; production needs a "
                    f"long random secret, e.g. "
                    f"python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
    else:
        for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
            if not config.get(name):
                config[name] = _dev_secret(Path(config["DATA_DIR"]), name)
    return config


@dataclass(frozen=True)
class Settings:
    """The service's own settings, typed (see `load_config` and .env.example for each)."""

    env: str
    data_dir: str
    database_url: str
    video_storage: str
    max_content_length: int
    max_frame_pixels: int
    login_rate_limit: str
    login_account_rate_limit: str
    register_rate_limit: str
    registration_open: bool
    trusted_proxies: int
    session_refresh_grace_seconds: int
    media_url_seconds: int
    session_cookie_secure: bool
    ratelimit_storage_uri: str | None
    celery_broker_url: str
    celery_result_backend: str
    broker_store_processed: bool
    broker_heartbeat: int
    chunk_frames: int
    max_chunk_deliveries: int
    chunk_time_limit: int
    render_seconds_per_frame: float
    render_base_seconds: float
    track_seconds_per_frame: float
    track_base_seconds: float
    job_stall_seconds: int
    watchdog_interval: int
    default_score_threshold: float
    idempotency_key_hours: int
    detector_backend: str
    detector_model: str | None
    detector_weights: str
    detector_device: str
    detector_batch_size: str  # "auto" or a whole number, as written
    detector_streams: str  # "auto" or a whole number, as written
    detector_min_score: float
    detector_seed: int
    detector_cache_dir: str | None
    detector_models: str | None
    max_loaded_models: int
    max_processing_jobs_per_user: int
    chunk_priority: bool
    allow_private_urls: bool
    url_max_redirects: int
    webhook_retry_hours: float
    webhook_backoff_seconds: float
    webhook_timeout_seconds: float
    download_timeout_seconds: float
    download_attempts: int
    video_retention_days: float
    storage_quota_mb: float
    log_format: str
    log_level: str

    def __post_init__(self) -> None:
        _check_time_limits(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """From a mapping of upper-case names (`load_config`'s, or Flask's config).

        Raises:
            ConfigError: a setting is missing or is not of its type.
        """
        values = {}
        for field in fields(cls):
            name = field.name.upper()
            if name not in config:
                raise ConfigError(f"{name} is not set")
            values[field.name] = _typed(name, str(field.type), config[name])
        return cls(**values)


def _check_time_limits(settings: Settings) -> None:
    """The time limits' settings must be finite numbers in range.

    Raises:
        ConfigError: naming the setting, its value and what it must be.
    """
    chunk_most = LONGEST_TASK_SECONDS - 60
    if not 1 <= settings.chunk_time_limit <= chunk_most:
        raise ConfigError(
            f"CHUNK_TIME_LIMIT must be between 1 and {chunk_most} seconds, got {settings.chunk_time_limit}"
        )
    checks = (
        ("RENDER_SECONDS_PER_FRAME", settings.render_seconds_per_frame, False),
        ("RENDER_BASE_SECONDS", settings.render_base_seconds, True),
        ("TRACK_SECONDS_PER_FRAME", settings.track_seconds_per_frame, False),
        ("TRACK_BASE_SECONDS", settings.track_base_seconds, True),
        ("DOWNLOAD_TIMEOUT_SECONDS", settings.download_timeout_seconds, False),
    )
    for name, value, zero_allowed in checks:
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
            least = "0 or more" if zero_allowed else "more than 0"
            raise ConfigError(f"{name} must be a number of seconds, {least}, got {value!r}")


def _typed(name: str, kind: str, value: Any) -> Any:
    """``value`` as the type a `Settings` field declares (``int``, ``str | None``, ...)."""
    if value is None:
        if kind.endswith("| None"):
            return None
        raise ConfigError(f"{name} must be set")
    kind = kind.removesuffix(" | None")
    try:
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).lower() in TRUE_WORDS
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be of type {kind}, got {value!r}") from None


def current_settings() -> Settings:
    """The settings of the Flask app in whose context this runs (API request or task)."""
    from flask import current_app

    return current_app.extensions["settings"]

"""A whole job with its video in a bucket (moto's server): upload -> real worker
processes, on the embedded defaults and on RabbitMQ + Redis + PostgreSQL ->
detections equal to `detector predict`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RABBITMQ_URL, REDIS_URL, base_config, postgres_schema, require_server
from tests.pipeline.conftest import detector_config, e2e_video, seeded_weights, workers_factory  # noqa: F401
from tests.pipeline.test_end_to_end import _app, _run_job, baseline  # noqa: F401
from tests.storage.conftest import objects


@pytest.mark.slow
def test_embedded_defaults_with_videos_in_a_bucket(
    tmp_path: Path,
    seeded_weights: Path,  # noqa: F811
    e2e_video: Path,  # noqa: F811
    baseline,  # noqa: F811
    workers_factory,  # noqa: F811
    bucket: str,
    s3_env: dict[str, str],
) -> None:
    config = base_config(tmp_path, VIDEO_STORAGE=f"s3://{bucket}/videos", **detector_config(seeded_weights))
    _run_job(config, workers_factory, e2e_video, baseline)
    [stored] = objects(bucket, s3_env["S3_ENDPOINT_URL"])
    assert stored["Size"] == e2e_video.stat().st_size
    assert not (tmp_path / "videos").exists()  # nothing went to a local folder


@pytest.mark.slow
def test_rabbitmq_redis_and_postgresql_with_videos_in_a_bucket(
    tmp_path: Path,
    seeded_weights: Path,  # noqa: F811
    e2e_video: Path,  # noqa: F811
    baseline,  # noqa: F811
    workers_factory,  # noqa: F811
    bucket: str,
    s3_env: dict[str, str],
) -> None:
    require_server(RABBITMQ_URL)
    require_server(REDIS_URL)
    with postgres_schema() as database:
        config = base_config(
            tmp_path,
            DATABASE_URL=database,
            CELERY_BROKER_URL=RABBITMQ_URL,
            CELERY_RESULT_BACKEND=REDIS_URL,
            VIDEO_STORAGE=f"s3://{bucket}/videos",
            **detector_config(seeded_weights),
        )
        _app(config).extensions["celery"].control.purge()
        _run_job(config, workers_factory, e2e_video, baseline)
    assert len(objects(bucket, s3_env["S3_ENDPOINT_URL"])) == 1

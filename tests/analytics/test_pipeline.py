"""Analytics through real worker processes on the embedded defaults: an untracked job
is detected, then its analytics track it and count; the results equal
``detector predict --analytics`` on the same video with the same seeded weights."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from detector.app import create_app
from detector.cli import main
from detector.db.migrate import upgrade
from tests.conftest import Auth, base_config
from tests.pipeline.conftest import detector_config, wait_for_job

THRESHOLD = 0.3
# The e2e video is 320x240: a line across the middle, a zone on the left half.
SPEC = {
    "name": "e2e",
    "interval": 2,
    "lines": [{"name": "middle", "points": [[0, 120], [320, 120]]}],
    "zones": [{"name": "left", "polygon": [[0, 0], [160, 0], [160, 240], [0, 240]]}],
}


def assert_same_results(got: Any, expected: Any, where: str = "results") -> None:
    """Equal, numbers within what the pipeline's detections may differ from predict's by
    (boxes within half a pixel, docs/architecture.md)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), where
        for key in expected:
            assert_same_results(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same_results(a, b, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(got, bool):
        assert math.isclose(got, expected, rel_tol=1e-2, abs_tol=1e-2), (where, got, expected)
    else:
        assert got == expected, (where, got, expected)


@pytest.mark.slow
def test_pipeline_analytics_equal_predicts(
    tmp_path: Path, seeded_weights, e2e_video, workers_factory, monkeypatch
):
    config = base_config(tmp_path, **detector_config(seeded_weights))
    Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    with workers_factory(config) as workers:
        response = client.post(
            "/api/jobs",
            headers=headers,
            content_type="multipart/form-data",
            data={"video": (e2e_video.open("rb"), e2e_video.name), "score_threshold": str(THRESHOLD)},
        )
        job_id = response.json["id"]
        assert wait_for_job(client, headers, job_id)["status"] == "succeeded", workers.logs()
        started = client.post(f"/api/jobs/{job_id}/analytics", headers=headers, json=SPEC)
        assert started.status_code == 202, started.json
        url = started.headers["Location"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = client.get(url, headers=headers).json
            if found["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.3)
        assert found["status"] == "succeeded", (found, workers.logs())
    assert client.get(f"/api/jobs/{job_id}/tracks", headers=headers).json["tracks_total"] > 0
    results = found["results"]
    assert results["tracks"] > 0 and results["events"], "a test with no events proves nothing"

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    out = tmp_path / "analytics.json"
    for key, value in detector_config(seeded_weights).items():
        monkeypatch.setenv(key, str(value))
    ran = CliRunner().invoke(
        main,
        [
            "predict",
            str(e2e_video),
            "--out",
            str(tmp_path / "detections.json"),
            "--score-threshold",
            str(THRESHOLD),
            "--analytics",
            str(spec_file),
            "--analytics-out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert ran.exit_code == 0, ran.output
    predicted = json.loads(out.read_text())
    assert predicted["id"] == found["id"]
    assert_same_results(results, predicted["results"])

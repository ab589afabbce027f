"""`detector submit --wait --export json` against a real service: the API on loopback
and real processor and detector workers with seeded weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import api_get, live_server, make_cli
from tests.conftest import base_config
from tests.pipeline.conftest import Workers, detector_config, seeded_weights  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def config(tmp_path: Path, seeded_weights: Path) -> dict[str, Any]:  # noqa: F811
    return base_config(tmp_path, **detector_config(seeded_weights))


def api_pages(app, cli, job_id: str, limit: int) -> list[dict[str, Any]]:
    pages, start = [], 0
    while start is not None:
        page = api_get(
            app, cli, f"/api/jobs/{job_id}/detections", query_string={"start": start, "limit": limit}
        )
        pages.append(page)
        start = page["next_start"]
    return pages


def test_submit_wait_export_equals_the_api_pages(app, config, tmp_path, small_video):
    logs = tmp_path / "logs"
    logs.mkdir()
    with live_server(app) as server:
        cli = make_cli(app, server, tmp_path)
        # A job that will fail: its stored video is gone before any worker runs.
        doomed = cli.run("submit", str(small_video))
        assert doomed.returncode == 0, doomed.stderr
        doomed_id = doomed.stdout.strip()
        [stored] = [p for p in Path(config["VIDEO_STORAGE"]).iterdir() if p.is_file()]
        stored.unlink()
        with Workers(config, logs) as workers:
            check_the_cli(app, cli, workers, tmp_path, small_video, doomed_id)


def check_the_cli(app, cli, workers, tmp_path: Path, small_video: Path, doomed_id: str) -> None:
    """A succeeded job: exit 0 and the export equals the API's pages; a failed one: exit 1."""
    out = tmp_path / "detections.json"
    result = cli.run(
        "submit", str(small_video), "--score-threshold", "0.05", "--wait", "--poll", "0.2",
        "--export", "json", "-o", str(out), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + workers.logs()
    job_id = result.stdout.strip()
    assert "succeeded" in result.stderr

    exported = json.loads(out.read_text())
    pages = api_pages(app, cli, job_id, limit=7)
    assert len(pages) == 3  # 20 frames in pages of 7: the export joined them all
    assert exported["job_id"] == job_id
    assert exported["frames_total"] == pages[0]["frames_total"] == 20
    assert exported["next_start"] is None
    assert exported["frames"] == [frame for page in pages for frame in page["frames"]]
    assert [f["frame"] for f in exported["frames"]] == list(range(20))
    job = api_get(app, cli, f"/api/jobs/{job_id}")
    assert sum(len(f["objects"]) for f in exported["frames"]) == job["objects_total"]

    # `detector results` writes the same document; `detector jobs` lists the job.
    again = tmp_path / "again.json"
    assert cli.run("results", job_id, "-o", str(again)).returncode == 0
    assert json.loads(again.read_text()) == exported
    listed = cli.run("jobs")
    assert listed.returncode == 0
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(job_id)]
    assert "succeeded" in line and "100%" in line
    # Waiting on a finished job answers at once.
    assert cli.run("wait", job_id).returncode == 0

    # The job whose video was lost has failed: waiting on it exits 1 with its error.
    failed = cli.run("wait", doomed_id, "--poll", "0.2", timeout=300)
    assert failed.returncode == 1, failed.stderr + workers.logs()
    assert f"job {doomed_id} failed" in failed.stderr
    assert cli.run("results", doomed_id).returncode == 1
    assert doomed_id in cli.run("jobs").stdout

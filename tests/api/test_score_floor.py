"""The model's score floor (DETECTOR_MIN_SCORE) is part of the contract: a job
cannot ask for a threshold below it, and the API document shows it."""

from __future__ import annotations

import pytest

from detector.app import create_app
from detector.db.migrate import upgrade
from tests.api.test_jobs import job_count, stored_videos, upload
from tests.conftest import Auth, base_config


@pytest.mark.parametrize("threshold", ["0.01", "0", "0.0499"])
def test_a_threshold_below_the_floor_is_refused_and_names_it(app, client, auth: Auth, small_video, threshold):
    response = upload(client, auth.headers(), small_video, score_threshold=threshold)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_input"
    assert "0.05" in response.json["message"] and "DETECTOR_MIN_SCORE" in response.json["message"]
    assert stored_videos(app) == [] and job_count(app) == 0


def test_the_floor_itself_is_accepted_and_kept(client, auth: Auth, small_video):
    response = upload(client, auth.headers(), small_video, score_threshold="0.05")
    assert response.status_code == 202
    assert response.json["score_threshold"] == 0.05


def test_the_floor_is_the_apps_setting(tmp_path, small_video):
    config = base_config(tmp_path, DETECTOR_MIN_SCORE=0.3)
    (tmp_path / "data").mkdir()
    upgrade(config["DATABASE_URL"])
    client = create_app(config).test_client()
    headers = Auth(client).headers()
    refused = upload(client, headers, small_video, score_threshold="0.2")
    assert refused.status_code == 400 and "0.3" in refused.json["message"]
    assert upload(client, headers, small_video, score_threshold="0.3").status_code == 202
    spec = client.get("/api/swagger.json").json
    fields = {p["name"]: p for p in spec["paths"]["/jobs"]["post"]["parameters"]}
    assert fields["score_threshold"]["minimum"] == 0.3

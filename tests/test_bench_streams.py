"""The streams figure's pieces that need no service: its catalog and how it matches
two runs' objects (detector/bench/streams.py). The figure itself starts two
services per run and is measured by hand (docs/performance.md, "Streams")."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from detector.bench.options import BenchOptions
from detector.bench.streams import BEFORE, NOW, PAIRS, catalog, match_fraction, paired_jobs
from detector.detection.catalog import load_catalog
from tests.conftest import base_config


def _frame(*objects: tuple[int, float, list[float]]) -> dict:
    return {"objects": [{"class_id": c, "score": s, "box": b} for c, s, b in objects]}


def test_identical_runs_match_entirely():
    run = [_frame((1, 0.9, [0, 0, 100, 100]), (3, 0.5, [10, 10, 50, 60])), _frame()]
    assert match_fraction(run, run) == {"objects": 2, "matched": 1.0, "largest_score_difference": 0.0}


@pytest.mark.parametrize(
    "other",
    [
        (2, 0.9, [0, 0, 100, 100]),  # another class
        (1, 0.9, [0, 0, 100, 98]),  # IoU 0.98
        (1, 0.8985, [0, 0, 100, 100]),  # score 1.5e-3 apart
    ],
    ids=["class", "box", "score"],
)
def test_an_object_matches_only_with_its_class_box_and_score(other):
    a = [_frame((1, 0.9, [0, 0, 100, 100]), (3, 0.5, [10, 10, 50, 60]))]
    b = [_frame(other, (3, 0.5004, [10, 10, 50, 60]))]
    found = match_fraction(a, b)
    assert found["matched"] == 0.5
    assert found["largest_score_difference"] == pytest.approx(4e-4)


def test_a_missing_object_counts_against_the_larger_run():
    a = [_frame((1, 0.9, [0, 0, 100, 100]), (1, 0.4, [200, 200, 250, 260]))]
    b = [_frame((1, 0.9, [0, 0, 100, 100]))]
    assert match_fraction(a, b)["matched"] == 0.5
    assert match_fraction(b, a)["matched"] == 0.5


def test_the_catalog_declares_the_model_on_every_runtime_it_is_compared_on(tmp_path):
    options = replace(BenchOptions(), runtimes_weights="random", weights="random")
    path = tmp_path / "models.toml"
    names = catalog(SimpleNamespace(options=options), None, 640, 360, path)
    assert names == ["bench", "bench-openvino", "bench-onnxruntime", BEFORE]
    loaded = load_catalog(base_config(tmp_path, DETECTOR_MODELS=str(path)))
    backends = [loaded.settings(name).backend for name in names]
    assert backends == ["torchvision", "openvino", "onnxruntime", "torchvision"]
    assert {loaded.settings(name).model for name in names} == {options.model}
    # Before this round: eager PyTorch on one stream, whatever DETECTOR_STREAMS says.
    assert loaded.settings(BEFORE).streams == 1 and loaded.settings("bench").streams == "auto"
    assert NOW in names


class FakeClient:
    """Jobs of 100 frames that take the seconds given for each model, in turn."""

    def __init__(self, seconds: dict[str, list[float]]) -> None:
        self.seconds = {name: iter(values) for name, values in seconds.items()}
        self.jobs: list[str] = []

    def models(self) -> list[dict]:
        return [{"name": BEFORE, "online": True}, {"name": NOW, "online": True}]

    def run_job(self, path, threshold, **form):
        self.jobs.append(form["model"] + ("/warm-up" if "end" in form else ""))
        return form["model"], 1.0 if "end" in form else next(self.seconds[form["model"]])

    def job(self, job_id):
        return {"progress": {"frames_done": 100}}


def test_paired_jobs_alternate_the_models_and_take_each_rounds_ratio(monkeypatch):
    monkeypatch.setattr("detector.bench.streams.wait_online", lambda client, name: None)
    client = FakeClient({BEFORE: [10.0, 10.0, 12.5], NOW: [5.0, 4.0, 5.0]})
    bench = SimpleNamespace(options=BenchOptions(), log=lambda message: None)
    result = paired_jobs(bench, client, "video.mp4", 2, 100)
    assert client.jobs == [f"{BEFORE}/warm-up", f"{NOW}/warm-up"] + [BEFORE, NOW] * PAIRS
    assert [r["ratio"] for r in result["rounds"]] == [2.0, 2.5, 2.5]
    assert result["rounds"][0] == {"before_fps": 10.0, "now_fps": 20.0, "ratio": 2.0}
    assert result["median_ratio"] == 2.5

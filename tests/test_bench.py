"""The benchmark's arithmetic, parsing, load tools and options, and a tiny smoke run of the whole of it.

The real benchmark is run by hand (`make bench`); no timing here is asserted.
"""

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.bench import figures as bench_figures
from detector.bench import load, longvideo
from detector.bench import run as bench_run
from detector.bench.figures import (
    Bench,
    SampledPair,
    against_prototype,
    decode_selection,
    made_up_frames,
    sampling_summary,
    timed_run,
)
from detector.bench.load import (
    ROUND_KEYS,
    WRK_LATENCY,
    choose_tool,
    combine_rounds,
    parse_wrk,
    percentile,
    python_load,
    wrk_load,
)
from detector.bench.options import BenchOptions
from detector.bench.report import (
    LONG_VIDEO_STAGE_S,
    SAMPLING_SLACK,
    BenchReport,
    check_targets,
    format_table,
)
from detector.bench.service import Client, PeakRss, free_port
from detector.cli.bench import bench
from detector.detection import Detections
from detector.detection.base import default_batch_size
from detector.exports import FORMATS
from detector.video import index_frames
from detector.video.selection import FrameSelection
from detector.video.synthetic import make_video
from tests.conftest import missing_tool, require_detectron2
from tests.shared_data import TESTDATA_DIR, require_testdata

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8000/api/jobs/1
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.10ms    1.20ms  20.00ms   90.00%
  Latency Distribution
     50%    4.80ms
     75%    5.50ms
     90%    6.20ms
     99%   12.40ms
  812 requests in 1.00s, 400.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:    811.00
Transfer/sec:    400.00KB
"""


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(101)]  # 0 .. 100
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_wrk_latency_lines_in_any_unit():
    out = "  Latency Distribution\n     50%  812.00us\n     75%   54.72ms\n     99%    1.20s\n"
    assert WRK_LATENCY.findall(out) == [("50", "812.00", "us"), ("99", "1.20", "s")]


def test_wrk_output_gives_every_figure_of_a_round():
    assert parse_wrk(WRK_OUTPUT) == {
        "requests": 812,
        "p50_ms": 4.8,
        "p99_ms": 12.4,
        "non_2xx": 3,
        "socket_errors": 3,
    }
    clean = parse_wrk(WRK_OUTPUT.replace("  Socket errors: connect 0, read 2, write 0, timeout 1\n", ""))
    assert clean["socket_errors"] == 0


class _Answers(BaseHTTPRequestHandler):
    """200 on /ok, 404 elsewhere."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"{}"
        self.send_response(200 if self.path == "/ok" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _ExpiringTokens(BaseHTTPRequestHandler):
    """An API whose access tokens expire after one request: a login hands out ``t1``,
    ``t2``, ...; a job is answered only for the latest token, and only once."""

    protocol_version = "HTTP/1.1"
    logins = 0
    used: set[str] = set()

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/api/auth/login":
            type(self).logins += 1
            self._answer(200, {"access_token": f"t{self.logins}"})
        else:
            self._answer(201, {})

    def do_GET(self) -> None:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if token != f"t{self.logins}" or token in self.used:
            self._answer(401, {"message": "Token has expired"})
        else:
            self.used.add(token)
            self._answer(200, {"id": "j", "status": "queued"})

    def log_message(self, *args: object) -> None:
        pass


def test_the_benchmarks_client_logs_in_again_when_its_token_expires():
    """A two-hour job outlives an access token: the client logs in again and asks once more."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ExpiringTokens)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_address[1]}/api")
        assert client.job("j")["status"] == "queued"  # with the first token
        assert client.job("j")["status"] == "queued"  # that one expired: a second login
        assert _ExpiringTokens.logins == 2
    finally:
        server.shutdown()
        server.server_close()


def test_the_python_load_counts_answers_errors_and_unanswered_requests(local_server: str):
    closed = f"http://127.0.0.1:{free_port()}/ok"  # nothing listens there
    urls = [f"{local_server}/ok", f"{local_server}/missing", closed]
    rounds = python_load(urls, {"Authorization": "Bearer x"}, clients=2, per_client=6)
    assert rounds[urls[0]]["requests"] == 4 and rounds[urls[0]]["non_2xx"] == 0
    assert rounds[urls[1]]["requests"] == 4 and rounds[urls[1]]["non_2xx"] == 4
    assert rounds[urls[2]]["requests"] == 0 and rounds[urls[2]]["socket_errors"] == 4
    assert rounds[urls[0]]["p50_ms"] <= rounds[urls[0]]["p99_ms"]


def test_both_load_tools_report_the_same_keys(local_server: str):
    python_round = python_load([f"{local_server}/ok"], {}, clients=1, per_client=2)[f"{local_server}/ok"]
    assert set(python_round) == set(parse_wrk(WRK_OUTPUT)) == set(ROUND_KEYS)
    combined = combine_rounds([python_round, parse_wrk(WRK_OUTPUT)])
    assert set(combined) == {"rounds", "p99_ms_rounds", *ROUND_KEYS}


def test_the_load_tool_is_wrk_when_installed_else_python(monkeypatch):
    monkeypatch.setattr(load.shutil, "which", lambda name: None)
    assert choose_tool("auto") == "python"
    assert choose_tool("python") == "python"
    with pytest.raises(RuntimeError, match="wrk is not installed"):
        choose_tool("wrk")
    monkeypatch.setattr(load.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert choose_tool("auto") == "wrk"
    with pytest.raises(ValueError):
        choose_tool("ab")


def test_wrk_loads_a_local_server(local_server: str):
    if shutil.which("wrk") is None:
        missing_tool("wrk is not installed (apt-get install wrk)")
    result = wrk_load(f"{local_server}/missing", {"Authorization": "Bearer x"}, clients=2, seconds=1)
    assert set(result) == set(ROUND_KEYS)
    assert result["requests"] > 0 and result["non_2xx"] == result["requests"]


def test_every_option_is_on_the_command_line_with_its_default(monkeypatch, tmp_path):
    ran: list[BenchOptions] = []

    def fake_run(options: BenchOptions, log: object) -> BenchReport:
        ran.append(options)
        return BenchReport(machine={}, options={})

    monkeypatch.setattr(bench_run, "run_bench", fake_run)
    names = {p.name for p in bench.params}
    assert names == {f.name for f in fields(BenchOptions)}
    result = CliRunner().invoke(bench, [])
    assert result.exit_code == 0, result.output
    assert ran[-1] == BenchOptions()
    out = tmp_path / "out"
    args = ["--out", str(out), "--batch-sweep", "1,4", "--chunk-sweep", "8", "--load-tool", "python"]
    args += ["--frames", "16", "--score-threshold", "0.5", "--no-background-detector"]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert ran[-1] == BenchOptions(
        out_dir=out,
        batch_sweep=(1, 4),
        chunk_sweep=(8,),
        load_tool="python",
        frames=16,
        score_threshold=0.5,
        background_detector=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--batch-sweep", "1,x"],
        ["--frames", "0"],
        ["--load-tool", "ab"],
        ["--memory-factor", "1"],
        ["--sampling-repeats", "0"],
        ["--export-objects", "-1"],
        ["--sample-fps", "x"],
        ["--figure", "decode"],
        ["--figure", "long-video", "--long-video-seconds", ""],
        ["--long-video-seconds", "600,x"],
    ],
)
def test_the_command_line_refuses_bad_values(args: list[str]):
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 2, result.output


def test_table_shows_targets_and_missing_figures():
    report = BenchReport(
        machine={},
        options={},
        figures={
            "pipeline_efficiency": 0.95,
            "broker_bytes_per_frame": 200.0,
            "api_under_load": {
                "clients": 50,
                "tool": "wrk",
                "job": {"p50_ms": 40.0, "p99_ms": 90.0},
                "detections": {"p50_ms": 45.0, "p99_ms": 99.0},
                "detections_page_frames": 100,
            },
        },
    )
    table = format_table(report)
    assert "0.95" in table and ">= 0.9" in table
    assert "40.0 / 90.0" in table and "(wrk)" in table
    assert "GET detections (100 frames)" in table
    assert "None" in table  # figures not measured are shown as such, not invented


def test_load_rounds_combine_to_medians_and_totals():
    rounds = [
        {"requests": 100, "p50_ms": 40.0, "p99_ms": 80.0, "non_2xx": 0, "socket_errors": 0},
        {"requests": 90, "p50_ms": 60.0, "p99_ms": 140.0, "non_2xx": 2, "socket_errors": 1},
        {"requests": 110, "p50_ms": 50.0, "p99_ms": 95.0, "non_2xx": 0, "socket_errors": 0},
    ]
    combined = combine_rounds(rounds)
    assert combined["p50_ms"] == 50.0 and combined["p99_ms"] == 95.0
    assert combined["p99_ms_rounds"] == [80.0, 140.0, 95.0]
    assert combined["requests"] == 300 and combined["non_2xx"] == 2 and combined["socket_errors"] == 1
    table = format_table(
        BenchReport(
            machine={},
            options={},
            figures={
                "api_under_load": {
                    "clients": 50,
                    "tool": "wrk",
                    "job": combined,
                    "detections": combined,
                    "detections_page_frames": 100,
                }
            },
        )
    )
    assert "80.0, 140.0, 95.0" in table


def _memory(short_mb: float, long_mb: float) -> dict[str, dict[str, float]]:
    return {
        "short": {"frames": 60, "peak_rss_mb": short_mb},
        "long": {"frames": 600, "peak_rss_mb": long_mb},
    }


def test_targets_are_judged_from_the_figures_and_unmeasured_ones_left_out():
    met = {
        "pipeline_efficiency": 0.9,
        "decoded_per_delivered": 1.05,
        "broker_bytes_per_frame": 1023.9,
        "detector_worker_memory": _memory(1300, 1430),
        "api_under_load": {"job": {"p99_ms": 99.9}, "detections": {"p99_ms": 99.9}},
    }
    assert check_targets(met) == {
        "pipeline_efficiency": True,
        "decoded_per_delivered": True,
        "broker_bytes_per_frame": True,
        "worker_memory_flat": True,
        "api_job_p99": True,
        "api_detections_p99": True,
    }
    missed = {
        "pipeline_efficiency": 0.899,
        "decoded_per_delivered": 1.06,
        "broker_bytes_per_frame": 1024,
        "detector_worker_memory": _memory(1300, 1431),
        "api_under_load": {"job": {"p99_ms": 100.0}, "detections": {"p99_ms": 140.0}},
    }
    assert not any(check_targets(missed).values())
    assert check_targets({"pipeline_efficiency": 1.0}) == {"pipeline_efficiency": True}


def test_table_says_which_targets_were_missed():
    report = BenchReport(
        machine={},
        options={},
        figures={
            "pipeline_efficiency": 0.85,
            "broker_bytes_per_frame": 54.1,
            "detector_worker_memory": _memory(1300, 1310),
        },
    )
    lines = format_table(report).splitlines()
    row = {line.split("  ")[0]: line for line in lines}
    assert row["pipeline efficiency (end to end / predict)"].endswith(">= 0.9: MISSED")
    assert row["broker bytes per frame"].endswith("< 1024: met")
    assert row["detector worker peak RSS, 600 frames (MB)"].endswith("flat (+10% at most): met")
    assert row["frames decoded / delivered"].endswith("<= 1.05")  # not measured: no verdict


def test_a_sampled_job_is_expected_to_take_its_share_of_the_full_job_plus_its_decoding():
    # 300 frames, 60 analysed: a fifth of the full job's time plus the decoding.
    pairs = [SampledPair(full_s=20.0, sampled_s=4.6, decode_s=0.5, full_decode_s=0.5)]
    summary = sampling_summary(300, 60, pairs)
    assert summary["analysed_share"] == 0.2
    assert summary["expected_s"] == 4.5  # 0.2 * 20 + 0.5
    assert summary["vs_expected"] == round(4.6 / 4.5, 3)
    assert summary["full_video_fps"] == 15.0 and summary["sampled_video_fps"] == round(300 / 4.6, 2)
    assert summary["sampled_analysed_fps"] == round(60 / 4.6, 2)
    assert summary["speedup"] == round(20 / 4.6, 2) and summary["ideal_speedup"] == 5.0
    assert summary["decode_share"] == round(0.5 / 4.6, 3)
    assert summary["full_decode_share"] == 0.025


def test_the_sampled_figures_are_the_medians_of_the_pairs():
    pairs = [
        SampledPair(full_s=10.0, sampled_s=3.0, decode_s=0.0, full_decode_s=0.1),  # 1.5 of expected
        SampledPair(full_s=10.0, sampled_s=2.0, decode_s=0.0, full_decode_s=0.1),  # 1.0
        SampledPair(full_s=20.0, sampled_s=2.0, decode_s=0.0, full_decode_s=0.1),  # 0.5
    ]
    summary = sampling_summary(100, 20, pairs)
    assert summary["vs_expected_runs"] == [0.5, 1.0, 1.5]
    assert summary["vs_expected"] == 1.0
    assert summary["full_s"] == 10.0 and summary["sampled_s"] == 2.0


def test_the_sampled_job_meets_its_target_up_to_the_slack_and_not_beyond():
    assert check_targets({"sampled_job": {"vs_expected": 1 + SAMPLING_SLACK}}) == {
        "sampled_job_scaling": True
    }
    assert check_targets({"sampled_job": {"vs_expected": 0.7}}) == {"sampled_job_scaling": True}
    assert check_targets({"sampled_job": {"vs_expected": 1 + SAMPLING_SLACK + 0.001}}) == {
        "sampled_job_scaling": False
    }
    assert "sampled_job_scaling" not in check_targets({"sampled_job": {}})


def test_decoding_a_selection_alone_counts_what_it_decodes(tmp_path: Path):
    video = make_video(tmp_path / "v.mp4", frames=50, width=64, height=48, fps=25, gop=50)
    seconds, decoded, delivered = decode_selection(video, FrameSelection(sample_fps=5), chunk_frames=100)
    assert delivered == 10  # every 5th of 50 frames at 25 frames/s
    assert decoded >= 46  # from the keyframe at 0 up to frame 45, the last one chosen
    assert seconds > 0
    _, decoded, delivered = decode_selection(video, FrameSelection(), chunk_frames=100)
    assert decoded == delivered == 50


def test_the_made_up_export_job_has_objects_on_fixed_tracks():
    pool = Detections.from_objects([{"label": "dog", "class_id": 18, "score": 0.5, "box": [0, 0, 1, 1]}])
    frames = made_up_frames(30, 3, 25.0, pool)
    assert [f for f, _, _ in frames] == list(range(30))
    assert frames[25][1] == 1.0
    assert all([o["track_id"] for o in objects.to_objects()] == [1, 2, 3] for _, _, objects in frames)
    assert all(o["label"] == "dog" for _, _, objects in frames for o in objects.to_objects())
    assert pool.track_id is None  # the pool is copied, not changed
    fallback = made_up_frames(2, 2, 25.0, Detections.empty())
    assert {o["label"] for _, _, objects in fallback for o in objects.to_objects()} == {"person", "car"}
    assert [(f, t, objects.to_objects()) for f, t, objects in made_up_frames(3, 0, 25.0, pool)] == [
        (0, 0.0, []),
        (1, 0.04, []),
        (2, 0.08, []),
    ]


def test_the_peak_memory_of_a_process_is_caught_and_its_growth_measured():
    # A fresh child process, so that no memory an allocator kept from earlier
    # tests (tcmalloc and mimalloc hold freed pages) can take the block without
    # growing: it waits, takes 64 MB, holds them, and ends when told.
    code = (
        "import sys\n"
        "sys.stdin.readline()\n"
        "block = b'x' * (64 * 1024 * 1024)\n"
        "print('holding', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        with PeakRss([child.pid]) as memory:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "holding"
            # Hold the block until a reading has seen it (where the kernel's peak cannot be
            # reset, only the readings can), however slowly the sampler runs on a busy machine.
            deadline = time.monotonic() + 30
            while memory.peak.get(child.pid, 0.0) < memory.idle.get(child.pid, 0.0) + 50:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
    finally:
        child.communicate("done\n", timeout=30)
    busiest = memory.busiest()
    assert busiest["growth_mb"] >= 50
    assert busiest["peak_rss_mb"] >= busiest["idle_rss_mb"] + 50


def test_the_table_shows_the_sampled_job_tracking_exports_and_renders():
    figures = {
        "sampled_job": sampling_summary(
            300, 60, [SampledPair(full_s=20.0, sampled_s=8.0, decode_s=0.5, full_decode_s=0.5)]
        )
        | {"sample_fps": 5.0, "video_fps": 25, "decoded_per_analysed": 4.8},
        "tracking": {
            "objects_per_frame": 9.5,
            "s_per_1000_frames": 2.5,
            "job_step_s": 1.2,
            "job_step_share": 0.1,
        },
        "exports": {
            "frames": 10000,
            "objects_per_frame": 10,
            "formats": {
                fmt: {"frames_per_s": 1000.0, "idle_rss_mb": 180.0, "peak_rss_mb": 185.5, "growth_mb": 5.5}
                for fmt in FORMATS
            },
        },
        "render": {"640x360": {"render_fps": 90.1, "detect_fps": 20.2}},
    }
    lines = format_table(BenchReport(machine={}, options={}, figures=figures)).splitlines()

    def row(label: str) -> str:
        return next(line for line in lines if line.strip().startswith(label))

    # 8 s against 0.2 * 20 + 0.5 = 4.5 s expected
    assert row("sampled job's time / (share x full job's + decoding)").endswith("1.778  <= 1.25: MISSED")
    assert row("API process RSS during the coco export").endswith("180.0 -> 185.5 (+5.5)  ")
    assert "90.1 (20.2)" in row("render frames/s at 640x360 (detection frames/s there)")
    assert sum("export of a 10000-frame job" in line for line in lines) == len(FORMATS)


def test_a_timed_run_has_the_kernels_account_of_the_child():
    # 256 MB touched: at least that much resident memory, and faults to fill it.
    script = "import numpy; a = numpy.ones(256 << 17); print(a.nbytes)"
    run = timed_run([sys.executable, "-c", script], dict(os.environ))
    assert run.stdout.strip() == str(256 << 20)
    assert run.peak_rss_mb >= 256
    assert run.minor_faults > 1000  # fewer than 65,536: transparent huge pages take 2 MB a fault
    assert run.wall_s > 0 and run.user_s >= 0 and run.sys_s >= 0
    assert set(run.figures()) == {"wall_s", "user_s", "sys_s", "peak_rss_mb", "minor_faults"}
    with pytest.raises(RuntimeError, match="boom"):
        timed_run([sys.executable, "-c", "import sys; sys.exit('boom')"], dict(os.environ))


def _bench(tmp_path: Path, **options: object) -> Bench:
    return Bench(
        options=BenchOptions(out_dir=tmp_path, **options),  # type: ignore[arg-type]
        out=tmp_path,
        videos=None,  # type: ignore[arg-type]
        model_config={"DETECTOR_MIN_SCORE": 0.05, "DETECTOR_SEED": 0},
        log=lambda line: None,
    )


def test_the_prototype_figure_is_skipped_with_a_note(tmp_path: Path, monkeypatch):
    assert against_prototype(_bench(tmp_path, prototype=False)) == {
        "prototype": {"skipped": "--no-prototype"}
    }
    monkeypatch.setattr(bench_figures.importlib.util, "find_spec", lambda name: None)
    skipped = against_prototype(_bench(tmp_path))["prototype"]
    assert "detectron2 is not importable" in skipped["skipped"]
    table = format_table(BenchReport(machine={}, options={}, figures={"prototype": skipped}))
    assert "against the 2021 prototype" in table and "skipped: detectron2 is not importable" in table


def test_the_table_shows_the_prototype_against_predict():
    def side(fps: float, rss: float, faults: int, sys_s: float, batch: int, allocator: str) -> dict:
        return {
            "frames_per_s": fps,
            "batch_size": batch,
            "allocator": allocator,
            "objects": 600,
            "wall_s": 60 / fps,
            "user_s": 100.0,
            "sys_s": sys_s,
            "peak_rss_mb": rss,
            "minor_faults": faults,
        }

    figure = {
        "model": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
        "frames": 60,
        "size": "640x360",
        "prototype": side(0.4, 2400.0, 34_000_000, 74.0, 1, "system"),
        "predict": side(0.8, 1800.0, 1_000_000, 5.0, 2, "mimalloc"),
        "wall_speedup": 2.0,
        "end_to_end": {
            "frames_per_s": 0.6,
            "detector_peak_rss_mb": 2000.0,
            "service_peak_rss_mb": 2600.0,
            "speedup": 1.5,
            "detector_peak_rss_ratio": 0.83,
        },
    }
    lines = format_table(BenchReport(machine={}, options={}, figures={"prototype": figure})).splitlines()

    def row(label: str) -> str:
        return next(line for line in lines if line.strip().startswith(label))

    assert "0.4 / 0.8" in row("against the 2021 prototype (60 frames of 640x360, mask_rcnn_R_50_FPN_3x.yaml)")
    assert "150.0 / 75.0 (2.0)" in row("wall s, prototype / predict")
    assert "2400.0 / 1800.0" in row("peak RSS MB")
    assert "34000000 / 1000000" in row("minor page faults")
    assert "2, mimalloc; 1, system" in row("predict's batch and allocator")
    assert "0.4 / 0.6 (1.5)" in row("end to end, a job through the service")
    assert "2400.0 / 2000.0 (2600.0)" in row("peak RSS MB, prototype / detector worker")


@pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")  # Detectron2's anchor generator
def test_the_prototypes_random_weights_file_holds_the_weights_random_gives(tmp_path: Path):
    """The prototype figure has both loops load the seeded random weights from a file;
    the file must give the prototype's predictor exactly what ``--weights random`` does."""
    require_detectron2()
    import numpy as np
    import torch

    from detector.bench import prototype

    model, path = _small_mask_rcnn(tmp_path), tmp_path / "random.pth"
    prototype.save_random_weights(path, model, seed=3)
    made = prototype.predictor(model, "random", "cpu", 0.05, seed=3)
    loaded = prototype.predictor(model, str(path), "cpu", 0.05, seed=99)  # the seed no longer matters
    theirs, ours = made.model.state_dict(), loaded.model.state_dict()
    assert theirs.keys() == ours.keys() and any(".mask_head." in k for k in ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    frame = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    boxes = [p(frame)["instances"].pred_boxes.tensor for p in (made, loaded)]
    assert len(boxes[0]) > 0 and torch.equal(*boxes)
    other = tmp_path / "other.pth"
    prototype.save_random_weights(other, model, seed=4)
    assert not torch.equal(
        torch.load(other)["model"]["roi_heads.box_predictor.cls_score.weight"],
        theirs["roi_heads.box_predictor.cls_score.weight"],
    )


def _runtimes(speedup: float, match: float) -> dict:
    return {
        "model": "fasterrcnn_mobilenet_v3_large_320_fpn",
        "frames": 300,
        "width": 640,
        "height": 360,
        "batch_size": 8,
        "runtimes": {
            "torchvision": {"fps": 2.0},
            "onnxruntime": {"fps": 2.0 * speedup, "match_rate": match},
        },
        "speedup": {"onnxruntime": speedup},
    }


def test_a_cpu_runtime_meets_its_target_only_when_fast_enough_and_in_agreement():
    assert check_targets({"runtimes": _runtimes(1.5, 0.99)}) == {"cpu_runtime": True}
    assert check_targets({"runtimes": _runtimes(1.49, 1.0)}) == {"cpu_runtime": False}
    assert check_targets({"runtimes": _runtimes(3.0, 0.989)}) == {"cpu_runtime": False}
    assert check_targets({"runtimes": {"skipped": "--runtimes is empty"}}) == {}


def test_the_table_shows_the_runtimes_and_the_short_jobs_wait():
    figures = {
        "runtimes": _runtimes(2.5, 0.9997),
        "short_job_wait_s": {
            "first_come_first_served": 40.0,
            "chunk_priorities": 8.0,
            "long_job_chunks": 6,
            "speedup": 5.0,
        },
    }
    lines = format_table(BenchReport(machine={}, options={}, figures=figures)).splitlines()

    def row(label: str) -> str:
        return next(line for line in lines if line.strip().startswith(label))

    assert "640x360, batch 8" in row("CPU runtimes")
    assert "5.0 (2.5x, 99.97% matched)" in row("onnxruntime")
    assert row("fastest against eager").endswith(">= 1.5x eager, >= 99% matched: met")
    assert "40.0 / 8.0 (5.0x)" in row("short job behind a 6-chunk job")


def test_a_jobs_stages_come_from_its_rows_and_when_it_was_seen_tracking():
    at = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    clock = longvideo.JobClock(
        upload_s=0.8,
        created=at,
        first_chunk_started=at + timedelta(seconds=2.5),
        last_chunk_done=at + timedelta(seconds=600),
        tracking_seen=at + timedelta(seconds=601.25),
        finished=at + timedelta(seconds=640),
    )
    assert clock.stages() == {
        "upload": 0.8,
        "planning": 2.5,
        "detection": 597.5,
        "merge": 1.25,
        "tracking": 38.75,
    }
    assert list(clock.stages()) == list(longvideo.STAGES)
    unseen = dataclasses.replace(clock, tracking_seen=None)  # a step shorter than a poll
    assert unseen.stages()["merge"] == 40.0 and unseen.stages()["tracking"] == 0.0
    # The client saw it tracking a little after the service's clock says it ended.
    late = dataclasses.replace(clock, tracking_seen=at + timedelta(seconds=640.001))
    assert late.stages()["merge"] == 40.0 and late.stages()["tracking"] == 0.0
    early = dataclasses.replace(clock, tracking_seen=at + timedelta(seconds=599.999))
    assert early.stages()["merge"] == 0.0 and early.stages()["tracking"] == 40.0


class _Peaks:
    """What `role_memory` reads of a `PeakRss`: MB by pid."""

    def __init__(self, idle: dict[int, float], peak: dict[int, float]) -> None:
        self.idle, self.peak = idle, peak


def test_each_roles_memory_is_its_busiest_process_in_every_phase():
    roles = {"api": [1, 2, 3], "processor": [4, 5]}
    phases = {
        "job": _Peaks(
            {1: 50.0, 2: 180.0, 3: 175.0, 4: 90.0, 5: 200.0}, {1: 51, 2: 190, 3: 176, 4: 91, 5: 230}
        ),
        "exports": _Peaks({1: 51, 2: 185, 3: 176, 4: 91, 5: 205}, {1: 51, 2: 185, 3: 240, 4: 91, 5: 205}),
        # the processor still holds memory the job left: a peak, but no growth
        "pages": _Peaks({1: 51, 2: 186, 3: 200, 4: 91, 5: 205}, {1: 51, 2: 186, 3: 200, 4: 91, 5: 205}),
    }
    memory = longvideo.role_memory(phases, roles)  # type: ignore[arg-type]
    assert memory["api"] == {
        "peak_rss_mb": 240.0,
        "idle_rss_mb": 175.0,  # the process that peaked, after the warm-up
        "by_phase": {"job": 190.0, "exports": 240.0, "pages": 200.0},
        "growth_by_phase": {"job": 10.0, "exports": 64.0, "pages": 0.0},
        "processes": 3,
    }
    assert memory["processor"]["peak_rss_mb"] == 230.0 and memory["processor"]["idle_rss_mb"] == 200.0
    assert memory["processor"]["growth_by_phase"] == {"job": 30.0, "exports": 0.0, "pages": 0.0}


def test_the_long_videos_are_made_once_and_then_reused(tmp_path: Path, monkeypatch):
    bench = _bench(tmp_path, fps=5, gop=5, long_video_width=32, long_video_height=24)
    path = longvideo.cached_video(bench, 2)
    assert path.parent == tmp_path / "cache" and path.is_file()
    assert len(index_frames(path)) == 10
    assert not list(path.parent.glob("*.partial.*"))

    def no_second_video(*args: object, **kwargs: object) -> Path:
        raise AssertionError("the video was made again")

    monkeypatch.setattr(longvideo, "make_video", no_second_video)
    assert longvideo.cached_video(bench, 2) == path
    with pytest.raises(AssertionError, match="made again"):
        longvideo.cached_video(bench, 3)  # another length is another video


def _long_run(seconds: int, api_mb: float, processor_mb: float, slowest_s: float) -> dict:
    stages = {"upload": 0.5, "planning": 1.0, "detection": 900.0, "merge": 0.2, "tracking": slowest_s}
    return {
        "seconds": seconds,
        "video_frames": seconds * 25,
        "frames_analysed": seconds,
        "chunks": -(-seconds // 100),
        "stages_s": stages,
        "exports": {fmt: {"seconds": 0.5, "mb": 1.0} for fmt in FORMATS},
        "pages": {"seconds": 0.9, "pages": 3, "frames": seconds, "slowest_page_ms": 20.0},
        "memory": {
            "api": {"peak_rss_mb": api_mb, "idle_rss_mb": 170.0},
            "processor": {"peak_rss_mb": processor_mb, "idle_rss_mb": 190.0},
            "detector": {"peak_rss_mb": 1200.0, "idle_rss_mb": 1000.0},
        },
        "load_average_after_job": [2.5, 2.1, 1.9],
    }


def _long_video(*runs: dict) -> dict:
    return {
        "long_video": {
            "width": 160,
            "height": 120,
            "fps": 25,
            "sample_fps": 1.0,
            "page_frames": 100,
            "runs": list(runs),
        }
    }


def test_the_long_video_targets_are_flat_memory_and_short_stages():
    short = _long_run(600, api_mb=200.0, processor_mb=210.0, slowest_s=1.0)
    flat = _long_run(7200, api_mb=220.0, processor_mb=231.0, slowest_s=LONG_VIDEO_STAGE_S)
    assert check_targets(_long_video(short, flat)) == {
        "long_video_stages": True,
        "long_video_api_memory_flat": True,
        "long_video_processor_memory_flat": True,
    }
    grown = _long_run(7200, api_mb=200.0, processor_mb=231.1, slowest_s=LONG_VIDEO_STAGE_S + 0.1)
    assert check_targets(_long_video(short, grown)) == {
        "long_video_stages": False,
        "long_video_api_memory_flat": True,
        "long_video_processor_memory_flat": False,
    }
    # One length alone has nothing to compare its memory with.
    assert check_targets(_long_video(short)) == {"long_video_stages": True}
    assert check_targets({"long_video": {"runs": []}}) == {}


def test_the_table_shows_each_stage_and_peak_of_every_length():
    figures = _long_video(
        _long_run(600, api_mb=200.0, processor_mb=210.0, slowest_s=1.0),
        _long_run(7200, api_mb=201.0, processor_mb=290.0, slowest_s=12.0),
    )
    lines = format_table(BenchReport(machine={}, options={}, figures=figures)).splitlines()

    def row(label: str) -> str:
        return next(line for line in lines if line.strip().startswith(label))

    assert "tracked): 10 min / 2 h" in row("long video (160x120 at 25 fps, 1 frame/s analysed")
    assert "15000, 600; 6 / 180000, 7200; 72" in row("frames of video, analysed; chunks")
    assert "900.0 / 900.0" in row("detection s")
    assert all(any(line.strip().startswith(f"{fmt} export s") for line in lines) for fmt in FORMATS)
    assert row("slowest step but detection").endswith("planning: 1.0 / tracking: 12.0  <= 5 s: MISSED")
    assert row("processor peak RSS MB").endswith("210.0 (190.0) / 290.0 (190.0)  flat (+10% at most): MISSED")
    assert row("api peak RSS MB").endswith("200.0 (170.0) / 201.0 (170.0)  flat (+10% at most): met")
    assert "1200.0 (1000.0) / 1200.0 (1000.0)" in row("detector peak RSS MB")
    assert "2.5, 2.1, 1.9 / 2.5, 2.1, 1.9" in row("machine's load average after the job")


@pytest.mark.slow
def test_the_long_video_figure_runs_alone_and_reports_every_stage_and_process(tmp_path: Path) -> None:
    """`detector bench --figure long-video` on a two-second video: the real service
    runs the tracked, sampled job, every export and every page, and the report has
    each stage's seconds and each process's peak memory. The numbers mean nothing
    at this size; only that they were measured is checked."""
    out = tmp_path / "bench"
    argv = [sys.executable, "-m", "detector.cli", "bench", "--figure", "long-video", "--out", str(out)]
    argv += ["--long-video-seconds", "2", "--long-video-width", "64", "--long-video-height", "48"]
    argv += ["--long-video-sample-fps", "5", "--frames", "8", "--width", "160", "--height", "96"]
    argv += ["--batch-size", "4", "--memory-frames", "4", "--render-width", "160", "--render-height", "96"]
    argv += ["--render-frames", "4", "--no-background-detector"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    figures = report["figures"]
    assert set(figures) == {"long_video"}  # the other figures did not run
    (measured,) = figures["long_video"]["runs"]
    assert measured["seconds"] == 2 and measured["video_frames"] == 50
    assert measured["frames_analysed"] == 10  # 5 of 25 frames a second
    assert set(measured["stages_s"]) == set(longvideo.STAGES)
    assert all(seconds >= 0 for seconds in measured["stages_s"].values())
    assert measured["stages_s"]["detection"] > 0 and measured["stages_s"]["upload"] > 0
    assert set(measured["exports"]) == set(FORMATS)
    assert all(e["seconds"] > 0 and e["mb"] >= 0 for e in measured["exports"].values())
    assert measured["pages"]["frames"] == 10 and measured["pages"]["pages"] == 1
    assert set(measured["memory"]) == set(longvideo.ROLES)
    for role in measured["memory"].values():
        assert role["peak_rss_mb"] > 0 and role["idle_rss_mb"] > 0
        assert set(role["by_phase"]) == set(role["growth_by_phase"]) == set(longvideo.PHASES)
    assert len(measured["load_average_after_job"]) == 3
    assert report["targets_met"] == {"long_video_stages": report["targets_met"]["long_video_stages"]}
    assert "slowest step but detection" in run.stdout
    assert (out / "cache").is_dir()


@pytest.mark.slow
def test_a_tiny_benchmark_runs_end_to_end_and_reports_every_figure(tmp_path: Path) -> None:
    """`detector bench` on a few small frames: every stage runs (the real API and
    workers included) and the report has every figure and every target's verdict.
    The numbers themselves mean nothing at this size and are not checked."""
    out = tmp_path / "bench"
    argv = [sys.executable, "-m", "detector.cli", "bench", "--out", str(out)]
    argv += ["--frames", "16", "--width", "160", "--height", "96", "--batch-size", "4"]
    argv += ["--chunk-frames", "8", "--batch-sweep", "1,4", "--chunk-sweep", "8", "--clients", "4"]
    argv += ["--memory-frames", "8", "--load-rounds", "1", "--load-seconds", "1"]
    argv += ["--sampling-repeats", "1", "--export-frames", "200"]
    argv += ["--long-video-seconds", ""]  # it has a test of its own
    argv += ["--render-width", "320", "--render-height", "180", "--render-frames", "8"]
    argv += ["--testdata", str(TESTDATA_DIR), "--real-video-stride", "200"]  # 4 frames of vtest.avi
    argv += ["--peak-frames", "2", "--int8-stride", "200"]  # INT8 calibrated on 4 frames, run on 4
    detectron2 = importlib.util.find_spec("detectron2") is not None
    if detectron2:
        argv += ["--prototype-model", _small_mask_rcnn(tmp_path), "--prototype-frames", "3"]
    # make test runs other tests beside this one, on every core: at the lowest
    # priority the detector would wait for them all.
    argv += ["--no-background-detector"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the benchmark stops the service's processes on SIGTERM
        stdout, stderr = proc.communicate(timeout=120)
        pytest.fail(f"the benchmark did not finish in 15 minutes: {stderr[-3000:]}")
    run = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    figures = report["figures"]
    for name in (
        "decode_fps",
        "model_fps_by_batch",
        "batching_gain",
        "predict_fps",
        "end_to_end_fps",
        "pipeline_efficiency",
        "decoded_per_delivered",
        "broker_bytes_per_frame",
        "upload_to_first_chunk_s",
        "last_chunk_to_succeeded_s",
        "api_under_load",
        "detector_worker_memory",
        "end_to_end_fps_by_chunk",
        "sampled_job",
        "tracking",
        "exports",
        "render",
        "runtimes",
        "short_job_wait_s",
        "peak",
        "int8",
    ):
        assert name in figures, name
    assert figures["chunks"] == 2  # 16 frames in chunks of 8
    prototype = figures["prototype"]
    if detectron2:
        assert prototype["frames"] == 3
        # the seeded random weights, written to a file that both loops load
        assert prototype["weights"] == str(out.resolve() / "prototype-random-weights.pth")
        assert Path(prototype["weights"]).is_file()
        for side in ("prototype", "predict"):
            assert {"frames_per_s", "wall_s", "peak_rss_mb", "minor_faults", "sys_s"} <= set(prototype[side])
        assert prototype["prototype"]["batch_size"] == 1
        # DETECTOR_BATCH_SIZE=auto, for the small config's input size
        assert prototype["predict"]["batch_size"] == default_batch_size("cpu", (96, 160))
        end_to_end = prototype["end_to_end"]
        assert {"frames_per_s", "detector_peak_rss_mb", "service_peak_rss_mb", "speedup"} <= set(end_to_end)
        assert "against the 2021 prototype" in run.stdout
    else:
        assert "detectron2 is not importable" in prototype["skipped"]
    assert set(figures["model_fps_by_batch"]) == {"1", "4"}
    load = figures["api_under_load"]
    assert load["tool"] == ("wrk" if shutil.which("wrk") else "python")
    for endpoint in ("job", "detections"):
        assert set(load[endpoint]) == {"rounds", "p99_ms_rounds", *ROUND_KEYS}
        assert load[endpoint]["requests"] > 0
        assert load[endpoint]["non_2xx"] == 0 and load[endpoint]["socket_errors"] == 0
    assert figures["detector_worker_memory"]["long"]["frames"] == 80
    sampled = figures["sampled_job"]
    assert sampled["video_frames"] == 16 and sampled["frames_analysed"] == 4  # 5 of 25 frames/s
    for key in ("full_video_fps", "sampled_video_fps", "speedup", "decoded_per_analysed", "decode_share"):
        assert key in sampled, key
    assert len(sampled["vs_expected_runs"]) == 1
    tracking = figures["tracking"]
    assert tracking["frames"] == tracking["job_frames"] == 16
    for key in ("s_per_1000_frames", "objects_per_frame", "job_step_s", "job_step_share"):
        assert key in tracking, key
    exports = figures["exports"]
    assert exports["frames"] == 200 and set(exports["formats"]) == set(FORMATS)
    for measured in exports["formats"].values():
        assert {"frames_per_s", "mb", "idle_rss_mb", "peak_rss_mb", "growth_mb"} <= set(measured)
        assert measured["mb"] > 0
    assert set(figures["render"]) == {"160x96", "320x180"}
    assert figures["render"]["320x180"]["frames"] == 8
    for measured in figures["render"].values():
        assert {"render_fps", "detect_fps", "render_per_detect", "encoder"} <= set(measured)
    assert set(report["targets_met"]) == {
        "pipeline_efficiency",
        "decoded_per_delivered",
        "broker_bytes_per_frame",
        "worker_memory_flat",
        "api_job_p99",
        "api_detections_p99",
        "sampled_job_scaling",
        "cpu_runtime",
    }
    runtimes = figures["runtimes"]
    assert runtimes["frames"] == 16 and set(runtimes["runtimes"]) == {
        "torchvision",
        "onnxruntime",
        "openvino",
    }
    for name in ("onnxruntime", "openvino"):
        assert {"fps", "match_rate", "matched", "objects"} <= set(runtimes["runtimes"][name])
    wait = figures["short_job_wait_s"]
    assert wait["long_job_chunks"] == 10  # 80 frames in chunks of 8
    assert wait["first_come_first_served"] > 0 and wait["chunk_priorities"] > 0
    assert (out / "bench.png").stat().st_size > 0
    assert "pipeline efficiency (end to end / predict)" in run.stdout
    for row in (
        "sampled job's time",
        "tracking, s per 1,000 frames",
        "coco: frames/s",
        "render frames/s at 320x180",
        "CPU runtimes",
        "short job behind a 10-chunk job",
    ):
        assert row in run.stdout, row
    # Last: without the shared data the figure is a note (and the test skips, or fails under CI=true).
    real = figures["real_video"]
    if "skipped" in real:
        require_testdata()
    assert real["frames"] == 4 and set(real["runtimes"]) == {"onnxruntime", "openvino", "tflite"}
    assert real["job"]["frames"] == 4 and real["job"]["objects"] > 0
    assert "SSD MobileNet V2 on every 200th frame of vtest.avi" in run.stdout
    runtimes = {(row["model"], row["runtime"]) for row in figures["peak"]["models"]}
    assert {"torchvision", "onnxruntime", "openvino", "tflite"} == {runtime for _, runtime in runtimes}
    assert figures["int8"]["ssd"]["frames"] == 4 and figures["int8"]["calibration_frames"] == 4
    assert "+int8(calibration=sha256:" in figures["int8"]["ssd"]["int8"]["name"]


def _small_mask_rcnn(folder: Path) -> str:
    """The zoo's Mask R-CNN R50-FPN at a 96 px input and 50 proposals: seconds, not minutes."""
    from detectron2 import model_zoo

    path = folder / "mask_rcnn_96.yaml"
    base = model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml")
    path.write_text(
        f'_BASE_: "{base}"\nINPUT:\n  MIN_SIZE_TEST: 96\n  MAX_SIZE_TEST: 160\n'
        "MODEL:\n  RPN:\n    POST_NMS_TOPK_TEST: 50\n"
    )
    return str(path)


# --- The real-video figure (detector/bench/realvideo.py) -----------------------------------------


def _objects(*rows: tuple[int, float, float, float, float]) -> Detections:
    """Objects of (class id, x1, y1, x2, y2), scores 0.9."""
    return Detections.from_model(
        [r[1:] for r in rows], [0.9] * len(rows), [r[0] for r in rows], ["person", "bicycle", "car"]
    )


def test_runtimes_agree_object_for_object_by_class_and_overlap():
    from detector.bench.realvideo import agreement, matched_pairs

    reference = _objects((0, 0, 0, 10, 20), (0, 5, 0, 15, 20), (2, 50, 50, 90, 80))
    # The first two swapped and moved a little, the car called a bicycle, one more person.
    other = _objects((0, 6, 0, 16, 20), (0, 0, 1, 10, 21), (1, 50, 50, 90, 80), (0, 200, 200, 210, 220))
    pairs = matched_pairs(reference, other)
    assert sorted((i, j) for i, j, _ in pairs) == [(0, 1), (1, 0)]
    assert all(0.8 < iou < 1 for _, _, iou in pairs)
    assert matched_pairs(reference, Detections.empty()) == []
    found = agreement([reference, other], [other, other])
    assert (found["matched"], found["objects_reference"], found["objects"]) == (2 + 4, 7, 8)
    assert found["match_rate"] == round(6 / 8, 4)
    assert found["min_iou"] < 1 and found["mean_iou"] < 1


def test_the_real_video_figure_is_skipped_without_the_data_and_shown_in_the_table(tmp_path: Path):
    from detector.bench.realvideo import real_video

    skipped = real_video(_bench(tmp_path, testdata=str(tmp_path / "nowhere")), lambda data: {})
    assert "the shared test data is missing" in skipped["real_video"]["skipped"]
    figure = {
        "video": "vtest.avi",
        "frame_stride": 5,
        "frames": 159,
        "width": 768,
        "height": 576,
        "runtimes": {
            "onnxruntime": {"fps": 20.0, "batch_size": 8, "people_per_frame": 6.7},
            "tflite": {"fps": 50.0, "batch_size": 8, "people_per_frame": 6.9, "match_rate": 0.93},
            "openvino": {"error": "RuntimeError: no"},
        },
        "job": {
            "backend": "onnxruntime",
            "predict_fps": 18.0,
            "end_to_end_fps": 15.0,
            "pipeline_efficiency": 0.833,
        },
    }
    lines = format_table(BenchReport(machine={}, options={}, figures={"real_video": figure})).splitlines()

    def row(label: str) -> str:
        return next(line for line in lines if line.strip().startswith(label))

    assert "159 frames of 768x576" in row("SSD MobileNet V2")
    assert "50.0 (batch 8, 6.9 people/frame, 93.00% matched)" in row("tflite")
    assert "cannot run here" in row("openvino")
    assert row("pipeline efficiency (job / predict)").split()[-1] == "0.833"


def test_the_real_video_figure_measures_every_runtime_on_the_shared_model(tmp_path: Path):
    """Four frames of the real video on each runtime, at the batch `auto` picks."""
    from detector.bench.realvideo import SSD_RUNTIMES, RealVideoData, compare_ssd_runtimes, sampled_frames

    data = RealVideoData(require_testdata().root)
    frames = sampled_frames(data.video, stride=200)
    assert [i for i, _ in frames] == [0, 200, 400, 600]
    found = compare_ssd_runtimes(data, [f for _, f in frames], 0.4, log=lambda line: None)
    assert list(found) == list(SSD_RUNTIMES)
    for backend, entry in found.items():
        assert "error" not in entry, entry
        assert entry["batch_size"] >= 1 and entry["fps"] > 0
        assert entry["people_per_frame"] >= 2 and entry["frames_without_people"] == 0
        if backend != SSD_RUNTIMES[0]:
            assert entry["against"] == SSD_RUNTIMES[0]
            assert entry["match_rate"] >= 0.8 and entry["mean_iou"] >= 0.9

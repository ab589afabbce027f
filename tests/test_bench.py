"""The benchmark's arithmetic, parsing, load tools and options, and a tiny smoke run of the whole of it.

The real benchmark is run by hand (`make bench`); no timing here is asserted.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.bench import load
from detector.bench import run as bench_run
from detector.bench.figures import SampledPair, decode_selection, made_up_frames, sampling_summary
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
from detector.bench.report import SAMPLING_SLACK, BenchReport, check_targets, format_table
from detector.bench.service import PeakRss, free_port
from detector.cli.bench import bench
from detector.exports import FORMATS
from detector.video.selection import FrameSelection
from detector.video.synthetic import make_video
from tests.conftest import missing_tool

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
    pool = [{"label": "dog", "class_id": 18, "score": 0.5, "box": [0, 0, 1, 1]}]
    frames = made_up_frames(30, 3, 25.0, pool)
    assert [f for f, _, _ in frames] == list(range(30))
    assert frames[25][1] == 1.0
    assert all([o["track_id"] for o in objects] == [1, 2, 3] for _, _, objects in frames)
    assert all(o["label"] == "dog" for _, _, objects in frames for o in objects)
    assert "track_id" not in pool[0]  # the pool is copied, not changed
    fallback = made_up_frames(2, 2, 25.0, [])
    assert {o["label"] for _, _, objects in fallback for o in objects} == {"person", "car"}
    assert made_up_frames(3, 0, 25.0, pool) == [(0, 0.0, []), (1, 0.04, []), (2, 0.08, [])]


def test_the_peak_memory_of_a_process_is_caught_and_its_growth_measured():
    pid = os.getpid()
    with PeakRss([pid]) as memory:
        block = b"x" * (64 * 1024 * 1024)
        # Hold the block until a reading has seen it (where the kernel's peak cannot be
        # reset, only the readings can), however slowly the sampler runs on a busy machine.
        deadline = time.monotonic() + 30
        while memory.peak.get(pid, 0.0) < memory.idle.get(pid, 0.0) + 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        del block
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
    argv += ["--render-width", "320", "--render-height", "180", "--render-frames", "8"]
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
    ):
        assert name in figures, name
    assert figures["chunks"] == 2  # 16 frames in chunks of 8
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
    }
    assert (out / "bench.png").stat().st_size > 0
    assert "pipeline efficiency (end to end / predict)" in run.stdout
    for row in (
        "sampled job's time",
        "tracking, s per 1,000 frames",
        "coco: frames/s",
        "render frames/s at 320x180",
    ):
        assert row in run.stdout, row

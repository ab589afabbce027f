"""The benchmark's arithmetic, parsing, load tools and options, and a tiny smoke run of the whole of it.

The real benchmark is run by hand (`make bench`); no timing here is asserted.
"""

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.bench import load
from detector.bench import run as bench_run
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
from detector.bench.report import BenchReport, check_targets, format_table
from detector.bench.service import free_port
from detector.cli.bench import bench
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
    "args", [["--batch-sweep", "1,x"], ["--frames", "0"], ["--load-tool", "ab"], ["--memory-factor", "1"]]
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
    assert set(report["targets_met"]) == {
        "pipeline_efficiency",
        "decoded_per_delivered",
        "broker_bytes_per_frame",
        "worker_memory_flat",
        "api_job_p99",
        "api_detections_p99",
    }
    assert (out / "bench.png").stat().st_size > 0
    assert "pipeline efficiency (end to end / predict)" in run.stdout

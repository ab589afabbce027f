"""The benchmark's arithmetic and parsing (the benchmark itself is run by hand: `make bench`)."""

from detector.bench import _WRK_LINE, BenchReport, _percentile, combine_rounds, format_table


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(101)]  # 0 .. 100
    assert _percentile(values, 0.5) == 50.0
    assert _percentile(values, 0.99) == 99.0
    assert _percentile([7.0], 0.99) == 7.0


def test_wrk_latency_lines_in_any_unit():
    out = "  Latency Distribution\n     50%  812.00us\n     75%   54.72ms\n     99%    1.20s\n"
    assert _WRK_LINE.findall(out) == [("50", "812.00", "us"), ("99", "1.20", "s")]


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
        {"requests": 100, "p50_ms": 40.0, "p99_ms": 80.0, "non_2xx": 0},
        {"requests": 90, "p50_ms": 60.0, "p99_ms": 140.0, "non_2xx": 2},
        {"requests": 110, "p50_ms": 50.0, "p99_ms": 95.0, "non_2xx": 0},
    ]
    combined = combine_rounds(rounds)
    assert combined["p50_ms"] == 50.0 and combined["p99_ms"] == 95.0
    assert combined["p99_ms_rounds"] == [80.0, 140.0, 95.0]
    assert combined["requests"] == 300 and combined["non_2xx"] == 2
    assert "server_errors" not in combined
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

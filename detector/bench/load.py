"""The API load: many clients sending GETs with no pause, and their latencies.

Two load tools give the same figures: wrk (a C load generator) when it is
installed, else a Python client whose own CPU use inflates the latencies it
measures. Either way one round of one endpoint reports the keys in
`ROUND_KEYS`, so a report reads the same whichever tool ran.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import threading
import time
from typing import Any

import requests

# What one round of load on one endpoint reports, whichever tool ran it:
# requests answered, the median and 99th percentile latency in milliseconds,
# answers with a status of 400 or more (wrk's "Non-2xx or 3xx responses"), and
# requests that got no answer at all (refused, cut off or timed out).
ROUND_KEYS = ("requests", "p50_ms", "p99_ms", "non_2xx", "socket_errors")
TOOLS = ("auto", "wrk", "python")


def choose_tool(wanted: str) -> str:
    """The load tool to use: ``wrk`` or ``python``; ``auto`` takes wrk when it is installed."""
    if wanted not in TOOLS:
        raise ValueError(f"the load tool must be one of {', '.join(TOOLS)}, got {wanted!r}")
    if wanted == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if wanted == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (Debian, Ubuntu: apt-get install wrk)")
    return wanted


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``values`` (``q`` from 0 to 1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def python_load(
    urls: list[str], headers: dict[str, str], clients: int, per_client: int
) -> dict[str, dict[str, float]]:
    """``clients`` threads, each sending ``per_client`` GETs over ``urls`` in turn; one round per URL."""
    latencies: dict[str, list[float]] = {u: [] for u in urls}
    non_2xx = dict.fromkeys(urls, 0)
    socket_errors = dict.fromkeys(urls, 0)
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        for i in range(per_client):
            url = urls[i % len(urls)]
            started = time.perf_counter()
            try:
                status = session.get(url, headers=headers, timeout=30).status_code
            except requests.RequestException:
                with lock:
                    socket_errors[url] += 1
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            with lock:
                latencies[url].append(elapsed_ms)
                if status >= 400:
                    non_2xx[url] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        url: {
            "requests": len(ms),
            "p50_ms": round(percentile(ms, 0.50), 1) if ms else float("nan"),
            "p99_ms": round(percentile(ms, 0.99), 1) if ms else float("nan"),
            "non_2xx": non_2xx[url],
            "socket_errors": socket_errors[url],
        }
        for url, ms in latencies.items()
    }


WRK_LATENCY = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(out: str) -> dict[str, float]:
    """One round's figures from wrk's ``--latency`` output."""
    found = {q: float(v) * WRK_UNITS[u] for q, v, u in WRK_LATENCY.findall(out)}
    requests_total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = WRK_SOCKET_ERRORS.search(out)
    return {
        "requests": int(requests_total.group(1)) if requests_total else 0,
        "p50_ms": round(found.get("50", float("nan")), 1),
        "p99_ms": round(found.get("99", float("nan")), 1),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def wrk_load(url: str, headers: dict[str, str], clients: int, seconds: int) -> dict[str, float]:
    """One round of wrk on ``url``: ``clients`` connections for ``seconds`` s."""
    argv = ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def combine_rounds(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """One endpoint's load rounds as one figure: the median of each percentile,
    every round's p99, and the totals."""
    return {
        "rounds": len(rounds),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 1),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 1),
        "p99_ms_rounds": [r["p99_ms"] for r in rounds],
        **{total: int(sum(r[total] for r in rounds)) for total in ("requests", "non_2xx", "socket_errors")},
    }

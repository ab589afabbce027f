"""The benchmark's report: its figures, the targets they are judged against, the table and the plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BenchReport:
    machine: dict[str, Any]
    options: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    # The targets for the development machine, by name: met or not (check_targets).
    targets_met: dict[str, bool] = field(default_factory=dict)


def plot(report: BenchReport, path: Path) -> None:
    """Model frames/s by batch size and end-to-end frames/s by chunk size, as a PNG
    (nothing when matplotlib is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figures = report.figures
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    batches = figures.get("model_fps_by_batch", {})
    left.plot(list(batches), list(batches.values()), marker="o")
    left.set(title="Model only, by batch size", xlabel="batch size", ylabel="frames/s")
    left.set_xscale("log", base=2)
    left.set_ylim(bottom=0)
    chunks = figures.get("end_to_end_fps_by_chunk", {})
    right.plot(list(chunks), list(chunks.values()), marker="o", label="end to end")
    if "predict_fps" in figures:
        right.axhline(figures["predict_fps"], linestyle="--", color="grey", label="detector predict")
    right.set(title="End to end, by chunk size", xlabel="frames per chunk", ylabel="frames/s")
    right.set_ylim(bottom=0)
    right.legend()
    options = report.options
    fig.suptitle(f"{options['model']} on {options['device']}, {options['width']}x{options['height']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# Growth of a detector worker's peak RSS, from the short video to the one ten
# times longer, that still counts as flat: runs move by a few percent either way.
FLAT_MEMORY_GROWTH = 0.10


# How far above its expected time (figures.sampling_summary) a sampled job may
# take and still count as scaling with the frames it analyses: the costs no
# sampling shrinks (upload, planning, the first chunk's wait, the merge: some
# 0.2-0.3 s, about a tenth of the default sampled job) and the machine's drift
# between the two jobs of a pair.
SAMPLING_SLACK = 0.25


# The longest that any stage of the long-video figure's longest job but detection
# (the upload, planning, the merge, tracking, each export, every detections page)
# may take: "a few seconds", however long the video.
LONG_VIDEO_STAGE_S = 5.0

# The processes whose peak memory must not grow with the video's length (the
# detector's grows with its batch and frame size, not with the video).
LONG_VIDEO_FLAT_ROLES = ("api", "processor")


# A runtime beats PyTorch eager when it is this many times as fast on the CPU ...
RUNTIME_SPEEDUP = 1.5
# ... with at least this share of eager's objects matched (detector/bench/runtimes.py).
RUNTIME_MATCH = 0.99


# What the table shows beside each figure that has a target (check_targets' names).
TARGET_TEXT = {
    "pipeline_efficiency": ">= 0.9",
    "decoded_per_delivered": "<= 1.05",
    "broker_bytes_per_frame": "< 1024",
    "worker_memory_flat": f"flat (+{FLAT_MEMORY_GROWTH:.0%} at most)",
    "api_job_p99": "p99 < 100",
    "api_detections_p99": "p99 < 100",
    "sampled_job_scaling": f"<= {1 + SAMPLING_SLACK:g}",
    "cpu_runtime": f">= {RUNTIME_SPEEDUP:g}x eager, >= {RUNTIME_MATCH:.0%} matched",
    "long_video_stages": f"<= {LONG_VIDEO_STAGE_S:g} s",
    **{
        f"long_video_{role}_memory_flat": f"flat (+{FLAT_MEMORY_GROWTH:.0%} at most)"
        for role in LONG_VIDEO_FLAT_ROLES
    },
}


def slowest_other_stage(run: dict[str, Any]) -> tuple[str, float]:
    """The name and seconds of the slowest step of one long-video run but detection:
    a stage of its job, an export or reading every detections page."""
    steps = {name: s for name, s in run["stages_s"].items() if name != "detection"}
    steps.update({f"{fmt} export": e["seconds"] for fmt, e in run["exports"].items()})
    steps["pages"] = run["pages"]["seconds"]
    name = max(steps, key=lambda n: steps[n])
    return name, steps[name]


# The analytics of one spec over 10,000 frames and 1,000 tracks take at most this (seconds).
ANALYTICS_SECONDS = 10.0


def check_targets(figures: dict[str, Any]) -> dict[str, bool]:
    """Whether each of the issue's targets for this machine is met, by name.

    A target whose figures were not measured is left out, neither met nor missed.
    """
    met: dict[str, bool] = {}
    if (efficiency := figures.get("pipeline_efficiency")) is not None:
        met["pipeline_efficiency"] = efficiency >= 0.9
    if (ratio := figures.get("decoded_per_delivered")) is not None:
        met["decoded_per_delivered"] = ratio <= 1.05
    if (broker := figures.get("broker_bytes_per_frame")) is not None:
        met["broker_bytes_per_frame"] = broker < 1024
    memory = figures.get("detector_worker_memory", {})
    if "short" in memory and "long" in memory:
        limit = memory["short"]["peak_rss_mb"] * (1 + FLAT_MEMORY_GROWTH)
        met["worker_memory_flat"] = memory["long"]["peak_rss_mb"] <= limit
    load = figures.get("api_under_load", {})
    for name in ("job", "detections"):
        if name in load:
            met[f"api_{name}_p99"] = load[name]["p99_ms"] < 100
    if (scaling := figures.get("sampled_job", {}).get("vs_expected")) is not None:
        met["sampled_job_scaling"] = scaling <= 1 + SAMPLING_SLACK
    if speedups := figures.get("runtimes", {}).get("speedup"):
        runtimes = figures["runtimes"]["runtimes"]
        met["cpu_runtime"] = any(
            speedup >= RUNTIME_SPEEDUP and runtimes[name].get("match_rate", 0) >= RUNTIME_MATCH
            for name, speedup in speedups.items()
        )
    if (analytics := figures.get("analytics")) is not None:
        met["analytics_seconds"] = analytics["task_seconds"] <= ANALYTICS_SECONDS
    if runs := figures.get("long_video", {}).get("runs"):
        met["long_video_stages"] = slowest_other_stage(runs[-1])[1] <= LONG_VIDEO_STAGE_S
        if len(runs) > 1:
            shortest, longest = runs[0]["memory"], runs[-1]["memory"]
            for role in LONG_VIDEO_FLAT_ROLES:
                limit = shortest[role]["peak_rss_mb"] * (1 + FLAT_MEMORY_GROWTH)
                met[f"long_video_{role}_memory_flat"] = longest[role]["peak_rss_mb"] <= limit
    return met


def format_table(report: BenchReport) -> str:
    """The figures as a table, each with its target and whether it was met."""
    f = report.figures
    # (figure, value, the name of its target in check_targets, or "")
    rows: list[tuple[str, Any, str]] = [
        ("pipeline efficiency (end to end / predict)", f.get("pipeline_efficiency"), "pipeline_efficiency"),
        ("end-to-end frames/s", f.get("end_to_end_fps"), ""),
        ("detector predict frames/s", f.get("predict_fps"), ""),
        ("decode-only frames/s", f.get("decode_fps"), ""),
        ("frames decoded / delivered", f.get("decoded_per_delivered"), "decoded_per_delivered"),
        ("batching gain (batch / batch 1)", f.get("batching_gain"), ""),
        ("broker bytes per frame", f.get("broker_bytes_per_frame"), "broker_bytes_per_frame"),
        ("upload -> first chunk started (s)", f.get("upload_to_first_chunk_s"), ""),
        ("last chunk done -> succeeded (s)", f.get("last_chunk_to_succeeded_s"), ""),
    ]
    for label, m in f.get("detector_worker_memory", {}).items():
        target = "worker_memory_flat" if label == "long" else ""
        rows.append((f"detector worker peak RSS, {m['frames']} frames (MB)", m["peak_rss_mb"], target))
        if "rss_after_mb" in m:
            rows.append((f"detector worker RSS after, {m['frames']} frames (MB)", m["rss_after_mb"], ""))
    load = f.get("api_under_load", {})
    for name in ("job", "detections"):
        if name in load:
            what = f"detections ({load['detections_page_frames']} frames)" if name == "detections" else name
            rows.append(
                (
                    f"GET {what} p50 / p99 ms, {load['clients']} clients ({load.get('tool', '?')})",
                    f"{load[name]['p50_ms']} / {load[name]['p99_ms']}",
                    f"api_{name}_p99",
                )
            )
            if "p99_ms_rounds" in load[name]:
                rounds = ", ".join(str(v) for v in load[name]["p99_ms_rounds"])
                rows.append(("  p99 of each round (the figure above is their median)", rounds, ""))
    if "detector_fps_during_load" in load:
        rows.append(("detector frames/s meanwhile (it yields the CPU)", load["detector_fps_during_load"], ""))
    rows += _option_rows(f)
    rows += _prototype_rows(f)
    rows += _runtime_rows(f)
    rows += _scheduling_rows(f)
    rows += _long_video_rows(f)
    rows += _real_video_rows(f)
    rows += _peak_rows(f)
    rows += _int8_rows(f)
    rows += _storage_rows(f)

    met = check_targets(f)

    def verdict(target: str) -> str:
        text = TARGET_TEXT.get(target, "")
        return f"{text}: {'met' if met[target] else 'MISSED'}" if target in met else text

    width = max(len(r[0]) for r in rows)
    lines = [f"{'figure'.ljust(width)}  {'measured':>14}  target", "-" * (width + 26)]
    lines += [f"{name.ljust(width)}  {value!s:>14}  {verdict(target)}" for name, value, target in rows]
    return "\n".join(lines)


def _option_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The table's rows of the sampled job, tracking, exports and renders, where measured."""
    rows: list[tuple[str, Any, str]] = []
    if s := f.get("sampled_job"):
        rows += [
            (
                f"sampled job, {s['sample_fps']:g} of {s['video_fps']} frames/s "
                f"({s['frames_analysed']} of {s['video_frames']} frames): s, full / sampled",
                f"{s['full_s']} / {s['sampled_s']}",
                "",
            ),
            (
                "  frames of video per s, full / sampled job",
                f"{s['full_video_fps']} / {s['sampled_video_fps']}",
                "",
            ),
            (
                "  frames analysed per s, full / sampled job",
                f"{s['full_video_fps']} / {s['sampled_analysed_fps']}",
                "",
            ),
            ("  speed-up (ideal: frames of video / analysed)", f"{s['speedup']} ({s['ideal_speedup']})", ""),
            ("  sampled job: frames decoded / analysed", s["decoded_per_analysed"], ""),
            ("  sampled job: its frames decoded alone / its time", s["decode_share"], ""),
            (
                "  sampled job's time / (share x full job's + decoding)",
                s["vs_expected"],
                "sampled_job_scaling",
            ),
        ]
    if t := f.get("tracking"):
        rows += [
            (
                f"tracking, s per 1,000 frames ({t['objects_per_frame']} objects a frame)",
                t["s_per_1000_frames"],
                "",
            ),
            (
                "tracked job: tracking step s (share of the job's time)",
                f"{t['job_step_s']} ({t['job_step_share']})",
                "",
            ),
        ]
    if e := f.get("exports"):
        what = f"{e['frames']}-frame job, {e['objects_per_frame']} objects a frame"
        for fmt, m in e["formats"].items():
            rows.append((f"export of a {what}, {fmt}: frames/s", m["frames_per_s"], ""))
        if coco := e["formats"].get("coco"):
            rows.append(
                (
                    "  API process RSS during the coco export: idle -> peak MB",
                    f"{coco['idle_rss_mb']} -> {coco['peak_rss_mb']} (+{coco['growth_mb']})",
                    "",
                )
            )
    for size, r in f.get("render", {}).items():
        rows.append(
            (
                f"render frames/s at {size} (detection frames/s there)",
                f"{r['render_fps']} ({r['detect_fps']})",
                "",
            )
        )
    return rows


def _prototype_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The table's rows of the prototype figure (figures.against_prototype), where measured."""
    p = f.get("prototype")
    if not p:
        return []
    if "skipped" in p:
        return [("against the 2021 prototype", f"skipped: {p['skipped']}", "")]
    theirs, ours = p["prototype"], p["predict"]
    what = f"{p['frames']} frames of {p['size']}, {p['model'].rsplit('/', 1)[-1]}"
    pair = "prototype / predict"
    rows = [
        (
            f"against the 2021 prototype ({what}): frames/s, {pair}",
            f"{theirs['frames_per_s']} / {ours['frames_per_s']}",
            "",
        ),
        (f"  wall s, {pair} (speed-up)", f"{theirs['wall_s']} / {ours['wall_s']} ({p['wall_speedup']})", ""),
        (f"  peak RSS MB, {pair}", f"{theirs['peak_rss_mb']} / {ours['peak_rss_mb']}", ""),
        (f"  minor page faults, {pair}", f"{theirs['minor_faults']} / {ours['minor_faults']}", ""),
        (f"  system CPU s, {pair}", f"{theirs['sys_s']} / {ours['sys_s']}", ""),
        (
            "  predict's batch and allocator; prototype's",
            f"{ours['batch_size']}, {ours['allocator']}; 1, {theirs['allocator']}",
            "",
        ),
    ]
    if e := p.get("end_to_end"):
        rows += [
            (
                "  end to end, a job through the service: frames/s, prototype / job (speed-up)",
                f"{theirs['frames_per_s']} / {e['frames_per_s']} ({e['speedup']})",
                "",
            ),
            (
                "  peak RSS MB, prototype / detector worker (all of the service)",
                f"{theirs['peak_rss_mb']} / {e['detector_peak_rss_mb']} ({e['service_peak_rss_mb']})",
                "",
            ),
        ]
    return rows


def _runtime_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The table's rows of the runtimes figure (detector/bench/runtimes.py), where measured."""
    r = f.get("runtimes")
    if not r:
        return []
    if "skipped" in r:
        return [("CPU runtimes", f"skipped: {r['skipped']}", "")]
    what = f"{r['frames']} frames of {r['width']}x{r['height']}, batch {r['batch_size']}"
    rows: list[tuple[str, Any, str]] = [(f"CPU runtimes ({what}, {r['model']}): frames/s", "", "")]
    for name, entry in r["runtimes"].items():
        if name in r.get("speedup", {}):
            value = f"{entry['fps']} ({r['speedup'][name]}x, {entry['match_rate']:.2%} matched)"
        else:
            value = entry["fps"]
        rows.append((f"  {name}", value, ""))
    if r.get("speedup"):
        best = max(r["speedup"], key=r["speedup"].__getitem__)
        rows.append(("  fastest against eager", best, "cpu_runtime"))
    return rows


def _real_video_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The table's rows of the real-video figure (detector/bench/realvideo.py), where measured."""
    r = f.get("real_video")
    if not r:
        return []
    if "skipped" in r:
        return [("Real video (shared SSD)", f"skipped: {r['skipped']}", "")]
    what = f"every {r['frame_stride']}th frame of {r['video']}, {r['frames']} frames of {r['width']}x{r['height']}"
    rows: list[tuple[str, Any, str]] = [(f"SSD MobileNet V2 on {what}: frames/s", "", "")]
    for name, entry in r["runtimes"].items():
        if "error" in entry:
            rows.append((f"  {name}", "cannot run here", ""))
            continue
        value = f"{entry['fps']} (batch {entry['batch_size']}, {entry['people_per_frame']} people/frame"
        if "match_rate" in entry:
            value += f", {entry['match_rate']:.2%} matched"
        rows.append((f"  {name}", value + ")", ""))
    if job := r.get("job"):
        rows += [
            (f"  detector predict ({job['backend']})", job["predict_fps"], ""),
            ("  a job end to end", job["end_to_end_fps"], ""),
            ("  pipeline efficiency (job / predict)", job["pipeline_efficiency"], ""),
        ]
    return rows


def _peak_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The table's rows of the peak figure (detector/bench/peak.py), where measured."""
    p = f.get("peak")
    if not p:
        return []
    rows: list[tuple[str, Any, str]] = [
        (f"machine's FP32 peak, {p['threads']} threads (GFLOP/s)", p["gflops"], "")
    ]
    for row in p["models"]:
        value = f"{row['gflops']} ({row['share_of_peak']:.1%})"
        rows.append((f"  {row['model']} on {row['runtime']}, {row['gmac_per_frame']} GMAC/frame", value, ""))
    return rows


def _int8_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The table's rows of the int8 figure (detector/bench/precision.py), where measured."""
    r = f.get("int8")
    if not r:
        return []
    if "skipped" in r:
        return [("INT8 against FP32 (shared SSD)", f"skipped: {r['skipped']}", "")]
    ssd = r["ssd"]
    return [
        (
            f"SSD INT8 against FP32 on OpenVINO, every {r['frame_stride']}th frame: speed-up",
            ssd["speedup"],
            "",
        ),
        (
            "  objects matched / AP50 against FP32",
            f"{ssd['agreement']['match_rate']:.1%} / {ssd['average_precision']['ap']}",
            "",
        ),
    ]


def _storage_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The table's rows of the storage figure (detector/bench/storage.py), where measured."""
    r = f.get("storage_reads")
    if not r:
        return []
    if "skipped" in r:
        return [("Bytes read from a bucket", f"skipped: {r['skipped']}", "")]
    rows: list[tuple[str, Any, str]] = []
    for v in r["videos"]:
        what = f"{v['video']}, {v['bytes'] / 1e6:.1f} MB, {v['chunks']} chunks of {v['chunk_frames']} frames"
        rows += [
            (
                f"Bytes read from a bucket ({what}): probe / index MB",
                _mb(v["probe_bytes"], v["index_bytes"]),
                "",
            ),
            ("  a chunk, MB: median / max", _mb(v["chunk_bytes_median"], v["chunk_bytes_max"]), ""),
            (
                "  a chunk over its share: median / max",
                f"{v['read_over_share_median']} / {v['read_over_share_max']}",
                "",
            ),
            ("  a chunk over the whole file, max", v["chunk_read_over_file_max"], ""),
            ("  GETs a chunk: median / max", f"{v['chunk_requests_median']} / {v['chunk_requests_max']}", ""),
        ]
    return rows


def _mb(*sizes: int) -> str:
    return " / ".join(f"{size / 1e6:.2f}" for size in sizes)


def _scheduling_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The table's rows of the scheduling figure (detector/bench/scheduling.py), where measured."""
    w = f.get("short_job_wait_s")
    if not w:
        return []
    return [
        (
            f"short job behind a {w['long_job_chunks']}-chunk job, s: first come first served / priorities",
            f"{w['first_come_first_served']} / {w['chunk_priorities']} ({w['speedup']}x)",
            "",
        )
    ]


def _length(seconds: int) -> str:
    """A video's length as the table names it: ``2 h``, ``10 min``, ``8 s``."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _long_video_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The table's rows of the long-video figure (detector/bench/longvideo.py), where measured:
    each row's values for every length, shortest first."""
    v = f.get("long_video")
    if not v or not v["runs"]:
        return []
    runs = v["runs"]

    def each(value: Any) -> str:
        return " / ".join(str(value(run)) for run in runs)

    what = f"{v['width']}x{v['height']} at {v['fps']} fps, {v['sample_fps']:g} frame/s analysed, tracked"
    rows: list[tuple[str, Any, str]] = [
        (f"long video ({what}): {' / '.join(_length(r['seconds']) for r in runs)}", "", ""),
        (
            "  frames of video, analysed; chunks",
            each(lambda r: f"{r['video_frames']}, {r['frames_analysed']}; {r['chunks']}"),
            "",
        ),
    ]
    for stage in runs[0]["stages_s"]:
        note = " (the model's: not the point)" if stage == "detection" else ""
        rows.append((f"  {stage} s{note}", each(lambda r, s=stage: r["stages_s"][s]), ""))
    for fmt in runs[0]["exports"]:
        rows.append((f"  {fmt} export s", each(lambda r, x=fmt: r["exports"][x]["seconds"]), ""))
    rows.append(
        (
            f"  every detections page, s ({v['page_frames']} frames a page)",
            each(lambda r: r["pages"]["seconds"]),
            "",
        )
    )
    rows.append(
        (
            "  slowest step but detection, s",
            each(lambda r: "{}: {}".format(*slowest_other_stage(r))),
            "long_video_stages",
        )
    )
    if all("load_average_after_job" in r for r in runs):
        rows.append(
            (
                "  machine's load average after the job (1, 5, 15 min)",
                each(lambda r: ", ".join(str(a) for a in r["load_average_after_job"])),
                "",
            )
        )
    for role in ("api", "processor", "detector"):
        target = f"long_video_{role}_memory_flat" if role in LONG_VIDEO_FLAT_ROLES else ""
        rows.append(
            (
                f"  {role} peak RSS MB (after the warm-up)",
                each(lambda r, x=role: f"{r['memory'][x]['peak_rss_mb']} ({r['memory'][x]['idle_rss_mb']})"),
                target,
            )
        )
    return rows

"""The benchmark's options, declared once.

Each field of `BenchOptions` carries its default and its help text;
`detector bench` builds one command-line option from each field
(detector/cli/bench.py), so a new option is a new field here and nothing else.
This module imports nothing heavy: the command line is built from it on every
`detector` command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

DEFAULT_OUT = Path("bench-out")

# What --figure picks from: every figure, or one that runs on its own.
FIGURES = ("all", "long-video", "real-video", "analytics", "search", "peak", "int8", "storage", "streams")


def option(
    default: T,
    help: str,
    *,
    flag: str | None = None,
    minimum: int | None = None,
    choices: tuple[str, ...] = (),
) -> T:
    """A field of `BenchOptions` with what its command-line option needs.

    Args:
        default: the value when the option is not given; its type is the option's type
            (a tuple of ints or strs is written as a comma-separated list, a bool as
            ``--name/--no-name``).
        help: the option's help text.
        flag: the option's name; ``--`` and the field's name with dashes by default.
        minimum: the smallest value an int option accepts.
        choices: the only values a str option accepts.
    """
    metadata = {"help": help, "flag": flag, "minimum": minimum, "choices": choices}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class BenchOptions:
    # option() is a dataclasses.field, and a Path is immutable.
    out_dir: Path = option(DEFAULT_OUT, "scratch directory and reports", flag="--out")  # noqa: RUF009
    figure: str = option(
        "all",
        "the figures to measure: all of them, or the long-video, real-video, analytics, search, peak, "
        "int8, storage or streams figure alone (streams: only alone)",
        choices=FIGURES,
    )
    frames: int = option(300, "frames of the benchmark's video", minimum=1)
    width: int = option(640, "frame width in pixels", minimum=16)
    height: int = option(360, "frame height in pixels", minimum=16)
    fps: int = option(25, "frames per second of the videos", minimum=1)
    gop: int = option(50, "frames from one keyframe to the next", minimum=1)
    batch_size: int = option(8, "frames per model batch (DETECTOR_BATCH_SIZE)", minimum=1)
    chunk_frames: int = option(100, "frames per chunk (CHUNK_FRAMES)", minimum=1)
    backend: str = option("torchvision", "detection backend (DETECTOR_BACKEND)")
    model: str = option("fasterrcnn_mobilenet_v3_large_320_fpn", "model (DETECTOR_MODEL)")
    weights: str = option("random", "model weights: random (seeded), pretrained or a file (DETECTOR_WEIGHTS)")
    device: str = option("cpu", "device (DETECTOR_DEVICE)")
    score_threshold: float = option(0.3, "score threshold of every job and of detector predict")
    batch_sweep: tuple[int, ...] = option((1, 2, 4, 8, 16), "batch sizes to time the model alone at")
    chunk_sweep: tuple[int, ...] = option((25, 50, 100, 300), "chunk sizes to time the pipeline at")
    repeats: int = option(3, "pairs of detector predict and a job; the efficiency is their median", minimum=1)
    memory_frames: int = option(60, "frames of the short video of the worker-memory figure", minimum=1)
    memory_factor: int = option(10, "how many times longer the long video is", minimum=2)
    background_detector: bool = option(
        True, "run the detector worker at the lowest CPU priority, as `detector up` does"
    )
    sample_fps: float = option(
        5.0, "frames a second the sampled job analyses (its sample_fps), beside a full job of the video"
    )
    sampling_repeats: int = option(
        3, "pairs of a full job and a sampled job; the report takes the medians", minimum=1
    )
    export_frames: int = option(
        10_000, "frames of the succeeded job the exports are timed on (made up in the database)", minimum=1
    )
    export_objects: int = option(10, "objects in each frame of that job", minimum=0)
    render_width: int = option(1920, "frame width of the second video the render is timed on", minimum=16)
    render_height: int = option(1080, "frame height of that video", minimum=16)
    render_frames: int = option(
        50, "frames of that video (detector predict and the render both run over it)", minimum=1
    )
    prototype: bool = option(
        True,
        "time the 2021 prototype's loop (DefaultPredictor, a frame at a time) against detector predict "
        "with the detectron2 backend and the service's defaults (needs detectron2; skipped without it)",
    )
    prototype_model: str = option(
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
        "Detectron2 config (zoo name or .yaml file) of the prototype figure",
    )
    prototype_frames: int = option(60, "frames of the prototype figure's video", minimum=1)
    runtimes: tuple[str, ...] = option(
        ("torchvision", "onnxruntime", "openvino"),
        "CPU runtimes to time side by side on the benchmark's video, PyTorch eager (torchvision) first "
        "(a torchvision model only; empty: skip)",
    )
    runtimes_weights: str = option(
        "conditioned",
        "weights of the runtimes figure: conditioned (seeded random weights calibrated on the video, "
        "detector/bench/runtimes.py), random, pretrained, a file; empty: as --weights",
    )
    clients: int = option(50, "clients (connections) of the API load", minimum=1)
    load_tool: str = option(
        "auto",
        "API load tool; auto: wrk when it is installed, else python",
        choices=("auto", "wrk", "python"),
    )
    load_rounds: int = option(
        3, "rounds of the API load (each endpoint in turn); the report takes the median", minimum=1
    )
    load_seconds: int = option(5, "seconds of load per endpoint and round (with wrk)", minimum=1)
    requests_per_client: int = option(
        20, "requests per client per round (with the python load tool)", minimum=1
    )
    long_video_seconds: tuple[int, ...] = option(
        (600, 7200),
        "lengths in seconds of the long-video figure's videos, each a tracked, sampled job through "
        "a service of its own; the first is the one the others are compared with (empty: skip the figure)",
    )
    long_video_width: int = option(160, "frame width of the long-video figure's videos", minimum=16)
    long_video_height: int = option(120, "frame height of the long-video figure's videos", minimum=16)
    long_video_sample_fps: float = option(
        1.0, "frames a second the long-video figure's jobs analyse (their sample_fps)"
    )
    testdata: str = option(
        "../shared/testdata",
        "the shared test data folder (a pretrained SSD and vtest.avi) of the real-video figure; "
        "missing: the figure is skipped",
    )
    real_video_stride: int = option(
        5, "the real-video figure analyses every this-many-th frame of vtest.avi", minimum=1
    )
    real_video_job: bool = option(
        True, "in the real-video figure, also time a job through the service against detector predict"
    )
    search_jobs: int = option(
        1000, "jobs of the searching user in the search figure (and as many of another user)", minimum=1
    )
    search_objects: int = option(
        1_000_000, "stored objects (detections) in the search figure's database", minimum=0
    )
    search_database_url: str = option(
        "", "the search figure's database (its tables are made there); empty: SQLite in the scratch folder"
    )
    peak_frames: int = option(
        16,
        "frames each runtime is timed on in the peak figure (work per frame against the machine's peak)",
        minimum=1,
    )
    storage_block_kib: int = option(
        0,
        "KiB a ranged GET fetches where reading jumps, in the storage figure (videos read from a bucket "
        "of moto's server); 0: the storage's own (BLOCK_SIZE of detector/storage/s3.py)",
        minimum=0,
    )
    int8_stride: int = option(
        10, "the int8 figure measures every this-many-th frame of vtest.avi (INT8 against FP32)", minimum=2
    )

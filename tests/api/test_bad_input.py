"""A corpus of bad and unusual inputs, generated here (no binaries in the repo).

Each one is refused at upload with a clear 4xx, or accepted and then processed by
real worker processes (embedded defaults: SQLite, the filesystem broker) until the
job ends ``succeeded`` with every frame or ``failed`` with a message: never a 500,
a stuck job, or a file left in VIDEO_STORAGE/.incoming.

Accepted inputs are all uploaded before the workers start (one set of workers for
the module), which also lets a test corrupt a stored video before any worker reads it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from detector.app import create_app
from detector.db.migrate import upgrade
from detector.video.synthetic import frame_image, make_video
from tests.api.test_jobs import job_count, stored_videos, upload
from tests.conftest import Auth, base_config
from tests.pipeline.conftest import Workers, detector_config, wait_for_job
from tests.pipeline.conftest import seeded_weights as seeded_weights  # a fixture, shared
from tests.video import corpus as containers

THRESHOLD = 0.05  # keep (nearly) everything the seeded model finds: boxes to check


def incoming(app) -> list[Path]:
    return list((Path(app.config["VIDEO_STORAGE"]) / ".incoming").iterdir())


# -- generators --------------------------------------------------------------------------------


def truncated_mp4(folder: Path) -> bytes:
    """The first half of an MP4 whose index (moov) is at the end: no index at all."""
    data = make_video(folder / "whole.mp4", frames=20, width=160, height=120, fps=10, gop=8).read_bytes()
    assert data.find(b"moov") > len(data) // 2
    return data[: len(data) // 2]


def faststart_mp4(folder: Path, frames: int = 20) -> Path:
    """An MP4 with its index (moov) before the frames, as streaming sites write them."""
    source = make_video(folder / "source.mp4", frames=frames, width=160, height=120, fps=10, gop=8)
    path = folder / "faststart.mp4"
    with av.open(str(source)) as src, av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    return path


def audio_only(folder: Path) -> bytes:
    path = folder / "tone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        samples = (np.sin(np.arange(8000) / 5) * 0.2).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path.read_bytes()


def huge_frames(folder: Path) -> bytes:
    """One black 8192x4320 frame (35 Mpx, over the 8K UHD default of MAX_FRAME_PIXELS): ~100 KB."""
    path = folder / "huge.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 8192, 4320, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        frame = av.VideoFrame(8192, 4320, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path.read_bytes()


def still_png(folder: Path) -> bytes:
    path = folder / "still.png"
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "rgb24"
        frame = av.VideoFrame.from_ndarray(frame_image(3, 160, 120), format="bgr24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path.read_bytes()


# -- refused at upload -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, make, status, message",
    [
        ("zero bytes", lambda folder: b"", 415, "not a video"),
        ("a text file named .mp4", lambda folder: b"hello, not a video\n" * 50, 415, "not a video"),
        ("truncated MP4, index at the end", truncated_mp4, 415, "not a readable video container"),
        ("audio only", audio_only, 415, "no video stream"),
        ("8192x4320 frames", huge_frames, 422, "frames of 8192x4320 are larger than this service accepts"),
        (
            "raw H.264 stream, no container",
            lambda folder: containers.raw_h264(folder).read_bytes(),
            422,
            "the video's frames carry no timestamps",
        ),
        (
            "H.264 with B-frames in AVI",
            lambda folder: containers.bframes_avi(folder).read_bytes(),
            422,
            "out of timestamp order (B-frames in an AVI file?); remux it into MP4 or MKV",
        ),
    ],
)
def test_refused_at_upload_with_a_clear_4xx_and_nothing_left(
    app, client, auth: Auth, tmp_path, name, make, status, message
):
    response = upload(client, auth.headers(), data=make(tmp_path), filename="clip.mp4")
    assert response.status_code == status, (name, response.json)
    assert message in response.json["message"], name
    assert response.json["error"]
    assert stored_videos(app) == [] and job_count(app) == 0


@pytest.mark.parametrize("server_terminates_the_body", [False, True])
def test_upload_cut_off_mid_stream_is_400_and_leaves_nothing(
    app, auth: Auth, small_video, server_terminates_the_body
):
    """The body is shorter than its Content-Length promised (the client went away).

    Either werkzeug enforces Content-Length and notices the short read, or the WSGI
    server terminates the body (wsgi.input_terminated, as gunicorn does) and the
    multipart form simply never ends: both are a 400 that says so, with nothing kept."""
    environ = EnvironBuilder(
        path="/api/jobs",
        method="POST",
        headers=auth.headers(),
        data={"video": (io.BytesIO(small_video.read_bytes()), "clip.mp4"), "score_threshold": "0.5"},
    ).get_environ()
    body = environ["wsgi.input"].read()
    assert int(environ["CONTENT_LENGTH"]) == len(body)
    environ["wsgi.input"] = io.BytesIO(body[: len(body) * 2 // 3])
    if server_terminates_the_body:
        environ["wsgi.input_terminated"] = True
    chunks, status, _headers = run_wsgi_app(app, environ, buffered=True)
    assert status.startswith("400"), (status, b"".join(chunks))
    assert b"the upload was cut off" in b"".join(chunks)
    assert stored_videos(app) == [] and incoming(app) == [] and job_count(app) == 0


# -- accepted, then processed by real workers ------------------------------------------------------


@dataclass
class Case:
    name: str
    path: Path
    frames: int  # frames the job must return (when it succeeds)
    width: int
    height: int
    expect: str = "succeeded"
    error: str = ""  # a regular expression the job's error must match, when it fails
    timestamps: list[float] | None = None
    rotation: int = 0
    after_upload: Callable[[Path], None] | None = None  # given the stored file
    job: dict[str, Any] = field(default_factory=dict)


def _overwrite_frames(first: int, last: int) -> Callable[[Path], None]:
    """Zero the bytes of frames first..last (decode order) of a stored video."""

    def corrupt(path: Path) -> None:
        with av.open(str(path)) as container:
            packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
        data = bytearray(path.read_bytes())
        for pos, size in packets[first : last + 1]:
            data[pos : pos + size] = bytes(size)
        path.write_bytes(bytes(data))

    return corrupt


VFR_PTS = [0, 100, 150, 400, 420, 700, 1000, 1010, 1300, 1600]  # in 1/1000 s (fps=10)


def _corpus(folder: Path) -> list[Case]:
    mv = make_video
    return [
        Case("single frame", mv(folder / "one.mp4", frames=1, width=160, height=120, fps=10), 1, 160, 120),
        Case(
            "odd size 321x241 (MPEG-4 part 2)",
            mv(folder / "odd.mp4", frames=6, width=321, height=241, fps=10, codec="mpeg4"),
            6,
            321,
            241,
        ),
        Case(
            "phone video rotated 90 degrees",
            mv(folder / "rotated.mp4", frames=6, width=160, height=120, fps=10, rotation=90),
            6,
            160,
            120,
            rotation=90,
        ),
        Case(
            "variable frame rate",
            mv(folder / "vfr.mp4", frames=len(VFR_PTS), width=160, height=120, fps=10, pts=VFR_PTS),
            len(VFR_PTS),
            160,
            120,
            timestamps=[p / 1000 for p in VFR_PTS],
        ),
        Case(
            "VP9 in WebM",
            mv(folder / "clip.webm", frames=8, width=160, height=120, fps=10, codec="libvpx-vp9"),
            8,
            160,
            120,
        ),
        Case(
            "MJPEG in AVI",
            mv(folder / "clip.avi", frames=8, width=160, height=120, fps=10, codec="mjpeg"),
            8,
            160,
            120,
        ),
        Case(
            "stream-copy trimmed MP4 (edit list, discarded leading packets, negative timestamps)",
            containers.trimmed_mp4(_folder(folder, "trimmed")),
            57,
            160,
            120,
            timestamps=[i / containers.FPS for i in range(57)],
        ),
        Case(
            "stream-copy trimmed open-GOP MP4",
            containers.trimmed_open_gop_mp4(_folder(folder, "trimmed-open-gop")),
            57,
            160,
            120,
        ),
        Case(
            "MPEG-TS with B-frames",
            containers.mpegts(_folder(folder, "ts")),
            60,
            160,
            120,
            timestamps=[i / containers.FPS for i in range(60)],
        ),
        Case("MPEG-TS cut mid-GOP", containers.mpegts_cut_mid_gop(_folder(folder, "ts-cut")), 36, 160, 120),
        Case(
            "MKV starting at 5 s",
            containers.start_time_mkv(_folder(folder, "mkv")),
            40,
            160,
            120,
            timestamps=[i / containers.FPS for i in range(40)],
        ),
        Case(
            "audio starts before the video", containers.audio_first_mp4(_folder(folder, "av")), 40, 160, 120
        ),
        Case("a still PNG image (one frame)", _write(folder / "still.png", still_png(folder)), 1, 160, 120),
        Case(
            "truncated MP4, index up front",
            _cut(faststart_mp4(folder), 0.6),
            0,
            160,
            120,
            expect="failed",
            error=r"chunk 0 \(frames 0-\d+\) failed: the video ended before the frame at timestamp \d+ ",
        ),
        Case(
            "MJPEG in AVI, frames 4-5 overwritten after upload",
            mv(folder / "corrupt.avi", frames=10, width=160, height=120, fps=10, codec="mjpeg"),
            0,
            160,
            120,
            expect="failed",
            error=r"chunk 0 \(frames 0-9\) failed: decoding failed near timestamp 4: .*Invalid data",
            after_upload=_overwrite_frames(4, 5),
        ),
    ]


def _folder(parent: Path, name: str) -> Path:
    folder = parent / name
    folder.mkdir()
    return folder


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    cut = path.with_name(f"cut-{path.name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


@dataclass
class Processed:
    app: Any
    client: Any
    headers: dict[str, str]
    cases: dict[str, Case]
    workers: Workers


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, seeded_weights: Path) -> Iterator[Processed]:
    folder = tmp_path_factory.mktemp("bad_input")
    config = base_config(folder, **detector_config(seeded_weights))
    Path(config["DATA_DIR"]).mkdir(parents=True)
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    client = app.test_client()
    headers = Auth(client).headers()
    cases = {}
    for case in _corpus(folder):
        response = upload(client, headers, case.path, filename=case.path.name, score_threshold=THRESHOLD)
        assert response.status_code == 202, (case.name, response.json)
        case.job = response.json
        if case.after_upload is not None:
            [stored] = [p for p in stored_videos(app) if p.read_bytes() == case.path.read_bytes()]
            case.after_upload(stored)
        cases[case.name] = case
    with Workers(config, folder) as workers:
        yield Processed(app, client, headers, cases, workers)


ACCEPTED = [
    "single frame",
    "odd size 321x241 (MPEG-4 part 2)",
    "phone video rotated 90 degrees",
    "variable frame rate",
    "VP9 in WebM",
    "MJPEG in AVI",
    "stream-copy trimmed MP4 (edit list, discarded leading packets, negative timestamps)",
    "stream-copy trimmed open-GOP MP4",
    "MPEG-TS with B-frames",
    "MPEG-TS cut mid-GOP",
    "MKV starting at 5 s",
    "audio starts before the video",
    "a still PNG image (one frame)",
    "truncated MP4, index up front",
    "MJPEG in AVI, frames 4-5 overwritten after upload",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_input_ends_succeeded_with_every_frame_or_failed_with_a_message(
    processed: Processed, name: str
):
    case = processed.cases[name]
    client, headers = processed.client, processed.headers
    assert case.job["video"]["rotation"] == case.rotation
    assert (case.job["video"]["width"], case.job["video"]["height"]) == (case.width, case.height)
    try:
        job = wait_for_job(client, headers, case.job["id"], timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{name}: {exc}\n{processed.workers.logs()}") from None
    assert job["status"] == case.expect, (name, job, processed.workers.logs())
    if case.expect == "failed":
        assert re.match(case.error, job["error"]), job["error"]
        detections = client.get(f"/api/jobs/{case.job['id']}/detections", headers=headers)
        assert detections.status_code == 409
        return
    assert job["error"] is None
    assert job["video"]["rotation"] == case.rotation  # still reported after processing
    page = client.get(f"/api/jobs/{case.job['id']}/detections?limit=1000", headers=headers).json
    frames = page["frames"]
    assert [f["frame"] for f in frames] == list(range(case.frames))
    if case.timestamps is not None:
        assert [f["timestamp"] for f in frames] == pytest.approx(case.timestamps, abs=1e-6)
    boxes = [o["box"] for f in frames for o in f["objects"]]
    if case.width != 160 or case.rotation:
        assert boxes, "a size or rotation check with no boxes proves nothing"
    # Boxes are in pixels of the stored (unrotated) frame: docs/api.md, "Conventions".
    for x1, y1, x2, y2 in boxes:
        assert 0 <= x1 <= x2 <= case.width and 0 <= y1 <= y2 <= case.height, (name, [x1, y1, x2, y2])


@pytest.mark.slow
def test_nothing_is_left_in_the_incoming_area(processed: Processed):
    for case in processed.cases.values():
        wait_for_job(processed.client, processed.headers, case.job["id"], timeout=180)
    assert incoming(processed.app) == []
    assert len(stored_videos(processed.app)) == len(processed.cases)

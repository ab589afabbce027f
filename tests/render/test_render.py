"""The annotated-video renderer: browser-playable MP4 out, same frames and timestamps
as the source, boxes on the right frames at the right pixels, rotation, odd sizes,
audio, and no half-written file when a render fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import cv2
import numpy as np
import pytest

from detector.detection import AnalysedFrame, Detections
from detector.render import (
    LIBX264,
    NVENC,
    PALETTE,
    PROGRESS_EVERY,
    RenderError,
    draw_objects,
    label_text,
    object_color,
    render_video,
    to_yuv,
)
from detector.render import video as render_module
from detector.video import VideoError, index_frames, probe
from detector.video.synthetic import frame_image, make_video
from tests.conftest import missing_tool
from tests.video import corpus

W, H, FPS = 160, 96, 25
MAGENTA = 17  # class 17's colour, (255, 56, 203), is unlike anything synthetic.py draws
CYAN = 9
BOX = [20, 20, 60, 50]


def _obj(box: Sequence[float], class_id: int = MAGENTA, **extra: object) -> dict[str, Any]:
    return {"label": "person", "class_id": class_id, "score": 0.97, "box": list(box), **extra}


def _analysed(frames: list[tuple[int, float, list[dict[str, Any]]]]) -> list[AnalysedFrame]:
    """``(frame, timestamp, objects)`` tuples, objects in their JSON form, as `AnalysedFrame` s."""
    return [
        AnalysedFrame(frame, timestamp, Detections.from_objects(objects))
        for frame, timestamp, objects in frames
    ]


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0) if f.pts is not None]


def _has_box(image: np.ndarray, box: list[int], color: tuple[int, int, int]) -> bool:
    """Whether the left, right and bottom edges of ``box`` are drawn in about ``color``
    (H.264 is lossy: compared with a tolerance, by the median over the edge pixels)."""
    x1, y1, x2, y2 = box
    inset = 4
    edge = np.concatenate(
        [
            image[y1 + inset : y2 - inset, x1],
            image[y1 + inset : y2 - inset, x2],
            image[y2, x1 + inset : x2 - inset],
        ]
    ).astype(int)
    distance = np.abs(edge - np.array(color)).max(axis=1)
    return bool(np.median(distance) < 45)


def _top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order."""
    names = []
    data = path.read_bytes()
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        name = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        elif size == 0:
            size = len(data) - offset
        names.append(name)
        offset += size
    return names


def _timestamps(path: Path) -> list[float]:
    index = index_frames(path)
    return [index.timestamp(pts) for pts in index.pts]


def _video_with_audio(path: Path, codec: str, frames: int = 50, rate: int = 48000) -> Path:
    """``frames`` synthetic frames and as long a 440 Hz stereo tone in ``codec``."""
    with av.open(str(path), "w") as out:
        video = cast(av.VideoStream, out.add_stream("libx264", rate=FPS))
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = cast(av.AudioStream, out.add_stream(codec, rate=rate))
        audio.codec_context.layout = "stereo"
        for i in range(frames):
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame_image(i, W, H), format="bgr24")))
        tone = (np.sin(2 * np.pi * 440 * np.arange(rate * frames // FPS) / rate) * 0.3).astype(np.float32)
        if audio.codec_context.format.is_planar:
            samples = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        else:
            samples = av.AudioFrame.from_ndarray(
                np.stack([tone, tone]).T.reshape(1, -1).copy(), format="flt", layout="stereo"
            )
        samples.sample_rate, samples.pts, samples.time_base = rate, 0, Fraction(1, rate)
        out.mux(audio.encode(samples))
        out.mux(audio.encode(None))
        out.mux(video.encode(None))
    return path


def _streams(path: Path) -> dict[str, tuple[str, float, float]]:
    """Each stream type's codec, start and duration in seconds."""
    with av.open(str(path)) as container:
        return {
            s.type: (
                s.codec_context.codec.canonical_name,
                float((s.start_time or 0) * (s.time_base or 0)),
                float((s.duration or 0) * (s.time_base or 0)),
            )
            for s in container.streams
        }


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames at 25 fps with B-frames (libx264's default)."""
    return make_video(tmp_path_factory.mktemp("src") / "source.mp4", frames=60, width=W, height=H, fps=FPS)


def test_the_output_is_an_mp4_every_browser_plays(source, tmp_path):
    dst = tmp_path / "out.mp4"
    stats = render_video(source, dst, _analysed([(10, 0.4, [_obj(BOX)])]))
    with av.open(str(dst)) as container:
        assert container.format.name.split(",")[0] == "mov"
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.width % 2 == 0 and stream.height % 2 == 0
    boxes = _top_level_boxes(dst)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart
    assert probe(dst).rotation == 0
    assert (stats.frames, stats.frames_total, stats.encoder) == (60, 60, LIBX264)
    assert (stats.width, stats.height, stats.audio) == (W, H, None)
    assert stats.bytes == dst.stat().st_size and stats.seconds > 0
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]  # the temporary file is gone


def test_frames_timestamps_and_rate_are_the_sources(source, tmp_path):
    dst = tmp_path / "out.mp4"
    render_video(source, dst, [])
    assert len(index_frames(dst)) == len(index_frames(source)) == 60
    assert _timestamps(dst) == _timestamps(source)
    assert probe(dst).fps == probe(source).fps == FPS
    assert abs(probe(dst).duration - probe(source).duration) < 1e-3


def test_a_variable_frame_rate_survives(tmp_path):
    gaps = [100, 250, 100, 400, 150]  # in 1/2500 s: 40, 100, 40, 160, 60 ms
    pts = [sum(gaps[k % len(gaps)] for k in range(i)) for i in range(40)]
    src = make_video(tmp_path / "vfr.mp4", frames=40, width=W, height=H, fps=FPS, pts=pts)
    render_video(src, tmp_path / "out.mp4", _analysed([(i, 0.0, [_obj(BOX)]) for i in range(0, 40, 4)]))
    expected = [round(p / 2500, 6) for p in pts]
    assert _timestamps(src) == expected
    assert _timestamps(tmp_path / "out.mp4") == expected


@pytest.mark.parametrize(
    "make", [corpus.start_time_mp4, corpus.start_time_mkv, corpus.mpegts, corpus.trimmed_mp4]
)
def test_timestamps_are_moved_to_start_at_zero(make, tmp_path):
    """Sources that start late (5 s, MPEG-TS's 1.4 s) or hide frames behind an edit list."""
    src = make(tmp_path)
    dst = tmp_path / "out.mp4"
    render_video(src, dst, [])
    with av.open(str(dst)) as container:
        first = next(f for f in container.decode(video=0))
        assert first.pts is not None and first.time == 0
    assert _timestamps(dst) == _timestamps(src)


def test_a_box_is_drawn_on_its_frame_at_its_place(source, tmp_path):
    dst = tmp_path / "out.mp4"
    render_video(source, dst, _analysed([(10, 0.4, [_obj(BOX)])]), hold_frames=1)
    frames = _decode(dst)
    color = PALETTE[MAGENTA]
    assert _has_box(frames[10], BOX, color)
    for i in (0, 9, 11, 30):
        assert not _has_box(frames[i], BOX, color), i
    # Moved 20 pixels, it is not there.
    assert not _has_box(frames[10], [40, 40, 80, 70], color)


def test_pixels_away_from_the_boxes_keep_their_values(source, tmp_path):
    """Drawn frames are not sent through RGB: what no box covers matches the frames
    passed through untouched, and the source."""
    dst = tmp_path / "out.mp4"
    render_video(source, dst, _analysed([(i, 0.0, [_obj(BOX)]) for i in range(0, 60, 2)]))
    out, src = _decode(dst), _decode(source)
    corner = (slice(60, 90), slice(100, 150))
    for i in (10, 11):  # drawn, passed through
        assert np.abs(out[i][corner].astype(int) - src[i][corner]).mean() < 3
    assert np.abs(out[10][corner].astype(int) - out[11][corner]).mean() < 3


@pytest.mark.parametrize(
    ("analysed", "hold", "expected"),
    [
        # every 3rd frame from frame 3, held 3 frames; frame 9's detections are none
        ([3, 6, 9], 3, {0: None, 2: None, 3: "a", 4: "a", 5: "a", 6: "b", 8: "b", 9: None, 11: None}),
        # a hold shorter than the gap: frame 5 has nothing left to show
        ([3, 6], 2, {3: "a", 4: "a", 5: None, 6: "b", 7: "b", 8: None}),
        # every frame analysed
        ([3, 4, 5], 1, {2: None, 3: "a", 4: "b", 5: None, 6: None}),
    ],
)
def test_boxes_are_held_until_the_next_analysed_frame(source, tmp_path, analysed, hold, expected):
    a = [20, 20, 60, 50]
    b = [90, 40, 140, 80]
    objects = {0: [_obj(a)], 1: [_obj(b, CYAN)], 2: []}
    frames = _analysed([(index, 0.0, objects[k]) for k, index in enumerate(analysed)])
    dst = tmp_path / "out.mp4"
    render_video(source, dst, frames, hold_frames=hold)
    out = _decode(dst)
    for i, shown in expected.items():
        assert _has_box(out[i], a, PALETTE[MAGENTA]) == (shown == "a"), (i, shown)
        assert _has_box(out[i], b, PALETTE[CYAN]) == (shown == "b"), (i, shown)


def test_the_analysed_frames_are_read_lazily_once(source, tmp_path):
    taken: list[int] = []
    seen: list[tuple[int, int]] = []

    def analysed() -> Iterator[AnalysedFrame]:
        for i in range(60):
            taken.append(i)
            yield AnalysedFrame(i, i / FPS, Detections.from_objects([_obj(BOX)]))

    def progress(written: int, total: int) -> None:
        seen.append((written, max(taken)))

    render_video(source, tmp_path / "out.mp4", analysed(), on_progress=progress)
    assert taken == list(range(60))
    # No more than one analysed frame is read ahead of the frame being drawn.
    assert all(furthest <= written for written, furthest in seen), seen


def test_progress_is_reported_every_n_frames_and_at_the_end(source, tmp_path):
    calls: list[tuple[int, int]] = []
    render_video(source, tmp_path / "out.mp4", [], on_progress=lambda n, total: calls.append((n, total)))
    expected = [(n, 60) for n in range(PROGRESS_EVERY, 60, PROGRESS_EVERY)] + [(60, 60)]
    assert calls == expected
    assert len(calls) < 60


_TURN = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_the_display_rotation_is_applied_to_the_pixels(rotation, tmp_path):
    src = make_video(tmp_path / "rotated.mp4", frames=12, width=W, height=H, fps=FPS, rotation=rotation)
    assert probe(src).rotation == rotation
    dst = tmp_path / "out.mp4"
    render_video(src, dst, _analysed([(5, 0.2, [_obj([4, 4, 40, 30])])]))
    info = probe(dst)
    assert info.rotation == 0  # no rotation tag left
    assert (info.width, info.height) == ((H, W) if rotation in (90, 270) else (W, H))
    out, stored = _decode(dst), _decode(src)
    # An undrawn frame is the stored one turned.
    assert np.abs(out[2].astype(int) - cv2.rotate(stored[2], _TURN[rotation])).mean() < 2
    # The box near the stored frame's top-left corner is at that corner, turned.
    r, b = W - 1, H - 1
    turned = {90: [4, r - 40, 30, r - 4], 180: [r - 40, b - 30, r - 4, b - 4], 270: [b - 30, 4, b - 4, 40]}
    assert _has_box(out[5], turned[rotation], PALETTE[MAGENTA])
    assert not _has_box(out[4], turned[rotation], PALETTE[MAGENTA])
    if rotation != 180:
        assert not _has_box(out[5], [4, 4, 30, 40], PALETTE[MAGENTA])  # not left unturned


def test_the_rotation_matches_ffmpegs(tmp_path):
    """FFmpeg's own player logic (autorotate) turns the source the same way."""
    if shutil.which("ffmpeg") is None:
        missing_tool("ffmpeg is not installed")
    src = make_video(tmp_path / "rotated.mp4", frames=3, width=W, height=H, fps=FPS, rotation=90)
    dst = tmp_path / "out.mp4"
    render_video(src, dst, [])
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(src),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    upright = np.frombuffer(raw, dtype=np.uint8).reshape(W, H, 3)
    assert np.abs(_decode(dst)[0].astype(int) - upright).mean() < 3


def test_an_odd_sized_source_loses_its_last_column_and_row(tmp_path):
    src = make_video(tmp_path / "odd.mkv", frames=20, width=W + 1, height=H + 1, fps=FPS, codec="mjpeg")
    dst = tmp_path / "out.mp4"
    stats = render_video(src, dst, _analysed([(7, 0.28, [_obj(BOX)])]))
    assert (stats.width, stats.height) == (W, H)
    with av.open(str(dst)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (W, H)
    assert len(index_frames(dst)) == 20
    out, stored = _decode(dst), _decode(src)
    assert _has_box(out[7], BOX, PALETTE[MAGENTA]) and not _has_box(out[6], BOX, PALETTE[MAGENTA])
    # Cropped, not scaled: the pixels stay where they were (MJPEG's full range included).
    assert np.abs(out[3].astype(int) - stored[3][:H, :W]).mean() < 3


def test_frames_are_numbered_as_index_frames_numbers_them(tmp_path):
    """A stream-copy cut hides 18 decoded frames behind an edit list: frame i of the
    output is frame i of the index, and the box lands on it."""
    src = corpus.trimmed_mp4(tmp_path)
    dst = tmp_path / "out.mp4"
    render_video(src, dst, _analysed([(20, 0.8, [_obj(BOX)])]))
    out, stored = _decode(dst), _decode(src)
    assert len(out) == len(stored) == len(index_frames(src)) == 57
    far = (slice(60, 96), slice(100, 160))
    for i in (0, 19, 21, 56):
        assert np.abs(out[i][far].astype(int) - stored[i][far]).mean() < 3, i
    assert [i for i in range(57) if _has_box(out[i], BOX, PALETTE[MAGENTA])] == [20]


def test_audio_in_an_mp4_codec_is_copied(tmp_path):
    src = _video_with_audio(tmp_path / "aac.mp4", "aac")
    dst = tmp_path / "out.mp4"
    stats = render_video(src, dst, _analysed([(3, 0.12, [_obj(BOX)])]))
    assert stats.audio == "copied"
    streams = _streams(dst)
    assert streams["audio"][0] == _streams(src)["audio"][0] == "aac"
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        copied = [bytes(p) for p in a.demux(audio=0) if p.size]
        assert [bytes(p) for p in b.demux(audio=0) if p.size] == copied  # not re-encoded
    assert abs(streams["audio"][2] - streams["video"][2]) < 0.05


def test_audio_mp4_cannot_carry_is_transcoded_to_aac(tmp_path):
    src = _video_with_audio(tmp_path / "pcm.mkv", "pcm_s16le")
    dst = tmp_path / "out.mp4"
    stats = render_video(src, dst, [])
    assert stats.audio == "transcoded"
    codec, start, duration = _streams(dst)["audio"]
    assert codec == "aac" and abs(start) < 0.03 and abs(duration - 2.0) < 0.05
    with av.open(str(dst)) as container:
        decoded = sum(f.samples for f in container.decode(audio=0))
    assert abs(decoded / 48000 - 2.0) < 0.05


def test_audio_keeps_its_place_against_the_video(tmp_path):
    """Audio from 0 s, video from 0.5 s: both move back 0.5 s, so the audio before
    the first frame is cut (by the MP4 edit list) and the rest stays in sync."""
    src = corpus.audio_first_mp4(tmp_path)
    dst = tmp_path / "out.mp4"
    render_video(src, dst, [])
    streams = _streams(dst)
    assert streams["video"][1] == 0
    assert abs(streams["audio"][1]) < 1e-3
    assert abs(streams["audio"][2] - (_streams(src)["audio"][2] - 0.5)) < 0.01


def test_a_failed_render_leaves_no_file_behind(source, tmp_path):
    dst = tmp_path / "out.mp4"

    def fail(written: int, total: int) -> None:
        raise RuntimeError("the worker was told to stop")

    with pytest.raises(RuntimeError, match="told to stop"):
        render_video(source, dst, [], on_progress=fail)
    assert os.listdir(tmp_path) == []

    dst.write_bytes(b"an earlier render")

    def broken() -> Iterator[AnalysedFrame]:
        yield AnalysedFrame(0, 0.0, Detections.from_objects([_obj(BOX)]))
        raise ConnectionError("the database went away")

    with pytest.raises(ConnectionError):
        render_video(source, dst, broken())
    assert os.listdir(tmp_path) == ["out.mp4"]
    assert dst.read_bytes() == b"an earlier render"


def test_an_unreadable_source_raises_a_clear_error(tmp_path):
    garbage = tmp_path / "upload.mp4"
    garbage.write_bytes(b"this is no video at all" * 100)
    with pytest.raises(VideoError, match="not a readable video container"):
        render_video(garbage, tmp_path / "out.mp4", [])
    with pytest.raises(VideoError):
        render_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", [])
    assert sorted(os.listdir(tmp_path)) == ["upload.mp4"]


def test_bad_arguments_raise_render_errors(source, tmp_path):
    dst = tmp_path / "out.mp4"
    with pytest.raises(RenderError, match="hold_frames"):
        render_video(source, dst, [], hold_frames=0)
    with pytest.raises(RenderError, match="increasing frame order"):
        render_video(source, dst, _analysed([(5, 0.2, []), (3, 0.12, [])]))
    with pytest.raises(RenderError, match=r"does not write H\.264"):
        render_video(source, dst, [], encoder="mpeg4")
    with pytest.raises(RenderError, match="not available"):
        render_video(source, dst, [], encoder="no-such-encoder")
    assert os.listdir(tmp_path) == []
    assert render_video(source, dst, [], encoder=LIBX264).encoder == LIBX264


def test_nvenc_is_tried_only_with_a_gpu_and_falls_back(monkeypatch):
    rate = Fraction(FPS)
    monkeypatch.setattr(render_module, "_cuda_present", lambda: False)
    assert render_module._choose_encoder(None, W, H, rate)[0] == LIBX264
    monkeypatch.setattr(render_module, "_cuda_present", lambda: True)
    monkeypatch.setattr(render_module, "_opens", lambda name, *args, **kwargs: False)
    assert render_module._choose_encoder(None, W, H, rate)[0] == LIBX264  # no NVENC on this chip
    monkeypatch.setattr(render_module, "_opens", lambda name, *args, **kwargs: True)
    name, options = render_module._choose_encoder(None, W, H, rate)
    assert name == NVENC and options["cq"]


def test_labels_and_colours():
    assert label_text("person", 0.971) == "person 0.97"
    assert label_text("car", 0.5, 12) == "car 0.50 #12"
    assert label_text("caf\u00e9", 1) == "caf? 1.00"
    assert object_color(3) == object_color(3, None) == PALETTE[3]
    tracked = [object_color(0, t) for t in range(1, 6)]
    assert tracked == [object_color(7, t) for t in range(1, 6)]  # per track
    assert len(set(tracked)) == 5
    assert to_yuv((255, 255, 255)) == (235, 128, 128) and to_yuv((0, 0, 0)) == (16, 128, 128)


def test_malformed_boxes_are_skipped():
    image = np.zeros((H, W, 3), dtype=np.uint8)
    objects = Detections.from_objects(
        [
            _obj([float("nan"), 0, 10, 10]),
            _obj([10, 10, float("inf"), 20]),
            _obj([500, 500, 600, 600]),
            _obj([-10, -10, 30, 30]),
        ]
    )
    assert draw_objects(image, objects) == 1
    assert image.any()

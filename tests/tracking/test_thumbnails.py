"""Track thumbnails: each track's best box, cut from only the frames that hold one."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from detector.tracking.thumbnails import BestBoxes, crop_box, encode_jpeg, make_thumbnails
from detector.video import DecodeStats, index_frames
from detector.video.synthetic import frame_image, make_video

W, H = 320, 240
SIDE = max(8, min(W, H) // 6)  # the synthetic video's red square


def red_square(i: int) -> list[float]:
    """The box of frame ``i``'s red square (detector.video.synthetic.frame_image)."""
    x = (i * 7) % (W - SIDE)
    return [float(x), float(H // 4), float(x + SIDE), float(H // 4 + SIDE)]


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 frames, 320x240 at 25 fps, a keyframe every 10 frames."""
    return make_video(
        tmp_path_factory.mktemp("thumbs") / "long.mp4", frames=200, width=W, height=H, fps=25, gop=10
    )


def decoded(jpeg: bytes) -> np.ndarray:
    """A JPEG as PIL decodes it, BGR."""
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG"
    return np.asarray(image.convert("RGB"))[:, :, ::-1]


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def test_best_boxes_keep_each_tracks_highest_score_and_the_earlier_frame_on_a_tie():
    boxes = BestBoxes()
    boxes.observe(
        0, [{"track_id": 1, "score": 0.5, "box": [0, 0, 1, 1]}, {"score": 0.99, "box": [0, 0, 9, 9]}]
    )
    boxes.observe(
        1,
        [
            {"track_id": 1, "score": 0.8, "box": [1, 1, 2, 2]},
            {"track_id": 2, "score": 0.6, "box": [5, 5, 6, 6]},
        ],
    )
    boxes.observe_rows([{"index": 2, "objects": [{"track_id": 1, "score": 0.8, "box": [3, 3, 4, 4]}]}])
    boxes.observe(3, [{"track_id": 2, "score": 0.7, "box": [7, 7, 8, 8]}])
    found = dict(boxes.items())
    assert len(boxes) == 2  # the object without a track id is left out
    assert (found[1].frame, found[1].box, found[1].score) == (1, (1.0, 1.0, 2.0, 2.0), 0.8)
    assert (found[2].frame, found[2].box) == (3, (7.0, 7.0, 8.0, 8.0))
    assert boxes.frames() == [1, 3]


def test_crop_box_clips_to_the_frame_and_scales_the_longest_side_down():
    image = np.zeros((400, 600, 3), dtype=np.uint8)
    image[100:300, 50:450] = (0, 0, 255)
    crop = crop_box(image, [50, 100, 450, 300])
    assert crop.shape == (64, 128, 3)  # 400x200 scaled to a longest side of 128
    assert np.all(np.abs(crop.astype(int) - (0, 0, 255)) <= 1)
    # A box partly outside the frame keeps the part inside; a degenerate one a pixel.
    assert crop_box(image, [580, -20, 700, 10]).shape == (10, 20, 3)
    assert crop_box(image, [10.2, 10.2, 10.2, 10.2]).shape == (1, 1, 3)
    # Small boxes are not enlarged.
    assert crop_box(image, [0, 0, 30, 20]).shape == (20, 30, 3)


def test_crop_box_turns_a_rotated_videos_crop_upright():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[:, :100] = 255  # left half white
    crop = crop_box(image, [0, 0, 200, 100], rotation=90)  # shown turned 90 degrees counter-clockwise
    assert crop.shape[:2] == (128, 64)
    assert crop[-1, 32].mean() > 200 and crop[0, 32].mean() < 50  # the stored left edge is at the bottom


def test_encode_jpeg_gives_a_jpeg_of_the_image():
    image = frame_image(3, 64, 48)
    back = decoded(encode_jpeg(image))
    assert back.shape == image.shape and difference(back, image) < 8


def test_thumbnails_are_the_best_boxes_cut_from_their_own_frames(long_video):
    index = index_frames(long_video)
    frame_pts = dict(enumerate(index.pts))
    boxes = BestBoxes()
    # Track 1 scores best in frame 40, track 2 in frame 41, track 3 in frame 170; each box
    # is where the red square is in that frame.
    for i in range(200):
        boxes.observe(
            i,
            [
                {"track_id": 1, "score": 0.9 if i == 40 else 0.5, "box": red_square(i)},
                {"track_id": 2, "score": 0.95 if i == 41 else 0.5, "box": red_square(i)},
                {"track_id": 3, "score": 0.8 if i == 170 else 0.4, "box": red_square(i)},
            ],
        )
    stats = DecodeStats()
    made = list(make_thumbnails(long_video, boxes, frame_pts, stats=stats))
    assert [(t.track_id, t.frame) for t in made] == [(1, 40), (2, 41), (3, 170)]
    for thumbnail in made:
        x1, y1, x2, y2 = (int(v) for v in red_square(thumbnail.frame))
        image = decoded(thumbnail.jpeg)
        assert image.shape == (SIDE, SIDE, 3)
        assert difference(image, frame_image(thumbnail.frame, W, H)[y1:y2, x1:x2]) < 12
        # The same box in a frame 5 away shows something else (the square moved 35 px).
        assert difference(image, frame_image(thumbnail.frame + 5, W, H)[y1:y2, x1:x2]) > 40
    # Only the frames from the keyframe before each wanted run: frames 40-41 and 170
    # (keyframes 40 and 170), never the 200 of the video.
    assert stats.delivered == 3
    assert stats.decoded < 30


def test_tracks_whose_frame_has_no_timestamp_are_left_out(long_video):
    boxes = BestBoxes()
    boxes.observe(5, [{"track_id": 1, "score": 0.9, "box": red_square(5)}])
    boxes.observe(6, [{"track_id": 2, "score": 0.9, "box": red_square(6)}])
    index = index_frames(long_video)
    made = list(make_thumbnails(long_video, boxes, {6: index.pts[6]}))
    assert [(t.track_id, t.frame) for t in made] == [(2, 6)]
    assert cv2.imdecode(np.frombuffer(made[0].jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (SIDE, SIDE, 3)

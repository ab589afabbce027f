"""Exports, read back by the tools people import them with.

COCO goes through pycocotools (and its evaluator), MOT through motmetrics,
CSV through the csv module and JSON Lines through json. For CVAT the real
importers (Datumaro, FiftyOne) cannot be installed beside this project's
OpenCV 5 and pandas 3, so the files are read by ``read_cvat`` below, which
follows the rules of CVAT's own loader and of Datumaro's CVAT importer
(tracks of ``<box frame outside keyframe xtl ytl xbr ybr>``, a box showing
the object from its frame until the next keyframe, ``outside`` hiding it);
where Datumaro is importable the same checks also run through it.

The job used has tracks that leave and come back, is sampled (every fifth
frame) and has labels meant to break escaping.
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import subprocess
import sys
import tracemalloc
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

import detector.exports.coco as coco_module
import detector.exports.common as common_module
from detector.detection import AnalysedFrame, Detections
from detector.exports import (
    FORMATS,
    ExportError,
    ExportSource,
    TracksRequiredError,
    UnknownFormatError,
    export,
    filename,
    media_type,
)
from detector.pipeline.results import frame_json

HOSTILE = "<img src=x onerror=alert(1)>&\"'"
LABELS = {0: "person", 1: "car", 2: HOSTILE, 3: 'left, right\n"quoted"'}
TRACKS = (1, 2, 3, 4, 5)
SAMPLED = list(range(0, 100, 5))  # every fifth frame of a 103-frame video
FRAME_COUNT = 103


def make_job(frames: Iterable[int], *, tracked: bool) -> list[tuple[int, float, list[dict[str, Any]]]]:
    """Five tracks over ``frames``; each is missing from every fourth analysed frame."""
    job = []
    for i, frame in enumerate(frames):
        objects = []
        for track in TRACKS:
            if (i + track) % 4 == 0:
                continue
            x1 = 3.0 * track + 0.731 * frame + 0.125
            y1 = 10.5 + 7.25 * track + 0.0173 * frame
            obj: dict[str, Any] = {
                "label": LABELS[track % 4],
                "class_id": track % 4,
                "score": 0.5 + track / 17 + frame / 7919,
                "box": [x1, y1, x1 + 20 + 1.337 * track, y1 + 30.0625],
            }
            if tracked:
                obj["track_id"] = track
            objects.append(obj)
        job.append((frame, frame / 25, objects))
    return job


def make_source(*, tracked: bool, name: str = "street.mp4", frame_count: int = FRAME_COUNT) -> ExportSource:
    return ExportSource(
        name=name, width=1280, height=720, frame_count=frame_count, fps=25.0, labels=LABELS, tracked=tracked
    )


def analysed(frames: Iterable[Any]) -> Iterator[AnalysedFrame]:
    """``(frame, timestamp, objects)`` tuples, objects in their JSON form, as the
    `AnalysedFrame` s an export takes (one at a time, as they are read); frames
    that are `AnalysedFrame` s already pass as they are."""
    for item in frames:
        frame, timestamp, objects = item
        yield (
            item
            if isinstance(item, AnalysedFrame)
            else AnalysedFrame(frame, timestamp, Detections.from_objects(objects))
        )


def save(path: Path, fmt: str, source: ExportSource, frames: Iterable[Any]) -> Path:
    """The export written to ``path``, piece by piece."""
    with path.open("w", encoding="utf-8", newline="") as out:
        for piece in export(fmt, source, analysed(frames)):
            assert isinstance(piece, str)
            out.write(piece)
    return path


def objects_of(
    job: Iterable[tuple[int, float, list[dict[str, Any]]]],
) -> Iterator[tuple[int, dict[str, Any]]]:
    for frame, _timestamp, objects in job:
        for obj in objects:
            yield frame, obj


class Untouchable:
    """Frames that fail the test if anything reads them."""

    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("the frames were read")


class Counted:
    """``total`` frames of the same objects, counting how many have been read."""

    def __init__(self, total: int, objects: list[dict[str, Any]]) -> None:
        self.total, self.objects, self.read = total, objects, 0
        self.found = Detections.from_objects(objects)

    def __iter__(self) -> Iterator[AnalysedFrame]:
        for frame in range(self.total):
            self.read += 1
            yield AnalysedFrame(frame, frame / 25, self.found)


def objects_per_frame(count: int, *, tracked: bool) -> list[dict[str, Any]]:
    return [
        {
            "label": LABELS[t % 4],
            "class_id": t % 4,
            "score": 0.25 + t / 50,
            "box": [10.0 * t + 0.5, 20.25, 10.0 * t + 30.75, 80.0],
            **({"track_id": t} if tracked else {}),
        }
        for t in range(count)
    ]


# The interface ------------------------------------------------------------------------------------------


def test_formats_media_types_and_file_names():
    assert FORMATS == ("coco", "mot", "cvat", "csv", "jsonl")
    assert [media_type(fmt) for fmt in FORMATS] == [
        "application/json",
        "text/plain",
        "application/xml",
        "text/csv",
        "application/x-ndjson",
    ]
    assert [filename(fmt, "street.mp4") for fmt in FORMATS] == [
        "street.coco.json",
        "street.mot.txt",
        "street.cvat.xml",
        "street.csv",
        "street.jsonl",
    ]
    assert media_type(" COCO ") == "application/json"
    assert filename("csv", "holiday.2024.final.mov") == "holiday.2024.final.csv"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd.csv"),
        ("C:\\Users\\me\\clip.avi", "clip.csv"),
        (HOSTILE + ".mp4", "img_src_x_onerror_alert_1.csv"),
        ('a"; filename=evil.exe; x=".mp4', "a_filename_evil.exe_x.csv"),
        ("my video (1).mp4", "my_video_1.csv"),
        ("straße\r\n.mp4", "stra_e.csv"),
        (".mp4", "mp4.csv"),
        ("", "video.csv"),
        ("../..", "video.csv"),
    ],
)
def test_file_names_are_safe_in_a_header_and_as_a_path(name: str, expected: str):
    safe = filename("csv", name)
    assert safe == expected
    assert set(safe) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert not safe.startswith(".")


def test_an_unknown_format_is_refused_before_any_frame_is_read():
    with pytest.raises(UnknownFormatError) as raised:
        export("yolo", make_source(tracked=True), Untouchable())
    error = raised.value
    assert isinstance(error, ExportError) and isinstance(error, ValueError)
    assert error.kind == "unknown_format"
    message = str(error)
    assert "'yolo'" in message and all(fmt in message for fmt in FORMATS)
    with pytest.raises(UnknownFormatError):
        media_type("xml")
    with pytest.raises(UnknownFormatError):
        filename("", "a.mp4")
    with pytest.raises(UnknownFormatError):
        export(None, make_source(tracked=True), [])  # type: ignore[arg-type]


def test_mot_of_an_untracked_job_is_refused_before_any_frame_is_read():
    with pytest.raises(TracksRequiredError) as raised:
        export("mot", make_source(tracked=False), Untouchable())
    error = raised.value
    assert isinstance(error, ExportError) and error.kind == "needs_tracks"
    assert "track" in str(error) and all(fmt in str(error) for fmt in ("coco", "cvat", "csv", "jsonl"))
    # Every other format takes an untracked job, and a tracked one takes them all.
    for fmt in FORMATS:
        if fmt != "mot":
            export(fmt, make_source(tracked=False), Untouchable())
        export(fmt, make_source(tracked=True), Untouchable())


def test_the_package_imports_no_web_queue_database_or_model_code():
    code = (
        "import sys, detector.exports; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'celery', 'sqlalchemy', 'torch', 'numpy'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# COCO --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tracked", [True, False])
def test_coco_loads_in_pycocotools_with_frames_boxes_categories_scores_and_tracks(
    tmp_path: Path, tracked: bool
):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    job = make_job(SAMPLED, tracked=tracked)
    path = save(tmp_path / "job.json", "coco", make_source(tracked=tracked), job)
    coco = COCO(str(path))

    # One image per analysed frame, ids from 1 (the 0-based frame index plus 1).
    assert sorted(coco.getImgIds()) == [frame + 1 for frame in SAMPLED]
    for frame, timestamp, _objects in job:
        image = coco.loadImgs(frame + 1)[0]
        assert image["file_name"] == f"frame_{frame:06d}.jpg"
        assert (image["width"], image["height"]) == (1280, 720)
        assert (image["frame_index"], image["timestamp"]) == (frame, timestamp)

    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == LABELS

    annotations = coco.loadAnns(sorted(coco.getAnnIds()))
    expected = list(objects_of(job))
    assert [a["id"] for a in annotations] == list(range(1, len(expected) + 1))
    for annotation, (frame, obj) in zip(annotations, expected, strict=True):
        x, y, w, h = annotation["bbox"]
        assert [x, y, x + w, y + h] == pytest.approx(obj["box"], abs=1e-9)
        assert annotation["area"] == pytest.approx(w * h)
        assert annotation["image_id"] == frame + 1
        assert annotation["category_id"] == obj["class_id"]
        assert annotation["score"] == obj["score"]
        assert annotation["iscrowd"] == 0
        assert annotation.get("track_id") == obj.get("track_id")
    assert ("track_id" in annotations[0]) is tracked

    # As detection results against itself, pycocotools' evaluator scores a perfect match.
    results = coco.loadRes(copy.deepcopy(annotations))
    assert len(results.getAnnIds()) == len(expected)
    evaluation = COCOeval(coco, results, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_coco_names_a_class_the_label_set_lacks(tmp_path: Path):
    from pycocotools.coco import COCO

    job = [(0, 0.0, [{"label": "zebra", "class_id": 42, "score": 0.9, "box": [1.0, 2.0, 3.0, 4.0]}])]
    coco = COCO(str(save(tmp_path / "job.json", "coco", make_source(tracked=False), job)))
    assert coco.loadCats(42) == [{"id": 42, "name": "zebra", "supercategory": "object"}]
    assert len(coco.getCatIds()) == len(LABELS) + 1


# MOT ---------------------------------------------------------------------------------------------------


def load_mot(path: Path) -> Any:
    import motmetrics

    with warnings.catch_warnings():
        # motmetrics 1.4 subtracts a tuple from a frame, which pandas 3 deprecates.
        warnings.simplefilter("ignore", DeprecationWarning)
        return motmetrics.io.loadtxt(str(path), fmt="mot15-2D")


def test_mot_loads_in_motmetrics_with_frames_from_1_ids_and_boxes(tmp_path: Path):
    job = make_job(SAMPLED, tracked=True)
    path = save(tmp_path / "job.txt", "mot", make_source(tracked=True), job)
    table = load_mot(path)
    expected = list(objects_of(job))
    assert len(table) == len(expected)
    for frame, obj in expected:
        row = table.loc[(frame + 1, obj["track_id"])]
        x1, y1, x2, y2 = obj["box"]
        assert [row["X"], row["Y"], row["Width"], row["Height"]] == pytest.approx(
            [x1, y1, x2 - x1, y2 - y1], abs=1e-3
        )
        assert row["Confidence"] == pytest.approx(obj["score"], abs=1e-6)
    assert sorted({frame for frame, _ in table.index}) == [frame + 1 for frame in SAMPLED]
    assert {track for _, track in table.index} == set(TRACKS)
    lines = path.read_text().splitlines()
    assert all(line.endswith(",-1,-1,-1") and line.count(",") == 9 for line in lines)


def test_mot_leaves_out_an_object_without_a_track_id(tmp_path: Path):
    job = make_job([0, 1], tracked=True)
    job[1][2][0].pop("track_id")
    table = load_mot(save(tmp_path / "job.txt", "mot", make_source(tracked=True), job))
    assert len(table) == sum(len(objects) for _, _, objects in job) - 1


# CVAT --------------------------------------------------------------------------------------------------


@dataclass
class CvatBox:
    frame: int
    outside: bool
    keyframe: bool
    box: tuple[float, float, float, float]


@dataclass
class CvatTrack:
    label: str
    boxes: list[CvatBox] = field(default_factory=list)

    def shown(self, frame: int) -> CvatBox | None:
        """The box CVAT shows on ``frame``: the latest keyframe at or before it, unless outside."""
        latest = None
        for box in sorted(self.boxes, key=lambda b: b.frame):
            if box.frame > frame:
                break
            latest = box
        return None if latest is None or latest.outside else latest


def read_cvat(path: Path) -> tuple[list[str], dict[int, CvatTrack]]:
    """The label names of a CVAT for video file's meta and its tracks by id, by CVAT's loading rules."""
    labels: list[str] = []
    tracks: dict[int, CvatTrack] = {}
    track: CvatTrack | None = None
    for event, element in ElementTree.iterparse(path, events=("start", "end")):
        if event == "start" and element.tag == "track":
            track = tracks.setdefault(int(element.attrib["id"]), CvatTrack(element.attrib["label"]))
        elif event == "end" and element.tag == "box" and track is not None:
            a = element.attrib
            coordinates = (float(a["xtl"]), float(a["ytl"]), float(a["xbr"]), float(a["ybr"]))
            track.boxes.append(
                CvatBox(int(a["frame"]), a["outside"] == "1", a["keyframe"] == "1", coordinates)
            )
        elif event == "end" and element.tag == "track":
            track = None
        elif event == "end" and element.tag == "label" and element.find("name") is not None:
            labels.append(element.findtext("name") or "")
    return labels, tracks


def read_cvat_with_datumaro(path: Path) -> tuple[list[str], dict[int, CvatTrack]]:
    """The same, through Datumaro's CVAT importer."""
    import datumaro

    xml = path.with_suffix(".xml")
    xml.write_bytes(path.read_bytes())
    dataset = datumaro.Dataset.import_from(str(xml), "cvat")
    categories = dataset.categories()[datumaro.AnnotationType.label]
    tracks: dict[int, CvatTrack] = {}
    for item in dataset:
        for annotation in item.annotations:
            x, y, w, h = annotation.get_bbox()
            track = tracks.setdefault(
                annotation.attributes["track_id"], CvatTrack(categories[annotation.label].name)
            )
            track.boxes.append(
                CvatBox(
                    item.attributes["frame"],
                    annotation.attributes["outside"],
                    annotation.attributes["keyframe"],
                    (x, y, x + w, y + h),
                )
            )
    return [label.name for label in categories], tracks


CVAT_READERS = [pytest.param(read_cvat, 1e-3, id="cvat-rules")]
if importlib.util.find_spec("datumaro") is not None:
    CVAT_READERS.append(pytest.param(read_cvat_with_datumaro, 1e-2, id="datumaro"))  # it keeps two decimals


@pytest.mark.parametrize(("reader", "tolerance"), CVAT_READERS)
def test_cvat_tracks_keep_their_ids_frames_and_boxes_and_end_where_the_object_is_gone(
    tmp_path: Path, reader: Callable[[Path], tuple[list[str], dict[int, CvatTrack]]], tolerance: float
):
    job = make_job(SAMPLED, tracked=True)
    path = save(tmp_path / "job.cvat", "cvat", make_source(tracked=True), job)
    labels, tracks = reader(path)
    assert labels == list(LABELS.values())
    assert sorted(tracks) == list(TRACKS)
    for track_id, track in tracks.items():
        assert track.label == LABELS[track_id % 4]
        assert all(box.keyframe for box in track.boxes)
    # On every analysed frame CVAT shows exactly the objects detected there, with their boxes,
    # and no track runs on past the frame after its last box.
    for frame, _timestamp, objects in job:
        by_track = {obj["track_id"]: obj for obj in objects}
        for track_id, track in tracks.items():
            shown = track.shown(frame)
            if track_id in by_track:
                assert shown is not None and shown.frame == frame
                assert list(shown.box) == pytest.approx(by_track[track_id]["box"], abs=tolerance)
            else:
                assert shown is None, (track_id, frame)
    assert all(track.shown(SAMPLED[-1] + 1) is None for track in tracks.values())
    assert max(box.frame for track in tracks.values() for box in track.boxes) == SAMPLED[-1] + 1


@pytest.mark.parametrize(("reader", "tolerance"), CVAT_READERS)
def test_cvat_of_an_untracked_job_has_a_one_box_track_per_object(
    tmp_path: Path, reader: Callable[[Path], tuple[list[str], dict[int, CvatTrack]]], tolerance: float
):
    job = make_job(SAMPLED, tracked=False)
    path = save(tmp_path / "job.cvat", "cvat", make_source(tracked=False), job)
    labels, tracks = reader(path)
    assert labels == list(LABELS.values())
    expected = list(objects_of(job))
    assert sorted(tracks) == list(range(len(expected)))
    for (frame, obj), track_id in zip(expected, sorted(tracks), strict=True):
        track = tracks[track_id]
        assert track.label == obj["label"]
        assert [(box.frame, box.outside) for box in sorted(track.boxes, key=lambda b: b.frame)] == [
            (frame, False),
            (frame + 1, True),
        ]
        assert list(track.boxes[0].box) == pytest.approx(obj["box"], abs=tolerance)


def test_cvat_meta_describes_the_video_and_survives_hostile_text(tmp_path: Path):
    name = HOSTILE + "\x00\x1b.mp4"
    labels = {**LABELS, 9: "bell\x07"}
    source = replace(make_source(tracked=True, name=name), labels=labels)
    job = make_job([0, 5], tracked=True)
    job[0][2][0]["label"] = labels[9]
    path = save(tmp_path / "job.xml", "cvat", source, job)
    root = ElementTree.parse(path).getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task is not None
    cleaned = HOSTILE + "\ufffd\ufffd.mp4"  # characters XML 1.0 cannot hold at all are replaced
    assert task.findtext("name") == cleaned and task.findtext("source") == cleaned
    assert task.findtext("size") == str(FRAME_COUNT)
    assert task.findtext("mode") == "interpolation"
    assert task.findtext("overlap") == "0"
    assert (task.findtext("start_frame"), task.findtext("stop_frame")) == ("0", str(FRAME_COUNT - 1))
    assert (task.findtext("original_size/width"), task.findtext("original_size/height")) == ("1280", "720")
    assert [label.findtext("name") for label in task.iter("label")] == [*LABELS.values(), "bell\ufffd"]
    assert {track.get("label") for track in root.iter("track")} >= {
        HOSTILE,
        'left, right\n"quoted"',
        "bell\ufffd",
    }
    assert b"<img" not in path.read_bytes()


def test_cvat_writes_an_object_without_a_track_id_as_a_track_of_its_own(tmp_path: Path):
    job = make_job([0, 5], tracked=True)
    lone = job[1][2].pop(0)
    lone.pop("track_id")
    job[1][2].append(lone)
    _labels, tracks = read_cvat(save(tmp_path / "job.xml", "cvat", make_source(tracked=True), job))
    newest = tracks[max(TRACKS) + 1]
    assert [(box.frame, box.outside) for box in newest.boxes] == [(5, False), (6, True)]
    assert list(newest.boxes[0].box) == pytest.approx(lone["box"], abs=1e-3)


def test_cvat_ends_no_track_past_the_last_frame_of_the_video(tmp_path: Path):
    job = make_job(range(4), tracked=True)
    _labels, tracks = read_cvat(
        save(tmp_path / "job.xml", "cvat", make_source(tracked=True, frame_count=4), job)
    )
    assert max(box.frame for track in tracks.values() for box in track.boxes) == 3
    _labels, tracks = read_cvat(
        save(tmp_path / "lone.xml", "cvat", make_source(tracked=False, frame_count=4), job)
    )
    assert all(box.frame <= 3 for track in tracks.values() for box in track.boxes)


# CSV and JSON Lines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tracked", [True, False])
def test_csv_has_a_row_per_object_with_exact_numbers_and_quoted_labels(tmp_path: Path, tracked: bool):
    job = make_job(SAMPLED, tracked=tracked)
    path = save(tmp_path / "job.csv", "csv", make_source(tracked=tracked), job)
    with path.open(newline="", encoding="utf-8") as table:
        rows = list(csv.reader(table))
    assert rows[0] == ["frame", "timestamp", "track_id", "label", "class_id", "score", "x1", "y1", "x2", "y2"]
    expected = [(frame, timestamp, obj) for frame, timestamp, objects in job for obj in objects]
    assert len(rows) - 1 == len(expected)
    for row, (frame, timestamp, obj) in zip(rows[1:], expected, strict=True):
        assert int(row[0]) == frame and float(row[1]) == timestamp
        assert row[2] == (str(obj["track_id"]) if tracked else "")
        assert row[3] == obj["label"] and int(row[4]) == obj["class_id"]
        assert float(row[5]) == obj["score"]
        assert [float(value) for value in row[6:]] == obj["box"]
    assert {row[3] for row in rows[1:]} == set(LABELS.values())


@pytest.mark.parametrize("tracked", [True, False])
def test_jsonl_has_a_line_per_analysed_frame_shaped_as_the_detections_page(tmp_path: Path, tracked: bool):
    job = make_job(SAMPLED, tracked=tracked)
    path = save(tmp_path / "job.jsonl", "jsonl", make_source(tracked=tracked), job)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"frame": frame, "timestamp": timestamp, "objects": objects} for frame, timestamp, objects in job
    ]
    assert lines == [frame_json(frame, timestamp, json.dumps(objects)) for frame, timestamp, objects in job]


# Every format --------------------------------------------------------------------------------------------


def test_an_empty_job_gives_an_empty_but_valid_file_in_every_format(tmp_path: Path):
    from pycocotools.coco import COCO

    job: list[Any] = [(0, 0.0, []), (5, 0.2, [])]
    files = {fmt: save(tmp_path / fmt, fmt, make_source(tracked=True), job) for fmt in FORMATS}
    coco = COCO(str(files["coco"]))
    assert sorted(coco.getImgIds()) == [1, 6] and coco.getAnnIds() == []
    assert read_cvat(files["cvat"])[1] == {}
    assert files["mot"].read_text() == ""
    assert files["csv"].read_text().splitlines() == [
        "frame,timestamp,track_id,label,class_id,score,x1,y1,x2,y2"
    ]
    assert len(files["jsonl"].read_text().splitlines()) == 2
    assert read_cvat(save(tmp_path / "none", "cvat", make_source(tracked=True), []))[1] == {}


@pytest.mark.parametrize(
    ("fmt", "tracked"),
    [("coco", True), ("mot", True), ("cvat", False), ("csv", True), ("jsonl", False)],
)
def test_pieces_come_while_the_frames_are_still_being_read(fmt: str, tracked: bool):
    frames = Counted(20_000, objects_per_frame(3, tracked=tracked))
    pieces = export(fmt, make_source(tracked=tracked, frame_count=20_000), frames)
    assert frames.read == 0
    taken = 0
    while taken < 100_000:
        taken += len(next(pieces))
    assert 0 < frames.read <= 2_000
    pieces.close()


def test_tracked_cvat_sends_its_meta_before_reading_a_frame():
    frames = Counted(20_000, objects_per_frame(3, tracked=True))
    pieces = export("cvat", make_source(tracked=True, frame_count=20_000), frames)
    assert "<meta>" in next(pieces) and frames.read == 0
    pieces.close()


def test_a_large_job_is_complete_in_every_format(tmp_path: Path):
    total = 20_000
    frames = Counted(total, objects_per_frame(1, tracked=True))
    source = make_source(tracked=True, frame_count=total + 1)
    lines = sum(1 for _ in save(tmp_path / "mot", "mot", source, frames).open())
    assert lines == total and frames.read == total
    assert (
        sum(1 for _ in save(tmp_path / "jsonl", "jsonl", source, Counted(total, frames.objects)).open())
        == total
    )
    with save(tmp_path / "csv", "csv", source, Counted(total, frames.objects)).open(newline="") as table:
        assert sum(1 for _ in csv.reader(table)) == total + 1
    document = json.loads(save(tmp_path / "coco", "coco", source, Counted(total, frames.objects)).read_text())
    assert len(document["images"]) == len(document["annotations"]) == total
    assert document["images"][-1]["id"] == total and document["annotations"][-1]["image_id"] == total
    _labels, tracks = read_cvat(save(tmp_path / "cvat", "cvat", source, Counted(total, frames.objects)))
    assert [len(track.boxes) for track in tracks.values()] == [total + 1]  # and its outside box


@pytest.mark.parametrize(
    ("fmt", "tracked"),
    [("coco", True), ("mot", True), ("cvat", True), ("cvat", False), ("csv", True), ("jsonl", True)],
)
def test_memory_stays_flat_as_the_job_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, tracked: bool
):
    # Small pieces and spool, so that both job sizes are well past them.
    monkeypatch.setattr(common_module, "PIECE_CHARS", 4 * 1024)
    monkeypatch.setattr(coco_module, "SPOOL_BYTES", 16 * 1024)
    objects = objects_per_frame(4, tracked=tracked)

    def peak(frames: int) -> tuple[int, int]:
        """The most memory Python held while the export was written to a file, and the file's size."""
        source = make_source(tracked=tracked, frame_count=frames)
        tracemalloc.start()
        try:
            path = save(tmp_path / f"{fmt}-{frames}", fmt, source, Counted(frames, objects))
            return tracemalloc.get_traced_memory()[1], path.stat().st_size
        finally:
            tracemalloc.stop()

    # A writer that kept the document, or the frames, would need ten times more for ten times the frames.
    small, _ = peak(200)
    large, size = peak(2_000)
    assert large < small * 1.5 + 32 * 1024, (small, large)
    assert large < 256 * 1024 < size, (large, size)

"""The shared test data: a real COCO detector and a real street video.

``../shared/testdata`` from the project's root (its README.md says what each file
is) holds SSD MobileNet V2 trained on COCO, as TFLite (8-bit) and as ONNX, its
labels, and ``vtest.avi``: 795 frames (768x576, 10 fps, MPEG-4 part 2 in AVI) of
pedestrians crossing a square. Nothing of it is copied into the repository.

A test that needs it takes the ``testdata`` fixture (registered in
tests/conftest.py), or calls `require_testdata` itself::

    def test_people(testdata: SharedData) -> None:
        frames = decode(testdata.video)

Without the folder the test skips, saying so; under CI=true it fails. The
catalog entry that declares the SSD to the service is `ssd_catalog`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from detector.bench.realvideo import RealVideoData

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# DETECTOR_TESTDATA overrides where the folder is (a checkout elsewhere).
TESTDATA_DIR = Path(os.environ.get("DETECTOR_TESTDATA") or PROJECT_ROOT.parent / "shared" / "testdata")

# The SSD's runtimes, as a catalog's `backend` names them, and the model file each one reads.
SSD_BACKENDS = ("onnxruntime", "openvino", "tflite")


@dataclass(frozen=True)
class SharedData(RealVideoData):
    """Paths of the shared files (each one checked to exist by `require_testdata`):
    ``video`` (vtest.avi: PETS 2009 S2.L1 view 1, 768x576, 10 fps, 795 frames,
    msmpeg4v3 in AVI), ``labels`` (COCO's 80, ``ID  name`` a line, 0 = person) and
    the SSD MobileNet V2 files, ONNX (uint8 NHWC 300x300 in, TF OD API outputs) and
    8-bit TFLite."""

    @property
    def ssd_onnx(self) -> Path:
        return super().model_file("onnxruntime")

    @property
    def ssd_tflite(self) -> Path:
        return super().model_file("tflite")

    def model_file(self, backend: str) -> Path:
        """The file ``backend`` (one of `SSD_BACKENDS`) runs: the TFLite file for
        tflite, the ONNX file for the others."""
        if backend not in SSD_BACKENDS:
            raise ValueError(f"no SSD file for backend {backend!r}")
        return super().model_file(backend)

    def files(self) -> tuple[Path, ...]:
        return (self.video, self.ssd_onnx, self.ssd_tflite, self.labels)


# The class id of `person` in the model's labels (coco_labels.txt).
PERSON = 0


def require_testdata() -> SharedData:
    """The shared test data, or a skip naming what is missing (a failure under CI=true)."""
    from tests.conftest import missing_tool  # tests/conftest.py imports this module

    data = SharedData(TESTDATA_DIR)
    missing = [str(p) for p in data.files() if not p.is_file()]
    if missing:
        missing_tool(f"the shared test data is missing: {', '.join(missing)} (see ../shared/testdata)")
    return data


@pytest.fixture(scope="session")
def testdata() -> SharedData:
    """The shared test data (skip without it, fail under CI=true)."""
    return require_testdata()


def ssd_catalog(
    data: SharedData, path: Path, backend: str = "onnxruntime", name: str = "ssd", min_score: float = 0.3
) -> Path:
    """Write a DETECTOR_MODELS file to ``path`` that declares the shared SSD on
    ``backend`` as the model ``name`` (the service's default model: the only one)."""
    path.write_text(
        f"[models.{name}]\n"
        f'backend = "{backend}"\n'
        f'file = "{data.model_file(backend)}"\n'
        'family = "ssd"\n'
        f'labels = "{data.labels}"\n'
        f"min_score = {min_score}\n"
    )
    return path

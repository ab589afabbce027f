"""What the detection modules import: no cycles, no backend from the interface, no torch
for ``model_identity``, no Detectron2 for the torchvision backend.

Runtime checks run in a fresh interpreter, so modules other tests imported do not count.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_package_and_model_identity_import_no_torch():
    """The API computes model identities in an image without torch."""
    out = run(
        """
        import sys
        from detector.detection import DetectorSettings, model_identity
        print(model_identity(DetectorSettings(backend="detectron2")))
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "detectron2", "cv2")))
        """
    )
    assert out.splitlines()[-1] == "[]"


def test_no_import_cycles_and_base_imports_no_backend():
    """Read from the source (function-level imports too), as import-linter does."""
    import grimp

    graph = grimp.build_graph("detector")
    modules = sorted(m for m in graph.modules if m.startswith("detector.detection."))
    # The interface imports the container its predictors return, and nothing else.
    assert graph.find_modules_directly_imported_by("detector.detection.base") == {
        "detector.detection.detections"
    }
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("detector."):
                assert not graph.chain_exists(importer=imported, imported=module), f"{module} <-> {imported}"
    backends = {"detector.detection.torchvision_backend", "detector.detection.detectron2_backend"}
    importers = {m for b in backends for m in graph.find_modules_that_directly_import(b)}
    assert importers == {"detector.detection.registry"}


def test_torchvision_backend_works_without_detectron2():
    out = run(
        """
        import sys
        sys.modules["detectron2"] = None  # as if not installed: importing it raises ImportError
        import detector.detection.random_weights
        from detector.detection.torchvision_backend import TorchvisionPredictor
        from detector.detection.registry import predictor_class
        print(predictor_class("torchvision") is TorchvisionPredictor)
        """
    )
    assert out == "True"

"""Where a model's weights come from: a download cache, a local file, or seeded random."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

from detector.detection.base import WeightsError

log = logging.getLogger(__name__)

HOW_TO_PROVIDE = (
    "Set DETECTOR_WEIGHTS to a local checkpoint file or an http(s) URL the worker can "
    "reach, or put the file in DETECTOR_CACHE_DIR; DETECTOR_WEIGHTS=random builds the "
    "model with seeded random weights, for tests and benchmarks only."
)


def default_cache_dir() -> Path:
    return Path(os.environ.get("DETECTOR_CACHE_DIR") or Path.home() / ".cache" / "detector")


def resolve_weights(spec: str, default_url: str | None, cache_dir: str | None) -> Path | None:
    """The local checkpoint to load for ``spec``, or None for seeded random weights.

    Args:
        spec: ``default``, ``random``, a file path or an http(s) URL.
        default_url: the model's pretrained checkpoint, used for ``default``.
        cache_dir: where downloads are kept (downloaded once, then reused).

    Raises:
        WeightsError: the file does not exist or the download failed; the message
            says how to provide weights. There is never a silent fallback.
    """
    if spec == "random":
        log.warning("using seeded RANDOM weights: detections are meaningless")
        return None
    url = default_url if spec == "default" else spec
    if url is None:
        raise WeightsError(f"this model has no default weights. {HOW_TO_PROVIDE}")
    if urlparse(url).scheme not in ("http", "https"):
        path = Path(url).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist. {HOW_TO_PROVIDE}")
        return path
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    name = Path(urlparse(url).path).name or "weights"
    target = cache / hashlib.sha256(url.encode()).hexdigest()[:12] / name
    if target.is_file():
        return target
    from torch.hub import download_url_to_file

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading weights %s to %s", url, target)
    try:
        download_url_to_file(url, str(target), progress=False)
    except Exception as exc:  # network errors come in many types
        raise WeightsError(f"could not download weights from {url} ({exc}). {HOW_TO_PROVIDE}") from exc
    return target

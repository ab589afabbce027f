"""A client of the detector's public HTTP API (what `detector submit`, `jobs`, `results`,
`wait` and `login` use). It talks HTTP only, so it works against any deployment, and
imports nothing of the service (an import-linter contract in setup.cfg checks it)."""

from detector.client.http import ApiError, DetectorClient, NetworkError, Upload
from detector.client.settings import ClientSettings, MissingSetting, config_path

__all__ = [
    "ApiError",
    "ClientSettings",
    "DetectorClient",
    "MissingSetting",
    "NetworkError",
    "Upload",
    "config_path",
]

"""Where the client finds its server and API key: flags, then the environment
(DETECTOR_SERVER, DETECTOR_API_KEY), then a TOML file.

The file is ``$DETECTOR_CLIENT_CONFIG`` when that is set, else
``$XDG_CONFIG_HOME/detector/client.toml`` (``~/.config/detector/client.toml``)::

    server = "https://detector.example.com"
    api_key = "dk_live_..."

`detector login` writes it (mode 0600).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


class MissingSetting(ValueError):
    """The server or the API key is given nowhere; the message says where to give it."""


def config_path() -> Path:
    explicit = os.environ.get("DETECTOR_CLIENT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "detector" / "client.toml"


def read_file(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise MissingSetting(f"{path} is not valid TOML: {exc}") from None
    return {k: str(v) for k, v in data.items() if k in {"server", "api_key"} and v}


def write_file(server: str, api_key: str, path: Path | None = None) -> Path:
    """Keep the server and key in the config file, readable by this user only."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"server = {_toml_string(server)}\napi_key = {_toml_string(api_key)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)
    return path


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class ClientSettings:
    server: str
    api_key: str | None

    @classmethod
    def resolve(cls, server: str | None = None, api_key: str | None = None) -> ClientSettings:
        """Flags first, then the environment, then the config file.

        Raises:
            MissingSetting: no server anywhere.
        """
        stored = read_file()
        server = server or os.environ.get("DETECTOR_SERVER") or stored.get("server")
        api_key = api_key or os.environ.get("DETECTOR_API_KEY") or stored.get("api_key")
        if not server:
            raise MissingSetting(
                f"no server: pass --server URL, set DETECTOR_SERVER, or run `detector login` "
                f"(it writes {config_path()})"
            )
        return cls(server=server.rstrip("/"), api_key=api_key or None)

    def require_key(self) -> str:
        if not self.api_key:
            raise MissingSetting(
                f"no API key: pass --api-key, set DETECTOR_API_KEY, or run `detector login` "
                f"(it writes {config_path()})"
            )
        return self.api_key

"""Label files: the class names a catalog's ``labels`` key gives, by class id."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

#: A label line that starts with its class id: ``0 person``, ``1: bicycle``, ``2,car``.
_ID_LINE = re.compile(r"^\s*(\d+)\s*[:,]?\s+(\S.*?)\s*$|^\s*(\d+)\s*[:,]\s*(\S.*?)\s*$")

#: One ``item { ... }`` of a TensorFlow label map (``.pbtxt``).
_PBTXT_ITEM = re.compile(r"item\s*\{(.*?)\}", re.S)


class LabelsError(ValueError):
    """A ``labels`` file or list cannot be used; the message says why."""


def read_labels(spec: str | Sequence[str]) -> list[str]:
    """The labels a catalog's ``labels`` key gives, indexed by class id.

    A list names class ids 0, 1, ... in order. A file is one of:

    - one name per line, the line's position its class id (from 0);
    - ``id name`` lines (also ``id: name`` or ``id,name``), ids in any order,
      with gaps (a gap becomes the placeholder ``N/A``);
    - a TensorFlow label map (``.pbtxt``: ``item { id: 1 name: "person" }``,
      ``display_name`` preferred).

    Blank lines and lines starting with ``#`` are skipped.

    Raises:
        LabelsError: the file cannot be read, names no class, or gives one id twice.
    """
    if not isinstance(spec, str):
        return list(spec)
    path = Path(spec).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(
            f"labels file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if path.suffix.lower() == ".pbtxt" or "item {" in text or "item{" in text:
        pairs = []
        for item in _PBTXT_ITEM.findall(text):
            number = re.search(r"\bid\s*:\s*(\d+)", item)
            name = re.search(r"display_name\s*:\s*[\"']([^\"']*)[\"']", item) or re.search(
                r"\bname\s*:\s*[\"']([^\"']*)[\"']", item
            )
            if number is None or name is None:
                raise LabelsError(f"labels file {path}: an item without id or name: {item.strip()[:60]!r}")
            pairs.append((int(number.group(1)), name.group(1)))
        return _by_id(pairs, path)
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise LabelsError(f"labels file {path} names no class")
    matches = [_ID_LINE.match(line) for line in lines]
    if all(matches):
        return _by_id(
            [(int(m.group(1) or m.group(3)), m.group(2) or m.group(4)) for m in matches if m is not None],
            path,
        )
    return lines


def _by_id(pairs: Sequence[tuple[int, str]], path: Path) -> list[str]:
    if not pairs:
        raise LabelsError(f"labels file {path} names no class")
    names = ["N/A"] * (max(i for i, _ in pairs) + 1)
    seen: set[int] = set()
    for i, name in pairs:
        if i in seen:
            raise LabelsError(f"labels file {path} names class id {i} twice")
        seen.add(i)
        names[i] = name
    return names

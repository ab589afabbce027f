"""The receiver-side verification code exactly as docs/api.md shows it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def documented_verify() -> Callable[[str, str, bytes], bool]:
    """The `verify` function of the Python block in docs/api.md's Webhooks section."""
    text = DOCS.read_text()
    section = text[text.index("## Webhooks") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "docs/api.md's Webhooks section has no Python block"
    lines = code.group(1).strip().splitlines()
    assert len(lines) <= 5, "the docs promise five lines"
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), str(DOCS), "exec"), namespace)
    return namespace["verify"]  # type: ignore[return-value]

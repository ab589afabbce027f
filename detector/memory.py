"""Giving memory that Python and PyTorch have freed back to the operating system."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


def release_free_memory() -> None:
    """Return the C heap's free pages to the OS (glibc's ``malloc_trim``).

    glibc keeps freed memory for reuse, so a detector worker would otherwise
    hold on to the high-water mark of every chunk it has run, and drift upwards
    as its heap fragments. Trimming after each chunk keeps a worker's memory
    flat however long the video (measured in docs/performance.md).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

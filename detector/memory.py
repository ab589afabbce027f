"""The C allocator of a process that runs a model."""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit
TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache
def _mallopt() -> Any:
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


@functools.cache
def keep_freed_memory_for_reuse() -> bool:
    """Let this process reuse the memory of freed tensors instead of giving it back.

    With glibc's defaults, a model's activations (a few MB to tens of MB each)
    are mapped fresh and returned to the OS batch after batch, so every batch
    page-faults its memory in again, zeroed by the kernel. On the CPU that was
    about a third of the detector's CPU time, spent in the kernel. Blocks up to
    32 MB now come from the heap, and the heap keeps up to 1 GB of free memory,
    so a process settles at its working set: faster, and flat from the second
    chunk on (docs/performance.md). Returns whether the allocator is glibc's.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.warning("mallopt refused the allocator settings; keeping glibc's defaults")
    return ok

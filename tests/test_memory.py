"""A process that runs a model reuses freed memory instead of faulting it in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from detector.memory import _mallopt

# Allocates 64 MB as eight 8 MB blocks (the size of a model's activations),
# touches them, frees them, twenty times, and prints the minor page faults it
# took. glibc's defaults give the freed top of the heap back to the OS, so each
# round faults all 64 MB in again; reusing it faults once.
SCRIPT = """
import ctypes, resource, sys
from detector.memory import keep_freed_memory_for_reuse

if sys.argv[1] == "tuned":
    assert keep_freed_memory_for_reuse()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 8 * 1024 * 1024
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    blocks = [libc.malloc(size) for _ in range(8)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in reversed(blocks):
        libc.free(block)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
ROUND = 64 * 1024 * 1024 // 4096  # the page faults of one round with nothing reused


def _faults(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(run.stdout)


@pytest.mark.skipif(_mallopt() is None, reason="not glibc")
def test_freed_blocks_are_reused_not_faulted_in_again():
    assert _faults("tuned") < 3 * ROUND


@pytest.mark.skipif(_mallopt() is None, reason="not glibc")
def test_glibc_defaults_fault_them_in_every_round():
    """The problem the setting solves, shown on this machine's glibc."""
    assert _faults("default") > 10 * ROUND

"""A detector worker gives the memory a chunk freed back to the operating system."""

from __future__ import annotations

import subprocess
import sys

import pytest

from detector.memory import _malloc_trim

# Allocates 200 MB of C-heap blocks (each under the mmap threshold), frees all but
# the last (so free() cannot shrink the heap from its top), and prints the
# process's resident MB before and after release_free_memory().
SCRIPT = """
import ctypes
from detector.memory import release_free_memory

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS"))

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(100_000) for _ in range(2_000)]
for block in blocks:
    ctypes.memset(block, 1, 100_000)
for block in blocks[:-1]:
    libc.free(block)
before = rss_mb()
release_free_memory()
print(before, rss_mb())
"""


@pytest.mark.skipif(_malloc_trim() is None, reason="not glibc: nothing to trim")
def test_freed_heap_memory_goes_back_to_the_os():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    before, after = map(int, out.split())
    assert before - after > 150, f"resident {before} MB before the trim, {after} MB after"

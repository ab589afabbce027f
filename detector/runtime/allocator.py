"""Run the model's processes on tcmalloc or mimalloc instead of glibc's malloc.

A detection model on the CPU allocates and frees activations of many
megabytes on every batch. glibc's malloc hands blocks that large back to the
kernel each time (mmap, then munmap), so the next batch page-faults fresh,
zeroed memory in again: millions of page faults per video, and much of the
worker's CPU time spent in the kernel. tcmalloc and mimalloc keep freed
memory for reuse. With either, `detector predict` and the pipeline run much
faster on the CPU, and their speed varies far less from run to run; the
measurements are in docs/performance.md, "The allocator" and "Against the
2021 prototype".

An allocator can only be chosen when a process starts (``LD_PRELOAD``), so
the commands that run the model, ``detector worker``, ``detector predict`` and
``detector bench``, start themselves again with it. ``DETECTOR_ALLOCATOR``:

- ``auto`` (the default): tcmalloc when the system has it (Debian and Ubuntu:
  ``apt-get install libtcmalloc-minimal4``), else mimalloc from the
  ``cmeel-mimalloc`` wheel that the project's own install brings (so a fresh
  machine needs nothing more), else glibc's malloc, with a warning.
- ``tcmalloc``: tcmalloc, or stop with an error saying how to install it.
- ``mimalloc``: the wheel's mimalloc, or stop with an error saying how to install it.
- ``system``: leave the process as it is.

A process started with ``LD_PRELOAD`` already set is left as it is: whoever set
it chose.

This module imports nothing else from ``detector``.
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

CHOICES = ("auto", "tcmalloc", "mimalloc", "system")
TCMALLOC_LIBRARIES = ("tcmalloc_minimal", "tcmalloc")
INSTALL_HINT = "install it (Debian, Ubuntu: apt-get install libtcmalloc-minimal4)"
# The wheel pinned in pyproject.toml; it keeps its library under site-packages/cmeel.prefix/lib.
MIMALLOC_DISTRIBUTION = "cmeel-mimalloc"
MIMALLOC_LIBRARY = "libmimalloc.so.3"
MIMALLOC_HINT = f"install the project again (pip install -e .), which brings it ({MIMALLOC_DISTRIBUTION})"
# tcmalloc reports every allocation over 1 GiB on stderr; a big batch at 1080p
# makes such allocations as a matter of course.
_QUIET = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}


class AllocatorError(RuntimeError):
    """DETECTOR_ALLOCATOR asks for what this machine cannot give."""


def find_tcmalloc() -> str | None:
    """The name the dynamic loader knows tcmalloc by, or None when it is not installed."""
    for name in TCMALLOC_LIBRARIES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def find_mimalloc() -> str | None:
    """The path of the ``cmeel-mimalloc`` wheel's library, or None when the wheel is not installed
    (or this is not Linux, where ``LD_PRELOAD`` does not apply)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        files = importlib.metadata.distribution(MIMALLOC_DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == MIMALLOC_LIBRARY:
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return str(path)
    return None


def model_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the allocator that DETECTOR_ALLOCATOR asks for, for a process to start with.

    Raises:
        AllocatorError: DETECTOR_ALLOCATOR is unknown, or names an allocator
            that is not installed.
    """
    env = dict(environ)
    choice = (env.get("DETECTOR_ALLOCATOR") or "auto").strip().lower()
    if choice not in CHOICES:
        raise AllocatorError(f"DETECTOR_ALLOCATOR must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "system" or env.get("LD_PRELOAD"):
        return env
    if choice in ("auto", "tcmalloc"):
        library = find_tcmalloc()
        if library is not None:
            return {**_QUIET, **env, "LD_PRELOAD": library}
        if choice == "tcmalloc":
            raise AllocatorError(f"DETECTOR_ALLOCATOR=tcmalloc but tcmalloc is not installed; {INSTALL_HINT}")
    mimalloc = find_mimalloc()
    if mimalloc is not None:
        return {**env, "LD_PRELOAD": mimalloc}
    if choice == "mimalloc":
        raise AllocatorError(f"DETECTOR_ALLOCATOR=mimalloc but mimalloc is not installed; {MIMALLOC_HINT}")
    log.warning(
        "neither tcmalloc nor mimalloc is installed: the model runs on glibc's malloc, which makes "
        "it about half as fast on the CPU; %s, or %s, or set DETECTOR_ALLOCATOR=system to silence this",
        INSTALL_HINT,
        MIMALLOC_HINT,
    )
    return env


def restart_with_model_allocator(env: Mapping[str, str]) -> None:
    """Start this very command again with ``env`` (from :func:`model_env`), if it changes the allocator.

    Returns, and the command goes on, when nothing needs to change, or when the
    command was called from other Python code (a test, a notebook) rather than
    started as ``detector`` or ``python -m detector.cli``: that process is not
    ours to restart.
    """
    if env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return
    started_as = Path(sys.argv[0])
    if started_as.name != "detector" and started_as.parts[-3:] != ("detector", "cli", "__main__.py"):
        return
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def loaded_allocator() -> str:
    """``tcmalloc`` or ``mimalloc`` if this process runs on it, else ``system``: for logs and reports."""
    try:
        with open("/proc/self/maps") as maps:
            mapped = maps.read()
    except OSError:  # not Linux
        return "system"
    for name in ("tcmalloc", "mimalloc"):
        if f"/lib{name}" in mapped:
            return name
    return "system"

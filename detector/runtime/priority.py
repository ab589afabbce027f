"""Lower a process's CPU priority, so that the API stays responsive on a shared machine."""

from __future__ import annotations

import contextlib
import os

# The lowest priority. At nice 10 the detector still took a share of the CPU
# from an API under full load; at 19 it takes much less, and the API gets that
# CPU back (the measurements: docs/performance.md, "API latency under load").
BACKGROUND_NICE = 19


def run_in_background() -> None:
    """Make the calling process (and its children) yield the CPU to everything else.

    ``os.nice`` alone is not enough on Linux with autogroup scheduling (the
    default on most distributions): each session gets its own group, groups
    share the CPU equally whatever their members' nice values, and a process
    started with ``start_new_session`` is a session of its own. So the group's
    own nice value is lowered too, which any process may do for itself.
    """
    os.nice(BACKGROUND_NICE)
    # No such file: not Linux, or autogroup is off, and os.nice was enough.
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as f:
        f.write(str(BACKGROUND_NICE))

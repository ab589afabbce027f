"""`detector up` and the benchmark run the detector in the background of the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from detector.runtime.priority import BACKGROUND_NICE, run_in_background


def _sleeper(**kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], **kwargs)  # type: ignore[call-overload]


def test_a_background_process_has_a_lower_priority_than_its_parent():
    proc = _sleeper(start_new_session=True, preexec_fn=run_in_background)
    try:
        expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + BACKGROUND_NICE)  # 19 is the lowest
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == expected
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroup scheduling here")
def test_a_background_session_lowers_its_autogroup_too():
    """With autogroup scheduling a new session competes as a group, whatever its
    processes' nice values; only the group's own nice value yields the CPU."""
    proc = _sleeper(start_new_session=True, preexec_fn=run_in_background)
    try:
        assert Path(f"/proc/{proc.pid}/autogroup").read_text().split()[-1] == str(BACKGROUND_NICE)
    finally:
        proc.kill()
        proc.wait()

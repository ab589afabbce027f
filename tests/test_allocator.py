"""The model's processes run on tcmalloc when the system has it, else on the wheel's mimalloc
(detector.runtime.allocator)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.runtime import allocator
from detector.runtime.allocator import (
    AllocatorError,
    find_mimalloc,
    find_tcmalloc,
    loaded_allocator,
    model_env,
)
from tests.conftest import missing_tool
from tests.pipeline.conftest import TEST_MODEL

FOUND = "libtcmalloc_minimal.so.4"
WHEEL = "/venv/lib/python3.11/site-packages/cmeel.prefix/lib/libmimalloc.so.3"


def found() -> str:
    return FOUND


def missing() -> None:
    return None


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", found)


@pytest.fixture
def not_installed(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", missing)


@pytest.fixture
def wheel(monkeypatch):
    monkeypatch.setattr(allocator, "find_mimalloc", lambda: WHEEL)


@pytest.fixture
def no_wheel(monkeypatch):
    monkeypatch.setattr(allocator, "find_mimalloc", missing)


def test_auto_preloads_tcmalloc_when_installed(installed, wheel):
    env = model_env({"PATH": "/bin"})
    assert env["LD_PRELOAD"] == FOUND
    assert env["PATH"] == "/bin"
    assert int(env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) >= 1 << 40  # no stderr noise


def test_a_setting_of_tcmalloc_own_is_kept(installed):
    env = model_env({"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": "1000"})
    assert env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"] == "1000"


def test_auto_without_tcmalloc_preloads_the_wheels_mimalloc(not_installed, wheel, caplog):
    with caplog.at_level(logging.WARNING, logger="detector.runtime.allocator"):
        env = model_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "LD_PRELOAD": WHEEL}
    assert caplog.text == ""  # a fresh machine is not told to install anything


def test_auto_without_either_keeps_the_system_malloc_and_says_how_to_get_one(not_installed, no_wheel, caplog):
    with caplog.at_level(logging.WARNING, logger="detector.runtime.allocator"):
        env = model_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin"}
    assert "apt-get install libtcmalloc-minimal4" in caplog.text
    assert "cmeel-mimalloc" in caplog.text


def test_mimalloc_may_be_chosen_over_tcmalloc(installed, wheel):
    assert model_env({"DETECTOR_ALLOCATOR": "mimalloc"}) == {
        "DETECTOR_ALLOCATOR": "mimalloc",
        "LD_PRELOAD": WHEEL,
    }


def test_tcmalloc_required_but_missing_is_an_error_even_with_mimalloc(not_installed, wheel):
    with pytest.raises(AllocatorError, match="apt-get install libtcmalloc-minimal4"):
        model_env({"DETECTOR_ALLOCATOR": "tcmalloc"})


def test_mimalloc_required_but_missing_is_an_error(installed, no_wheel):
    with pytest.raises(AllocatorError, match="cmeel-mimalloc"):
        model_env({"DETECTOR_ALLOCATOR": "mimalloc"})


@pytest.mark.parametrize("environ", [{"DETECTOR_ALLOCATOR": "system"}, {"LD_PRELOAD": "libjemalloc.so.2"}])
def test_system_or_a_preload_of_ones_own_is_left_alone(installed, environ):
    assert model_env(environ) == environ


def test_an_unknown_choice_is_an_error(installed):
    with pytest.raises(AllocatorError, match="auto, tcmalloc, mimalloc, system"):
        model_env({"DETECTOR_ALLOCATOR": "jemalloc"})


def test_worker_command_starts_celery_on_tcmalloc(monkeypatch):
    started = {}
    monkeypatch.setattr(allocator, "find_tcmalloc", found)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("DETECTOR_ALLOCATOR", raising=False)
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.update(argv=argv, env=env))
    result = CliRunner().invoke(main, ["worker", "-Q", "detector", "--concurrency", "1"])
    assert result.exit_code == 0, result.output
    assert started["argv"][1:4] == ["-m", "celery", "-A"]
    assert started["env"]["LD_PRELOAD"] == FOUND


def test_worker_command_refuses_a_missing_required_tcmalloc(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", missing)
    monkeypatch.setenv("DETECTOR_ALLOCATOR", "tcmalloc")
    monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("the worker started"))
    result = CliRunner().invoke(main, ["worker", "-Q", "detector"])
    assert result.exit_code != 0
    assert "tcmalloc is not installed" in result.output


def test_the_project_installs_mimalloc():
    """The wheel is a dependency (pyproject.toml): its library is a real file in site-packages."""
    library = find_mimalloc()
    assert library is not None
    assert library.endswith("cmeel.prefix/lib/libmimalloc.so.3")
    assert os.path.isfile(library)


def test_a_process_preloaded_with_the_wheels_mimalloc_runs_on_it():
    library = find_mimalloc()
    assert library is not None
    script = (
        "from detector.runtime.allocator import loaded_allocator\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(loaded_allocator(), 'libmimalloc' in maps, 'libtcmalloc' in maps)\n"
        "import numpy; numpy.ones((64, 1 << 20)).sum()  # big blocks come from it and go back to it\n"
    )
    env = {**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, "LD_PRELOAD": library}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["mimalloc", "True", "False"]
    assert loaded_allocator() in ("tcmalloc", "mimalloc", "system")


def require_tcmalloc() -> None:
    """Skip when tcmalloc is not installed, except under CI=true (.ci/run installs it), where it fails."""
    if find_tcmalloc() is None:
        missing_tool("tcmalloc is not installed (apt-get install libtcmalloc-minimal4)")


_FREED_AND_RELEASED = """
import numpy
from detector.detection.registry import release_freed_memory

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

start = rss_mb()
blocks = [numpy.ones((1 << 18) + i, dtype=numpy.float32) for i in range(300)]  # 300 MB, 1 MB each
del blocks
freed = rss_mb()
print(release_freed_memory(), start, freed, rss_mb())
"""


@pytest.mark.parametrize(
    ("choice", "call"),
    [
        ("mimalloc", "mi_collect"),
        ("tcmalloc", "MallocExtension_ReleaseFreeMemory"),
        ("system", "malloc_trim"),
    ],
)
def test_what_the_allocator_keeps_of_freed_memory_goes_back_after_a_model_is_built(choice, call):
    """tcmalloc and mimalloc keep what a process frees (as when a checkpoint has been
    copied into its model); `release_freed_memory`, which `build_predictor` calls, hands it back."""
    if choice == "tcmalloc":
        require_tcmalloc()
    env = model_env(
        {**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, "DETECTOR_ALLOCATOR": choice}
    )
    run = subprocess.run(
        [sys.executable, "-c", _FREED_AND_RELEASED], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    name, start, freed, released = run.stdout.split()
    assert name == call
    if choice != "system":  # glibc gives blocks this large back as they are freed
        assert int(freed) > int(start) + 200
    assert int(released) < int(start) + 50


@pytest.mark.parametrize(
    ("choice", "expected"), [("auto", "tcmalloc"), ("mimalloc", "mimalloc"), ("system", "system")]
)
def test_predict_restarts_itself_on_the_allocator_chosen(tmp_path, small_video, choice, expected):
    if expected == "tcmalloc":
        require_tcmalloc()
    env = {
        **{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
        "DETECTOR_ALLOCATOR": choice,
        "DETECTOR_MODEL": TEST_MODEL,
        "DETECTOR_WEIGHTS": "random",
        "DETECTOR_DEVICE": "cpu",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "detector.cli",
            "predict",
            str(small_video),
            "--out",
            str(tmp_path / "out.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert f"allocator {expected})" in run.stderr


def test_the_choice_may_come_from_the_dot_env_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("DETECTOR_ALLOCATOR=system\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DETECTOR_ALLOCATOR", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(allocator, "find_tcmalloc", found)
    started = {}
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.update(env=env))
    result = CliRunner().invoke(main, ["worker", "-Q", "detector"])
    assert result.exit_code == 0, result.output
    assert "LD_PRELOAD" not in started["env"]


def test_building_a_predictor_releases_what_building_it_freed(monkeypatch):
    from detector.detection import DetectorSettings, build_predictor, registry

    calls: list[str] = []

    def release() -> str:
        calls.append("released")
        return "malloc_trim"

    monkeypatch.setattr(registry, "release_freed_memory", release)
    build_predictor(DetectorSettings(model=TEST_MODEL, weights="random", device="cpu"))
    assert calls == ["released"]

"""Spreading worker processes over GPUs. No GPU is needed: device counts are stand-ins."""

from __future__ import annotations

import pytest

from detector.detection import resolve_device


@pytest.mark.parametrize(
    "requested, index, count, expected",
    [
        ("auto", 0, 0, "cpu"),
        ("auto", 3, 0, "cpu"),
        ("auto", 0, 4, "cuda:0"),
        ("auto", 1, 4, "cuda:1"),
        ("auto", 5, 4, "cuda:1"),
        ("cuda", 2, 2, "cuda:0"),
        ("cuda:1", 7, 2, "cuda:1"),
        ("cpu", 3, 8, "cpu"),
        ("  CUDA ", 3, 2, "cuda:1"),
    ],
)
def test_resolve_device(requested, index, count, expected):
    assert resolve_device(requested, index, count) == expected


def test_every_gpu_gets_worker_processes():
    """Eight pool processes on a four-GPU node: two per GPU, none left idle."""
    devices = [resolve_device("auto", k, 4) for k in range(8)]
    assert sorted(set(devices)) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert all(devices.count(d) == 2 for d in set(devices))


@pytest.mark.parametrize("requested, count", [("cuda", 0), ("cuda:2", 2)])
def test_impossible_devices_are_clear_errors(requested, count):
    with pytest.raises(RuntimeError, match="CUDA device"):
        resolve_device(requested, 0, count)


def test_nonsense_device_is_rejected():
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        resolve_device("tpu", 0, 0)

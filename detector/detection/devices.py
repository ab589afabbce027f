"""Which device a worker process runs its model on."""

from __future__ import annotations


def cuda_device_count() -> int:
    """Visible CUDA devices; 0 without torch's CUDA. Initialises nothing on the GPU."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(requested: str, process_index: int, device_count: int) -> str:
    """The torch device for a worker process.

    ``auto`` means every visible GPU when there are any, else the CPU. With
    several GPUs the node's worker processes are spread over all of them:
    process k takes GPU ``k mod N``. ``cuda:N`` pins a device, ``cpu`` forces
    the CPU.

    Args:
        requested: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        process_index: the worker process's index in its pool (0, 1, ...).
        device_count: how many CUDA devices are visible.
    """
    requested = requested.strip().lower()
    if requested == "auto":
        requested = "cuda" if device_count else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "cuda":
        if device_count == 0:
            raise RuntimeError("DETECTOR_DEVICE=cuda but no CUDA device is visible")
        return f"cuda:{process_index % device_count}"
    if requested.startswith("cuda:"):
        try:
            number = int(requested.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad device {requested!r}; use auto, cpu, cuda or cuda:N") from None
        if number >= device_count:
            raise RuntimeError(f"DETECTOR_DEVICE={requested} but {device_count} CUDA devices are visible")
        return requested
    raise ValueError(f"bad device {requested!r}; use auto, cpu, cuda or cuda:N")

"""Device resolution: "auto" picks CUDA, then MPS, then CPU."""

from __future__ import annotations

import torch

DEVICE_NAMES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    """Whether Apple's Metal backend can be used in this process."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """Turn a device name from a config into a `torch.device`.

    "auto" prefers CUDA, then MPS, then CPU. Asking for a backend that is not present is an
    error rather than a silent fallback, so a config never trains somewhere unexpected.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was requested but CUDA is not available here")
        return torch.device("cuda")
    if name == "mps":
        if not mps_available():
            raise ValueError("device 'mps' was requested but MPS is not available here")
        return torch.device("mps")
    raise ValueError(f"unknown device {name!r}; known: {', '.join(DEVICE_NAMES)}")


def wide_float(device: torch.device) -> torch.dtype:
    """The dtype for sums and entropy differences: float64, except on MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64

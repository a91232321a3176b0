"""Devices: which one a run uses, and how many points a unit of work holds there."""

from __future__ import annotations

import torch

CHUNK_BY_DEVICE = {"cpu": 50, "cuda": 500}


def default_chunk(device: torch.device) -> int:
    """Points per unit of work on `device`: 50 on the CPU; 500 on a GPU, which a 50-point chunk leaves
    mostly idle (MCN on an H200: 2,207 points/s at 50 per call, 23,058 at 500)."""
    return CHUNK_BY_DEVICE.get(device.type, 50)


def resolve_device(device) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N' as a torch.device that exists here."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}; pass auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index is not None and resolved.index >= count):
            raise ValueError(f"device {device!r}: CUDA {'device' if count else 'is'} not available on this machine "
                             f"({count} GPU(s)); pass device='cpu' or 'auto'")
    elif resolved.type != "cpu":
        raise ValueError(f"unknown device {device!r}; pass auto, cpu, cuda or cuda:N")
    return resolved

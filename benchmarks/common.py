"""Shared pieces: timing, the machine description, the models and points every suite uses."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import torch
from torch import nn


def timed(fn: Callable, repeats: int = 1):
    """(result of the last call, best wall time over `repeats` calls)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def machine() -> dict:
    import foolbox
    import nevergrad

    return {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "foolbox": foolbox.__version__, "nevergrad": nevergrad.__version__,
            "processor": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def setting(name: str, points: int):
    """(model, x, y, bounds) for 'digits' (MLP) or 'mnist' (CNN), adversarially trained zoo models."""
    from robustness_eval.data import load_dataset
    from robustness_eval.zoo import load_model

    data = load_dataset(name)
    model = load_model(data, "adversarial")
    x = data.x_test[:points]
    if name == "digits":  # image layout for peers that need it; the MLP flattens its input
        x = x.view(-1, 1, 8, 8)
    return model, x, data.y_test[:points], data.bounds


class CountingModule(nn.Module):
    """Wraps a scorer and counts the rows it is asked about (for peers that count nothing)."""

    def __init__(self, scorer: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.scorer = scorer
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.scorer(x)

"""Bit-depth reduction as a purifying shell (Xu, Evans & Qi, "Feature Squeezing", NDSS 2018; one of
Guo et al.'s input transformations): every input value rounded to one of 2^bits levels of the bounds.

G = F ∘ H, H deterministic and piecewise constant, so the shell offers `search` and gradient attacks
go straight through it (BPDA). Xu et al. used 1 bit on MNIST and 5 on CIFAR-10. Unlike the
examples' squeeze shell (a user's own, limited to δ), the move is limited only by the rounding:
half a level.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness_eval.types import Bounds
from shells.base import Shell


class BitDepthShell(Shell):
    """Round each value to `bits` bits inside the bounds."""

    kind = "bit-depth"

    def __init__(self, model: nn.Module, bits: int = 1, bounds: Bounds = Bounds()) -> None:
        super().__init__(model, "linf", bounds)
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"`bits` must be an integer from 1 to 16 (got {bits!r})")
        self.bits = bits
        self.radius = bounds.width / (2 * (2**bits - 1))

    def search(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        steps = 2**self.bits - 1
        unit = ((x - self.bounds.lower) / self.bounds.width).clamp(0, 1)
        return self.bounds.lower + torch.round(unit * steps) / steps * self.bounds.width

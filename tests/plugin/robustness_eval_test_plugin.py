"""A third-party attack and shell, registered by entry point (see the .dist-info beside this file).

Paper: none; the attack is PGD (Madry et al. 2018) under another name, the shell a 3-tap blur
limited to δ, as a user would write them. Threat: L∞ or L2. View: F white-box (the attack); the
shell offers `search`. Budget: PGD's steps (default 100). The conftest puts this directory on
sys.path, so `importlib.metadata` finds the package as it finds an installed one, and every
table-driven test that walks the registries tests these too.
"""

from __future__ import annotations

import torch
from torch import nn

from attacks.pgd import PGD
from robustness_eval.types import Bounds
from shells import Shell


class SignStepPGD(PGD):
    """PGD registered by a third party under its own name."""

    name = "plugin-sign-pgd"


class Blur(Shell):
    """G = F ∘ H with H a 3-tap blur along the last axis, each value moved by at most δ."""

    kind = "plugin-blur"

    def __init__(self, model: nn.Module, delta: float, bounds: Bounds = Bounds(), taps: int = 3) -> None:
        super().__init__(model, "linf", bounds)
        self.radius, self.taps = delta, taps

    def search(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        blurred = sum(x.roll(shift, -1) for shift in range(-(self.taps // 2), self.taps // 2 + 1)) / self.taps
        return (x + (blurred - x).clamp(-self.radius, self.radius)).clamp(self.bounds.lower, self.bounds.upper)


def blur(model: nn.Module, delta: float, bounds: Bounds = Bounds()) -> Blur:
    return Blur(model, delta, bounds)

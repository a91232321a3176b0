"""A user's own shell, as `--shell examples/squeeze_shell.py:build` loads it: input purification.

G = F ∘ H with H a feature-squeezing purifier (bit-depth reduction, after Xu, Evans & Qi,
"Feature Squeezing", NDSS 2018) limited to the shell's radius: each input value is rounded to
one of `levels` grey levels, but moved by at most δ (L∞), so δ = 0 gives back F. It is neither
MCN, NCN nor a vote, and the suite knows nothing about it but what it declares: it implements
`search(x)` (so it offers the capabilities `search` and `deterministic`), and the battery gives
it exactly the attacks those allow (look-ahead, BPDA, EOT and every black-box attack), listing
the ones it skips (min-max and unrolled BPDA need a per-class search) in the report.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness_eval.types import Bounds
from shells import Shell


class SqueezeShell(Shell):
    """Round each value to `levels` levels inside the bounds, moving it by at most `delta`."""

    kind = "squeeze"

    def __init__(self, model: nn.Module, delta: float, bounds: Bounds = Bounds(), levels: int = 4) -> None:
        super().__init__(model, "linf", bounds)
        self.radius, self.levels = float(delta), int(levels)

    def search(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        unit = (x - self.bounds.lower) / self.bounds.width
        squeezed = self.bounds.lower + torch.round(unit * (self.levels - 1)) / (self.levels - 1) * self.bounds.width
        return torch.minimum(torch.maximum(squeezed, x - self.radius), x + self.radius)


def build(model: nn.Module, delta: float, bounds: Bounds = Bounds()) -> SqueezeShell:
    """The factory the suite calls as build(model, delta=..., bounds=...); it takes no p, norm or seed."""
    return SqueezeShell(model, delta, bounds)

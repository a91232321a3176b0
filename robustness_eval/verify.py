"""Independent re-verification of every candidate adversarial example on the real target.

A candidate counts only if it lies in the ε-ball (with tolerance `tol` for float rounding),
inside the input bounds (same tolerance), and the target misclassifies it; for a randomized
shell, misclassified in a strict majority of `repeats` independent queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustness_eval.norms import distance
from robustness_eval.types import Threat
from robustness_eval.views import checked

TOLERANCE = 1e-5


@dataclass
class Verification:
    """Per-candidate verdicts; `success` is the conjunction of the three conditions."""

    in_ball: torch.Tensor
    in_bounds: torch.Tensor
    misclassified: torch.Tensor
    norm: torch.Tensor

    @property
    def success(self) -> torch.Tensor:
        return self.in_ball & self.in_bounds & self.misclassified


def predict_labels(target: nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The target's labels for `x`, evaluated in chunks (each a copy, so a target cannot edit `x`), every chunk's
    scores checked finite and of shape (batch, classes)."""
    kind = getattr(target, "kind", type(target).__name__)
    role = "the base model F" if kind == "none" else f"the shell ({kind})"
    with torch.no_grad():
        return torch.cat([checked(target(x[i : i + chunk].clone()), len(x[i : i + chunk]), role).argmax(dim=1)
                          for i in range(0, len(x), chunk)])


def verify(target: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
           threat: Threat, repeats: int = 1, tol: float = TOLERANCE) -> Verification:
    """Check candidates `x_adv` for clean points `x` with labels `y` against `target`.

    `target` maps inputs to scores (a shell's probabilities, or a model's logits).
    """
    if x_adv.shape != x.shape:
        raise ValueError(f"`x_adv` must have the shape of `x` {tuple(x.shape)} (got {tuple(x_adv.shape)})")
    x_adv = x_adv.detach()
    norm = distance(x_adv - x, threat.norm)
    in_ball = norm <= threat.eps + tol
    flat = x_adv.reshape(x_adv.shape[0], -1)
    in_bounds = (flat >= threat.bounds.lower - tol).all(1) & (flat <= threat.bounds.upper + tol).all(1)
    finite = torch.isfinite(flat).all(1)
    wrong = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    if bool(finite.any()):  # a non-finite candidate is never a break and never reaches the target
        for _ in range(repeats):
            wrong[finite] += (predict_labels(target, x_adv[finite]) != y[finite]).long()
    return Verification(in_ball & finite, in_bounds, wrong * 2 > repeats, norm)

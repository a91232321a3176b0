"""A user's own manifold shell, as `--shell examples/pca_shell.py:build` loads it: a linear projection.

G = F ∘ H with H the projection onto the span of the training data's top principal components
(the simplest manifold a model could be said to have learned: the paper's idea of moving a point
back onto the data manifold, in its linear form), limited to the shell's radius: each value moves
toward its projection by at most δ (L∞), so δ = 0 gives back F. The suite knows it only through its
`search(x)`: it offers `search` and `deterministic`, and gets the attacks those allow.

The components are fitted once, deterministically, on scikit-learn's bundled digits training
split (64 inputs); `components` sets how many are kept.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness_eval.data import load_digits
from robustness_eval.types import Bounds
from shells import Shell


def principal_basis(x: torch.Tensor, components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of `x` (n × d) and an orthonormal basis (d × k) of its top `components` principal directions."""
    flat = x.flatten(1).double()
    mean = flat.mean(0)
    _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    return mean.float(), vh[:components].T.float().contiguous()


class PCAShell(Shell):
    """Move each value toward the input's projection on the top principal components, by at most `delta`."""

    kind = "pca-projection"

    def __init__(self, model: nn.Module, delta: float, bounds: Bounds = Bounds(), components: int = 12) -> None:
        super().__init__(model, "linf", bounds)
        self.radius, self.components = float(delta), int(components)
        mean, basis = principal_basis(load_digits().x_train, self.components)
        self.register_buffer("mean", mean)
        self.register_buffer("basis", basis)

    def search(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        flat = x.flatten(1) - self.mean
        projected = (flat @ self.basis @ self.basis.T + self.mean).view_as(x).clamp(self.bounds.lower,
                                                                                   self.bounds.upper)
        return torch.minimum(torch.maximum(projected, x - self.radius), x + self.radius)


def build(model: nn.Module, delta: float, bounds: Bounds = Bounds()) -> PCAShell:
    """The factory the suite calls as build(model, delta=..., bounds=...)."""
    return PCAShell(model, delta, bounds)

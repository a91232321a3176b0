"""The shell protocol: a module whose forward returns class probabilities of G[F](x).

A shell wraps a base classifier F (a module mapping inputs in `bounds` to logits). Factor shells
(G = F ∘ H) expose `search(x)`, the point z* = H(x) they classify; shells with a per-class inner
search (MCN, NCN) also expose `per_class_search(x)`, which shell-aware attacks use.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from robustness_eval.types import Bounds, Norm

SHELL_KINDS = ("mcn", "ncn", "vote", "none")


class Shell(nn.Module):
    """Base class: subclasses implement `search` (deterministic factor shells) or `forward`."""

    kind: ClassVar[str] = "abstract"
    randomized: ClassVar[bool] = False

    def __init__(self, model: nn.Module, norm: Norm | str = Norm.LINF,
                 bounds: Bounds = Bounds()) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError("`model` must be a torch.nn.Module returning logits "
                            f"(got {type(model).__name__})")
        self.base_model = model.eval()
        self.norm = Norm.parse(norm)
        self.bounds = bounds

    radius: float = 0.0
    threshold: float | None = None

    def search(self, x: torch.Tensor) -> torch.Tensor:
        """The point z* that the shell classifies (x itself for the identity shell)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities G(x) = softmax(F(search(x))); no graph back to x."""
        z = self.search(x)
        with torch.no_grad():
            return torch.softmax(self.base_model(z), dim=1)

    def describe(self) -> dict:
        """The shell's public parameters, as they appear in a run's config."""
        return {"kind": self.kind, "norm": self.norm.value, "radius": self.radius,
                "threshold": self.threshold, "randomized": self.randomized}


class IdentityShell(Shell):
    """The base model itself (δ = 0), so every report shows base and shell side by side."""

    kind = "none"

    def search(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().clone()


"""MagNet's reformer as a differentiable shell (Meng & Chen, "MagNet: a Two-Pronged Defense against
Adversarial Examples", CCS 2017): G(x) = F(AE(x)), with AE an autoencoder trained on clean data.

The reformer moves an input toward the data the autoencoder has learned (the seed paper's idea of
embedding a point back onto the manifold, done by a network instead of a search). Only the
reformer is built here, not MagNet's detectors. The whole map is differentiable, so the shell
declares `differentiable`: white-box attacks run on G end to end, which is how Carlini & Wagner
("MagNet and 'Efficient Defenses…' Are Not Robust", 2017) broke it. It also offers `search`
(z* = AE(x)), so the battery can compare BPDA's identity with the true gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness_eval.modules import eval_mode
from robustness_eval.types import Bounds
from shells.base import Shell


class MagNetShell(Shell):
    """Classify the autoencoder's reconstruction (see module docstring).

    Args:
        model: base classifier F returning logits.
        autoencoder: a module mapping inputs to reconstructions of the same shape inside `bounds`
            (the zoo's: `robustness_eval.generative.load_generative(dataset, "autoencoder")`).
        bounds: input box.
    """

    kind = "magnet"
    differentiable = True

    def __init__(self, model: nn.Module, autoencoder: nn.Module, bounds: Bounds = Bounds()) -> None:
        super().__init__(model, "linf", bounds)
        if not isinstance(autoencoder, nn.Module):
            raise TypeError(f"`autoencoder` must be a torch.nn.Module (got {type(autoencoder).__name__})")
        self.autoencoder = eval_mode(autoencoder)
        self.radius = bounds.width  # no limit on the move but the box itself

    def reform(self, x: torch.Tensor) -> torch.Tensor:
        """AE(x) clipped to the bounds, graph kept."""
        return self.autoencoder(x).reshape(x.shape).clamp(self.bounds.lower, self.bounds.upper)

    def search(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.reform(x.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.base_model(self.reform(x)), dim=1)

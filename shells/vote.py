"""A randomized shell: sample around x (or around MCN's z*) and take a weighted majority vote.

Each of `samples` draws u is uniform in the `radius` ball (intersected with the bounds); each
casts a vote for argmax F(u) weighted by its confidence; G(x) is the normalised vote histogram.
Draws come from the shell's own generator, so a seed fixes the whole sequence of answers.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from robustness_eval.norms import project, random_in_ball
from robustness_eval.types import Bounds, Norm, check_nonnegative, check_positive_int
from shells.base import RandomizedShell
from shells.mcn import MCNShell


class VoteShell(RandomizedShell):
    """Weighted majority vote over random neighbours.

    Args:
        model: base classifier F returning logits.
        radius: sampling radius.
        norm: 'linf' or 'l2'.
        bounds: input box.
        samples: draws per query.
        around_mcn: if given, an MCN shell whose z* replaces x as the sampling centre.
        seed: seed of the shell's generator (`reseed` restarts the sequence).
    """

    kind = "vote"
    option_parameters: ClassVar[dict[str, str]] = {"delta": "radius"}

    def __init__(self, model: nn.Module, radius: float, norm: Norm | str = Norm.LINF,
                 bounds: Bounds = Bounds(), samples: int = 32, around_mcn: MCNShell | None = None,
                 seed: int = 0) -> None:
        super().__init__(model, norm, bounds)
        self.radius = check_nonnegative(radius, "radius")
        self.samples = check_positive_int(samples, "samples")
        self.around_mcn = around_mcn
        self.reseed(seed)

    def sample_points(self, x: torch.Tensor) -> torch.Tensor:
        """The draws of one query: shape (B, samples, *input)."""
        x = x.detach()
        center = self.around_mcn.search(x) if self.around_mcn is not None else x
        b, shape = x.shape[0], tuple(x.shape[1:])
        noise = random_in_ball((b * self.samples, *shape), self.radius, self.norm, self.generator)
        rows = center[:, None].expand(b, self.samples, *shape).reshape(b * self.samples, *shape)
        u = project(rows + noise.to(x.device, x.dtype), rows, self.radius, self.norm, self.bounds)
        return u.view(b, self.samples, *shape)

    def search(self, x: torch.Tensor) -> torch.Tensor:
        """One random draw per point (the vote has no single search point)."""
        return self.sample_points(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.sample_points(x)
        b = u.shape[0]
        with torch.no_grad():
            probs = torch.softmax(self.base_model(u.flatten(0, 1)), dim=1)
        weight, vote = probs.max(dim=1)
        histogram = torch.zeros(b * self.samples, probs.shape[1], dtype=probs.dtype, device=probs.device)
        histogram.scatter_(1, vote[:, None], weight[:, None])
        histogram = histogram.view(b, self.samples, -1).sum(dim=1)
        return histogram / histogram.sum(dim=1, keepdim=True)

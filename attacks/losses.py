"""Per-row losses that attacks ascend. All return one value per row; larger is better for the attacker."""

from __future__ import annotations

import torch


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


def margin(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CW margin: best other score minus the true class's (> 0 means misclassified)."""
    own = scores.gather(1, y[:, None]).squeeze(1)
    others = scores.scatter(1, y[:, None], float("-inf"))
    return others.amax(dim=1) - own


def targeted_log_prob(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)


LOSSES = {"ce": cross_entropy, "margin": margin}

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


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Croce & Hein's difference of logits ratio: the margin over the spread of the top logits, so it is
    invariant to the logits' scale (a model whose logits saturate still gives a usable gradient)."""
    ranked = logits.sort(dim=1, descending=True).values
    third = ranked[:, min(2, logits.shape[1] - 1)]
    return margin(logits, y) / (ranked[:, 0] - third + 1e-12)


def targeted_margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted CW margin: the target's logit minus the best other one (> 0 means F predicts the target)."""
    return -margin(logits, target)


def targeted_log_prob(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)


LOSSES = {"ce": cross_entropy, "margin": margin, "dlr": dlr}


def wrong_classes(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """The `k` most likely wrong classes per row (n × k), most likely first."""
    k = min(k, logits.shape[1] - 1)
    return logits.scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices

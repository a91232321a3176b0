"""High-confidence targeted transfer attack on F.

Paper: Carlini & Wagner 2017 (high-confidence adversarial examples transfer better); the
update is PGD's. Threat: L∞ or L2, ε. View: white-box base model F.
Budget: iterations per target (default 40). Targets: the `targets` most likely wrong classes
of F at x, all points × targets in one batch; each ascends log F(x')_t until F(x')_t ≥
`confidence` (default 0.9). The candidate kept is the most confident one.
Queries: forward passes of F per point.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from attacks.losses import targeted_log_prob
from robustness_eval.ascent import projected_ascent
from robustness_eval.types import AttackKind, Threat, check_positive_int


class TargetedConfident(Attack):
    """Targeted PGD on F to confidence ≥ `confidence` (see module docstring)."""

    name = "pgd-targeted"
    kind = AttackKind.TRANSFER
    view = "base"
    description = "high-confidence targeted PGD on the base model, transferred"

    def __init__(self, budget: int = 40, targets: int = 3, confidence: float = 0.9) -> None:
        super().__init__(budget)
        self.targets = check_positive_int(targets, "targets")
        self.confidence = confidence

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        with torch.no_grad():
            logits = view.logits(x)
        k = min(self.targets, logits.shape[1] - 1)
        ranked = logits.scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices
        center = x[:, None].expand(n, k, *shape).reshape(n * k, *shape)
        target = ranked.reshape(-1)

        def objective(z: torch.Tensor):
            logp = targeted_log_prob(view.logits(z), target)
            return logp, logp.detach().exp() >= self.confidence

        best, _, best_loss, trace = projected_ascent(objective, (center, threat.eps), threat.norm,
                                                     threat.bounds, budget, 2.5 * threat.eps / budget,
                                                     center)
        pick = best_loss.view(n, k).argmax(dim=1)
        x_adv = best.view(n, k, *shape)[torch.arange(n, device=x.device), pick]
        return AttackOutput(x_adv, torch.full((n,), (budget + 1) * k, device="cpu"), {"loss": trace})

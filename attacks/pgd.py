"""Projected gradient descent on the base model F, transferred to the shell.

Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018;
the margin loss is Carlini & Wagner's (S&P 2017).
Threat: L∞ or L2 ball of radius ε inside the input bounds.
View: white-box base model F (a *transfer* attack on the shell: the paper's protocol).
Budget: iterations per restart (default 40); `restarts` random starts (default 2).
Queries: forward passes of F per point (iterations × restarts).
Defaults: step 2.5·ε/iterations, uniform random start in the ball, the first successful iterate
of any restart is kept (otherwise the last iterate of the restart with the highest loss).
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from attacks.losses import LOSSES
from robustness_eval.ascent import projected_ascent
from robustness_eval.norms import random_in_ball
from robustness_eval.types import AttackKind, Threat, check_positive_int


class PGD(Attack):
    """Untargeted PGD on F with cross-entropy loss (see module docstring)."""

    name = "pgd"
    kind = AttackKind.TRANSFER
    view = "base"
    loss = "ce"
    description = "PGD on the base model (cross-entropy), transferred"

    def __init__(self, budget: int = 40, restarts: int = 2, rel_step: float = 2.5) -> None:
        super().__init__(budget)
        self.restarts = check_positive_int(restarts, "restarts")
        self.rel_step = rel_step

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, r = x.shape[0], self.restarts
        center = x.repeat(r, *([1] * (x.dim() - 1)))
        labels = y.repeat(r)
        start = center + random_in_ball(tuple(center.shape), threat.eps, threat.norm, generator).to(x)
        loss = LOSSES[self.loss]

        def objective(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = view.logits(z)
            return loss(logits, labels), logits.argmax(1) != labels

        best, success, best_loss, trace = projected_ascent(
            objective, center, threat.eps, threat.norm, threat.bounds, budget,
            self.rel_step * threat.eps / budget, start)
        # per point: a successful restart if any, else the restart with the highest loss
        score = torch.where(success, torch.full_like(best_loss, float("inf")), best_loss).view(r, n)
        pick = score.argmax(dim=0)
        x_adv = best.view(r, n, *x.shape[1:])[pick, torch.arange(n, device=x.device)]
        return AttackOutput(x_adv, torch.full((n,), (budget + 1) * r, dtype=torch.long, device="cpu"),
                            {"loss": trace})


class CWMargin(PGD):
    """PGD on F with the Carlini–Wagner margin loss (see module docstring)."""

    name = "cw"
    loss = "margin"
    description = "PGD on the base model with the CW margin loss, transferred"

"""Projected gradient descent on the base model F, transferred to the shell.

Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018;
the margin loss is Carlini & Wagner's (S&P 2017), the DLR loss Croce & Hein's (ICML 2020), the
targeted form over the most likely wrong classes Gowal et al.'s MultiTargeted (2019), and the
output-diversified restarts Tashiro et al.'s ODS (NeurIPS 2020).
Threat: L∞ or L2 ball of radius ε inside the input bounds.
View: white-box base model F (a *transfer* attack on the shell: the paper's protocol).
Budget: iterations per restart and target (default 100); `restarts` starts (default 5): uniform in
the ball, then ODS and uniform in turn (`mixed=False`: all uniform, Madry et al.'s rule).
`targets` = k > 0: each restart also runs once per most likely wrong class t of F at x, on the
targeted margin toward t. Queries: forward passes of F per point (iterations + 1) × restarts × max(1, k).
Defaults: step 2.5·ε/iterations. By default (`deep=True`) each row climbs its whole budget and keeps
its highest-loss misclassified iterate: the candidate goes to a shell that searches around it, and
a point F barely misclassifies is the one a search reverts. The candidate handed over per point is
the misclassified row with the largest margin on F, else the row with the largest margin.
"""

from __future__ import annotations

import torch

from attacks.base import AttackOutput, TargetableAttack
from attacks.losses import LOSSES, margin, targeted_margin, wrong_classes
from attacks.starts import schedule, start
from robustness_eval.ascent import projected_ascent
from robustness_eval.types import AttackKind, Threat


class PGD(TargetableAttack):
    """Untargeted PGD on F with cross-entropy loss (see module docstring)."""

    name = "pgd"
    kind = AttackKind.TRANSFER
    view = "base"
    loss = "ce"
    description = "PGD on the base model (cross-entropy), transferred"

    def __init__(self, budget: int = 100, restarts: int = 5, rel_step: float = 2.5, targets: int = 0,
                 mixed: bool = True, deep: bool = True, first_restart: int = 0) -> None:
        super().__init__(budget, restarts, targets, first_restart)
        self.rel_step, self.mixed, self.deep = rel_step, bool(mixed), bool(deep)

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        kinds = (schedule(self.restarts, "uniform", self.first_restart) if self.mixed
                 else ["uniform"] * self.restarts)
        with torch.no_grad():
            clean_logits = view.logits(x)
        goals = wrong_classes(clean_logits, y, self.targets) if self.targets else None
        per = 1 if goals is None else goals.shape[1]
        centers = x.repeat(per, *([1] * len(shape)))  # rows: target-major within a restart
        labels = y.repeat(per)
        target = None if goals is None else goals.T.reshape(-1)
        starts = torch.cat([start(kind, centers, threat.eps, threat, generator, view.logits) for kind in kinds])
        center, labels = centers.repeat(len(kinds), *([1] * len(shape))), labels.repeat(len(kinds))
        target = None if target is None else target.repeat(len(kinds))
        loss = LOSSES[self.loss]

        def objective(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = view.logits(z)
            value = loss(logits, labels) if target is None else targeted_margin(logits, target)
            return value, logits.argmax(1) != labels

        best, _, _, trace = projected_ascent(
            objective, (center, threat.eps), threat.norm, threat.bounds, budget,
            self.rel_step * threat.eps / budget, starts, stop_at_success=not self.deep)
        with torch.no_grad():  # one comparable score per row: F's untargeted margin at its candidate
            score = margin(view.logits(best), labels)
        rows = len(kinds) * per
        pick = score.view(rows, n).argmax(dim=0)
        x_adv = best.view(rows, n, *shape)[pick, torch.arange(n, device=x.device)]
        queries = torch.full((n,), (budget + 1) * rows, dtype=torch.long, device="cpu")
        return AttackOutput(x_adv, queries, {"loss": trace})


class CWMargin(PGD):
    """PGD on F with the Carlini–Wagner margin loss (see module docstring)."""

    name = "cw"
    loss = "margin"
    description = "PGD on the base model with the CW margin loss, transferred"


class DLR(PGD):
    """PGD on F with Croce & Hein's scale-invariant DLR loss (see module docstring)."""

    name = "pgd-dlr"
    loss = "dlr"
    description = "PGD on the base model with the DLR loss, transferred"


class MultiTargetedCW(PGD):
    """MultiTargeted CW on F: the targeted margin toward every wrong class in turn (see module docstring)."""

    name = "cw-t"
    loss = "margin"
    description = "targeted CW margin PGD on the base model toward each wrong class (MultiTargeted), transferred"

    def __init__(self, budget: int = 100, restarts: int = 1, rel_step: float = 2.5, targets: int = 9,
                 mixed: bool = True, deep: bool = True, first_restart: int = 0) -> None:
        super().__init__(budget, restarts, rel_step, targets, mixed, deep, first_restart)

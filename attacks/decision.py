"""Decision-based attacks on the shell's labels: Foolbox's HopSkipJump and Boundary attacks.

Papers: Chen, Jordan & Wainwright, "HopSkipJumpAttack", S&P 2020; Brendel, Rauber & Bethge,
"Decision-Based Adversarial Attacks", ICLR 2018 (implementations: Foolbox 3).
Threat: minimum-norm attacks (HopSkipJump in the threat's norm, Boundary in L2); the nearest
misclassified point any query found is projected to ε and re-verified. View: the shell's labels
through the query-counting oracle. Budget: oracle queries per point (default 1,000); Foolbox
queries all points in lock step, so the budget is reached by every point at once and the run
stops there, keeping the nearest misclassified query of each point. The trace reports the
median distance reached.
"""

from __future__ import annotations

import contextlib

import foolbox as fb
import torch
from torch import nn

from attacks.base import Attack, AttackOutput, global_rng_from
from robustness_eval.norms import distance
from robustness_eval.types import AttackKind, Norm, Threat
from robustness_eval.views import BudgetExceededError


class _OracleModule(nn.Module):
    """Presents the oracle's decisions to Foolbox as one-hot scores, and remembers, per point,
    the nearest query the shell misclassified."""

    def __init__(self, oracle, x: torch.Tensor, y: torch.Tensor, norm: Norm) -> None:
        super().__init__()
        self.oracle, self.x, self.y, self.norm = oracle, x, y, norm
        self.nearest = x.clone()
        self.nearest_distance = torch.full((x.shape[0],), float("inf"), device=x.device)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if rows.shape[0] != self.x.shape[0]:
            raise RuntimeError("decision attacks must query one row per point")
        probs = self.oracle(rows, torch.arange(rows.shape[0], device="cpu"))
        labels = probs.argmax(dim=1)
        wrong = labels != self.y
        gap = distance(rows.detach() - self.x, self.norm)
        closer = wrong & (gap < self.nearest_distance)
        self.nearest[closer] = rows.detach()[closer]
        self.nearest_distance[closer] = gap[closer]
        return nn.functional.one_hot(labels, probs.shape[1]).float()


class HopSkipJump(Attack):
    """Foolbox HopSkipJump on the shell's labels (see module docstring)."""

    name = "hsj"
    kind = AttackKind.DECISION_BASED
    view = "oracle"
    description = "Foolbox HopSkipJump on the shell's labels, nearest find projected to ε"

    def __init__(self, budget: int = 1000) -> None:
        super().__init__(budget)

    def _foolbox_attack(self, threat: Threat, budget: int):
        init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(directions=50, steps=20)
        return fb.attacks.HopSkipJumpAttack(
            init_attack=init, steps=max(1, budget // 60), initial_gradient_eval_steps=25,
            max_gradient_eval_steps=50, constraint="linf" if threat.norm is Norm.LINF else "l2")

    def _run(self, oracle, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        module = _OracleModule(oracle, x, y, threat.norm)
        model = fb.PyTorchModel(module.eval(), bounds=(threat.bounds.lower, threat.bounds.upper), device=x.device)
        with global_rng_from(generator), contextlib.suppress(BudgetExceededError):
            # a spent budget ends the run; the nearest misclassified query of each point is kept
            self._foolbox_attack(threat, budget)(model, x, fb.criteria.Misclassification(y), epsilons=None)
        reached = module.nearest_distance
        median = float(reached[torch.isfinite(reached)].median()) if torch.isfinite(reached).any() else None
        return AttackOutput(module.nearest, oracle.queries.clone(),
                            {"distance_median": median})


class Boundary(HopSkipJump):
    """Foolbox Boundary attack (L2 random walk along the decision boundary) on the shell's labels."""

    name = "boundary"
    description = "Foolbox Boundary attack on the shell's labels, nearest find projected to ε"

    def _foolbox_attack(self, threat: Threat, budget: int):
        init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(directions=50, steps=20)
        return fb.attacks.BoundaryAttack(init_attack=init, steps=budget)

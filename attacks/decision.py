"""Decision-based attacks on the shell's labels: Foolbox's HopSkipJump and Boundary attacks.

Papers: Chen, Jordan & Wainwright, "HopSkipJumpAttack", S&P 2020; Brendel, Rauber & Bethge,
"Decision-Based Adversarial Attacks", ICLR 2018 (implementations: Foolbox 3).
Threat: minimum-norm attacks (HopSkipJump in the threat's norm, Boundary in L2); the nearest
misclassified point any query found is projected to ε and re-verified. View: the shell's labels
through the query-counting oracle. Budget: oracle queries per point (default 1,000); Foolbox
queries all points in lock step, so the budget is reached by every point at once and the run
stops there, keeping the nearest misclassified query of each point. Both start from Foolbox's
blended-noise search; a point it finds no misclassified start for (a robust target) keeps x and
counts as not broken, and the walk runs on the others. The trace reports the median distance
reached and the number of points without a start.
"""

from __future__ import annotations

import contextlib
import warnings

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

    def __init__(self, oracle, x: torch.Tensor, y: torch.Tensor, norm: Norm,
                 points: torch.Tensor | None = None) -> None:
        super().__init__()
        self.oracle, self.x, self.y, self.norm = oracle, x, y, norm
        self.points = torch.arange(x.shape[0]) if points is None else points.cpu()  # the oracle's point indices
        self.nearest = x.clone()
        self.nearest_distance = torch.full((x.shape[0],), float("inf"), device=x.device)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if rows.shape[0] != self.x.shape[0]:
            raise RuntimeError("decision attacks must query one row per point")
        probs = self.oracle(rows, self.points)
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
        return fb.attacks.HopSkipJumpAttack(
            steps=max(1, budget // 60), initial_gradient_eval_steps=25, max_gradient_eval_steps=50,
            constraint="linf" if threat.norm is Norm.LINF else "l2")

    def _run(self, oracle, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        bounds = (threat.bounds.lower, threat.bounds.upper)
        module = _OracleModule(oracle, x, y, threat.norm)
        model = fb.PyTorchModel(module.eval(), bounds=bounds, device=x.device)
        init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(directions=50, steps=20)
        with global_rng_from(generator), contextlib.suppress(BudgetExceededError), warnings.catch_warnings():
            # a spent budget ends the run; the nearest misclassified query of each point is kept. Points the
            # noise search finds no start for are counted below, not warned about
            warnings.simplefilter("ignore", UserWarning)
            init.run(model, x, fb.criteria.Misclassification(y))
            started = torch.isfinite(module.nearest_distance).nonzero().squeeze(1)
            if len(started):
                walk = _OracleModule(oracle, x[started], y[started], threat.norm, started)
                walk.nearest_distance = module.nearest_distance[started].clone()
                walk.nearest = module.nearest[started].clone()
                walked = fb.PyTorchModel(walk.eval(), bounds=bounds, device=x.device)
                try:
                    self._foolbox_attack(threat, budget)(walked, x[started], fb.criteria.Misclassification(y[started]),
                                                         epsilons=None, starting_points=walk.nearest.clone())
                except ValueError as error:  # a randomized target can answer a start's second query correctly
                    if "starting_points are not adversarial" not in str(error):
                        raise
                finally:  # what the walk found before the budget ran out counts too
                    module.nearest[started] = walk.nearest
                    module.nearest_distance[started] = walk.nearest_distance
        reached = module.nearest_distance
        median = float(reached[torch.isfinite(reached)].median()) if torch.isfinite(reached).any() else None
        return AttackOutput(module.nearest, oracle.queries.clone(),
                            {"distance_median": median, "no_start": int((~torch.isfinite(reached)).sum())})


class Boundary(HopSkipJump):
    """Foolbox Boundary attack (L2 random walk along the decision boundary) on the shell's labels."""

    name = "boundary"
    description = "Foolbox Boundary attack on the shell's labels, nearest find projected to ε"

    def _foolbox_attack(self, threat: Threat, budget: int):
        return fb.attacks.BoundaryAttack(steps=budget)

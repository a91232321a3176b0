"""Random-noise baseline: how many points fall to noise alone.

Paper: Carlini et al., "On Evaluating Adversarial Robustness", 2019, ask for it as a check: an
attack that does worse than noise is broken.

Threat: L∞ (uniform sign noise at the corners of the ε-box) or L2 (uniform on the ε-sphere).
View: the shell through the query-counting oracle. Budget: draws per point (default 100), sent
in batches of `batch` draws; a point stops at its first misclassified draw. On a randomized shell each noise
draw is judged by the mean of the oracle's averaged calls (each counted), so fewer noise draws fit the budget.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from attacks.blackbox import oracle_margin
from robustness_eval.norms import project, random_in_ball
from robustness_eval.types import AttackKind, Norm, Threat


class RandomNoise(Attack):
    """Sign (L∞) or sphere (L2) noise at radius ε, as many draws as the budget allows."""

    name = "noise"
    kind = AttackKind.BASELINE
    view = "oracle"
    description = "random sign / sphere noise at ε (baseline)"

    def __init__(self, budget: int = 100, batch: int = 20) -> None:
        super().__init__(budget)
        self.batch = batch

    def _run(self, oracle, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        best = x.clone()
        found = torch.zeros(n, dtype=torch.bool, device="cpu")
        while True:  # every point still unbroken has the same rows left (one budget, lock step)
            todo = (~found).nonzero().squeeze(1)
            k = min(self.batch, int(oracle.remaining()[todo].min())) if len(todo) else 0
            if k < 1:
                break
            rows = x[todo].repeat_interleave(k, dim=0)
            if threat.norm is Norm.LINF:
                signs = torch.randint(0, 2, rows.shape, generator=generator, device="cpu").to(x) * 2 - 1
                noise = threat.eps * signs
            else:
                noise = random_in_ball(tuple(rows.shape), threat.eps, threat.norm, generator).to(x)
                noise = noise * threat.eps / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(
                    -1, *([1] * len(shape)))
            candidates = project(rows + noise, rows, threat.eps, threat.norm, threat.bounds)
            wrong = (oracle_margin(oracle, candidates, y[todo].repeat_interleave(k),
                                   todo.repeat_interleave(k)) > 0).view(-1, k)
            hit = wrong.any(dim=1)
            first = wrong.float().argmax(dim=1)
            chosen = candidates.view(-1, k, *shape)[torch.arange(len(todo), device=x.device), first]
            best[todo[hit]] = chosen[hit]
            found[todo[hit]] = True
        return AttackOutput(best, oracle.queries.clone())

"""SPSA on the shell's probabilities through the query-counting oracle.

Paper: Uesato et al., "Adversarial Risk and the Dangers of Evaluating Against Weak Attacks",
ICML 2018. Threat: L∞ or L2, ε. View: the shell as a black box (oracle).
Budget: oracle queries per point (default 1,300). Each iteration costs `samples` rows
(antithetic pairs x ± σv, v Rademacher) plus one row to check the current iterate, for all
points in one oracle call. Defaults (the reference's): perturbation σ = 0.01, Adam learning
rate 0.01 at ε = 8/255, i.e. ε/3, scaled with ε here), 128 samples per step; the margin loss
on log-probabilities. On a randomized shell each row's answer is the mean of `draws` calls (EOT, default 4),
each counted against the budget.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from attacks.blackbox import oracle_margin
from robustness_eval.norms import project
from robustness_eval.types import AttackKind, Threat, check_positive_int


class SPSA(Attack):
    """Gradient-free PGD with SPSA gradient estimates and an Adam update."""

    name = "spsa"
    kind = AttackKind.SCORE_BASED
    view = "oracle"
    description = "SPSA gradient estimates + Adam on the shell's margin (black box)"

    def __init__(self, budget: int = 1300, samples: int = 128, sigma: float = 0.01,
                 lr: float | None = None, draws: int | None = None) -> None:
        super().__init__(budget)
        self.draws = None if draws is None else check_positive_int(draws, "draws")
        self.samples = check_positive_int(samples, "samples") // 2 * 2 or 2
        self.sigma = sigma
        self.lr = lr

    def _run(self, oracle, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        points = torch.arange(n, device="cpu")
        z = x.clone()
        best = x.clone()
        done = torch.zeros(n, dtype=torch.bool, device="cpu")
        m = torch.zeros_like(x)
        v2 = torch.zeros_like(x)
        beta1, beta2 = 0.9, 0.999
        step = 0
        trace = []
        half = self.samples // 2
        while True:
            todo = (~done & (oracle.remaining() >= self.samples + 1)).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            loss = oracle_margin(oracle, z[todo], y[todo], points[todo])
            trace.append(float(loss.mean()))
            hit = loss > 0
            best[todo[hit]] = z[todo[hit]]
            done[todo[hit]] = True
            todo = todo[~hit]
            if len(todo) == 0 or bool((oracle.remaining()[todo] < self.samples).any()):
                break
            signs = torch.randint(0, 2, (len(todo), half, *shape), generator=generator, device="cpu").to(x) * 2 - 1
            base = z[todo][:, None]
            rows = torch.cat([base + self.sigma * signs, base - self.sigma * signs], dim=1)
            labels = y[todo].repeat_interleave(self.samples)
            values = oracle_margin(oracle, rows.flatten(0, 1), labels,
                                   todo.repeat_interleave(self.samples)).view(len(todo), 2, half)
            diff = (values[:, 0] - values[:, 1]) / (2 * self.sigma)
            grad = (diff.view(len(todo), half, *([1] * len(shape))) * signs).mean(dim=1)
            step += 1
            m[todo] = beta1 * m[todo] + (1 - beta1) * grad
            v2[todo] = beta2 * v2[todo] + (1 - beta2) * grad**2
            update = (m[todo] / (1 - beta1**step)) / ((v2[todo] / (1 - beta2**step)).sqrt() + 1e-8)
            lr = self.lr if self.lr is not None else threat.eps / 3
            z[todo] = project(z[todo] + lr * update, x[todo], threat.eps, threat.norm,
                              threat.bounds)
        best[~done] = z[~done]
        return AttackOutput(best, oracle.queries.clone(), {"loss": trace})



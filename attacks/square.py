"""Square attack through the query-counting oracle.

Paper: Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020. Threat: L∞ or L2, ε. View: the shell as a black box (oracle).
Budget: oracle queries per point (default 1,000): one for the start, one per iteration.
L∞: the paper's vertical-stripe start and ±ε square updates, the fraction of changed pixels
starting at p = 0.05 and halved on the paper's schedule (rescaled to the budget). L2: a random
start on the ε-sphere and square-window Gaussian updates renormalised onto the sphere (a
simplification of the paper's mass-moving update, same random-search acceptance rule).
Margin loss on log-probabilities; an update is kept only if it raises the margin.
Inputs that are not images are viewed as squares (digits: 8×8) or as one row.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from attacks.blackbox import oracle_margin, spatial_shape
from robustness_eval.norms import project
from robustness_eval.types import AttackKind, Norm, Threat

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def fraction(iteration: int, budget: int, p_init: float) -> float:
    """The paper's piecewise-constant schedule, rescaled from 10,000 iterations to `budget`."""
    scaled = int(iteration / budget * 10000)
    return p_init / 2 ** sum(scaled > mark for mark in _SCHEDULE)


class Square(Attack):
    """Random search over square-shaped updates (see module docstring)."""

    name = "square"
    kind = AttackKind.SCORE_BASED
    view = "oracle"
    description = "Square attack, random search with square updates (black box)"

    def __init__(self, budget: int = 1000, p_init: float = 0.05) -> None:
        super().__init__(budget)
        self.p_init = p_init

    def _run(self, oracle, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        c, h, w = spatial_shape(shape)
        img = x.reshape(n, c, h, w)
        eps = threat.eps
        if threat.norm is Norm.LINF:
            delta = eps * (torch.randint(0, 2, (n, c, 1, w), generator=generator, device="cpu").to(x) * 2 - 1)
            delta = delta.expand(n, c, h, w).clone()
        else:
            delta = torch.randn(n, c, h, w, generator=generator, device="cpu").to(x)
            delta = delta * eps / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        points = torch.arange(n, device="cpu")

        def candidate(d: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            flat = (img[rows] + d).reshape(len(rows), *shape)
            return project(flat, x[rows], eps, threat.norm, threat.bounds)

        current = candidate(delta, points)
        loss = oracle_margin(oracle, current, y, points)
        trace = [float(loss.mean())]
        hh = torch.arange(h, device=x.device).view(1, 1, h, 1)
        ww = torch.arange(w, device=x.device).view(1, 1, 1, w)
        for it in range(1, budget):
            todo = ((loss <= 0) & (oracle.remaining() >= 1)).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            p = fraction(it, budget, self.p_init)
            side = max(1, min(h, w, round((p * h * w) ** 0.5)))
            top = torch.randint(0, h - side + 1, (len(todo),), generator=generator, device="cpu").to(x.device)
            left = torch.randint(0, w - side + 1, (len(todo),), generator=generator, device="cpu").to(x.device)
            top, left = top.view(-1, 1, 1, 1), left.view(-1, 1, 1, 1)
            window = (hh >= top) & (hh < top + side) & (ww >= left) & (ww < left + side)
            old = delta[todo]
            if threat.norm is Norm.LINF:
                signs = torch.randint(0, 2, (len(todo), c, 1, 1), generator=generator, device="cpu")
                value = eps * (signs.to(x) * 2 - 1)
                new = torch.where(window, value.expand_as(old), old)
            else:
                bump = torch.randn(len(todo), c, 1, 1, generator=generator, device="cpu").to(x).sign()
                new = old + window * bump * eps / side
                new = new * eps / new.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            proposal = candidate(new, todo)
            new_loss = oracle_margin(oracle, proposal, y[todo], todo)
            better = new_loss > loss[todo]
            keep = todo[better]
            delta[keep] = new[better]
            current[keep] = proposal[better]
            loss[keep] = new_loss[better]
            trace.append(float(loss.mean()))
        return AttackOutput(current, oracle.queries.clone(), {"loss": trace})

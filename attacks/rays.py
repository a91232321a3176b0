"""RayS: a hard-label L∞ attack by ray search over sign directions.

Paper: Chen & Gu, "RayS: A Ray Searching Method for Hard-label Adversarial Attack", KDD 2020 (Croce et al.'s
strongest attack on Anti-Adversary, ICML 2022). Threat: L∞, ε (on an L2 threat it proposes nothing and says so).
View: the shell's labels through the query-counting oracle (on a randomized shell each label is the argmax of
`draws` averaged answers, each counted). Budget: oracle queries per point (default 1,000).

The attack looks for the sign direction d ∈ {−1, 1}^D whose ray x + r·d (clipped to the bounds) leaves the
correct class at the smallest radius r(d). It keeps the best direction and its radius r*; hierarchically, at stage
s it cuts the coordinates into 2^s blocks and flips each block of d in turn. A flipped direction costs one query
at r* ("is it already wrong there?"); only if it is, a bisection on [0, r*] along it (to a tolerance of 1e-3·ε)
gives its radius, which replaces r* (the paper's decision-boundary check). A point is done once r* ≤ ε; its
candidate is x + r*·d (the smallest radius found), otherwise x + ε·d. All points move in lock step, one oracle
call per step for every point still searching. The first direction is all ones.
"""

from __future__ import annotations

import math

import torch

from attacks.base import Attack, AttackOutput
from robustness_eval.types import AttackKind, Norm, Threat, check_positive_int

TOLERANCE = 1e-3  # the bisection's width, relative to ε


class RayS(Attack):
    """Hard-label ray search over sign directions (see module docstring)."""

    name = "rays"
    kind = AttackKind.DECISION_BASED
    view = "oracle"
    description = "RayS: hard-label L∞ ray search over hierarchical sign flips (black box)"

    def __init__(self, budget: int = 1000, draws: int | None = None) -> None:
        super().__init__(budget)
        self.draws = None if draws is None else check_positive_int(draws, "draws")

    def _run(self, oracle, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        if threat.norm is not Norm.LINF:
            return AttackOutput(x.clone(), oracle.queries.clone(), {"skipped": "RayS searches L∞ rays only"})
        flat = x.reshape(n, -1)
        size = flat.shape[1]
        lower, upper = threat.bounds.lower, threat.bounds.upper
        far = threat.bounds.width  # past this radius every ray sits at a corner of the box
        points = torch.arange(n, device="cpu")

        def wrong(which: torch.Tensor, direction: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
            rows = (flat[which] + radius[:, None] * direction).clamp(lower, upper).reshape(len(which), *shape)
            return (oracle.labels(rows, points[which.cpu()]) != y[which]).cpu()

        best_direction = torch.ones_like(flat)
        best_radius = torch.full((n,), float("inf"), device="cpu")  # per-point bookkeeping lives on the CPU
        stage, block = 0, 0
        while True:
            blocks = 2**stage
            width = math.ceil(size / blocks)
            if width * block >= size:  # this stage's blocks are done: the next stage halves them
                stage, block = (stage + 1, 0) if width > 1 else (0, 0)
                continue
            done = best_radius <= threat.eps
            searching = (~done & (oracle.remaining() >= 1)).nonzero().squeeze(1)
            if len(searching) == 0:
                break
            candidate = best_direction[searching.to(x.device)].clone()
            if stage or block or torch.isfinite(best_radius[searching]).all():
                candidate[:, block * width : (block + 1) * width] *= -1
            block += 1
            reach = best_radius[searching].clamp_max(far)
            hit = wrong(searching.to(x.device), candidate, reach.to(x))
            better = searching[hit]
            if len(better):
                radius = self._bisect(wrong, better, candidate[hit], reach[hit], threat.eps, oracle)
                improved = radius < best_radius[better]
                keep = better[improved]
                best_radius[keep] = radius[improved]
                best_direction[keep.to(x.device)] = candidate[hit][improved]
        found = torch.isfinite(best_radius)
        radius = torch.where(best_radius <= threat.eps, best_radius, torch.full_like(best_radius, threat.eps))
        x_adv = (flat + radius.to(x)[:, None] * best_direction).clamp(lower, upper).reshape(x.shape)
        median = float(best_radius[found].median()) if bool(found.any()) else None
        return AttackOutput(x_adv, oracle.queries.clone(), {"distance_median": median, "radius": best_radius.tolist(),
                                                            "no_boundary": int((~found).sum())})

    @staticmethod
    def _bisect(wrong, which: torch.Tensor, direction: torch.Tensor, high: torch.Tensor, eps: float,
                oracle) -> torch.Tensor:
        """Per row, the smallest radius in (0, high] along `direction` that is still wrong, to 1e-3·ε (or as far
        as the row's budget goes); `high` is wrong already."""
        low = torch.zeros_like(high)
        high = high.clone()
        while True:
            open_rows = ((high - low > TOLERANCE * eps) & (oracle.remaining()[which] >= 1)).nonzero().squeeze(1)
            if len(open_rows) == 0:
                return high
            middle = (low[open_rows] + high[open_rows]) / 2
            hit = wrong(which[open_rows].to(direction.device), direction[open_rows.to(direction.device)],
                        middle.to(direction))
            high[open_rows[hit]] = middle[hit]
            low[open_rows[~hit]] = middle[~hit]

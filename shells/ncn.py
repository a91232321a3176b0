"""NCN_p, the nearest confident neighbour shell (Wu et al., Algorithm 2).

z* = argmin ‖z − x‖ subject to max_i F(z)_i ≥ p, inside the input bounds and a radius limit.
Two solvers, Lagrange duals of each other (eq. 5 of the paper):

- ``penalty``: per class t, minimise ‖z − x‖ + α/2·([p − F(z)_t]⁺)² by projected Adam for
  `rounds` rounds with α multiplied by `growth` each round, then a short line search along the
  ray from x through the result restores exact feasibility; the nearest feasible z_t wins.
- ``bisection``: bisection on the radius r over MCN_r: the smallest r whose most confident
  neighbour reaches p, and that neighbour.

x itself is returned when max F(x) ≥ p. A point with no feasible z inside `max_radius` is
reported in `last_infeasible`, and the shell then classifies its most confident point found.

With bisection, NCN_p is MCN at each point's own radius r(x) (0 when x is already p-confident,
the bisected radius otherwise, the limit when p is out of reach), so it exposes a per-class
search: MCN's per-class candidates at r(x), whose most confident one is z*. Shell-aware
attacks that need a per-class search (min-max) then apply to it as to MCN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from robustness_eval.norms import distance, project
from robustness_eval.types import (
    Bounds,
    Norm,
    check_nonnegative,
    check_positive_int,
    check_probability,
)
from shells.base import Shell
from shells.mcn import MCNShell

METHODS = ("penalty", "bisection")


@dataclass
class NearestSettings:
    """How NCN searches (see `NCNShell` for each field), validated where it is built; `steps`, `restarts`, `seed`
    and `search_dtype` also set the inner MCN search that bisection runs."""

    max_radius: float = 0.5
    method: str = "bisection"
    steps: int = 20
    rounds: int = 8
    alpha: float = 10.0
    growth: float = 10.0
    lr: float = 0.01
    restarts: int = 1
    seed: int = 0
    search_dtype: str = "float32"

    def __post_init__(self) -> None:
        self.max_radius = check_nonnegative(self.max_radius, "max_radius")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        self.steps = check_positive_int(self.steps, "steps")
        self.rounds = check_positive_int(self.rounds, "rounds")
        self.alpha = check_nonnegative(self.alpha, "alpha")
        self.growth = check_nonnegative(self.growth, "growth")
        self.lr = check_nonnegative(self.lr, "lr")


class NCNShell(Shell):
    """Nearest point with confidence at least `p` (L∞ or L2).

    Args:
        model: base classifier F returning logits.
        p: confidence threshold in (0, 1).
        norm: 'linf' or 'l2'.
        bounds: input box.

    Settings (keywords, `NearestSettings`):
        max_radius: the search never leaves this ball around x.
        method: 'penalty' (the paper's quadratic penalty) or 'bisection' (on δ over MCN).
        steps: inner steps (per penalty round, or per MCN search in bisection).
        rounds: penalty rounds (α grows by `growth` each) or bisection halvings.
        alpha: initial penalty weight.
        lr: Adam learning rate of the penalty method.
        restarts, seed, search_dtype: the inner MCN search's (see `MCNShell`).
    """

    kind = "ncn"
    option_parameters: ClassVar[dict[str, str]] = {"delta": "max_radius"}

    settings_type = NearestSettings

    def __init__(self, model: nn.Module, p: float = 0.9, norm: Norm | str = Norm.LINF,
                 bounds: Bounds = Bounds(), **settings) -> None:
        super().__init__(model, norm, bounds)
        self.threshold = check_probability(p, "p")
        chosen = self.use_settings(settings)
        self.radius = chosen.max_radius
        self.mcn = MCNShell(model, chosen.max_radius, self.norm, bounds, steps=chosen.steps,
                            restarts=chosen.restarts, seed=chosen.seed, search_dtype=chosen.search_dtype)
        self.last_infeasible: torch.Tensor | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        """A deterministic search; with bisection also a per-class search (MCN's, at r(x))."""
        offered = {"search", "deterministic"}
        return frozenset(offered | {"per-class-search"} if self.method == "bisection" else offered)

    def search(self, x: torch.Tensor) -> torch.Tensor:
        z, feasible = self.nearest_confident(x)
        self.last_infeasible = ~feasible
        return z

    def nearest_confident(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z*, feasible): the nearest p-confident point found, and whether it reaches p."""
        z, feasible, _ = self._solve(x)
        return z, feasible

    def per_class_search(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MCN's per-class candidates (B, C, *input) and log-odds (B, C) at each point's radius r(x).

        Bisection only: there z* is the most confident of these candidates. The penalty method
        picks the nearest feasible candidate instead, so it offers no per-class search.
        """
        if self.method != "bisection":
            raise TypeError("NCN offers a per-class search with method='bisection' only")
        _, _, radius = self._solve(x)
        return self.mcn.per_class_search(x.detach(), radius)

    def _solve(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z*, feasible, r(x)); only points not yet p-confident are searched (r = 0 for the others)."""
        x = x.detach()
        with torch.no_grad():
            already = torch.softmax(self.base_model(x), dim=1).amax(dim=1) >= self.threshold
        z, feasible = x.clone(), already.clone()
        radius = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        todo = (~already).nonzero().squeeze(1)
        if len(todo):
            if self.method == "bisection":
                z[todo], feasible[todo], radius[todo] = self._bisection(x[todo])
            else:
                z[todo], feasible[todo] = self._penalty(x[todo])
                radius[todo] = distance(z[todo] - x[todo], self.norm)
        return z, feasible, radius

    def _confidence(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.base_model(z), dim=1).amax(dim=1)

    def _bisection(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        limit = torch.full((x.shape[0],), self.radius, dtype=x.dtype, device=x.device)
        z_limit = self.mcn_point(x, limit)
        feasible = self._confidence(z_limit) >= self.threshold
        todo = feasible.nonzero().squeeze(1)  # a point that misses p at the limit keeps z_limit
        x, hi, z_hi = x[todo], limit[todo], z_limit[todo]
        lo = torch.zeros_like(hi)
        for _ in range(self.rounds if len(todo) else 0):
            mid = (lo + hi) / 2
            z_mid = self.mcn_point(x, mid)
            ok = self._confidence(z_mid) >= self.threshold
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
            z_hi = torch.where(ok.view(-1, *([1] * (x.dim() - 1))), z_mid, z_hi)
        z_limit[todo] = z_hi
        limit[todo] = hi  # the smallest radius found feasible; the limit where p is out of reach
        return z_limit, feasible, limit

    def mcn_point(self, x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        z, conf = self.mcn.per_class_search(x, radius)
        return z[torch.arange(x.shape[0], device=x.device), conf.argmax(dim=1)]

    def _penalty(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, shape = x.shape[0], tuple(x.shape[1:])
        with torch.no_grad():
            c = self.base_model(x[:1]).shape[1]
        center = x[:, None].expand(b, c, *shape).reshape(b * c, *shape)
        target = torch.arange(c, device=x.device).repeat(b)
        z = center.clone()
        alpha = self.alpha
        with torch.enable_grad():
            for _ in range(self.rounds):
                z = z.detach().requires_grad_(True)
                optimizer = torch.optim.Adam([z], lr=self.lr)
                for _ in range(self.steps):
                    conf = torch.softmax(self.base_model(z), dim=1).gather(1, target[:, None])
                    shortfall = torch.relu(self.threshold - conf.squeeze(1))
                    gap = (z - center).reshape(b * c, -1)
                    length = (gap.abs().amax(1) if self.norm is Norm.LINF
                              else (gap.pow(2).sum(1) + 1e-12).sqrt())
                    loss = (length + alpha / 2 * shortfall**2).sum()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    with torch.no_grad():
                        z.copy_(project(z, center, self.radius, self.norm, self.bounds))
                alpha *= self.growth
        z = self._repair(z.detach(), center, target)
        conf = self._class_confidence(z, target).view(b, c)
        dist = distance(z - center, self.norm).view(b, c)
        feasible = conf >= self.threshold
        dist = torch.where(feasible, dist, torch.full_like(dist, float("inf")))
        nearest = dist.argmin(dim=1)
        fallback = conf.argmax(dim=1)
        any_feasible = feasible.any(dim=1)
        pick = torch.where(any_feasible, nearest, fallback)
        return z.view(b, c, *shape)[torch.arange(b, device=x.device), pick], any_feasible

    def _class_confidence(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.base_model(z), dim=1).gather(1, target[:, None]).squeeze(1)

    def _repair(self, z: torch.Tensor, center: torch.Tensor, target: torch.Tensor,
                iterations: int = 20) -> torch.Tensor:
        """Move each z along the ray from x to the nearest scale s ∈ [0, s_max] reaching p.

        The penalty solution sits just short of the constraint for finite α; the smallest
        feasible scale of the same direction (found by bisection) is exactly feasible.
        """
        direction = z - center
        view = (-1, *([1] * (z.dim() - 1)))
        length = distance(direction, self.norm)
        s_max = torch.where(length > 0, self.radius / length.clamp_min(1e-12),
                            torch.zeros_like(length))

        def at(scale: torch.Tensor) -> torch.Tensor:
            return (center + direction * scale.view(view)).clamp(self.bounds.lower, self.bounds.upper)

        hi = s_max
        reachable = self._class_confidence(at(hi), target) >= self.threshold
        lo = torch.zeros_like(hi)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            ok = self._class_confidence(at(mid), target) >= self.threshold
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
        return torch.where(reachable.view(view), at(hi), z)

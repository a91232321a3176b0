"""Where a restart begins: at x, uniformly in the ε-ball, or at an Output Diversified start.

Paper: Tashiro, Song & Ermon, "Diversity can be Transferred: Output Diversification for White- and
Black-box Attacks", NeurIPS 2020 (ODS; as an initialisation, ODI). An ODS start draws a random
direction w ~ U(−1, 1)^C in output space and takes `steps` (default 2) full-radius steepest-ascent
steps on w·F(z) from a uniform start: the start is spread in output space, not only in input space,
so restarts reach regions that the gradient of the true-class loss never points to.

`schedule(restarts, first, offset)` names the start of each restart: `first` (x or uniform) for
restart 0, then ODS and uniform in turn, so every attack with restarts mixes both kinds. `offset`
skips that many restarts of the schedule: an attack built with `first_restart=r` runs restarts
r, r+1, ... (the restart check uses it to add new restarts without repeating the battery's).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustness_eval.ascent import ascent_step
from robustness_eval.norms import project, random_in_ball
from robustness_eval.types import Threat

STARTS = ("x", "uniform", "ods")
ODS_STEPS = 2


def continues_schedule(attack) -> bool:
    """Whether `attack` runs ≥ 2 restarts on this schedule, so that more restarts can continue it (`first_restart`)."""
    restarts = getattr(attack, "restarts", 1)
    return (isinstance(restarts, int) and not isinstance(restarts, bool) and restarts >= 2
            and hasattr(attack, "first_restart"))


def schedule(restarts: int, first: str = "x", offset: int = 0) -> list[str]:
    """The starts of restarts `offset` … `offset + restarts − 1`: restart 0 at `first`, then ODS and uniform
    alternating."""
    if first not in STARTS:
        raise ValueError(f"unknown start {first!r}; choose one of: {', '.join(STARTS)}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"`first_restart` must be an integer ≥ 0 (got {offset!r})")
    return [first if r == 0 else ("ods", "uniform")[(r - 1) % 2] for r in range(offset, offset + restarts)]


def uniform_start(x: torch.Tensor, radius: float | torch.Tensor, threat: Threat,
                  generator: torch.Generator) -> torch.Tensor:
    """A point drawn uniformly from the `radius` ball around each row of `x`, inside the bounds."""
    noise = random_in_ball(tuple(x.shape), radius, threat.norm, generator).to(x)
    return project(x + noise, x, radius, threat.norm, threat.bounds)


def ods_start(logits: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, radius: float | torch.Tensor,
              threat: Threat, generator: torch.Generator, steps: int = ODS_STEPS) -> torch.Tensor:
    """An output-diversified start: `steps` ascent steps of size `radius` on w·logits(z), w ~ U(−1, 1)^C per row."""
    z = uniform_start(x, radius, threat, generator)
    with torch.no_grad():
        classes = logits(x[:1]).shape[1]
    weights = (torch.rand(x.shape[0], classes, generator=generator, device="cpu") * 2 - 1).to(x)
    with torch.enable_grad():
        for _ in range(steps):
            z.requires_grad_(True)
            value = (logits(z) * weights).sum(dim=1)
            z = ascent_step(z, value, x, radius, threat.norm, threat.bounds, radius)
    return z.detach()


def start(kind: str, x: torch.Tensor, radius: float | torch.Tensor, threat: Threat, generator: torch.Generator,
          logits: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The start of one restart of `kind` ('x', 'uniform' or 'ods'; ODS needs F's `logits`)."""
    if kind == "x":
        return x.clone()
    if kind == "uniform":
        return uniform_start(x, radius, threat, generator)
    if kind == "ods":
        if logits is None:
            raise ValueError("an ODS start needs the base model's logits")
        return ods_start(logits, x, radius, threat, generator)
    raise ValueError(f"unknown start {kind!r}; choose one of: {', '.join(STARTS)}")

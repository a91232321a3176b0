"""What a battery will cost before it runs: one query's measured seconds × the queries each attack's budget asks.

An estimate, not a promise: an attack may stop early on points it breaks, and escalation adds rounds. It
exists so that a budget with no sane upper end (`--budget pgd=1000000000`) is refused before any work,
naming the flag and the estimate, instead of running for days without a word; the limit is an option
(`budget_limit_hours`, 0 turns it off).
"""

from __future__ import annotations

from dataclasses import dataclass

from attacks.base import Attack

DEFAULT_LIMIT_HOURS = 24.0
GRADIENT_FACTOR = 3.0  # a forward and a backward pass cost about three forwards
ROUNDS_WITH_CONVERGENCE = 3.0  # the battery, then its doubled-budget round


@dataclass(frozen=True)
class CostEstimate:
    """Estimated seconds per attack of the battery (its rounds included) on `points` points."""

    seconds: dict[str, float]
    points: int

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def describe(self) -> str:
        return f"about {_duration(self.total)} for the battery on {self.points} points (estimated from one query)"


def estimate(battery: list[Attack], points: int, model_seconds: float, shell_seconds: float,
             convergence: bool) -> CostEstimate:
    """Each attack's queries per point (budget × restarts × EOT draws) × the cost of one query on its view
    (`model_seconds`, `shell_seconds`: one forward per point, as the probe timed them)."""
    rounds = ROUNDS_WITH_CONVERGENCE if convergence else 1.0
    seconds = {}
    for attack in battery:
        queries = attack.budget * getattr(attack, "restarts", 1) * (getattr(attack, "draws", None) or 1)
        if attack.view == "base":
            one = model_seconds * GRADIENT_FACTOR
        elif attack.view == "oracle":
            one = shell_seconds
        else:
            one = shell_seconds * GRADIENT_FACTOR
        seconds[attack.name] = rounds * queries * one * points
    return CostEstimate(seconds, points)


def check_limit(cost: CostEstimate, limit_hours: float, budgets: dict | None) -> None:
    """Refuse a battery whose estimate exceeds `limit_hours` (0: no limit), naming the attack that costs most."""
    if not limit_hours or cost.total <= limit_hours * 3600:
        return
    name = max(cost.seconds, key=cost.seconds.get)
    given = (budgets or {}).get(name)
    flag = f"--budget {name}={given} (budgets={{'{name}': {given}}})" if given is not None else f"attack {name}"
    raise ValueError(f"{flag}: the battery would take {cost.describe()}, {name} alone {_duration(cost.seconds[name])}, "
                     f"over the limit of {limit_hours:g} h; lower its budget, or raise the limit with "
                     "--budget-limit-hours H (budget_limit_hours=H; 0 turns it off)")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"

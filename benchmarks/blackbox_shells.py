"""Black-box attacks on the MCN shell: queries per broken point, seconds per query, and cost growth.

All attacks see the shell only through a counted oracle (ours) or a counting wrapper (the peer),
with the same query budget; every break is verified on the shell.
"""

from __future__ import annotations

import torch

from attacks.registry import ATTACKS
from benchmarks.common import CountingModule, setting, timed
from robustness_eval.types import Threat
from robustness_eval.verify import verify
from robustness_eval.views import ShellOracle
from robustness_eval.zoo import MLP
from shells import MCNShell


def _score(shell, x, y, threat, x_adv, queries, seconds, who) -> dict:
    ok = verify(shell, x, x_adv, y, threat).success
    broken = int(ok.sum())
    return {"attack": who, "broken": broken, "points": len(y), "queries": int(queries),
            "queries_per_broken_point": queries / broken if broken else None,
            "seconds_per_query": seconds / max(queries, 1)}


def run(points: int = 40, eps: float = 0.2, budget: int = 200) -> dict:
    model, x, y, bounds = setting("digits", points)
    shell = MCNShell(model, 0.1, "linf", bounds, steps=10)
    keep = shell(x).argmax(1) == y
    x, y = x[keep], y[keep]
    threat = Threat("linf", eps, bounds)
    rows = []
    for name, kwargs in (("square", {}), ("spsa", {"samples": 16}), ("ng-oneplusone", {}), ("ng-cma", {})):
        attack = ATTACKS[name](budget=budget, **kwargs)
        oracle = ShellOracle(shell, len(y), budget)
        out, seconds = timed(lambda a=attack, o=oracle: a(o, x, y, threat))
        rows.append(_score(shell, x, y, threat, out.x_adv, int(oracle.queries.sum()), seconds, f"ours: {name}"))
    try:
        import torchattacks
    except ImportError:
        torchattacks = None
    if torchattacks is not None:
        counter = CountingModule(lambda z: torch.log(shell(z).clamp_min(1e-12)))
        adv, seconds = timed(lambda: torchattacks.Square(counter, eps=eps, n_queries=budget, p_init=0.05)(x, y))
        rows.append(_score(shell, x, y, threat, adv, counter.rows, seconds, "torchattacks Square (same shell)"))
    return {"points": len(y), "eps": eps, "budget": budget, "rows": rows, "cost": query_cost(model, x[:20], bounds)}


def query_cost(model, z: torch.Tensor, bounds) -> list[dict]:
    """Seconds per MCN query on `z` as inner steps, restarts and the number of classes grow.

    The classes sweep uses untrained MLPs of the digits model's shape with C outputs: the cost of
    a query depends on the shapes, not on the weights.
    """
    cost = []
    for label, values in (("steps", [5, 10, 20, 40]), ("restarts", [1, 2, 4, 8]), ("classes", [2, 5, 10, 20, 40])):
        for value in values:
            if label == "classes":
                torch.manual_seed(0)
                probe = MCNShell(MLP(z[0].numel(), value), 0.1, "linf", bounds)
            else:
                probe = MCNShell(model, 0.1, "linf", bounds, **{label: value})
            _, seconds = timed(lambda p=probe: p(z), repeats=2)
            cost.append({"parameter": label, "value": value, "seconds_per_query": seconds / len(z)})
    return cost

"""Hard-label L∞ attacks at equal query budgets: RayS against Foolbox's HopSkipJump, both through the counting
oracle on the digits base model (F as the identity shell), every break verified on F.

Both see only F's labels; a point counts when the attack's candidate, projected to the ε-ball, is misclassified.
"""

from __future__ import annotations

from attacks.decision import HopSkipJump
from attacks.rays import RayS
from benchmarks.common import setting, timed
from robustness_eval.types import Threat
from robustness_eval.verify import verify
from robustness_eval.views import ShellOracle
from shells import IdentityShell


def run(points: int = 200, eps: float = 0.1, budgets: tuple[int, ...] = (250, 1000)) -> dict:
    model, x, y, bounds = setting("digits", points)
    target = IdentityShell(model, "linf", bounds)
    keep = target(x).argmax(1) == y
    x, y = x[keep], y[keep]
    threat = Threat("linf", eps, bounds)
    rows = []
    for budget in budgets:
        for attack in (RayS(budget=budget), HopSkipJump(budget=budget)):
            oracle = ShellOracle(target, len(y), budget)
            out, seconds = timed(lambda a=attack, o=oracle: a(o, x, y, threat, seed=0))
            broken = int(verify(target, x, out.x_adv, y, threat).success.sum())
            rows.append({"attack": attack.name, "budget": budget, "broken": broken, "points": len(y),
                         "queries": int(oracle.queries.sum()), "seconds": seconds})
    return {"points": len(y), "eps": eps, "rows": rows}

"""The restart check: would more restarts, from other starts, move the verdict?

Carlini et al. (2019) ask of every evaluation that more restarts change nothing; the doubled-budget
rerun asks it of iterations and queries, this check of restarts. After the battery, every attack
that runs ≥ 2 restarts runs again on the still-unbroken points with as many *new* restarts,
continuing its own start schedule (ODS and uniform starts in turn, `first_restart` set past the
battery's), so the battery and the check together ran twice the restarts and repeated none. The
check's attacks run in the main phase under their own names (`lookahead@restarts`), on the targets
they suit (a transfer attack is crafted once on F for both, as in the battery): each break is
verified like any other and counts in the worst case, the ladder shows the rungs, and results.json
records per target the robust accuracy before and after. A change of at least 0.5 pp fires an
escalation indicator on that target.
"""

from __future__ import annotations

from attacks.base import Attack
from robustness_eval.runner import TARGETS, Run, run_more, summarise
from shells.base import capabilities

TAG = "@restarts"


def restart_attacks(battery: list[Attack], shells: dict) -> list[Attack]:
    """The check's attacks: each battery attack with ≥ 2 restarts, rebuilt with as many new ones, restricted
    to the one target it suits when it suits only one (so it is never listed as skipped)."""
    out = []
    for attack in battery:
        restarts = getattr(attack, "restarts", 1)
        if not (isinstance(restarts, int) and restarts >= 2 and hasattr(attack, "first_restart")):
            continue
        suits = [t for t in TARGETS if attack.only_target in (None, t)
                 and attack.skip_reason(capabilities(shells[t])) is None]
        if suits:
            again = attack.rebuilt(first_restart=attack.first_restart + restarts)
            out.append(again.renamed(attack.name + TAG, suits[0] if len(suits) == 1 else None))
    return out


def restart_check(result, run: Run, batteries: dict):
    """Run the check; return (the result with its rungs, the check's attacks). The record per target is
    `result.extras['restart_check']`."""
    context = run.context
    attacks = restart_attacks(batteries["main"], context.shells)
    if attacks:
        run_more(attacks, run)
    current = summarise(run, {**batteries, "main": [*batteries["main"], *attacks]}, result.config)
    current.extras = {**result.extras, **current.extras}
    record = {}
    for target in TARGETS:
        offered = capabilities(context.shells[target])
        names = [a.name for a in attacks if a.skip_reason(offered) is None and a.only_target in (None, target)]
        before, after = result.robust_accuracy[target], current.robust_accuracy[target]
        record[target] = {"attacks": names, "robust_accuracy_before": before, "robust_accuracy_after": after,
                          "change_pp": round(100 * (after - before), 2),
                          "new_breaks": sum(r["new_breaks"] for r in current.ladder(target) if r["name"] in names)}
    current.extras["restart_check"] = record
    return current, attacks

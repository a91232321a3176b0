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

When the doubled-budget round runs (`convergence`), its attacks with restarts already continue their
start schedules with as many new restarts, at twice the budget (`runner.doubled_attacks`): the check
is not run a second time with less, and its record is read off that round's rungs
(`record_from_doubled_round`, marked `"round": "x2"`).
"""

from __future__ import annotations

from attacks.base import Attack
from attacks.starts import continues_schedule
from robustness_eval.records import RestartCheck
from robustness_eval.runner import TARGETS, Run, run_more, summarise

TAG = "@restarts"


def restart_attacks(battery: list[Attack], offered: dict[str, frozenset[str]]) -> list[Attack]:
    """The check's attacks: each battery attack with ≥ 2 restarts, rebuilt with as many new ones, restricted
    to the one target it suits when it suits only one (so it is never listed as skipped)."""
    out = []
    for attack in battery:
        if not continues_schedule(attack):
            continue
        restarts = attack.restarts
        suits = [t for t in TARGETS if attack.only_target in (None, t)
                 and attack.skip_reason(offered[t]) is None]
        if suits:
            again = attack.rebuilt(first_restart=attack.first_restart + restarts)
            out.append(again.renamed(attack.name + TAG, suits[0] if len(suits) == 1 else None))
    return out


def restart_check(result, run: Run, battery: list[Attack], ran: list[Attack]):
    """Run the check on the restarts of `battery`'s attacks, after `ran` (every attack run so far, in order);
    return (the result with its rungs, the check's attacks). The record per target is
    `result.extras['restart_check']`."""
    context = run.context
    attacks = restart_attacks(battery, {t: context.offered(t) for t in TARGETS})
    if attacks:
        run_more(attacks, run)
    current = summarise(run, {"main": [*ran, *attacks]}, result.config)
    current.extras = {**result.extras, **current.extras}
    record = {}
    for target in TARGETS:
        offered = context.offered(target)
        names = [a.name for a in attacks if a.skip_reason(offered) is None and a.only_target in (None, target)]
        before, after = result.robust_accuracy[target], current.robust_accuracy[target]
        record[target] = RestartCheck(
            attacks=names, robust_accuracy_before=before, robust_accuracy_after=after,
            change_pp=round(100 * (after - before), 2),
            new_breaks=sum(r["new_breaks"] for r in current.ladder(target) if r["name"] in names)).to_json()
    current.extras["restart_check"] = record
    return current, attacks


def record_from_doubled_round(result, run: Run, doubled: list[Attack]) -> dict:
    """The check's record per target from the doubled round's attacks that continued a start schedule: their
    breaks, and the robust accuracy before and after them."""
    n = len(run.context.y)
    record = {}
    for target in TARGETS:
        offered = run.context.offered(target)
        names = [a.name for a in doubled if continues_schedule(a) and a.skip_reason(offered) is None
                 and a.only_target in (None, target)]
        broken = sum(r["new_breaks"] for r in result.ladder(target) if r["name"] in names)
        after = result.robust_accuracy[target]
        record[target] = RestartCheck(attacks=names, robust_accuracy_before=after + broken / n,
                                      robust_accuracy_after=after, change_pp=round(-100 * broken / n, 2),
                                      new_breaks=broken, round="x2").to_json()
    return record

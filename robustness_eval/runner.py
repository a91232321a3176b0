"""The battery runner: cheapest first, each attack only on points still unbroken, worst case per point.

Two targets are evaluated on the same points: the base model F (as the identity shell) and the
shell G[F]. Transfer attacks craft their candidates once on F, on every point still unbroken on
either target, and each target then verifies them itself: exactly the paper's protocol, with
the same candidates for both. Every other attack runs on the target's own unbroken points,
through the view it declares. Nothing counts until `verify` accepts it on the target.

Work is cut into chunks of fixed composition (the still-unbroken points in index order, `chunk`
at a time), each seeded from the run seed, the attack and the chunk's position, and committed to
the `ResultStore` as it finishes. A resumed run rebuilds the same chunks, skips the finished
ones and so reproduces an uninterrupted run exactly. A chunk of one attack is a unit of work
(`robustness_eval.units`); a backend (`robustness_eval.backends`: local, or Ray workers) runs the
units of one attack, and this driver commits each as it comes back.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from attacks.base import Attack
from attacks.registry import build_battery
from attacks.starts import continues_schedule
from robustness_eval.backends import LocalBackend, RayBackend
from robustness_eval.modules import eval_mode
from robustness_eval.progress import progress
from robustness_eval.records import Convergence, SkippedAttack
from robustness_eval.results import EvaluationResult
from robustness_eval.store import ResultStore
from robustness_eval.types import AttackKind, Threat
from robustness_eval.units import Context, Unit, repeats_for, reseed_randomized
from robustness_eval.verify import predict_labels

KIND_ORDER = [AttackKind.TRANSFER, AttackKind.BASELINE, AttackKind.SHELL_AWARE, AttackKind.WHITE_BOX, AttackKind.BPDA,
              AttackKind.EOT, AttackKind.SCORE_BASED, AttackKind.DECISION_BASED]
TARGETS = ("base", "shell")
DOUBLED_TAG = "@x2"  # the doubled-budget (convergence) round's attacks


def attack_seed(seed: int, name: str, chunk: int = 0) -> int:
    """A seed derived stably from the run seed, the attack's name and the chunk's position."""
    return (seed * 1_000_003 + zlib.crc32(name.encode()) + 7919 * chunk) % 2**31


def order_battery(battery: list[Attack]) -> list[Attack]:
    """Transfer attacks first (so the transfer-only view is exact), then by kind, stably."""
    return sorted(battery, key=lambda attack: KIND_ORDER.index(attack.kind))


def skipped_attacks(battery: list[Attack], offered: dict[str, frozenset[str]]) -> list[dict]:
    """Per target, every attack of the battery that does not apply to it, and why (an attack's doubled-budget
    copy is skipped with it and not listed again)."""
    return [SkippedAttack(target=target, attack=attack.name, reason=reason).to_json()
            for target, capabilities_offered in offered.items() for attack in battery
            if attack.only_target is None and not attack.name.endswith(DOUBLED_TAG)
            and (reason := attack.skip_reason(capabilities_offered)) is not None]


class Battery(list):
    """A resolved battery: attack instances in run order (presets expanded, budgets applied, the caller's own
    instances copied). `resolve_battery` makes one and passes one through as it is, so an evaluation resolves its
    battery once (in `prepare_evaluation`) and every phase runs those instances."""


def resolve_battery(attacks: str | list[str] | list[Attack], budgets: dict[str, int] | None = None,
                    budget_scale: float = 1.0, draws: int | None = None) -> Battery:
    """Attack instances in run order from a preset, a comma list, names or instances (`draws`: the EOT draws of
    the named attacks that take them; instances keep their own); a `Battery` with nothing to change is itself."""
    if isinstance(attacks, Battery) and budgets is None and budget_scale == 1.0 and draws is None:
        return attacks
    if attacks and not isinstance(attacks, str) and isinstance(attacks[0], Attack):
        scaled = []
        for attack in attacks:  # a copy keeps every other setting of the caller's instance
            attack = copy.copy(attack)
            attack.budget = max(1, round(attack.budget * budget_scale))
            scaled.append(attack)
        return Battery(order_battery(scaled))
    return Battery(order_battery(build_battery(attacks, budgets, budget_scale, draws)))


@dataclass
class Run:
    """One battery's state: the unit context (F, the shell, the points, the threat) and how it runs.

    The battery, the restart check and escalation take it as their main argument; `store` is where rows are
    committed chunk by chunk (default: in memory; the store of an interrupted run resumes it), `chunk` the points
    per committed unit, `backend` where units run (default local; `RayBackend` for a cluster: the results do
    not depend on it), `quiet` no progress bars or ladder lines, `targets` the targets attacked (both by
    default; the active test scores the shell alone).
    """

    context: Context
    seed: int = 0
    store: ResultStore | None = None
    chunk: int = 50
    backend: LocalBackend | RayBackend | None = None
    quiet: bool = True
    targets: tuple[str, ...] = TARGETS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ValueError(f"`targets` must name some of {', '.join(TARGETS)} (got {self.targets!r})")
        self.store = self.store if self.store is not None else ResultStore(None)
        self.backend = self.backend if self.backend is not None else LocalBackend()


def run_battery(run: Run, attacks: str | list[str] | list[Attack] = "fast", budgets: dict[str, int] | None = None,
                convergence: bool = False, config: dict | None = None,
                indices: list[int] | None = None) -> EvaluationResult:
    """Run the battery on base and shell; return per-point worst-case results.

    This is the battery alone, on inputs already validated; `robustness_eval.evaluate` is the
    whole evaluation (validation, checks, provenance, sweeps) and calls it.

    Args:
        run: the model F (logits, in eval mode), its shell (an `IdentityShell` evaluates F alone), the points,
            the threat, the seed and where the work goes (see `Run`).
        attacks: a preset ('fast', 'full'), a comma list of names, or Attack instances.
        budgets: per-attack budget overrides by name.
        convergence: then run every attack again with its budget doubled on the points still unbroken (the
            convergence round, `name@x2`); its breaks count, and `extras.convergence` records the change.
        config: recorded as the result's `config` (the CLI passes everything needed to rerun).
        indices: the points' indices in their data set (default 0..n-1).
    """
    context, store = run.context, run.store
    if not isinstance(context.threat, Threat):
        raise TypeError(f"`threat` must be a robustness_eval.Threat (got {type(context.threat).__name__})")
    x, y = context.x, context.y
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"`x` and `y` need the same, non-zero number of points "
                         f"(got {x.shape[0]} and {y.shape[0]})")
    eval_mode(context.model)
    correct = {}
    for name, target in context.shells.items():
        stored = store.load_clean(name, len(y))
        if stored is None:
            reseed_randomized(context, attack_seed(run.seed, "clean"))
            votes = sum((predict_labels(target, x) == y).long() for _ in range(repeats_for(target)))
            stored = (votes * 2 > repeats_for(target)).cpu()
            store.save_clean(name, stored)
        correct[name] = stored  # bookkeeping (masks, indices, query counts) lives on the CPU
    battery = resolve_battery(attacks, budgets)
    ran = attacks_run(battery, convergence)
    with run.backend.session(context) as session:
        bar = progress(ran, desc="attacks", disable=run.quiet)
        for position, attack in enumerate(bar):
            _run_attack(attack, run, session, correct, "main", {a.name for a in ran[:position]})
            if not run.quiet:
                for target in TARGETS:
                    _print_rung(store, "main", attack, target, correct, ran[: position + 1])
    result = summarise(run, {"main": ran}, config, indices)
    if convergence:
        result.extras["convergence"] = convergence_record(summarise(run, {"main": battery}), result,
                                                          ran[len(battery):])
    return result


def attacks_run(battery: list[Attack], convergence: bool) -> list[Attack]:
    """Every attack `run_battery` runs, in order: the battery, then (with `convergence`) its doubled round."""
    return [*battery, *(doubled_attacks(battery) if convergence else [])]


def doubled_attacks(battery: list[Attack]) -> list[Attack]:
    """The convergence round: every battery attack again with its budget doubled, under `name@x2` (its own
    seeds, rows and rung), run after the battery on the points it left unbroken, so its breaks count in the
    worst case like any other verified break. An attack with ≥ 2 restarts continues its start schedule
    (`first_restart` past the battery's), so the round also runs as many new restarts from other starts:
    it carries the restart check's question too."""
    out = []
    for again in resolve_battery(battery, None, 2.0):
        if continues_schedule(again):
            again = again.rebuilt(first_restart=again.first_restart + again.restarts)
        out.append(again.renamed(again.name + DOUBLED_TAG, again.only_target))
    return out


def convergence_record(before: EvaluationResult, after: EvaluationResult, doubled: list[Attack]) -> dict:
    """What the doubled-budget round changed, per target (results.json's `extras.convergence`)."""
    names = {a.name for a in doubled}
    return Convergence(
        budget_scale=2.0, attacks=sorted(names), robust_accuracy=dict(after.robust_accuracy),
        change_pp={t: round(100 * (after.robust_accuracy[t] - before.robust_accuracy[t]), 2) for t in TARGETS},
        new_breaks={t: sum(r["new_breaks"] for r in after.ladder(t) if r["name"] in names) for t in TARGETS},
        worst_of_both=dict(after.robust_accuracy)).to_json()


def summarise(run: Run, batteries: dict, config: dict | None = None,
              indices: list[int] | None = None) -> EvaluationResult:
    """The result of everything in the store that `batteries` names: the ladder, the worst case per point."""
    context, store = run.context, run.store
    result = EvaluationResult.from_store(
        store, config=dict(config or {}), context=context,
        indices=indices, batteries=batteries)
    result.extras["skipped"] = skipped_attacks(batteries["main"], {t: context.offered(t) for t in context.shells})
    return result


def run_more(attacks: list[Attack], run: Run) -> None:
    """Run `attacks`, in order, in the main phase after the battery: each on the points that nothing in the
    store has broken yet, on the targets it applies to (its `only_target`, else every target it suits; a
    transfer attack is crafted once on F for all of them, as in the battery)."""
    store = run.store
    correct = {t: store.load_clean(t, len(run.context.y)) for t in TARGETS}
    with run.backend.session(run.context) as session:
        for attack in attacks:
            earlier = {name for t in TARGETS for name in store.broken("main", t).values()}
            _run_attack(attack, run, session, correct, "main", earlier)


def _alive(store: ResultStore, phase: str, target: str, correct: torch.Tensor, earlier: set[str]):
    alive = correct.clone()
    for point, attack in store.broken(phase, target).items():
        if attack in earlier:
            alive[point] = False
    return alive


def plan_units(attack: Attack, alive: dict[str, torch.Tensor], phase: str, seed: int, chunk: int) -> list[Unit]:
    """The units of `attack`: its still-unbroken points in index order, `chunk` at a time, per group.

    A transfer attack (view 'base') crafts once on F for the union of the points alive on any target
    (group 'union'; named after its target when it applies to one only, so that escalation's rounds of
    one name on F and on the shell keep apart); every other attack has one group per target it applies to.
    """
    applies = list(alive)
    if attack.view == "base":
        union = torch.zeros_like(alive[applies[0]])
        for t in applies:
            union |= alive[t]
        groups = [("union" if len(applies) > 1 else applies[0], applies, union.nonzero().squeeze(1))]
    else:
        groups = [(t, [t], alive[t].nonzero().squeeze(1)) for t in applies]
    units = []
    for label, targets, idx in groups:
        for number in range(0, len(idx), chunk):
            part = idx[number : number + chunk]
            units.append(Unit(phase, attack, f"{label}/{number // chunk}", tuple(part.tolist()),
                              {t: tuple(part[alive[t][part]].tolist()) for t in targets},
                              attack_seed(seed, attack.name, number // chunk)))
    return units


def _run_attack(attack: Attack, run: Run, session, correct: dict, phase: str, earlier: set[str]) -> None:
    context, store = run.context, run.store
    applies = [t for t in run.targets if attack.skip_reason(context.offered(t)) is None
               and attack.only_target in (None, t)]
    if not applies:
        return
    alive = {t: _alive(store, phase, t, correct[t], earlier) for t in applies}
    units = [u for u in plan_units(attack, alive, phase, run.seed, run.chunk)
             if not store.chunk_done(phase, attack.name, u.key)]
    bar = progress(session.run(units), desc=attack.name, disable=run.quiet or len(units) < 2, total=len(units))
    for unit, result in bar:  # in completion order; the driver is the only writer
        store.commit_chunk(phase, attack.name, unit.key, result.records, list(unit.targets), result.trace,
                           result.seconds)


def _print_rung(store: ResultStore, phase: str, attack: Attack, target: str, correct: dict,
                done: list[Attack]) -> None:
    rows = store.rows(phase, target, attack.name)
    if not rows:
        return
    alive = _alive(store, phase, target, correct[target], {a.name for a in done})
    tqdm.write(f"  {phase:4s} {target:5s} {attack.name:14s} robust accuracy "
               f"{float(alive.float().mean()):6.1%}  (+{sum(r['success'] for r in rows)} breaks)")

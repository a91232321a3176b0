"""The battery runner: cheapest first, each attack only on points still unbroken, worst case per point.

Two targets are evaluated on the same points: the base model F (as the identity shell) and the
shell G[F]. Transfer attacks craft their candidates once on F, on every point still unbroken on
either target, and each target then verifies them itself: exactly the paper's protocol, with
the same candidates for both. Every other attack runs on the target's own unbroken points,
through the view it declares. Nothing counts until `verify` accepts it on the target.

Work is cut into chunks of fixed composition (the still-unbroken points in index order, `chunk`
at a time), each seeded from the run seed, the attack and the chunk's position, and committed to
the `ResultStore` as it finishes. A resumed run rebuilds the same chunks, skips the finished
ones and so reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import copy
import time
import zlib

import torch
from torch import nn
from tqdm.auto import tqdm

from attacks.base import Attack
from attacks.registry import build_battery
from robustness_eval.modules import eval_mode
from robustness_eval.progress import progress
from robustness_eval.results import EvaluationResult
from robustness_eval.store import ResultStore
from robustness_eval.types import AttackKind, Threat
from robustness_eval.verify import predict_labels, verify
from robustness_eval.views import BaseModelView, ShellAwareView, ShellOracle
from shells.base import IdentityShell, Shell, capabilities

KIND_ORDER = [AttackKind.TRANSFER, AttackKind.BASELINE, AttackKind.SHELL_AWARE, AttackKind.BPDA,
              AttackKind.EOT, AttackKind.SCORE_BASED, AttackKind.DECISION_BASED]
VERIFY_REPEATS_RANDOMIZED = 5
TARGETS = ("base", "shell")


def attack_seed(seed: int, name: str, chunk: int = 0) -> int:
    """A seed derived stably from the run seed, the attack's name and the chunk's position."""
    return (seed * 1_000_003 + zlib.crc32(name.encode()) + 7919 * chunk) % 2**31


def order_battery(battery: list[Attack]) -> list[Attack]:
    """Transfer attacks first (so the transfer-only view is exact), then by kind, stably."""
    return sorted(battery, key=lambda attack: KIND_ORDER.index(attack.kind))


def repeats_for(shell: nn.Module) -> int:
    """Queries per verdict: a majority of 5 for randomized shells, 1 otherwise."""
    return VERIFY_REPEATS_RANDOMIZED if getattr(shell, "randomized", False) else 1


def skipped_attacks(battery: list[Attack], shells: dict[str, nn.Module]) -> list[dict]:
    """Per target, every attack of the battery that does not apply to it, and why."""
    return [{"target": target, "attack": attack.name, "reason": reason}
            for target, shell in shells.items() for attack in battery
            if attack.only_target is None and (reason := attack.skip_reason(capabilities(shell))) is not None]


def _view_for(attack: Attack, model: nn.Module, shell: Shell, threat: Threat, n: int):
    if attack.view == "base":
        return BaseModelView(model, threat.bounds)
    if attack.view == "oracle":
        return ShellOracle(shell, n, attack.budget)
    return ShellAwareView(model, shell, threat.bounds)


def resolve_battery(attacks: str | list[str] | list[Attack], budgets: dict[str, int] | None = None,
                    budget_scale: float = 1.0) -> list[Attack]:
    """Attack instances in run order from a preset, a comma list, names or instances."""
    if attacks and not isinstance(attacks, str) and isinstance(attacks[0], Attack):
        scaled = []
        for attack in attacks:  # a copy keeps every other setting of the caller's instance
            attack = copy.copy(attack)
            attack.budget = max(1, round(attack.budget * budget_scale))
            scaled.append(attack)
        return order_battery(scaled)
    return order_battery(build_battery(attacks, budgets, budget_scale))


def run_battery(model: nn.Module, shell: Shell, x: torch.Tensor, y: torch.Tensor, threat: Threat,
                attacks: str | list[str] | list[Attack] = "fast", seed: int = 0, quiet: bool = True,
                config: dict | None = None, indices: list[int] | None = None,
                store: ResultStore | None = None, chunk: int = 50, budgets: dict[str, int] | None = None,
                convergence: bool = False) -> EvaluationResult:
    """Run the battery on base and shell; return per-point worst-case results.

    This is the battery alone, on inputs already validated; `robustness_eval.evaluate` is the
    whole evaluation (validation, checks, provenance, sweeps) and calls it.

    Args:
        model: base classifier F (logits), in eval mode.
        shell: the shell G[F] wrapping `model` (an `IdentityShell` evaluates F alone).
        x, y: the points and their labels.
        threat: norm, ε and bounds of the adversary.
        attacks: a preset ('fast', 'full'), a comma list of names, or Attack instances.
        seed: fixes every random choice of the run.
        quiet: no progress bars or ladder lines.
        config: recorded as the result's `config` (the CLI passes everything needed to rerun).
        indices: the points' indices in their data set (default 0..n-1).
        store: where rows are committed chunk by chunk (default: in memory); pass the store of
            an interrupted run to resume it.
        chunk: points per chunk, the unit of commit.
        budgets: per-attack budget overrides by name.
        convergence: also run the whole battery with every budget doubled and report the change.
    """
    if not isinstance(threat, Threat):
        raise TypeError(f"`threat` must be a robustness_eval.Threat (got {type(threat).__name__})")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"`x` and `y` need the same, non-zero number of points "
                         f"(got {x.shape[0]} and {y.shape[0]})")
    store = store or ResultStore(None)
    eval_mode(model)
    shells = {"base": IdentityShell(model, threat.norm, threat.bounds), "shell": shell}
    correct = {}
    for name, target in shells.items():
        stored = store.load_clean(name, len(y))
        if stored is None:
            votes = sum((predict_labels(target, x) == y).long() for _ in range(repeats_for(target)))
            stored = (votes * 2 > repeats_for(target)).cpu()
            store.save_clean(name, stored)
        correct[name] = stored  # bookkeeping (masks, indices, query counts) lives on the CPU
    phases = [("main", 1.0)] + ([("x2", 2.0)] if convergence else [])
    batteries = {}
    for phase, scale in phases:
        battery = resolve_battery(attacks, budgets, scale)
        batteries[phase] = battery
        bar = progress(battery, desc=f"attacks ({phase})", disable=quiet)
        for position, attack in enumerate(bar):
            earlier = {a.name for a in battery[:position]}
            _run_attack(attack, model, shells, correct, x, y, threat, seed, store, phase, earlier,
                        chunk, quiet)
            if not quiet:
                for target in TARGETS:
                    _print_rung(store, phase, attack, target, correct, battery[: position + 1])
    return summarise(store, model, shell, y, threat, batteries, config, indices, tuple(x.shape[1:]))


def summarise(store: ResultStore, model: nn.Module, shell: nn.Module, y: torch.Tensor, threat: Threat,
              batteries: dict, config: dict | None = None, indices: list[int] | None = None,
              input_shape: tuple[int, ...] = ()) -> EvaluationResult:
    """The result of everything in the store that `batteries` names: the ladder, the worst case per point."""
    correct = {t: store.load_clean(t, len(y)) for t in TARGETS}
    result = EvaluationResult.from_store(
        store, config=dict(config or {}), threat=threat, shell=shell, correct=correct,
        labels=y, indices=indices, batteries=batteries, input_shape=input_shape)
    shells = {"base": IdentityShell(model, threat.norm, threat.bounds), "shell": shell}
    result.extras["skipped"] = skipped_attacks(batteries["main"], shells)
    return result


def run_on_target(attacks: list[Attack], target: str, model: nn.Module, shell: nn.Module, x: torch.Tensor,
                  y: torch.Tensor, threat: Threat, seed: int, store: ResultStore, chunk: int,
                  quiet: bool = True) -> None:
    """Run `attacks`, in order, on the points of `target` that nothing in the store has broken yet
    (each attack is restricted to `target`: its `only_target` is set)."""
    shells = {"base": IdentityShell(model, threat.norm, threat.bounds), "shell": shell}
    correct = {t: store.load_clean(t, len(y)) for t in TARGETS}
    for attack in attacks:
        attack.only_target = target
        earlier = set(store.broken("main", target).values())
        _run_attack(attack, model, shells, correct, x, y, threat, seed, store, "main", earlier, chunk, quiet)


def _alive(store: ResultStore, phase: str, target: str, correct: torch.Tensor, earlier: set[str]):
    alive = correct.clone()
    for point, attack in store.broken(phase, target).items():
        if attack in earlier:
            alive[point] = False
    return alive


def _run_attack(attack: Attack, model: nn.Module, shells: dict[str, Shell], correct: dict,
                x: torch.Tensor, y: torch.Tensor, threat: Threat, seed: int, store: ResultStore,
                phase: str, earlier: set[str], chunk: int, quiet: bool) -> None:
    applies = [t for t in TARGETS if attack.skip_reason(capabilities(shells[t])) is None
               and attack.only_target in (None, t)]
    alive = {t: _alive(store, phase, t, correct[t], earlier) for t in applies}
    if attack.view == "base":  # craft once on F for every point alive on any target
        union = torch.zeros_like(correct["base"])
        for t in applies:
            union |= alive[t]
        groups = [("union", applies, union.nonzero().squeeze(1))]
    else:
        groups = [(t, [t], alive[t].nonzero().squeeze(1)) for t in applies]
    for label, targets, idx in groups:
        starts = list(range(0, len(idx), chunk))
        for number in progress(starts, desc=attack.name, disable=quiet or len(starts) < 2):
            key = f"{label}/{number // chunk}"
            if store.chunk_done(phase, attack.name, key):
                continue
            part = idx[number : number + chunk]
            _run_chunk(attack, model, shells, alive, targets, x, y, part, threat,
                       attack_seed(seed, attack.name, number // chunk), store, phase, key)


def _run_chunk(attack: Attack, model: nn.Module, shells: dict[str, Shell], alive: dict,
               targets: list[str], x: torch.Tensor, y: torch.Tensor, part: torch.Tensor,
               threat: Threat, seed: int, store: ResultStore, phase: str, key: str) -> None:
    start = time.perf_counter()
    records = []
    if attack.view == "base":
        out = attack(BaseModelView(model, threat.bounds), x[part], y[part], threat, seed=seed)
        crafted = {t: (out.x_adv, out.queries) for t in targets}
        trace = out.trace.get("loss", [])
    else:
        (target,) = targets
        view = _view_for(attack, model, shells[target], threat, len(part))
        out = attack(view, x[part], y[part], threat, seed=seed)
        # the oracle's own count is the honest one; white-box views report their own
        queries = view.queries if isinstance(view, ShellOracle) else out.queries
        crafted = {target: (out.x_adv, queries)}
        trace = out.trace.get("loss", [])
    for target in targets:
        x_adv, queries = crafted[target]
        mine = alive[target][part]  # transfer chunks cover the union: keep this target's points
        if not bool(mine.any()):
            continue
        points, x_adv, queries = part[mine], x_adv[mine], queries[mine]
        verdict = verify(shells[target], x[points], x_adv, y[points], threat,
                         repeats=repeats_for(shells[target]))
        seconds = (time.perf_counter() - start) / len(points)
        success, in_ball, in_bounds, wrong = (verdict.success.tolist(), verdict.in_ball.tolist(),
                                              verdict.in_bounds.tolist(), verdict.misclassified.tolist())
        norms, counts, adversarial = verdict.norm.tolist(), queries.tolist(), x_adv.detach().cpu()
        for j, point in enumerate(points.tolist()):
            records.append((target, point, success[j], in_ball[j], in_bounds[j], wrong[j], norms[j], counts[j],
                            seconds, adversarial[j] if success[j] else None))
    store.commit_chunk(phase, attack.name, key, records, targets, list(trace),
                       time.perf_counter() - start)


def _print_rung(store: ResultStore, phase: str, attack: Attack, target: str, correct: dict,
                done: list[Attack]) -> None:
    rows = store.rows(phase, target, attack.name)
    if not rows:
        return
    alive = _alive(store, phase, target, correct[target], {a.name for a in done})
    tqdm.write(f"  {phase:4s} {target:5s} {attack.name:14s} robust accuracy "
               f"{float(alive.float().mean()):6.1%}  (+{sum(r['success'] for r in rows)} breaks)")

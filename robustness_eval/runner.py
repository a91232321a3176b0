"""The battery runner: cheapest first, each attack only on points still unbroken, worst case per point.

Two targets are evaluated on the same points: the base model F (as the identity shell) and the
shell G[F]. Transfer attacks craft their candidates once on F, on every point still unbroken on
either target, and each target then verifies them itself: exactly the paper's protocol, with
the same candidates for both. Every other attack runs on the target's own unbroken points,
through the view it declares. Nothing counts until `verify` accepts it on the target.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

import torch
from torch import nn

from attacks.base import Attack
from attacks.registry import build_battery
from robustness_eval.progress import progress
from robustness_eval.results import AttackRecord, EvaluationResult, PointRecord
from robustness_eval.types import AttackKind, Threat
from robustness_eval.verify import predict_labels, verify
from robustness_eval.views import BaseModelView, ShellAwareView, ShellOracle
from shells.base import IdentityShell, Shell

KIND_ORDER = [AttackKind.TRANSFER, AttackKind.BASELINE, AttackKind.SHELL_AWARE, AttackKind.BPDA,
              AttackKind.EOT, AttackKind.SCORE_BASED, AttackKind.DECISION_BASED]
VERIFY_REPEATS_RANDOMIZED = 5


@dataclass
class _TargetState:
    """Book-keeping for one target during a run."""

    name: str
    shell: Shell
    correct: torch.Tensor
    alive: torch.Tensor
    broken_by: list = field(default_factory=list)
    norms: list = field(default_factory=list)
    adversarial: dict = field(default_factory=dict)

    @property
    def repeats(self) -> int:
        return VERIFY_REPEATS_RANDOMIZED if self.shell.randomized else 1


def attack_seed(seed: int, name: str) -> int:
    """A per-attack seed derived stably from the run seed and the attack's name."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


def order_battery(battery: list[Attack]) -> list[Attack]:
    """Transfer attacks first (so the transfer-only view is exact), then by kind, stably."""
    return sorted(battery, key=lambda attack: KIND_ORDER.index(attack.kind))


def _view_for(attack: Attack, model: nn.Module, shell: Shell, threat: Threat, n: int):
    if attack.view == "base":
        return BaseModelView(model, threat.bounds)
    if attack.view == "oracle":
        return ShellOracle(shell, n, attack.budget)
    return ShellAwareView(model, shell, threat.bounds)


def evaluate(model: nn.Module, shell: Shell, x: torch.Tensor, y: torch.Tensor, threat: Threat,
             attacks: str | list[str] | list[Attack] = "fast", seed: int = 0, quiet: bool = True,
             config: dict | None = None, indices: list[int] | None = None) -> EvaluationResult:
    """Run the battery on base and shell; return per-point worst-case results.

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
    """
    if not isinstance(threat, Threat):
        raise TypeError(f"`threat` must be a robustness_eval.Threat (got {type(threat).__name__})")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"`x` and `y` need the same, non-zero number of points "
                         f"(got {x.shape[0]} and {y.shape[0]})")
    battery = order_battery(attacks if attacks and isinstance(attacks[0], Attack)
                            else build_battery(attacks))
    n = x.shape[0]
    model.eval()
    targets = [_TargetState("base", IdentityShell(model, threat.norm, threat.bounds),
                            torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)),
               _TargetState("shell", shell, torch.zeros(n, dtype=torch.bool),
                            torch.zeros(n, dtype=torch.bool))]
    for target in targets:
        votes = sum((predict_labels(target.shell, x) == y).long() for _ in range(target.repeats))
        target.correct = votes * 2 > target.repeats
        target.alive = target.correct.clone()
        target.broken_by = [None] * n
        target.norms = [None] * n

    records: list[AttackRecord] = []
    bar = progress(battery, desc="attacks", disable=quiet)
    for attack in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(attack.name)
        records.extend(_run_attack(attack, model, targets, x, y, threat, seed, quiet))

    points = [PointRecord(int(indices[i]) if indices is not None else i, int(y[i]),
                          bool(targets[0].correct[i]), bool(targets[1].correct[i]),
                          {t.name: t.broken_by[i] for t in targets},
                          {t.name: t.norms[i] for t in targets})
              for i in range(n)]
    return EvaluationResult.from_run(
        config=dict(config or {}), threat=threat, shell=shell, records=records, points=points,
        adversarial={t.name: t.adversarial for t in targets},
    )


def _run_attack(attack: Attack, model: nn.Module, targets: list[_TargetState], x: torch.Tensor,
                y: torch.Tensor, threat: Threat, seed: int, quiet: bool) -> list[AttackRecord]:
    shared = None
    if attack.view == "base":  # craft once on F for every point still alive on any target
        union = torch.zeros_like(targets[0].alive)
        for target in targets:
            if attack.applies_to(target.shell.kind, target.shell.randomized):
                union |= target.alive
        idx = union.nonzero().squeeze(1)
        start = time.perf_counter()
        out = attack(BaseModelView(model, threat.bounds), x[idx], y[idx], threat,
                     seed=attack_seed(seed, attack.name))
        shared = (idx, out, time.perf_counter() - start)

    records = []
    for target in targets:
        if not attack.applies_to(target.shell.kind, target.shell.randomized):
            continue
        start = time.perf_counter()
        if shared is not None:
            union_idx, out, craft_seconds = shared
            position = torch.full((x.shape[0],), -1, dtype=torch.long)
            position[union_idx] = torch.arange(len(union_idx))
            idx = target.alive.nonzero().squeeze(1)
            x_adv, queries = out.x_adv[position[idx]], out.queries[position[idx]]
        else:
            craft_seconds = 0.0
            idx = target.alive.nonzero().squeeze(1)
            view = _view_for(attack, model, target.shell, threat, len(idx))
            out = attack(view, x[idx], y[idx], threat, seed=attack_seed(seed, attack.name))
            # the oracle's own count is the honest one; white-box views report their own
            queries = view.queries if isinstance(view, ShellOracle) else out.queries
            x_adv = out.x_adv
        verdict = verify(target.shell, x[idx], x_adv, y[idx], threat, repeats=target.repeats)
        broken = idx[verdict.success]
        for j, point in zip(verdict.success.nonzero().squeeze(1).tolist(), broken.tolist(), strict=True):
            target.broken_by[point] = attack.name
            target.norms[point] = float(verdict.norm[j])
            target.adversarial[point] = x_adv[j].detach().clone()
        target.alive[broken] = False
        n = x.shape[0]
        record = AttackRecord(
            name=attack.name, kind=attack.kind.value, target=target.name,
            robust_accuracy_after=float(target.alive.sum()) / n,
            new_breaks=len(broken), attacked=len(idx),
            queries_median=float(queries.float().median()) if len(idx) else 0.0,
            seconds=craft_seconds + time.perf_counter() - start,
            loss_trace=list(out.trace.get("loss", [])) if shared is None or target.name == "base" else [],
        )
        records.append(record)
        if not quiet:
            print(f"  {target.name:5s} {attack.name:12s} robust accuracy {record.robust_accuracy_after:6.1%}"
                  f"  (+{record.new_breaks} breaks, {record.seconds:.1f}s)", flush=True)
    return records

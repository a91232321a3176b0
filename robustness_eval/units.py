"""Units of work: one attack on one chunk of still-unbroken points, and how a unit is executed.

A unit is what the runner commits to the store as one transaction. It is fully described by its
data (phase, attack, chunk key, the chunk's points, the points each target verifies, a seed that
derives from the run seed and the unit's identity), so any process holding the same `Context`
computes the same rows: the local backend runs units in the driver, the Ray backend on workers,
and both give the same store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from attacks.base import Attack
from robustness_eval.modules import eval_mode
from robustness_eval.types import Threat
from robustness_eval.verify import predict_labels, verify
from robustness_eval.views import BaseModelView, EndToEndView, FixedRandomnessView, ShellAwareView, ShellOracle
from shells.base import IdentityShell, capabilities

VERIFY_REPEATS_RANDOMIZED = 5
ORACLE_DRAWS_RANDOMIZED = 4  # black-box attacks' EOT: calls averaged per row on a randomized shell


def repeats_for(shell: nn.Module) -> int:
    """Queries per verdict: a majority of 5 for randomized shells, 1 otherwise."""
    return VERIFY_REPEATS_RANDOMIZED if getattr(shell, "randomized", False) else 1


@dataclass
class Context:
    """What every unit of one battery needs: F, the shell, the points and the threat.

    It goes to each worker once; `shells` holds the two targets ('base' is F as the identity shell) and
    `surrogates` the attack-time surrogate of each target that has one: `shell_surrogate` if given, else the
    shell's own `surrogate()`.
    """

    model: nn.Module
    shell: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    threat: Threat
    shell_surrogate: nn.Module | None = None
    shells: dict[str, nn.Module] = field(init=False)
    surrogates: dict[str, nn.Module] = field(init=False)

    def __post_init__(self) -> None:
        self.shells = {"base": IdentityShell(self.model, self.threat.norm, self.threat.bounds), "shell": self.shell}
        own = getattr(self.shell, "surrogate", None)
        made = self.shell_surrogate if self.shell_surrogate is not None else (own() if callable(own) else None)
        self.surrogates = {} if made is None else {"shell": eval_mode(made)}

    def offered(self, target: str) -> frozenset[str]:
        """What `target` offers attacks: its capabilities, and `surrogate` when the run has one for it."""
        return capabilities(self.shells[target]) | ({"surrogate"} if target in self.surrogates else frozenset())

    def to(self, device: torch.device | str) -> Context:
        """This context with its modules and points on `device` (modules moved in place)."""
        self.model.to(device)
        self.shell.to(device)
        for surrogate in self.surrogates.values():
            surrogate.to(device)
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self


@dataclass(frozen=True)
class Unit:
    """One attack on one chunk: `points` are attacked, `targets[t]` (a subset) are verified on target t."""

    phase: str
    attack: Attack
    key: str
    points: tuple[int, ...]
    targets: dict[str, tuple[int, ...]]
    seed: int


@dataclass
class UnitResult:
    """A finished unit: its store rows, the attack's loss trace and the unit's seconds."""

    records: list[tuple]
    trace: list[float]
    seconds: float


def reseed_randomized(context: Context, seed: int) -> None:
    """Restart every randomized target's generator from `seed`, so a unit's answers depend on the unit
    alone, not on which process ran it or what it ran before. A randomized shell without `reseed` draws from
    torch's global generator, which is seeded instead. Surrogates are reseeded from `seed` + 1."""
    modules = [(shell, seed) for shell in context.shells.values()]
    modules += [(surrogate, (seed + 1) % 2**63) for surrogate in context.surrogates.values()]
    for module, value in modules:
        if getattr(module, "randomized", False):
            if callable(getattr(module, "reseed", None)):
                module.reseed(value)
            else:
                torch.manual_seed(value)


def view_for(attack: Attack, context: Context, target: str, n: int, seed: int = 0):
    """The access `attack` declares to `target`: F white-box, the shell as a counted oracle (averaging `draws`
    calls per row on a randomized shell), shell-aware, a differentiable shell end to end, its surrogate, or the
    shell (or its surrogate) with its randomness fixed by `seed`."""
    shell, bounds, draws = context.shells[target], context.threat.bounds, getattr(attack, "draws", None)
    if attack.view == "base":
        return BaseModelView(context.model, bounds)
    if attack.view == "oracle":
        return ShellOracle(shell, n, attack.budget, draws or ORACLE_DRAWS_RANDOMIZED)
    if attack.view == "end-to-end":
        return EndToEndView(shell, bounds, draws)
    if attack.view == "surrogate":
        return EndToEndView(context.surrogates[target], bounds, draws, role="the shell's surrogate")
    if attack.view == "fixed":
        if "differentiable" in capabilities(shell):
            return FixedRandomnessView(shell, bounds, seed)
        return FixedRandomnessView(context.surrogates[target], bounds, seed, role="the shell's surrogate")
    return ShellAwareView(context.model, shell, bounds)


def execute_unit(context: Context, unit: Unit) -> UnitResult:
    """Run `unit`'s attack on its points and verify every candidate on each target; nothing is written."""
    start = time.perf_counter()
    reseed_randomized(context, unit.seed)
    x, y, threat, attack = context.x, context.y, context.threat, unit.attack
    part = torch.tensor(unit.points, dtype=torch.long, device=x.device)
    if attack.view == "base":  # crafted once on F, verified by every target
        out = attack(BaseModelView(context.model, threat.bounds), x[part], y[part], threat, seed=unit.seed)
        crafted = {t: (out.x_adv, out.queries) for t in unit.targets}
    else:
        (target,) = unit.targets
        view = view_for(attack, context, target, len(part), unit.seed)
        out = attack(view, x[part], y[part], threat, seed=unit.seed)
        # the oracle's own count is the honest one; white-box views report their own, end to end per draw
        queries = view.queries if isinstance(view, ShellOracle) else out.queries
        if isinstance(view, EndToEndView):
            queries = queries * view.draws
        crafted = {target: (out.x_adv, queries)}
        if isinstance(view, FixedRandomnessView):  # verify on draws other than the attack's fixed ones
            reseed_randomized(context, (unit.seed + 2) % 2**63)
    records = []
    for target, verified in unit.targets.items():
        if not verified:
            continue
        x_adv, queries = crafted[target]
        mine = torch.isin(part, torch.tensor(verified, dtype=torch.long, device=part.device)).to(x_adv.device)
        points = part[mine]
        x_adv, queries = x_adv[mine], queries[mine.to(queries.device)]
        shell = context.shells[target]
        verdict = verify(shell, x[points], x_adv, y[points], threat, repeats=repeats_for(shell))
        success = verdict.success
        if not getattr(shell, "randomized", False) and bool(success.any()):  # a break must reproduce
            again = predict_labels(shell, x_adv[success]) != y[points][success]
            success = success.clone()
            success[success.nonzero().squeeze(1)[~again]] = False
        seconds = (time.perf_counter() - start) / len(points)
        success, in_ball, in_bounds, wrong = (success.tolist(), verdict.in_ball.tolist(),
                                              verdict.in_bounds.tolist(), verdict.misclassified.tolist())
        norms, counts, adversarial = verdict.norm.tolist(), queries.tolist(), x_adv.detach().cpu()
        for j, point in enumerate(points.tolist()):
            records.append((target, point, success[j], in_ball[j], in_bounds[j], wrong[j], norms[j], counts[j],
                            seconds, adversarial[j] if success[j] else None))
    return UnitResult(records, list(out.trace.get("loss", [])), time.perf_counter() - start)

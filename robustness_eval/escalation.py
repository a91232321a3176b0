"""Escalation: when an indicator says the attacks failed for the wrong reason, try harder before reporting.

AutoAttack and our sanity checks only warn. Here every indicator that fires on a target starts
an escalation round on that target's unbroken points, with attacks that do not share the
failure: BPDA through F's own rounding and signs (or a user's differentiable surrogate), Square
at 5× its budget, PGD with more restarts on F; on the shell, Square at 5×, transfer PGD with more
restarts, and, where its capabilities allow them, the end-to-end attacks (a differentiable shell),
EOT (a randomized or search shell) and the shell-aware attacks, with more restarts. Each further round doubles every
budget, until a round moves robust accuracy by less than 0.5 pp or the time cap would be passed: no
round starts whose expected time (twice the last round's) would end it past the cap.
The rounds run in the main phase under their own names (`square@esc1`), so the worst case per
point includes them and the ladder shows them. Nothing escalates when no indicator fires.

Indicators (per target, Pintor et al. 2022 and Carlini et al. 2019):
- zero or non-finite input gradients on ≥ 5 % of the points (for the shell: F's gradient at the
  shell's search point, the straight-through view),
- a gradient attack's loss trace that is flat, non-finite, or still rising at its end,
- black-box or noise attacks breaking points the white-box attacks left (score- and
  decision-based on either target; noise on F, where it runs after the gradient attacks),
- an unbounded attack (ε = the whole input range) below 100 %,
- doubling every budget moving robust accuracy by ≥ 0.5 pp,
- more restarts (the restart check, `robustness_eval.restart_check`) moving it by ≥ 0.5 pp,
- a ladder still falling steeply at its end: the last adaptive attack (shell-aware, BPDA, EOT)
  that broke anything broke ≥ 5 % of the points it attacked, so more of the same would likely
  break more (the doubled-budget round's question, asked of runs without one).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from attacks.base import Attack
from attacks.registry import ESCALATION, escalation_attack
from robustness_eval.ascent import input_gradient
from robustness_eval.options import ESCALATION_CAP_SECONDS as TIME_CAP_SECONDS
from robustness_eval.records import EscalationRound, GradientDiagnostics, ResultsRecord
from robustness_eval.runner import Run, run_more, summarise
from robustness_eval.sanity import trace_shape
from robustness_eval.types import ADAPTIVE_KINDS, BLACK_BOX_KINDS, GRADIENT_KINDS, AttackKind, breaks_of
from shells.base import capabilities

ZERO_GRADIENT_SHARE = 0.05
STOP_PP = 0.5
STEEP_SHARE = 0.05  # the last adaptive attack with breaks broke at least this share of what it attacked


def gradient_diagnostics(model: nn.Module, shell: nn.Module, x: torch.Tensor,
                         y: torch.Tensor) -> dict[str, GradientDiagnostics]:
    """Per target: the share of points with zero or non-finite input gradients of F's cross-entropy, and the
    spread of the gradient norms (90th / 10th percentile). For the shell the gradient is F's at z* = H(x)."""
    out = {}
    points = {"base": x}
    if "search" in capabilities(shell):
        with torch.no_grad():
            points["shell"] = shell.search(x.clone())  # a copy: a shell never edits the points
    for target, z in points.items():
        z = z.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            grad = input_gradient(nn.functional.cross_entropy(model(z), y, reduction="none"), z)
        flat = grad.flatten(1)
        finite = torch.isfinite(flat).all(1)
        zero = finite & (flat.abs().amax(1) == 0)
        norms = flat[finite].norm(dim=1)
        spread = (float(norms.quantile(0.9) / norms.quantile(0.1).clamp_min(1e-30))
                  if len(norms) > 1 else float("nan"))
        out[target] = GradientDiagnostics(
            points=len(y), zero_gradient_share=float(zero.float().mean()),
            nonfinite_gradient_share=float((~finite).float().mean()),
            gradient_norm_median=float(norms.median()) if len(norms) else float("nan"),
            gradient_norm_spread_90_10=spread)
    return out


def indicators(results: ResultsRecord, diagnostics: dict[str, GradientDiagnostics], unbounded: dict[str, float] | None,
               target: str) -> list[str]:
    """The indicators that fire on `target` (see the module docstring), each as a readable sentence."""
    fired = []
    diag = diagnostics.get(target)
    if diag:
        share = diag.zero_gradient_share + diag.nonfinite_gradient_share
        if share >= ZERO_GRADIENT_SHARE:
            fired.append(f"zero or non-finite input gradients on {share:.0%} of the points")
    rungs = results.ladder(target)
    for rung in rungs:
        problem = trace_shape(rung.loss_trace) if rung.kind in GRADIENT_KINDS and rung.attacked else None
        if problem in ("non-finite", "flat", "still rising at its end"):
            fired.append(f"loss trace of {rung.name} {problem}")
    extra = breaks_of(rungs, BLACK_BOX_KINDS | ({AttackKind.BASELINE} if target == "base" else set()))
    if extra:
        fired.append(f"black-box or noise attacks broke {extra} point(s) the white-box attacks left")
    if unbounded and unbounded.get(target, 1.0) < 1.0:
        fired.append(f"the unbounded attack succeeds on only {unbounded[target]:.0%} of the points")
    breaking = [a for a in rungs if a.kind in ADAPTIVE_KINDS and a.new_breaks]
    if breaking and breaking[-1].new_breaks >= STEEP_SHARE * breaking[-1].attacked:
        last = breaking[-1]
        fired.append(f"the ladder is still falling steeply: {last.name}, the last adaptive attack with breaks, "
                     f"broke {last.new_breaks} of the {last.attacked} points it attacked")
    convergence, checks = results.extras.convergence, results.extras.restart_check or {}
    change = convergence.change_pp.get(target) if convergence is not None else None
    if change is not None and abs(change) >= STOP_PP:
        fired.append(f"doubling every budget moved robust accuracy by {change:+.1f} pp")
    check = checks.get(target)
    if check and -check.change_pp >= STOP_PP:
        fired.append(f"more restarts moved robust accuracy by {check.change_pp:+.1f} pp "
                     f"({check.new_breaks} point(s) broken by the restart check)")
    return fired


def round_attacks(target: str, offered: frozenset[str], number: int, surrogate: nn.Module | None) -> list[Attack]:
    """The attacks of round `number` (1, 2, ...) on `target`, from `attacks.registry.ESCALATION`; budgets and
    restarts double each round.

    Restarts begin past the deterministic start at x (`first_restart=1`): a round's own seeds give it
    new ODS and uniform starts. The targeted forms (toward each likely wrong class) join the untargeted
    ones, since a verdict that moves is one the battery's main attacks did not settle."""
    tag = f"@esc{number}"
    if target == "base":
        attacks = [escalation_attack(*entry, number, **({"surrogate": surrogate} if entry[0] == "bpda-base" else {}))
                   for entry in ESCALATION["base"]]
    else:
        candidates = [escalation_attack(*entry, number) for entry in ESCALATION["shell"]]
        attacks = [a for a in candidates if a.skip_reason(offered) is None]
        attacks += [escalation_attack(*entry, number) for entry in ESCALATION["shell-always"]]
    return [attack.renamed(attack.name + tag, target) for attack in attacks]


def stop_reason(moved_pp: float, elapsed: float, took: float, time_cap: float) -> str:
    """Why escalation stops after a round that moved robust accuracy by `moved_pp` and took `took` seconds,
    `elapsed` seconds into escalation; "" to go on. The next round doubles every budget, so it is expected
    to take twice as long: it does not start when it would end past the cap."""
    if moved_pp < STOP_PP:
        return "moved less than 0.5 pp"
    if elapsed > time_cap:
        return "time cap reached"
    if elapsed + 2 * took > time_cap:
        return f"time cap: the next round (about {2 * took:.0f} s at doubled budgets) would end past it"
    return ""


def escalate(result, run: Run, ran: list[Attack], unbounded: dict | None, surrogate: nn.Module | None = None,
             time_cap: float = TIME_CAP_SECONDS):
    """Escalation rounds for every target an indicator fires on, after `ran` (every attack run so far, in order);
    the final result, with `escalation` rounds."""
    model, shell, x, y = run.context.model, run.context.shell, run.context.x, run.context.y
    start = time.perf_counter()
    diagnostics = gradient_diagnostics(model, shell, x, y)
    rounds: list[EscalationRound] = []
    extra: list[Attack] = []
    current = result
    for target in ("base", "shell"):
        fired = indicators(current.record(), diagnostics, unbounded, target)
        number = 0
        while fired:
            number += 1
            before = current.robust_accuracy[target]
            attacks = round_attacks(target, run.context.offered("shell"), number, surrogate)
            began = time.perf_counter()
            run_more(attacks, run)
            extra += attacks
            current = summarise(run, {"main": [*ran, *extra]}, result.config)
            current.extras = {**result.extras, **current.extras}  # keep what came before (the restart check)
            after = current.robust_accuracy[target]
            moved = 100 * (before - after)
            stop = stop_reason(moved, time.perf_counter() - start, time.perf_counter() - began, time_cap)
            rounds.append(EscalationRound(
                round=number, target=target, indicators=fired, attacks=[a.name for a in attacks],
                new_breaks=round((before - after) * len(y)), robust_accuracy_before=before,
                robust_accuracy_after=after, seconds=time.perf_counter() - began, stopped=stop))
            if stop:
                break
            fired = [f"round {number} moved robust accuracy by {moved:.1f} pp"]
    current.escalation = [r.to_json() for r in rounds]
    current.extras["gradient_diagnostics"] = {target: d.to_json() for target, d in diagnostics.items()}
    return current

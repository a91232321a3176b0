"""Sanity checks: does this evaluation deserve trust? Each check is a small function returning a verdict.

Ideas from Carlini et al. 2019 ("On Evaluating Adversarial Robustness") and Pintor et al. 2022
("Indicators of Attack Failure"). A verdict says pass / warn / fail / not run, the figures
behind it, what failing means, and what to do. Checks read the finished results; a few run a
small extra experiment on the model and shell (unbounded attack, δ → 0 ablation, stability).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from robustness_eval.records import ResultsRecord, SanityVerdict
from robustness_eval.runner import Run, run_battery
from robustness_eval.types import ADAPTIVE_KINDS, BLACK_BOX_KINDS, AttackKind, Norm, Threat, breaks_of
from robustness_eval.units import Context
from robustness_eval.verify import predict_labels


def unbounded_attack(model: nn.Module, shell, x: torch.Tensor, y: torch.Tensor, threat: Threat,
                     seed: int = 0, attacks="pgd,cw,lookahead,minmax") -> SanityVerdict:
    """With ε at the full input range every point must fall, on F and on the shell.

    Failing means the attacks cannot even find an unconstrained adversarial example: they are
    broken, or the gradients they follow are masked. Fix the attack before trusting any figure.
    """
    width = threat.bounds.width
    eps = width if threat.norm is Norm.LINF else width * float(x[0].numel()) ** 0.5
    result = run_battery(Run(Context(model, shell, x, y, threat.with_eps(eps)), seed), attacks)
    rates = {t: result.attack_success_rate[t] for t in ("base", "shell")}
    figures = f"success at ε = {eps:g} on {len(y)} points: base {rates['base']:.0%}, shell {rates['shell']:.0%}"
    ok = all(r == 1.0 for r in rates.values())
    return SanityVerdict("unbounded attack reaches 100 %", "pass" if ok else "fail", figures,
                         "the attacks cannot find even an unconstrained adversarial example: they are "
                         "broken or follow masked gradients",
                         "" if ok else "inspect the attacks' loss traces; add restarts or steps", values=rates)


def silent_success(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat, seed: int = 0,
                   attack=None) -> SanityVerdict:
    """Pintor et al.'s silent success: an iterate of the attack was adversarial, but the point it
    returned is not. Checked on the battery's first gradient attack (PGD on F) by watching every
    iterate."""
    from attacks.pgd import PGD
    from robustness_eval.verify import verify
    from robustness_eval.views import BaseModelView

    seen = torch.zeros(len(y), dtype=torch.bool, device=y.device)

    class Watched(BaseModelView):
        def logits(self, z: torch.Tensor) -> torch.Tensor:
            out = self.model(z)
            wrong = (out.detach().argmax(1) != y.repeat(len(z) // len(y))).view(-1, len(y)).any(0)
            seen.logical_or_(wrong)
            return out

    attack = attack or PGD(budget=40, restarts=1)
    out = attack(Watched(model, threat.bounds), x, y, threat, seed=seed)
    returned = verify(model, x, out.x_adv, y, threat).success
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    silent = int((seen & ~returned & ~clean_wrong).sum())
    return SanityVerdict("no silent success", "pass" if silent == 0 else "fail",
                         f"points where an iterate was adversarial but the returned point was not: {silent}",
                         "the attack throws away adversarial examples it found", "keep the best iterate")


def monotone_in_eps(results: ResultsRecord) -> SanityVerdict:
    """Robust accuracy never rises with ε across a sweep (a rise means an attack failed at the larger ε)."""
    sweep = sorted(results.extras.sweep or [], key=lambda r: r.eps)
    by_delta: dict = {}
    for row in sweep:
        by_delta.setdefault(row.delta, []).append(row)
    rows = [r for group in by_delta.values() if len({x.eps for x in group}) > 1 for r in group]
    if not rows:
        return SanityVerdict("robust accuracy falls with ε", "not run", "no ε sweep in this run",
                             "run with --eps 0.05,0.1,0.2 to check", "")
    rises = []
    for group in by_delta.values():
        for a, b in itertools.pairwise(group):
            for t in ("base", "shell"):
                if b.robust_accuracy[t] > a.robust_accuracy[t] + 1e-9:
                    rises.append(f"{t}: {a.eps:g}→{b.eps:g}")
    return SanityVerdict("robust accuracy falls with ε", "fail" if rises else "pass",
                         "rises: " + ", ".join(rises) if rises else "non-increasing in every sweep",
                         "a rise means an attack failed at the larger ε", "raise budgets at larger ε")


def blackbox_vs_whitebox(results: ResultsRecord) -> SanityVerdict:
    """On F, black-box attacks must not break points the white-box attacks left standing."""
    extra = breaks_of(results.ladder("base"), BLACK_BOX_KINDS | {AttackKind.BASELINE})
    status = "pass" if extra == 0 else "warn"
    return SanityVerdict("white-box beats black-box on F", status,
                         f"points of F broken only by black-box or noise attacks: {extra}",
                         "if black-box attacks beat white-box ones on F, the white-box attack is weak or "
                         "F's gradients are masked", "" if extra == 0 else "strengthen the white-box attacks")


def convergence(results: ResultsRecord) -> SanityVerdict:
    """Doubling every budget should change robust accuracy by little; a large change means unconverged attacks."""
    conv = results.extras.convergence
    if conv is None:
        return SanityVerdict("budgets converged", "not run", "no doubled-budget run", "", "drop --no-convergence")
    worst = max(abs(v) for v in conv.change_pp.values())
    status = "pass" if worst <= 1.0 else "warn" if worst <= 3.0 else "fail"
    return SanityVerdict("budgets converged", status,
                         f"change with budgets ×2: base {conv.change_pp['base']:+.1f} pp, shell "
                         f"{conv.change_pp['shell']:+.1f} pp",
                         "the attacks had not converged: the reported robust accuracy is an overestimate",
                         "" if status == "pass" else "raise the budgets until doubling changes little")


def noise_vs_attacks(results: ResultsRecord) -> SanityVerdict:
    """Random noise at ε should break fewer points than the attacks do."""
    rungs = results.ladder("shell")
    noise = breaks_of(rungs, {AttackKind.BASELINE})
    attacks = breaks_of(rungs, set(AttackKind) - {AttackKind.BASELINE})
    if not any(a.kind == AttackKind.BASELINE for a in rungs):
        return SanityVerdict("attacks beat random noise", "not run", "no noise baseline in the battery", "", "")
    status = "pass" if noise < max(attacks, 1) else "fail"
    return SanityVerdict("attacks beat random noise", status,
                         f"on the shell: noise broke {noise}, the other attacks {attacks}",
                         "if noise breaks as many points as the attacks, the attacks are not working",
                         "" if status == "pass" else "check the attacks' losses and step sizes")


def trace_shape(trace: list[float]) -> str | None:
    """What is wrong with a gradient attack's loss trace: 'non-finite', 'flat', 'fell', 'still rising at its
    end', or None when it rose and levelled off (or is too short to judge)."""
    if len(trace) < 3:
        return None
    if not all(v == v and abs(v) != float("inf") for v in trace):
        return "non-finite"
    total = trace[-1] - trace[0]
    tail = trace[-1] - trace[-max(2, len(trace) // 10)]
    if abs(total) < 1e-6:
        return "flat"
    if total < 0:
        return "fell"
    if tail > 0.05 * abs(total):
        return "still rising at its end"
    return None


def loss_traces(results: ResultsRecord) -> list[SanityVerdict]:
    """Gradient attacks on the shell (BPDA, shell-aware, EOT) must make progress: a flat trace means masked
    gradients (Pintor et al.: unavailable gradients); a trace still rising at the end means incomplete
    optimization."""
    verdicts = []
    for a in results.ladder("shell"):
        if a.kind not in ADAPTIVE_KINDS or len(a.loss_trace) < 3:
            continue
        trace = a.loss_trace
        total = trace[-1] - trace[0]
        tail = trace[-1] - trace[-max(2, len(trace) // 10)]
        shape = trace_shape(trace)
        if shape == "non-finite":
            status, figures = "fail", "the loss trace holds NaN or inf"
        elif shape == "flat":
            status, figures = "fail", f"loss flat: {trace[0]:.4g} → {trace[-1]:.4g}"
        elif shape == "fell":
            status, figures = "warn", f"loss fell: {trace[0]:.4g} → {trace[-1]:.4g}"
        elif shape is not None:
            status, figures = "warn", f"still rising at the end: last steps +{tail:.3g} of +{total:.3g}"
        else:
            status, figures = "pass", f"loss {trace[0]:.4g} → {trace[-1]:.4g}, converged"
        verdicts.append(SanityVerdict(f"loss trace of {a.name}", status, figures,
                                      "flat: unavailable or masked gradients; rising at the end: "
                                      "incomplete optimization", "" if status == "pass" else "raise the budget"))
    return verdicts


def transfer_gap(results: ResultsRecord) -> SanityVerdict:
    """The paper's transfer-only protocol against the worst case: a large gap means it overstates robustness."""
    gap = results.transfer_robust_accuracy["shell"] - results.robust_accuracy["shell"]
    status = "pass" if gap <= 0.02 else "warn"
    return SanityVerdict("transfer-only vs adaptive gap", status,
                         f"shell robust accuracy: transfer only {results.transfer_robust_accuracy['shell']:.1%}, "
                         f"worst case {results.robust_accuracy['shell']:.1%} (gap {100 * gap:.1f} pp)",
                         "a large gap means the paper's transfer-only protocol overstates the shell's robustness",
                         "report the worst case, not the transfer-only figure")


def randomized_stability(shell, x: torch.Tensor, repeats: int = 9) -> SanityVerdict:
    """A randomized shell's verdicts on the same input should agree across repeated queries."""
    if not shell.randomized:
        return SanityVerdict("randomized shell is stable", "not run", "the shell is deterministic", "", "")
    labels = torch.stack([predict_labels(shell, x) for _ in range(repeats)])
    agreement = float((labels == labels.mode(dim=0).values).float().mean())
    status = "pass" if agreement >= 0.95 else "warn"
    return SanityVerdict("randomized shell is stable", status, f"label agreement over {repeats} queries: "
                         f"{agreement:.1%}", "unstable verdicts make single-query attack results meaningless",
                         "" if status == "pass" else "verify by larger majorities")


def unstable_predictions(shell, x: torch.Tensor, y: torch.Tensor, threat: Threat, seed: int = 0) -> SanityVerdict:
    """Pintor et al.'s unstable predictions: small random noise (ε/10) should not flip the shell's clean labels."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    from robustness_eval.norms import project, random_in_ball

    noisy = project(x + random_in_ball(tuple(x.shape), threat.eps / 10, threat.norm, g).to(x), x, threat.eps,
                    threat.norm, threat.bounds)
    flips = float((predict_labels(shell, noisy) != predict_labels(shell, x)).float().mean())
    status = "pass" if flips <= 0.02 else "warn"
    return SanityVerdict("predictions stable under small noise", status,
                         f"labels flipped by noise of ε/10: {flips:.1%}",
                         "unstable predictions make attack success depend on luck", "")


def ablation(model: nn.Module, shell_at_zero, x: torch.Tensor, y: torch.Tensor) -> SanityVerdict:
    """As δ → 0 the shell must become the base model: the same clean predictions on every point."""
    if shell_at_zero is None:
        return SanityVerdict("δ → 0 gives back F", "not run", "the shell has no radius to shrink", "", "")
    same = float((predict_labels(shell_at_zero, x) == predict_labels(model, x)).float().mean())
    status = "pass" if same == 1.0 else "fail"
    return SanityVerdict("δ → 0 gives back F", status, f"same label as F at δ = 0 on {same:.1%} of the points",
                         "a shell that differs from F at δ = 0 does something besides its search", "")


def run_all(results: ResultsRecord, run: Run, shell_at_zero, subset: int = 30,
            unbounded: dict | None = None) -> list[SanityVerdict]:
    """Every check; the experiments use the first `subset` points to stay cheap. `unbounded` is the
    unbounded-attack verdict when it was already run (escalation reads it first)."""
    model, shell, threat, seed = run.context.model, run.context.shell, run.context.threat, run.seed
    xs, ys = run.context.x[:subset], run.context.y[:subset]
    first = SanityVerdict.from_json(unbounded) if unbounded else unbounded_attack(model, shell, xs, ys, threat, seed)
    verdicts = [first, silent_success(model, xs, ys, threat, seed),
                monotone_in_eps(results),
                blackbox_vs_whitebox(results), convergence(results), noise_vs_attacks(results),
                *loss_traces(results), transfer_gap(results), randomized_stability(shell, xs),
                unstable_predictions(shell, xs, ys, threat, seed), ablation(model, shell_at_zero, xs, ys)]
    return verdicts

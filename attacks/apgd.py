"""APGD: PGD with momentum and an automatic step-size schedule, on F (transfer).

Paper: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020. Threat: L∞ or L2, ε. View: white-box base model F.
Budget: iterations (default 50). Queries: forward passes of F per point.
Defaults (the paper's): initial step 2ε, momentum α = 0.75, checkpoints at 0, 0.22, … of the
budget; at a checkpoint the step halves and the iterate returns to the best point when fewer
than ρ = 0.75 of the steps since the last one raised the loss, or when neither the step nor the
best loss changed. The CW margin loss; the first successful iterate is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from attacks.base import Attack, AttackOutput
from attacks.losses import margin
from robustness_eval.ascent import input_gradient
from robustness_eval.norms import ascent_direction, project
from robustness_eval.types import AttackKind, Bounds, Norm, Threat


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step size."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(q * steps) for q in p[1:] if q <= 1})


def apgd_ascent(
    loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    center: torch.Tensor, radius: float, norm: Norm, bounds: Bounds, steps: int,
    start: torch.Tensor, rho: float = 0.75,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Maximise `loss_fn` (per-row loss, per-row success) by APGD; return best point, success, trace."""
    rows = center.shape[0]
    view = (-1, *([1] * (center.dim() - 1)))

    def evaluate(z: torch.Tensor):
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            loss, success = loss_fn(z)
            grad = input_gradient(loss, z)
        return loss.detach(), success, grad

    x_k = project(start, center, radius, norm, bounds)
    loss, success, grad = evaluate(x_k)
    best, best_loss, done = x_k.clone(), loss.clone(), success.clone()
    eta = torch.full((rows,), 2.0 * radius, device=x_k.device)
    x_prev = x_k.clone()
    marks = set(checkpoints(steps))
    last_mark, increases = 0, torch.zeros(rows, device=x_k.device)
    eta_at_mark, best_at_mark = eta.clone(), best_loss.clone()
    trace = [float(loss.mean())]
    for k in range(steps):
        z = project(x_k + eta.view(view) * ascent_direction(grad, norm), center, radius, norm, bounds)
        alpha = 1.0 if k == 0 else 0.75
        x_new = project(x_k + alpha * (z - x_k) + (1 - alpha) * (x_k - x_prev), center, radius, norm,
                        bounds)
        new_loss, new_success, new_grad = evaluate(x_new)
        trace.append(float(new_loss.mean()))
        increases += (new_loss > loss).float()
        improve = ~done & (new_success | (new_loss > best_loss))
        best = torch.where(improve.view(view), x_new, best)
        best_loss = torch.where(improve, new_loss, best_loss)
        done |= new_success
        x_prev, x_k, loss, grad = x_k, x_new, new_loss, new_grad
        if bool(done.all()):
            break
        if k + 1 in marks:
            stalled = increases < rho * (k + 1 - last_mark)
            frozen = (eta == eta_at_mark) & (best_loss == best_at_mark)
            halve = stalled | frozen
            eta = torch.where(halve, eta / 2, eta)
            x_k = torch.where(halve.view(view), best, x_k)
            if bool(halve.any()):
                _, _, regrad = evaluate(x_k)
                grad = torch.where(halve.view(view), regrad, grad)
            last_mark, increases = k + 1, torch.zeros(rows, device=x_k.device)
            eta_at_mark, best_at_mark = eta.clone(), best_loss.clone()
    return best, done, trace


class APGD(Attack):
    """APGD with the margin loss on F (see module docstring)."""

    name = "apgd"
    kind = AttackKind.TRANSFER
    view = "base"
    description = "APGD (momentum, step-size schedule) on the base model, transferred"

    def __init__(self, budget: int = 50) -> None:
        super().__init__(budget)

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        def objective(z: torch.Tensor):
            logits = view.logits(z)
            return margin(logits, y), logits.argmax(1) != y

        best, _, trace = apgd_ascent(objective, x, threat.eps, threat.norm, threat.bounds, budget, x)
        return AttackOutput(best, torch.full((x.shape[0],), budget + 1, device="cpu"), {"loss": trace})

"""Projected gradient descent on the base model F, transferred to the shell.

Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018;
the margin loss is Carlini & Wagner's (S&P 2017).
Threat: L∞ or L2 ball of radius ε inside the input bounds.
View: white-box base model F (a *transfer* attack on the shell: the paper's protocol).
Budget: iterations per restart (default 40); `restarts` random starts (default 2).
Queries: forward passes of F per point (iterations × restarts).
Defaults: step 2.5·ε/iterations, uniform random start in the ball, the first successful iterate
of any restart is kept (otherwise the last iterate of the restart with the highest loss).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from attacks.base import Attack, AttackOutput
from attacks.losses import LOSSES
from robustness_eval.norms import ascent_direction, project, random_in_ball
from robustness_eval.types import AttackKind, Bounds, Norm, Threat, check_positive_int


def projected_ascent(
    loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    center: torch.Tensor, radius: float | torch.Tensor, norm: Norm, bounds: Bounds,
    steps: int, step_size: float | torch.Tensor, start: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[float]]:
    """Ascend `loss_fn` from `start` inside ball(center, radius) ∩ bounds.

    `loss_fn(z)` returns (per-row loss, per-row success flag). Returns the first successful
    iterate of each row (else the highest-loss one), its success flag, its loss, and the mean
    loss per step (the trace sanity checks read).
    """
    z = project(start, center, radius, norm, bounds)
    shape = (-1, *([1] * (z.dim() - 1)))
    best = z.clone()
    best_loss = torch.full((z.shape[0],), float("-inf"), dtype=z.dtype, device=z.device)
    done = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    step = torch.as_tensor(step_size, dtype=z.dtype, device=z.device)
    step = step.reshape(shape) if step.dim() else step
    trace = []
    with torch.enable_grad():
        for k in range(steps + 1):
            z.requires_grad_(True)
            loss, success = loss_fn(z)
            trace.append(float(loss.detach().mean()))
            improve = ~done & (success | (loss.detach() > best_loss))
            best = torch.where(improve.view(shape), z.detach(), best)
            best_loss = torch.where(improve, loss.detach(), best_loss)
            done = done | success
            if k == steps or bool(done.all()):
                break
            (grad,) = torch.autograd.grad(loss.sum(), z)
            z = project(z.detach() + step * ascent_direction(grad, norm), center, radius, norm, bounds)
    return best, done, best_loss, trace


class PGD(Attack):
    """Untargeted PGD on F with cross-entropy loss (see module docstring)."""

    name = "pgd"
    kind = AttackKind.TRANSFER
    view = "base"
    loss = "ce"
    description = "PGD on the base model (cross-entropy), transferred"

    def __init__(self, budget: int = 40, restarts: int = 2, rel_step: float = 2.5) -> None:
        super().__init__(budget)
        self.restarts = check_positive_int(restarts, "restarts")
        self.rel_step = rel_step

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, r = x.shape[0], self.restarts
        center = x.repeat(r, *([1] * (x.dim() - 1)))
        labels = y.repeat(r)
        start = center + random_in_ball(tuple(center.shape), threat.eps, threat.norm, generator).to(x)
        loss = LOSSES[self.loss]

        def objective(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = view.logits(z)
            return loss(logits, labels), logits.argmax(1) != labels

        best, success, best_loss, trace = projected_ascent(
            objective, center, threat.eps, threat.norm, threat.bounds, budget,
            self.rel_step * threat.eps / budget, start)
        # per point: a successful restart if any, else the restart with the highest loss
        score = torch.where(success, torch.full_like(best_loss, float("inf")), best_loss).view(r, n)
        pick = score.argmax(dim=0)
        x_adv = best.view(r, n, *x.shape[1:])[pick, torch.arange(n)]
        return AttackOutput(x_adv, success.view(r, n).any(0),
                            torch.full((n,), (budget + 1) * r, dtype=torch.long), {"loss": trace})


class CWMargin(PGD):
    """PGD on F with the Carlini–Wagner margin loss (see module docstring)."""

    name = "cw"
    loss = "margin"
    description = "PGD on the base model with the CW margin loss, transferred"

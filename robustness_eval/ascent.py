"""The projected-ascent core: one step rule shared by the attacks, the shells' searches and zoo training.

A step ascends a per-row objective: the gradient's steepest-ascent direction of unit norm (its
sign for L∞, its normalised value for L2), scaled by the step size, then projected into the ball
around `center` intersected with the input bounds. `projected_ascent` is the attacks' loop on it
(best iterate kept, early stop on success); MCN's inner search and the zoo's PGD training keep
their own bookkeeping around the same step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustness_eval.norms import ascent_direction, project
from robustness_eval.types import Bounds, Norm


def input_gradient(value: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """d value.sum() / dz; zero where `value` does not depend on `z` at all (a model that thresholds or
    compares its input cuts the graph: that is a masked gradient to report, not a crash)."""
    with torch.enable_grad():  # the caller may be under no_grad; `value`'s graph already exists
        if not value.requires_grad:
            return torch.zeros_like(z)
        (grad,) = torch.autograd.grad(value.sum(), z, allow_unused=True)
    return torch.zeros_like(z) if grad is None else grad


def ascent_step(z: torch.Tensor, value: torch.Tensor, center: torch.Tensor, radius: float | torch.Tensor,
                norm: Norm, bounds: Bounds, step: float | torch.Tensor) -> torch.Tensor:
    """One projected ascent step on `value` (per row, with a graph to `z`); returns the new z (detached)."""
    grad = input_gradient(value, z)
    return project(z.detach() + step * ascent_direction(grad, norm), center, radius, norm, bounds)


def projected_ascent(
    loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    ball: tuple[torch.Tensor, float | torch.Tensor], norm: Norm, bounds: Bounds,
    steps: int, step_size: float | torch.Tensor, start: torch.Tensor, stop_at_success: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[float]]:
    """Ascend `loss_fn` from `start` inside ball = (center, radius) ∩ bounds.

    `loss_fn(z)` returns (per-row loss, per-row success flag). Returns per row the first successful
    iterate (with `stop_at_success`, the attacks' default) or, without it, the highest-loss successful
    iterate of the whole budget (a transfer attack climbs on past F's first error, since a barely
    misclassified point is what a search shell reverts); a row that never succeeds returns its
    highest-loss iterate. Also returns the success flag, that iterate's loss, and the mean loss
    per step (the trace sanity checks read).
    """
    center, radius = ball
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
            higher = loss.detach() > best_loss
            if stop_at_success:
                improve = ~done & (success | higher)
            else:  # lexicographic: a success beats any failure, then the higher loss wins
                improve = (success & ~done) | ((success == done) & higher)
            best = torch.where(improve.view(shape), z.detach(), best)
            best_loss = torch.where(improve, loss.detach(), best_loss)
            done = done | success
            if k == steps or (stop_at_success and bool(done.all())):
                break
            z = ascent_step(z, loss, center, radius, norm, bounds, step)
    return best, done, best_loss, trace


def unrolled_ball_ascent(logits: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, radius: float,
                         norm: Norm, bounds: Bounds, unroll: int) -> torch.Tensor:
    """A differentiable copy of MCN's per-class search: per class t, `unroll` normalised-gradient steps on
    log softmax(logits)_t from z, projected to the `radius` ball, the graph kept (create_graph); the class
    whose end point is most confident wins, as the shell chooses. Returns the winners' points, graph to `z`."""
    n, shape = z.shape[0], tuple(z.shape[1:])
    with torch.no_grad():
        classes = logits(z[:1]).shape[1]
    target = torch.arange(classes, device=z.device).repeat(n)
    step = 2.5 * radius / unroll
    with torch.enable_grad():  # the ascent needs its own gradients even when the caller computes without any
        origin = z if z.requires_grad else z.detach().requires_grad_(True)
        center = origin[:, None].expand(n, classes, *shape).reshape(n * classes, *shape)
        w = center
        for _ in range(unroll):
            logp = torch.log_softmax(logits(w), 1).gather(1, target[:, None]).sum()
            (grad,) = torch.autograd.grad(logp, w, create_graph=True)
            flat = grad.flatten(1)
            size = flat.abs().amax(1) if norm is Norm.LINF else flat.norm(dim=1)
            w = w + step * grad / (size.view(-1, *([1] * len(shape))) + 1e-12)
            w = project(w, center, radius, norm, bounds)
    with torch.no_grad():
        conf = torch.softmax(logits(w), 1).gather(1, target[:, None]).view(n, classes)
    winner = conf.argmax(dim=1)
    return w.view(n, classes, *shape)[torch.arange(n, device=z.device), winner]

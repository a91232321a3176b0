"""Batched norm arithmetic: distances, projections onto balls and boxes, steepest-ascent steps.

Every function takes a batch whose first dimension indexes rows and treats the rest as one
flattened vector per row. Radii may be a float or a tensor with one entry per row.
"""

from __future__ import annotations

import math

import torch

from robustness_eval.types import Bounds, Norm

_TINY = 1e-12


def _per_row(radius: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or per-row radius to shape (rows, 1, 1, ...)."""
    r = torch.as_tensor(radius, dtype=like.dtype, device=like.device)
    if r.dim() == 0:
        r = r.expand(like.shape[0])
    return r.reshape(-1, *([1] * (like.dim() - 1)))


def distance(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The norm of each row of `delta` (shape: rows)."""
    flat = delta.flatten(1)
    if norm is Norm.LINF:
        return flat.abs().amax(dim=1)
    return flat.norm(p=2, dim=1)


def project_ball(delta: torch.Tensor, radius: float | torch.Tensor, norm: Norm) -> torch.Tensor:
    """Project each row of `delta` onto the `norm` ball of the given radius."""
    r = _per_row(radius, delta)
    if norm is Norm.LINF:
        return torch.maximum(torch.minimum(delta, r), -r)
    length = _per_row(distance(delta, norm), delta)
    return delta * torch.clamp(r / (length + _TINY), max=1.0)


def project(
    z: torch.Tensor, center: torch.Tensor, radius: float | torch.Tensor, norm: Norm, bounds: Bounds
) -> torch.Tensor:
    """Project `z` onto (ball of `radius` around `center`) ∩ bounds.

    For L∞ this is exact (both sets are boxes). For L2 the ball projection is followed by a
    clip; the result is in both sets, which is what verification and search need.
    """
    z = center + project_ball(z - center, radius, norm)
    return z.clamp(bounds.lower, bounds.upper)


def ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent direction of unit `norm` for a gradient (sign for L∞)."""
    if norm is Norm.LINF:
        return grad.sign()
    length = _per_row(distance(grad, norm), grad)
    return grad / (length + _TINY)


def random_in_ball(
    shape: tuple[int, ...], radius: float | torch.Tensor, norm: Norm, generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Points drawn uniformly from the `norm` ball (per-row radius allowed), on the CPU.

    Draws come from the seeded CPU `generator` whatever the device of the data, so a run on a GPU
    sees the same random stream as one on the CPU; callers move the result with `.to(x)`.
    """
    if isinstance(radius, torch.Tensor):
        radius = radius.cpu()
    if norm is Norm.LINF:
        u = torch.rand(shape, generator=generator, dtype=dtype, device="cpu") * 2 - 1
        return u * _per_row(radius, u)
    g = torch.randn(shape, generator=generator, dtype=dtype, device="cpu")
    direction = g / (_per_row(distance(g, norm), g) + _TINY)
    dims = max(1, math.prod(shape[1:]))
    scale = torch.rand(shape[0], generator=generator, dtype=dtype, device="cpu") ** (1.0 / dims)
    return direction * _per_row(scale, g) * _per_row(radius, g)

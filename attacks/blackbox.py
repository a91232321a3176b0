"""Helpers shared by the black-box attacks: the margin loss on oracle probabilities, input layouts."""

from __future__ import annotations

import math

import torch

from attacks.losses import margin


def oracle_margin(oracle, x: torch.Tensor, y: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    """Margin on log-probabilities from the oracle: > 0 means the shell misclassifies the row."""
    probs = oracle(x, point)
    return margin(torch.log(probs.clamp_min(1e-12)), y)


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A (channels, height, width) view of an input: images as they are, flat square vectors as
    one-channel squares (digits' 64 → 1×8×8), other vectors as one row."""
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    size = math.prod(shape)
    side = math.isqrt(size)
    return (1, side, side) if side * side == size else (1, 1, size)

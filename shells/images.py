"""Inputs as images for the image-transforming shells: (B, C, H, W) and back to the caller's shape.

A batch already of shape (B, C, H, W) is used as it is; a flat batch (B, d) is read as one square
grey image when d is a perfect square (digits' 8 × 8, MNIST's 28 × 28 flattened), else as one row of
d pixels, so every shell accepts every input the suite can draw. `image_shape` (C, H, W) overrides.
"""

from __future__ import annotations

import math

import torch


def image_view(x: torch.Tensor, image_shape: tuple[int, int, int] | None = None) -> torch.Tensor:
    """`x` reshaped to (B, C, H, W)."""
    if image_shape is not None:
        return x.reshape(x.shape[0], *image_shape)
    if x.dim() == 4:
        return x
    if x.dim() == 3:
        return x[:, None]
    features = int(math.prod(x.shape[1:]))
    side = math.isqrt(features)
    if side * side == features:
        return x.reshape(x.shape[0], 1, side, side)
    return x.reshape(x.shape[0], 1, 1, features)


def check_image_shape(image_shape) -> tuple[int, int, int] | None:
    """None, or `image_shape` as three positive integers (C, H, W)."""
    if image_shape is None:
        return None
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"`image_shape` must be three positive integers (C, H, W) or None (got {image_shape!r})")
    return shape

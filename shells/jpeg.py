"""JPEG compression as a purifying shell (Guo et al., "Countering Adversarial Images using Input
Transformations", ICLR 2018; Dziugaite et al. 2016), batched in torch.

G = F ∘ H with H(x) the JPEG round trip of x at `quality`: each channel shifted to [−128, 127] on
the 0–255 scale of the bounds, cut into 8 × 8 blocks (edge-padded), DCT-II, quantised with the
standard luminance table of the JPEG specification (ITU-T T.81, Annex K) scaled to `quality` as
the IJG library scales it, dequantised, inverse DCT, rounded to 8-bit values and mapped back. Every
channel is coded with the luminance table and no chroma subsampling (grey images are the common
case here). H is deterministic and piecewise constant (rounding), so the shell offers `search`:
gradient attacks go straight through it (BPDA), as Athalye et al. (2018) broke it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robustness_eval.types import Bounds
from shells.base import Shell
from shells.images import check_image_shape, image_view

LUMINANCE = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=torch.float64)


def quantisation_table(quality: int) -> torch.Tensor:
    """The luminance table scaled to `quality` (1–100) by the IJG rule; entries at least 1."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return torch.clamp(torch.floor((LUMINANCE * scale + 50) / 100), min=1)


def dct_matrix(size: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (D @ block @ D.T is the 2-D transform)."""
    k = torch.arange(size, dtype=torch.float64)[:, None]
    n = torch.arange(size, dtype=torch.float64)[None]
    matrix = torch.cos(math.pi * (2 * n + 1) * k / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix


def jpeg_round_trip(images: torch.Tensor, quality: int, bounds: Bounds) -> torch.Tensor:
    """The JPEG round trip of (B, C, H, W) `images` in `bounds`, same shape and dtype."""
    b, c, h, w = images.shape
    levels = ((images.float() - bounds.lower) / bounds.width * 255).clamp(0, 255) - 128
    pad_h, pad_w = -h % 8, -w % 8
    padded = nn.functional.pad(levels, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else levels
    blocks = padded.unfold(2, 8, 8).unfold(3, 8, 8)  # B, C, H/8, W/8, 8, 8
    d = dct_matrix().to(images.device, torch.float32)
    table = quantisation_table(quality).to(images.device, torch.float32)
    coefficients = d @ blocks @ d.T
    restored = d.T @ (torch.round(coefficients / table) * table) @ d
    rows = restored.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h + pad_h, w + pad_w)[:, :, :h, :w]
    pixels = torch.round(rows + 128).clamp(0, 255)
    return (bounds.lower + pixels / 255 * bounds.width).to(images.dtype)


class JPEGShell(Shell):
    """Classify the JPEG-compressed input (see module docstring).

    Args:
        model: base classifier F returning logits.
        quality: JPEG quality, 1–100 (default 75, Guo et al.'s setting).
        bounds: input box, mapped to 0–255.
        image_shape: (C, H, W) of a flat input, when it is not one square grey image.
    """

    kind = "jpeg"

    def __init__(self, model: nn.Module, quality: int = 75, bounds: Bounds = Bounds(),
                 image_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__(model, "linf", bounds)
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ValueError(f"`quality` must be an integer from 1 to 100 (got {quality!r})")
        self.quality, self.image_shape = quality, check_image_shape(image_shape)
        self.radius = bounds.width  # no limit on the move but the box itself

    def search(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        return jpeg_round_trip(image_view(x, self.image_shape), self.quality, self.bounds).reshape(x.shape)

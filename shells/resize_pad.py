"""Random resizing and padding as a randomized, differentiable shell (Xie, Wang, Zhang, Ren & Yuille,
"Mitigating Adversarial Effects Through Randomization", ICLR 2018).

Each query resizes the H × W image to r × r' pixels (r uniform in [H, P], P = ⌊scale·H⌋ but at
least H + 1, likewise r'), pads it with the lower bound at a random offset to P × P' (Xie et al.:
299 → [299, 331) → 331, a scale of 1.107), and, because F takes the original size, sees the frame at
H × W: one bilinear resampling by the affine map this composes to, batched (`affine_grid`). Draws
come from the shell's own generator. Every step is differentiable in x, so the shell declares
`differentiable`: white-box attacks run on G end to end and EOT averages their gradients over
draws, as Athalye et al. (2018) broke it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robustness_eval.types import Bounds
from shells.base import RandomizedShell
from shells.images import check_image_shape, image_view


class ResizePadShell(RandomizedShell):
    """Classify a randomly resized and padded copy of the input (see module docstring).

    Args:
        model: base classifier F returning logits.
        scale: the padded size over the original (default 331 / 299, Xie et al.'s).
        bounds: input box (padding takes its lower value).
        image_shape: (C, H, W) of a flat input, when it is not one square grey image.
        seed: seed of the shell's generator (`reseed` restarts the sequence).
    """

    kind = "resize-pad"
    differentiable = True

    def __init__(self, model: nn.Module, scale: float = 331 / 299, bounds: Bounds = Bounds(),
                 image_shape: tuple[int, int, int] | None = None, seed: int = 0) -> None:
        super().__init__(model, "linf", bounds)
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not 1.0 <= scale <= 4.0:
            raise ValueError(f"`scale` must be a number from 1 to 4 (got {scale!r})")
        self.scale, self.image_shape = float(scale), check_image_shape(image_shape)
        self.radius = bounds.width  # no limit on the move but the box itself
        self.reseed(seed)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """One draw per point, shape of `x`, graph kept: the input resized to r × r' inside a P × P' frame
        of padding at a random offset, seen at the original size (one affine bilinear resampling)."""
        images = image_view(x, self.image_shape)
        b, _, h, w = images.shape
        frame = torch.tensor([max(h + 1, math.floor(self.scale * h)), max(w + 1, math.floor(self.scale * w))])
        low = torch.tensor([h, w])
        size = low + (torch.rand((b, 2), generator=self.generator) * (frame - low + 1)).long().clamp_max(frame - low)
        offset = (torch.rand((b, 2), generator=self.generator) * (frame - size + 1)).long().clamp_max(frame - size)
        shrink = size.double() / frame  # the content's share of the frame, rows and columns
        centre = -1 + (2 * offset + size).double() / frame
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 1, 1] = 1 / shrink[:, 1], 1 / shrink[:, 0]
        theta[:, 0, 2], theta[:, 1, 2] = -centre[:, 1] / shrink[:, 1], -centre[:, 0] / shrink[:, 0]
        grid = nn.functional.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
        shifted = images - self.bounds.lower  # zero padding outside the content is the lower bound
        seen = nn.functional.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return (seen + self.bounds.lower).reshape(x.shape)

    def sample_points(self, x: torch.Tensor) -> torch.Tensor:
        """One query's draw: shape (B, 1, *input)."""
        return self.transform(x.detach())[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.base_model(self.transform(x)), dim=1)

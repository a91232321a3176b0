"""Total-variation minimisation with random pixel dropout as a randomized purifying shell (Guo et al.,
"Countering Adversarial Images using Input Transformations", ICLR 2018, §3).

Each query keeps every pixel with probability `keep` (a Bernoulli mask X drawn from the shell's own
generator, shared by a pixel's channels) and reconstructs the image z minimising
‖X ⊙ (z − x)‖² + λ·TV(z) (TV: the sum of the smoothed magnitudes of horizontal and vertical
differences), by `steps` projected gradient steps of size 1/L (L the objective's smoothness bound)
from the kept pixels, the dropped ones started at the kept pixels' mean, kept inside the bounds; F
classifies z. The
answer depends on the draw, so the shell is randomized and exposes `sample_points(x)` (one draw:
the reconstruction): EOT averages gradients over draws and passes them straight through the
reconstruction, BPDA+EOT as Athalye et al. (2018) broke it.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness_eval.types import Bounds, check_nonnegative, check_positive_int, check_probability
from shells.base import RandomizedShell
from shells.images import check_image_shape, image_view

SMOOTHING = 1e-2  # of the TV magnitudes, on the 0–1 scale: keeps the objective smooth enough for fixed steps


def total_variation(images: torch.Tensor, smoothing: float = SMOOTHING) -> torch.Tensor:
    """Per image, the sum of sqrt(Δ² + smoothing) over horizontal and vertical neighbour differences."""
    down = images[:, :, 1:] - images[:, :, :-1]
    right = images[:, :, :, 1:] - images[:, :, :, :-1]
    return (down**2 + smoothing).sqrt().flatten(1).sum(1) + (right**2 + smoothing).sqrt().flatten(1).sum(1)


class TVMShell(RandomizedShell):
    """Classify a TV-minimising reconstruction from randomly kept pixels (see module docstring).

    Args:
        model: base classifier F returning logits.
        keep: probability that a pixel is kept (Guo et al. drop pixels at random; default 0.5).
        weight: λ, the weight of total variation (per pixel, on the 0–1 scale of the bounds).
        steps: gradient steps of the reconstruction.
        bounds: input box.
        image_shape: (C, H, W) of a flat input, when it is not one square grey image.
        seed: seed of the shell's generator (`reseed` restarts the sequence).
    """

    kind = "tvm"

    def __init__(self, model: nn.Module, keep: float = 0.5, weight: float = 0.03, steps: int = 40,
                 bounds: Bounds = Bounds(), image_shape: tuple[int, int, int] | None = None, seed: int = 0) -> None:
        super().__init__(model, "linf", bounds)
        self.keep = check_probability(keep, "keep")
        self.weight = check_nonnegative(weight, "weight")
        self.steps = check_positive_int(steps, "steps")
        self.image_shape = check_image_shape(image_shape)
        self.radius = bounds.width  # no limit on the move but the box itself
        self.reseed(seed)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """One draw: the TV reconstruction of `x` from a random subset of its pixels, shape of `x`."""
        images = image_view(x.detach(), self.image_shape)
        b, _, h, w = images.shape
        mask = (torch.rand((b, 1, h, w), generator=self.generator) < self.keep).to(images.device, images.dtype)
        unit = ((images - self.bounds.lower) / self.bounds.width).clamp(0, 1)
        kept = mask.expand_as(unit)
        share = kept.flatten(2).sum(2).clamp_min(1)[..., None, None]
        fill = (kept * unit).flatten(2).sum(2)[..., None, None] / share  # dropped pixels start at the kept mean
        z = torch.where(kept > 0, unit, fill.expand_as(unit)).clone()
        step = 1 / (2 + 8 * self.weight / SMOOTHING**0.5)  # 1 / the gradient's Lipschitz bound
        with torch.enable_grad():
            for _ in range(self.steps):
                z.requires_grad_(True)
                loss = ((kept * (z - unit) ** 2).flatten(1).sum(1) + self.weight * total_variation(z)).sum()
                (grad,) = torch.autograd.grad(loss, z)
                z = (z.detach() - step * grad).clamp(0, 1)
        return (self.bounds.lower + z.detach() * self.bounds.width).reshape(x.shape)

    def sample_points(self, x: torch.Tensor) -> torch.Tensor:
        """One query's draw: shape (B, 1, *input)."""
        return self.reconstruct(x)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.base_model(self.reconstruct(x)), dim=1)

"""Defense-GAN's projection as a search shell (Samangouei, Kabkab & Chellappa, "Defense-GAN:
Protecting Classifiers Against Adversarial Attacks Using Generative Models", ICLR 2018).

H(x) = gen(w*), w* = argmin_w ‖gen(w) − x‖² found by `steps` (L) steps of gradient descent in the
generator's latent space from `starts` (R) starts drawn from N(0, I); the closest reconstruction
over the starts is classified. The starts are drawn once per call from a generator seeded by
`seed`, so the same input always gets the same answer (the paper draws fresh starts; fixed ones
make the shell deterministic and its breaks reproducible). With `radius` set, H(x) is moved back
into the L∞ ball of that radius around x (the variant moved by at most δ); without, it is
unlimited, as in the paper. H is an inner optimisation, so the shell offers `search` and gradient
attacks go straight through it (BPDA), as Athalye et al. (2018) broke it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustness_eval.modules import eval_mode
from robustness_eval.types import Bounds, check_nonnegative, check_positive_int
from shells.base import Shell


@dataclass
class ProjectionSettings:
    """How Defense-GAN projects (see `DefenseGANShell` for each field), validated where it is built."""

    steps: int = 100
    starts: int = 8
    lr: float = 0.1
    radius: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.steps = check_positive_int(self.steps, "steps")
        self.starts = check_positive_int(self.starts, "starts")
        self.lr = check_nonnegative(self.lr, "lr")
        self.radius = None if self.radius is None else check_nonnegative(self.radius, "radius")


class DefenseGANShell(Shell):
    """Classify the generator's closest reconstruction of the input (see module docstring).

    Args:
        model: base classifier F returning logits.
        generator: a module mapping latent vectors (B, latent) to inputs inside `bounds` (the zoo's VAE
            decoder: `robustness_eval.generative.load_generative(dataset, "vae").decoder`).
        latent: the latent dimension.
        bounds: input box.

    Settings (keywords, `ProjectionSettings`):
        steps: L, gradient steps per start (Adam, learning rate `lr`).
        starts: R, random starts per input.
        radius: None (unlimited) or the L∞ radius H(x) is moved back into.
        seed: seed of the starts.
    """

    kind = "defense-gan"
    settings_type = ProjectionSettings

    def __init__(self, model: nn.Module, generator: nn.Module, latent: int, bounds: Bounds = Bounds(),
                 **settings) -> None:
        super().__init__(model, "linf", bounds)
        if not isinstance(generator, nn.Module):
            raise TypeError(f"`generator` must be a torch.nn.Module (got {type(generator).__name__})")
        self.generator_net = eval_mode(generator)
        self.latent = check_positive_int(latent, "latent")
        self.limit = self.use_settings(settings).radius
        self.radius = bounds.width if self.limit is None else self.limit

    def search(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        b, shape = x.shape[0], tuple(x.shape[1:])
        draws = torch.Generator(device="cpu").manual_seed(self.seed)
        w = torch.randn((self.starts, self.latent), generator=draws).to(x.device, x.dtype)
        w = w[None].expand(b, -1, -1).reshape(b * self.starts, self.latent).clone().requires_grad_(True)
        target = x.repeat_interleave(self.starts, 0)
        optimizer = torch.optim.Adam([w], lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                error = ((self.generator_net(w).reshape(target.shape) - target) ** 2).flatten(1).sum(1)
                optimizer.zero_grad()
                error.sum().backward()
                optimizer.step()
        with torch.no_grad():
            made = self.generator_net(w).reshape(target.shape)
            error = ((made - target) ** 2).flatten(1).sum(1).view(b, self.starts)
            best = made.view(b, self.starts, *shape)[torch.arange(b, device=x.device), error.argmin(1)]
        if self.limit is not None:
            best = torch.minimum(torch.maximum(best, x - self.limit), x + self.limit)
        return best.clamp(self.bounds.lower, self.bounds.upper)

"""DiffPure: diffusion purification as a randomized, differentiable shell (Nie, Guo, Huang, Xiao, Vahdat &
Anandkumar, "Diffusion Models for Adversarial Purification", ICML 2022).

Each query rescales x to [−1, 1], diffuses it to step t* of the forward process,
x_t* = √ᾱ_t*·x + √(1 − ᾱ_t*)·ε, runs the reverse process back to t = 0 in `steps` ancestral DDPM steps on a
respaced schedule (t* … 0 in `steps` equal strides, Nichol & Dhariwal 2021), and F classifies the result. Nie
et al. solve the reverse SDE of a VP-SDE; the ancestral DDPM sampler is its standard discretisation. Every draw
(the diffusion's noise and each reverse step's) comes from the shell's own generator, so `reseed` fixes every
answer and a fixed seed makes the shell a deterministic function (the fixed-randomness protocol of Liu & Wei).

The whole map is differentiable and the graph is kept through every reverse step, each step under gradient
checkpointing, so an attack's memory grows with one step's activations rather than `steps` of them (a step's
noise is drawn before it runs, so its recomputation in the backward pass is exact). The shell declares
`differentiable` and offers `surrogate()`: the same purification with `surrogate_steps` reverse steps (Lee &
Kim, ICCV 2023, attack through a shorter chain set apart from the defense's), which attacks differentiate while
every break is verified on the shell itself.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from robustness_eval.modules import eval_mode
from robustness_eval.types import Bounds, check_positive_int
from shells.base import RandomizedShell


def reverse_schedule(t_star: int, steps: int) -> list[tuple[int, int]]:
    """The (from, to) steps of a respaced reverse process from t* down to 0 in `steps` strides."""
    times = torch.linspace(t_star, 0, steps + 1, device="cpu").round().long().tolist()
    return list(itertools.pairwise(times))


class DiffPureShell(RandomizedShell):
    """Classify the diffusion-purified input (see module docstring).

    Args:
        model: base classifier F returning logits.
        denoiser: a noise predictor ε(x_t, t) on inputs rescaled to [−1, 1], with its schedule ᾱ_0 … ᾱ_T as the
            buffer `alpha_bar` (the zoo's: `robustness_eval.generative.load_generative(dataset, "diffusion")`).
        t_star: the diffusion step t* the input is noised to (1 … T).
        steps: reverse steps from t* to 0 (1 … t*).
        surrogate_steps: reverse steps of the attack-time surrogate (default: a quarter of `steps`, at least 1).
        bounds: input box.
        seed: seed of the shell's generator (`reseed` restarts the sequence).
    """

    kind = "diffpure"
    differentiable = True

    def __init__(self, model: nn.Module, denoiser: nn.Module, t_star: int = 20, steps: int = 10,
                 surrogate_steps: int | None = None, bounds: Bounds = Bounds(), seed: int = 0) -> None:
        super().__init__(model, "linf", bounds)
        if not isinstance(denoiser, nn.Module) or not isinstance(getattr(denoiser, "alpha_bar", None), torch.Tensor):
            raise TypeError("`denoiser` must be a torch.nn.Module ε(x_t, t) with its schedule as the tensor "
                            f"`alpha_bar` (got {type(denoiser).__name__})")
        self.denoiser = eval_mode(denoiser)
        horizon = len(denoiser.alpha_bar) - 1
        self.t_star = check_positive_int(t_star, "t_star")
        if self.t_star > horizon:
            raise ValueError(f"`t_star` must be at most the denoiser's T = {horizon} (got {t_star})")
        self.steps = check_positive_int(steps, "steps")
        if self.steps > self.t_star:
            raise ValueError(f"`steps` must be at most `t_star` = {self.t_star} (got {steps})")
        self.surrogate_steps = (max(1, self.steps // 4) if surrogate_steps is None
                                else check_positive_int(surrogate_steps, "surrogate_steps"))
        if self.surrogate_steps > self.steps:
            raise ValueError(f"`surrogate_steps` must be at most `steps` = {self.steps} (got {surrogate_steps})")
        self.radius = bounds.width  # no limit on the move but the box itself
        self.reseed(seed)

    def _draw(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, dtype=torch.float32, device="cpu").to(like)

    def _reverse_step(self, z: torch.Tensor, noise: torch.Tensor, now: int, then: int) -> torch.Tensor:
        """One ancestral step from t = `now` to t = `then` < now: the posterior q(x_then | x_now, x̂_0)."""
        alpha_bar = self.denoiser.alpha_bar.to(z)
        a_now, a_then = alpha_bar[now], alpha_bar[then]
        predicted = self.denoiser(z, torch.full((z.shape[0],), now, device=z.device, dtype=torch.long))
        clean = (z - (1 - a_now).sqrt() * predicted) / a_now.sqrt()
        alpha = a_now / a_then
        mean = (a_then.sqrt() * (1 - alpha) * clean + alpha.sqrt() * (1 - a_then) * z) / (1 - a_now)
        return mean + ((1 - alpha) * (1 - a_then) / (1 - a_now)).sqrt() * noise

    def purify(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """One draw: `x` diffused to t* and denoised back in `steps` reverse steps (default the shell's), shape of
        `x`, inside the bounds; the graph to `x` is kept (checkpointed per step) when gradients are on."""
        lower, width = self.bounds.lower, self.bounds.width
        z = 2 * (x - lower) / width - 1
        alpha_bar = self.denoiser.alpha_bar.to(z)[self.t_star]
        z = alpha_bar.sqrt() * z + (1 - alpha_bar).sqrt() * self._draw(z)
        keep_graph = torch.is_grad_enabled() and z.requires_grad
        for now, then in reverse_schedule(self.t_star, steps or self.steps):
            noise = self._draw(z) if then > 0 else torch.zeros_like(z)
            if keep_graph:
                z = checkpoint(self._reverse_step, z, noise, now, then, use_reentrant=False)
            else:
                z = self._reverse_step(z, noise, now, then)
        return lower + width * (z.clamp(-1, 1) + 1) / 2

    def sample_points(self, x: torch.Tensor) -> torch.Tensor:
        """One query's draw: the purified input, shape (B, 1, *input)."""
        with torch.no_grad():
            return self.purify(x.detach())[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.base_model(self.purify(x)), dim=1)

    def surrogate(self) -> DiffPureShell:
        """The attack-time surrogate: this purification with `surrogate_steps` reverse steps, its own generator."""
        return DiffPureShell(self.base_model, self.denoiser, self.t_star, self.surrogate_steps, self.surrogate_steps,
                             self.bounds, seed=self.seed + 1)

"""Factories for the shells the suite ships, in the `module:factory` form the kit takes (the defenses' trained
parts replaced by small seeded modules of the drawn input's size)."""

from __future__ import annotations

import torch
from torch import nn

from robustness_eval.generative import Autoencoder, Denoiser
from shells import (
    BitDepthShell,
    DefenseGANShell,
    DiffPureShell,
    IdentityShell,
    JPEGShell,
    MagNetShell,
    MCNShell,
    NCNShell,
    ResizePadShell,
    TVMShell,
    VoteShell,
)


def mcn_linf(model: nn.Module) -> MCNShell:
    return MCNShell(model, 0.2, "linf", steps=10, restarts=2)


def mcn_l2(model: nn.Module) -> MCNShell:
    return MCNShell(model, 0.5, "l2", steps=10, objective="cw")


def ncn_bisection(model: nn.Module) -> NCNShell:
    return NCNShell(model, 0.8, "linf", max_radius=0.3, method="bisection", steps=8, rounds=5)


def ncn_penalty(model: nn.Module) -> NCNShell:
    return NCNShell(model, 0.8, "l2", max_radius=0.8, method="penalty", steps=10, rounds=4, lr=0.05)


def vote(model: nn.Module) -> VoteShell:
    return VoteShell(model, 0.1, samples=8, seed=0)


def identity(model: nn.Module) -> IdentityShell:
    return IdentityShell(model)


def _features(model: nn.Module) -> int:
    """The input size of a base model: its first linear layer's, or the kit's drawn model's (its first weight
    is in_features × hidden)."""
    linear = next((layer for layer in model.modules() if isinstance(layer, nn.Linear)), None)
    return linear.in_features if linear is not None else next(model.parameters()).shape[0]


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
    return module.eval()


def magnet(model: nn.Module) -> MagNetShell:
    return MagNetShell(model, _seeded(Autoencoder((_features(model),), latent=4, hidden=16)))


def defense_gan(model: nn.Module) -> DefenseGANShell:
    generator = _seeded(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, _features(model)), nn.Sigmoid()))
    return DefenseGANShell(model, generator, latent=4, steps=20, starts=3)


def defense_gan_delta(model: nn.Module) -> DefenseGANShell:
    generator = _seeded(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, _features(model)), nn.Sigmoid()))
    return DefenseGANShell(model, generator, latent=4, steps=20, starts=3, radius=0.2)


def jpeg(model: nn.Module) -> JPEGShell:
    return JPEGShell(model, quality=50)


def tvm(model: nn.Module) -> TVMShell:
    return TVMShell(model, keep=0.7, steps=10, seed=0)


def bit_depth(model: nn.Module) -> BitDepthShell:
    return BitDepthShell(model, bits=2)


def resize_pad(model: nn.Module) -> ResizePadShell:
    return ResizePadShell(model, seed=0)


def diffpure(model: nn.Module) -> DiffPureShell:
    return DiffPureShell(model, _seeded(Denoiser((_features(model),), embedding=8, hidden=16, depth=2)), t_star=10,
                         steps=5, seed=0)


SHIPPED = ["mcn_linf", "mcn_l2", "ncn_bisection", "ncn_penalty", "vote", "identity", "magnet", "defense_gan",
           "defense_gan_delta", "jpeg", "tvm", "bit_depth", "resize_pad", "diffpure"]

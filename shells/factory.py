"""Build a shell from its name and public parameters (what the CLI and evaluate() accept)."""

from __future__ import annotations

from torch import nn

from robustness_eval.types import Bounds, Norm
from shells.base import SHELL_KINDS, IdentityShell, Shell
from shells.mcn import MCNShell
from shells.ncn import NCNShell
from shells.vote import VoteShell


def build_shell(kind: str, model: nn.Module, norm: Norm | str, bounds: Bounds, delta: float,
                p: float = 0.9, seed: int = 0, **options) -> Shell:
    """A shell of `kind` around `model`; `options` go to the shell's constructor."""
    if kind == "mcn":
        return MCNShell(model, delta, norm, bounds, seed=seed, **options)
    if kind == "ncn":
        return NCNShell(model, p, norm, bounds, max_radius=delta, seed=seed, **options)
    if kind == "vote":
        return VoteShell(model, delta, norm, bounds, seed=seed, **options)
    if kind == "none":
        return IdentityShell(model, norm, bounds)
    raise ValueError(f"unknown shell {kind!r}; choose one of: {', '.join(SHELL_KINDS)}")

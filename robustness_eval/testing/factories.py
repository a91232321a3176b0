"""Factories for the shells the suite ships, in the `module:factory` form the kit takes."""

from __future__ import annotations

from torch import nn

from shells import IdentityShell, MCNShell, NCNShell, VoteShell


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


SHIPPED = ["mcn_linf", "mcn_l2", "ncn_bisection", "ncn_penalty", "vote", "identity"]

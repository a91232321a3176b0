"""The invariants a shell must satisfy, each a named, documented check with a counterexample.

An invariant receives a factory (base model → shell) and a drawn `Case`, and raises
`InvariantViolationError` with the figures when the shell breaks it. `applies_to(shell)` reads what
the shell offers (its capabilities, whether it is randomized, its threshold), never its name, so an
author's new shell runs exactly the checks that hold for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from robustness_eval.norms import distance, random_in_ball
from shells.base import Shell, capabilities

TOL = 1e-5


class InvariantViolationError(AssertionError):
    """Raised by an invariant with the figures that show the violation."""


@dataclass(frozen=True)
class Invariant:
    name: str
    doc: str
    check: Callable
    applies_to: Callable


def _has_search(shell) -> bool:
    """A factor shell: it implements `search` (the base class's placeholder does not count)."""
    method = getattr(type(shell), "search", None)
    return callable(method) and method is not Shell.search


def _deterministic(shell) -> bool:
    return not getattr(shell, "randomized", False)


def _factor(shell) -> bool:
    return _deterministic(shell) and _has_search(shell)


def _call(shell, x: torch.Tensor) -> torch.Tensor:
    return shell(x)


def valid_probabilities(factory, case) -> None:
    """Outputs are probabilities: finite, ≥ 0, rows summing to 1, one column per class, also at the bounds."""
    shell = factory(case.model)
    for x in (case.x, torch.full_like(case.x, case.bounds.lower), torch.full_like(case.x, case.bounds.upper)):
        probs = _call(shell, x)
        if probs.shape != (x.shape[0], case.classes):
            raise InvariantViolationError(f"output shape {tuple(probs.shape)}, expected {(x.shape[0], case.classes)}")
        if not torch.isfinite(probs).all() or (probs < -TOL).any():
            raise InvariantViolationError(f"non-finite or negative probabilities: {probs.tolist()}")
        if not torch.allclose(probs.sum(1), torch.ones(x.shape[0]), atol=1e-4):
            raise InvariantViolationError(f"rows sum to {probs.sum(1).tolist()}, not 1")


def never_lowers_confidence(factory, case) -> None:
    """MCN: max_i G(x)_i ≥ max_i F(x)_i, because x itself is always a candidate."""
    shell = factory(case.model)
    shell_conf = _call(shell, case.x).amax(1)
    with torch.no_grad():
        base_conf = torch.softmax(case.model(case.x), 1).amax(1)
    if (shell_conf < base_conf - TOL).any():
        raise InvariantViolationError(f"max G(x) {shell_conf.tolist()} below max F(x) {base_conf.tolist()}")


def search_in_ball_and_bounds(factory, case) -> None:
    """The search point z* lies within the shell's radius (in its norm) and inside the input bounds."""
    shell = factory(case.model)
    z = shell.search(case.x)
    gap = distance(z - case.x, shell.norm)
    if (gap > shell.radius + TOL).any():
        raise InvariantViolationError(f"‖z* − x‖ = {gap.tolist()} exceeds the radius {shell.radius}")
    if (z < case.bounds.lower - TOL).any() or (z > case.bounds.upper + TOL).any():
        raise InvariantViolationError(f"z* leaves the bounds: min {float(z.min())}, max {float(z.max())}")


def search_beats_random_probe(factory, case, probes: int = 16) -> None:
    """MCN: F(z*) is at least as confident as x and as random points of the ball (a cheap optimality probe)."""
    shell = factory(case.model)
    z = shell.search(case.x)
    with torch.no_grad():
        found = torch.softmax(case.model(z), 1).amax(1)
        n = case.x.shape[0]
        g = torch.Generator().manual_seed(case.seed)
        rows = case.x.repeat_interleave(probes, 0)
        u = (rows + random_in_ball(tuple(rows.shape), shell.radius, shell.norm, g)).clamp(
            case.bounds.lower, case.bounds.upper)
        probe = torch.softmax(case.model(u), 1).amax(1).view(n, probes).amax(1)
        base = torch.softmax(case.model(case.x), 1).amax(1)
    best = torch.maximum(probe, base)
    if (found < best - 1e-3).any():
        raise InvariantViolationError(f"max F(z*) {found.tolist()} below a random probe or x {best.tolist()}")


def ncn_contract(factory, case) -> None:
    """NCN: x unchanged when max F(x) ≥ p; else z* reaches p or is reported infeasible; ‖z* − x‖ ≤ the radius limit."""
    shell = factory(case.model)
    z = shell.search(case.x)
    with torch.no_grad():
        at_x = torch.softmax(case.model(case.x), 1).amax(1)
        at_z = torch.softmax(case.model(z), 1).amax(1)
    confident = at_x >= shell.threshold
    if not torch.equal(z[confident], case.x[confident]):
        raise InvariantViolationError("x was moved although max F(x) ≥ p")
    infeasible = getattr(shell, "last_infeasible", None)
    infeasible = torch.zeros_like(confident) if infeasible is None else infeasible
    reached = at_z >= shell.threshold - 1e-6
    if (~reached & ~infeasible).any():
        raise InvariantViolationError(f"z* reaches only {at_z.tolist()} < p = {shell.threshold} and is not "
                                 "reported infeasible")
    gap = distance(z - case.x, shell.norm)
    if (gap > shell.radius + TOL).any():
        raise InvariantViolationError(f"‖z* − x‖ = {gap.tolist()} exceeds the radius limit {shell.radius}")


def batch_independence(factory, case) -> None:
    """Deterministic shells: each point's output is the same alone and inside the batch."""
    shell = factory(case.model)
    together = _call(shell, case.x)
    alone = torch.cat([_call(shell, case.x[i : i + 1]) for i in range(case.x.shape[0])])
    if not torch.allclose(together, alone, atol=1e-4):
        raise InvariantViolationError(f"batch output {together.tolist()} differs from one-by-one {alone.tolist()}")


def seeded_determinism(factory, case) -> None:
    """Randomized shells: two shells built the same way (same seed) answer the same."""
    first, second = _call(factory(case.model), case.x), _call(factory(case.model), case.x)
    if not torch.equal(first, second):
        raise InvariantViolationError("two identically seeded shells gave different outputs")


class _Permuted(nn.Module):
    def __init__(self, model: nn.Module, order: torch.Tensor) -> None:
        super().__init__()
        self.model, self.order = model, order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.order]


def permutation_equivariance(factory, case) -> None:
    """Permuting the base model's classes permutes the shell's output the same way."""
    order = torch.roll(torch.arange(case.classes), 1)
    plain = _call(factory(case.model), case.x)
    permuted = _call(factory(_Permuted(case.model, order).eval()), case.x)
    if not torch.allclose(permuted, plain[:, order], atol=1e-4):
        raise InvariantViolationError(
            f"G with permuted classes {permuted.tolist()} ≠ permuted G {plain[:, order].tolist()}")


def input_untouched_and_modes(factory, case) -> None:
    """The input is never modified in place; works with and without torch.no_grad; keeps dtype and device."""
    shell = factory(case.model)
    x = case.x.clone()
    out = _call(shell, x)
    if not torch.equal(x, case.x):
        raise InvariantViolationError("the shell modified its input tensor in place")
    with torch.no_grad():
        quiet = _call(shell, x)
    if out.dtype != x.dtype or out.device != x.device:
        raise InvariantViolationError(f"output {out.dtype}/{out.device} for input {x.dtype}/{x.device}")
    if _deterministic(shell) and not torch.allclose(out, quiet, atol=1e-5):
        raise InvariantViolationError("different output under torch.no_grad")


def gradient_reaches_input(factory, case) -> None:
    """A shell declaring `differentiable`: G(x) keeps its graph to x, and the gradient there is finite and not
    zero everywhere (white-box attacks run on G end to end only on that promise)."""
    shell = factory(case.model)
    x = case.x.clone().requires_grad_(True)
    probs = _call(shell, x)
    if not probs.requires_grad:
        raise InvariantViolationError("declares `differentiable` but G(x) has no graph back to x")
    (grad,) = torch.autograd.grad(torch.log(probs.clamp_min(1e-30)).amax(1).sum(), x, allow_unused=True)
    if grad is None or not torch.isfinite(grad).all():
        raise InvariantViolationError(f"the gradient of log max G(x) is {'missing' if grad is None else 'not finite'}")
    if case.classes > 1 and float(probs.detach().amax(1).min()) < 1 - 1e-4 and not bool((grad != 0).any()):
        raise InvariantViolationError("the gradient of log max G(x) is zero at every input of the batch")


def _offers(capability: str) -> Callable:
    return lambda shell: capability in capabilities(shell)


def _threshold_search(shell) -> bool:
    return _factor(shell) and getattr(shell, "threshold", None) is not None


INVARIANTS = [
    Invariant("valid_probabilities", valid_probabilities.__doc__, valid_probabilities, lambda s: True),
    Invariant("never_lowers_confidence", never_lowers_confidence.__doc__, never_lowers_confidence,
              _offers("ball-ascent")),
    Invariant("search_in_ball_and_bounds", search_in_ball_and_bounds.__doc__, search_in_ball_and_bounds, _factor),
    Invariant("search_beats_random_probe", search_beats_random_probe.__doc__, search_beats_random_probe,
              _offers("ball-ascent")),
    Invariant("ncn_contract", ncn_contract.__doc__, ncn_contract, _threshold_search),
    Invariant("batch_independence", batch_independence.__doc__, batch_independence, _deterministic),
    Invariant("seeded_determinism", seeded_determinism.__doc__, seeded_determinism,
              lambda s: not _deterministic(s)),
    Invariant("permutation_equivariance", permutation_equivariance.__doc__, permutation_equivariance,
              _deterministic),
    Invariant("input_untouched_and_modes", input_untouched_and_modes.__doc__, input_untouched_and_modes,
              lambda s: True),
    Invariant("gradient_reaches_input", gradient_reaches_input.__doc__, gradient_reaches_input,
              _offers("differentiable")),
]

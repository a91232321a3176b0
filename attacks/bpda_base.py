"""BPDA on the base model itself: gradients through F's own non-differentiable operations.

Paper: Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML
2018 (BPDA: the forward pass runs the real function, the backward pass a differentiable
approximation). Threat: L∞ or L2, ε. View: base (F white-box).
Budget: iterations of APGD on the margin (default 40). Queries: forward passes of F per point.

A base model that quantizes, rounds or takes signs of its input has a zero gradient almost
everywhere, and every gradient attack on it fails for the wrong reason. Here F runs inside a
torch-function mode that replaces `round`, `floor`, `ceil`, `trunc` and `sign` (functions and
tensor methods) by straight-through estimators: the forward value is the real one, the backward
pass treats the operation as the identity. A user who knows a better differentiable stand-in
for a part of F passes `surrogate`, a module with F's interface: its gradient is used, while
success is still decided by F itself. The escalation rounds use this attack; it is not in a preset.
Defaults: 40 iterations, no surrogate.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from attacks.apgd import apgd_ascent
from attacks.base import Attack, AttackOutput
from attacks.losses import margin
from robustness_eval.types import AttackKind, Threat

STRAIGHT_THROUGH = {torch.round, torch.floor, torch.ceil, torch.trunc, torch.sign,
                    torch.Tensor.round, torch.Tensor.floor, torch.Tensor.ceil, torch.Tensor.trunc,
                    torch.Tensor.sign}


class StraightThrough(TorchFunctionMode):
    """Inside this mode, rounding-like operations pass gradients straight through (identity backward)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in STRAIGHT_THROUGH and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            source = args[0]
            return source + (out - source).detach()
        return out


class BPDABase(Attack):
    """APGD on F's margin with straight-through gradients (or a user's surrogate); see module docstring."""

    name = "bpda-base"
    kind = AttackKind.BPDA
    view = "base"
    description = "BPDA on the base model: straight-through rounding/sign, or a user's differentiable surrogate"

    def __init__(self, budget: int = 40, surrogate: nn.Module | None = None) -> None:
        super().__init__(budget)
        if surrogate is not None and not isinstance(surrogate, nn.Module):
            raise TypeError(f"`surrogate` must be a torch.nn.Module with the base model's interface "
                            f"(got {type(surrogate).__name__})")
        self.surrogate = surrogate

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        def objective(z: torch.Tensor):
            with torch.no_grad():
                real = view.logits(z.detach())
            if self.surrogate is not None:
                logits = self.surrogate(z)
            else:
                with StraightThrough():
                    logits = view.logits(z)
            through = logits + (real - logits).detach()  # forward: F itself; backward: the approximation
            return margin(through, y), real.argmax(1) != y

        best, _, trace = apgd_ascent(objective, x, threat.eps, threat.norm, threat.bounds, budget, x)
        return AttackOutput(best, torch.full((x.shape[0],), 2 * (budget + 1), device="cpu"), {"loss": trace})

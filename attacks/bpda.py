"""BPDA: gradients through the shell's search factor H, for G = F ∘ H.

Paper: Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML
2018. Threat: L∞ or L2, ε. View: shell-aware (F white-box and the shell's own search H).
Budget: outer iterations (default 30); each runs the shell's search once. Queries: shell
searches per point.

- ``bpda`` (straight-through; needs a deterministic `search`): the forward pass is F(H(x')), the
  backward pass treats H as the identity, so the gradient is F's gradient at z* = H(x'). Outer
  loop: APGD on the margin.
- ``bpda-unrolled``: H is replaced by a differentiable unrolled copy of MCN's inner ascent
  (`unroll` normalised-gradient steps per class, projected to the δ-ball, graph kept), the
  winning class chosen as the shell chooses; the margin of F at the unrolled point is
  differentiated end to end. Outer loop: PGD. Needs `ball-ascent`: a shell whose per-class
  search is projected ascent in its radius ball (MCN and any shell declaring the same).
"""

from __future__ import annotations

import torch

from attacks.apgd import apgd_ascent
from attacks.base import Attack, AttackOutput
from attacks.losses import margin
from robustness_eval.ascent import projected_ascent
from robustness_eval.norms import project
from robustness_eval.types import AttackKind, Norm, Threat


class BPDA(Attack):
    """Straight-through BPDA with an APGD outer loop (see module docstring)."""

    name = "bpda"
    kind = AttackKind.BPDA
    view = "shell-aware"
    description = "BPDA straight-through the search factor, APGD outer loop"

    def __init__(self, budget: int = 30) -> None:
        super().__init__(budget)

    requires = frozenset({"search", "deterministic"})

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        def objective(z: torch.Tensor):
            through = z + (view.search(z.detach()) - z).detach()  # forward H(z), backward identity
            logits = view.logits(through)
            return margin(logits, y), logits.detach().argmax(1) != y

        best, _, trace = apgd_ascent(objective, x, threat.eps, threat.norm, threat.bounds, budget, x)
        return AttackOutput(best, torch.full((x.shape[0],), len(trace), device="cpu"), {"loss": trace})


class UnrolledBPDA(Attack):
    """Differentiate through an unrolled copy of MCN's search (see module docstring)."""

    name = "bpda-unrolled"
    kind = AttackKind.BPDA
    view = "shell-aware"
    description = "gradient through an unrolled, fixed-step copy of MCN's inner ascent"

    def __init__(self, budget: int = 30, unroll: int = 8) -> None:
        super().__init__(budget)
        self.unroll = unroll

    requires = frozenset({"ball-ascent", "deterministic"})

    def _unrolled_search(self, view, z: torch.Tensor) -> torch.Tensor:
        n, shape = z.shape[0], tuple(z.shape[1:])
        with torch.no_grad():
            classes = view.logits(z[:1]).shape[1]
        center = z[:, None].expand(n, classes, *shape).reshape(n * classes, *shape)
        target = torch.arange(classes, device=z.device).repeat(n)
        delta, norm = view.radius, view.norm
        step = 2.5 * delta / self.unroll
        w = center
        for _ in range(self.unroll):
            logp = torch.log_softmax(view.logits(w), 1).gather(1, target[:, None]).sum()
            (grad,) = torch.autograd.grad(logp, w, create_graph=True)
            flat = grad.flatten(1)
            size = flat.abs().amax(1) if norm is Norm.LINF else flat.norm(dim=1)
            w = w + step * grad / (size.view(-1, *([1] * len(shape))) + 1e-12)
            w = project(w, center, delta, norm, view.bounds)
        with torch.no_grad():
            conf = torch.softmax(view.logits(w), 1).gather(1, target[:, None]).view(n, classes)
        winner = conf.argmax(dim=1)
        return w.view(n, classes, *shape)[torch.arange(n, device=z.device), winner]

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        def objective(z: torch.Tensor):
            loss = margin(view.logits(self._unrolled_search(view, z)), y)
            with torch.no_grad():
                wrong = view.logits(view.search(z.detach())).argmax(1) != y
            return loss, wrong

        best, _, _, trace = projected_ascent(objective, x, threat.eps, threat.norm, threat.bounds,
                                                budget, 2.5 * threat.eps / budget, x)
        return AttackOutput(best, torch.full((x.shape[0],), len(trace), device="cpu"), {"loss": trace})

"""BPDA: gradients through the shell's search factor H, for G = F ∘ H.

Paper: Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML
2018. Threat: L∞ or L2, ε. View: shell-aware (F white-box and the shell's own search H).
Budget: outer iterations (default 30); each runs the shell's search once. Queries: shell
searches per point.

- ``bpda`` (straight-through; needs a deterministic `search`): the forward pass is F(H(x')), the
  backward pass treats H as the identity, so the gradient is F's gradient at z* = H(x'). Outer
  loop: APGD on the margin. `restarts` (default 1: from x; then ODS and uniform starts in turn,
  Tashiro et al. 2020) and `targets` (default 0): k > 0 adds one row per point for each of the k
  most likely wrong classes of F at z* = H(x), ascending the targeted margin toward it.
- ``bpda-t``: the targeted form, 3 target rows per point beside the untargeted one (APGD-T's idea,
  Croce & Hein 2020, through the straight-through shell). Queries: shell searches per point, one
  per row and iteration, plus one per row to compare the rows at the end.
- ``bpda-unrolled``: H is replaced by a differentiable unrolled copy of MCN's inner ascent
  (`unroll` normalised-gradient steps per class, projected to the δ-ball, graph kept), the
  winning class chosen as the shell chooses; the margin of F at the unrolled point is
  differentiated end to end. Outer loop: PGD. Needs `ball-ascent`: a shell whose per-class
  search is projected ascent in its radius ball (MCN and any shell declaring the same).
"""

from __future__ import annotations

import torch

from attacks.apgd import apgd_ascent
from attacks.base import Attack, AttackOutput, TargetableAttack
from attacks.losses import margin, targeted_margin, wrong_classes
from attacks.starts import schedule, start
from robustness_eval.ascent import projected_ascent, unrolled_ball_ascent
from robustness_eval.types import AttackKind, Threat


class BPDA(TargetableAttack):
    """Straight-through BPDA with an APGD outer loop (see module docstring)."""

    name = "bpda"
    kind = AttackKind.BPDA
    view = "shell-aware"
    description = "BPDA straight-through the search factor, APGD outer loop"

    def __init__(self, budget: int = 30, restarts: int = 1, targets: int = 0, first_restart: int = 0) -> None:
        super().__init__(budget, restarts, targets, first_restart)

    requires = frozenset({"search", "deterministic"})

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        aims = torch.full((n, 1), -1, dtype=torch.long, device=x.device)  # -1: the untargeted margin
        if self.targets:
            with torch.no_grad():
                aims = torch.cat([aims, wrong_classes(view.logits(view.search(x)), y, self.targets)], dim=1)
        kinds = schedule(self.restarts, "x", self.first_restart)
        per = aims.shape[1]
        aim = aims.T.reshape(-1).repeat(len(kinds))
        labels = y.repeat(per * len(kinds))
        center = x.repeat(per * len(kinds), *([1] * len(shape)))
        begin = torch.cat([start(kind, x.repeat(per, *([1] * len(shape))), threat.eps, threat, generator,
                                 view.logits) for kind in kinds])

        def objective(z: torch.Tensor):
            through = z + (view.search(z.detach()) - z).detach()  # forward H(z), backward identity
            logits = view.logits(through)
            value = torch.where(aim < 0, margin(logits, labels), targeted_margin(logits, aim.clamp_min(0)))
            return value, logits.detach().argmax(1) != labels

        best, _, trace = apgd_ascent(objective, center, threat.eps, threat.norm, threat.bounds, budget, begin)
        rows = per * len(kinds)
        if rows > 1:  # one comparable score per row: the shell's untargeted margin at its candidate
            with torch.no_grad():
                score = margin(view.logits(view.search(best)), labels).view(rows, n)
            best = best.view(rows, n, *shape)[score.argmax(0), torch.arange(n, device=x.device)]
        queries = torch.full((n,), (len(trace) + (rows > 1)) * rows, device="cpu")
        return AttackOutput(best, queries, {"loss": trace})


class TargetedBPDA(BPDA):
    """BPDA-T: straight-through BPDA toward F's most likely wrong classes at z* (see module docstring)."""

    name = "bpda-t"
    description = "BPDA straight-through the search factor toward the 3 likeliest wrong classes, APGD outer loop"

    def __init__(self, budget: int = 30, restarts: int = 1, targets: int = 3, first_restart: int = 0) -> None:
        super().__init__(budget, restarts, targets, first_restart)


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
        return unrolled_ball_ascent(view.logits, z, view.radius, view.norm, view.bounds, self.unroll)

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        def objective(z: torch.Tensor):
            loss = margin(view.logits(self._unrolled_search(view, z)), y)
            with torch.no_grad():
                wrong = view.logits(view.search(z.detach())).argmax(1) != y
            return loss, wrong

        best, _, _, trace = projected_ascent(objective, (x, threat.eps), threat.norm, threat.bounds,
                                                budget, 2.5 * threat.eps / budget, x)
        return AttackOutput(best, torch.full((x.shape[0],), len(trace), device="cpu"), {"loss": trace})

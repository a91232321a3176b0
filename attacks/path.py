"""Gradient path with shell checkpoints: follow F's margin gradient and ask the shell along the way.

Paper: none; the step rule is PGD's (Madry et al. 2018) with the CW margin loss, opening with one
full-radius step (FGSM, Goodfellow et al. 2015).
Why: a transfer attack hands the shell only the iterate that is best for F. A shell's decision
differs from F's, so a point earlier on the same path (the first full-radius step, a middle
iterate) may fool the shell while the final iterate does not. This attack checks the shell at
checkpoints along F's path and keeps the first iterate the shell gets wrong.
Threat: L∞ or L2, ε. View: shell-aware (F white-box, and the shell's answers at checkpoints).
Needs: a shell with a search (`search`); on F alone it would be the CW transfer attack again.
Budget: iterations on F after the opening step (default 20); the shell is asked at the opening
step and every budget/5 iterations (6 checkpoints at the default).
Queries: forward passes of F per point (budget + 1), plus one shell query per checkpoint while the
point is not yet broken.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from attacks.losses import margin
from robustness_eval.ascent import ascent_step
from robustness_eval.types import AttackKind, Threat, check_positive_int


class GradientPath(Attack):
    """Margin PGD on F from a full-radius opening step, the shell checked at checkpoints (see module docstring)."""

    name = "pgd-path"
    kind = AttackKind.SHELL_AWARE
    view = "shell-aware"
    description = "margin PGD on F from an FGSM step, keeping the first iterate the shell gets wrong"
    requires = frozenset({"search"})  # on F itself (no search) it would be CW again

    def __init__(self, budget: int = 20, checkpoints: int = 5, rel_step: float = 2.5) -> None:
        super().__init__(budget)
        self.checkpoints = check_positive_int(checkpoints, "checkpoints")
        self.rel_step = rel_step

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n = x.shape[0]
        every = max(1, budget // self.checkpoints)
        found = x.clone()
        broken = torch.zeros(n, dtype=torch.bool, device=x.device)
        queries = torch.zeros(n, dtype=torch.long, device="cpu")
        trace = []

        def loss(z: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                value = margin(view.logits(z), y)
            trace.append(float(value.detach().mean()))
            return value

        def check(z: torch.Tensor) -> None:
            todo = (~broken).nonzero().squeeze(1)
            if not len(todo):
                return
            wrong = view.shell_probs(z[todo]).argmax(1) != y[todo]
            queries[todo.cpu()] += 1
            found[todo[wrong]] = z[todo[wrong]].detach()
            broken[todo[wrong]] = True

        passes = 1
        with torch.enable_grad():
            z = x.clone().requires_grad_(True)
            z = ascent_step(z, loss(z), x, threat.eps, threat.norm, threat.bounds, threat.eps)  # the opening step
            check(z)
            for step in range(1, budget + 1):
                z.requires_grad_(True)
                z = ascent_step(z, loss(z), x, threat.eps, threat.norm, threat.bounds,
                                self.rel_step * threat.eps / budget)
                passes += 1
                if step % every == 0 or step == budget:
                    check(z)
                if bool(broken.all()):
                    break
        found[~broken] = z[~broken].detach()
        queries += passes
        return AttackOutput(found, queries, {"loss": trace})

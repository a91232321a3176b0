"""Gradient path with shell checkpoints: follow F's margin gradient and ask the shell along the way.

Paper: none; the step rule is PGD's (Madry et al. 2018) with the CW margin loss, opening with one
full-radius step (FGSM, Goodfellow et al. 2015); the targeted paths follow Gowal et al.'s
MultiTargeted (2019), the diversified restarts Tashiro et al.'s ODS (NeurIPS 2020).
Why: a transfer attack hands the shell only the iterate that is best for F. A shell's decision
differs from F's, so a point earlier on the same path (the first full-radius step, a middle
iterate), on another restart's path or on the path toward another class may fool the shell while
F's best point does not. This attack checks the shell at checkpoints along every path and keeps
the first iterate the shell gets wrong.
Threat: L∞ or L2, ε. View: shell-aware (F white-box, and the shell's answers at checkpoints).
Needs: a shell with a search (`search`); on F alone it would be the CW transfer attack again.
Budget: iterations on F after the opening step (default 20) per path; the shell is asked at the
opening step and every budget/`checkpoints` iterations (6 checkpoints at the default).
Paths per point: `restarts` (default 3: from x, then ODS and uniform starts in turn) × (1 untargeted
margin path + `targets` targeted paths toward F's most likely wrong classes at x; default 0).
Queries: forward passes of F per point ((budget + 1) per path), plus one shell query per path and
checkpoint while the point is not yet broken.
"""

from __future__ import annotations

import torch

from attacks.base import AttackOutput, TargetableAttack
from attacks.losses import margin, targeted_margin, wrong_classes
from attacks.starts import schedule, start
from robustness_eval.ascent import ascent_step
from robustness_eval.types import AttackKind, Threat, check_positive_int


class GradientPath(TargetableAttack):
    """Margin PGD on F from a full-radius opening step, the shell checked at checkpoints (see module docstring)."""

    name = "pgd-path"
    kind = AttackKind.SHELL_AWARE
    view = "shell-aware"
    description = ("margin PGD paths on F (restarts, targets) from an FGSM step, keeping the first iterate the "
                   "shell gets wrong")
    requires = frozenset({"search"})  # on F itself (no search) it would be CW again

    def __init__(self, budget: int = 20, checkpoints: int = 5, rel_step: float = 2.5, restarts: int = 3,
                 targets: int = 0, first_restart: int = 0) -> None:
        super().__init__(budget, restarts, targets, first_restart)
        self.checkpoints = check_positive_int(checkpoints, "checkpoints")
        self.rel_step = rel_step

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        every = max(1, budget // self.checkpoints)
        with torch.no_grad():
            goals = wrong_classes(view.logits(x), y, self.targets) if self.targets else None
        per = 1 + (0 if goals is None else goals.shape[1])  # the untargeted path, then one per target
        kinds = schedule(self.restarts, "x", self.first_restart)
        paths = per * len(kinds)
        owner = torch.arange(n, device=x.device).repeat(paths)  # row → point
        center, labels = x[owner], y[owner]
        aim = _aims(goals, n, per, len(kinds), x.device)
        z = torch.cat([start(kind, x.repeat(per, *([1] * len(shape))), threat.eps, threat, generator, view.logits)
                       for kind in kinds])
        found = x.clone()
        broken = torch.zeros(n, dtype=torch.bool, device=x.device)
        queries = torch.zeros(n, dtype=torch.long, device="cpu")
        trace = []

        def loss(z: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                logits = view.logits(z)
                untargeted = margin(logits, labels)
                value = torch.where(aim < 0, untargeted, targeted_margin(logits, aim.clamp_min(0)))
            trace.append(float(value.detach().mean()))
            return value

        def check(z: torch.Tensor) -> None:
            todo = (~broken[owner]).nonzero().squeeze(1)
            if not len(todo):
                return
            wrong = view.shell_probs(z[todo]).argmax(1) != labels[todo]
            queries.index_add_(0, owner[todo].cpu(), torch.ones(len(todo), dtype=torch.long, device="cpu"))
            hits = todo[wrong]
            first = torch.full((n,), len(owner), dtype=torch.long, device=x.device)  # a point's first fooling path
            first.scatter_reduce_(0, owner[hits], hits, reduce="amin")
            new = first < len(owner)
            found[new] = z[first[new]].detach()
            broken.logical_or_(new)

        passes = 1
        with torch.enable_grad():
            z = z.requires_grad_(True)
            z = ascent_step(z, loss(z), center, threat.eps, threat.norm, threat.bounds, threat.eps)  # the opening step
            check(z)
            for step in range(1, budget + 1):
                if bool(broken.all()):
                    break
                z.requires_grad_(True)
                z = ascent_step(z, loss(z), center, threat.eps, threat.norm, threat.bounds,
                                self.rel_step * threat.eps / budget)
                passes += 1
                if step % every == 0 or step == budget:
                    check(z)
        with torch.no_grad():  # an unbroken point keeps the end of the path with F's largest margin
            score = margin(view.logits(z), labels).view(paths, n)
        last = z.view(paths, n, *shape)[score.argmax(0), torch.arange(n, device=x.device)]
        found[~broken] = last[~broken]
        queries += passes * paths
        return AttackOutput(found, queries, {"loss": trace})


def _aims(goals: torch.Tensor | None, n: int, per: int, starts: int, device) -> torch.Tensor:
    """Each path row's target class (−1: untargeted), in row order: per start kind, per path, per point."""
    aim = torch.full((n, per), -1, dtype=torch.long, device=device)
    if goals is not None:
        aim[:, 1:] = goals
    return aim.T.reshape(-1).repeat(starts)


class TargetedGradientPath(GradientPath):
    """F's path toward each of its 9 likeliest wrong classes, the shell checked along it (see module docstring)."""

    name = "pgd-path-t"
    description = "margin PGD paths on F toward each likely wrong class, keeping the first iterate the shell gets wrong"

    def __init__(self, budget: int = 20, checkpoints: int = 5, rel_step: float = 2.5, restarts: int = 1,
                 targets: int = 9, first_restart: int = 0) -> None:
        super().__init__(budget, checkpoints, rel_step, restarts, targets, first_restart)

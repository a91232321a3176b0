"""The min-max attack on MCN through the shell's own per-class searches.

Maximise over x' in the ε-ball the margin
    max_{t≠y} log F(z_t(x'))_t − log F(z_y(x'))_y,
where z_t(x') is the shell's own most t-confident point around x'. By Danskin's theorem the
gradient of a max over the inner search is the gradient at the maximiser, so each outer step
runs the shell's search once, holds the offsets d_t = z_t − x' fixed, and differentiates
log F(x' + d_t)_t with respect to x'.

Paper: the min-max view of robustness and Danskin's theorem follow Madry et al., "Towards Deep
Learning Models Resistant to Adversarial Attacks", ICLR 2018; applying it through a shell's own
inner search is this suite's.
Threat: L∞ or L2, ε. View: shell-aware (F white-box and the shell's per-class search).
Needs: `per-class-search` (any shell that exposes one, not only MCN).
Budget: outer iterations (default 30). Queries: shell searches per point (one per iteration).
Defaults: step 2.5·ε/iterations, start at x, the first iterate the shell misclassifies is kept.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from robustness_eval.ascent import ascent_step
from robustness_eval.types import AttackKind, Threat


class MinMax(Attack):
    """Outer PGD on the shell's per-class search margin (see module docstring)."""

    name = "minmax"
    kind = AttackKind.SHELL_AWARE
    view = "shell-aware"
    description = "min-max through the shell's per-class searches (Danskin gradient)"

    def __init__(self, budget: int = 30) -> None:
        super().__init__(budget)

    requires = frozenset({"per-class-search", "deterministic"})

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        rows = torch.arange(n)
        x_adv = x.clone()
        best = x.clone()
        best_margin = torch.full((n,), float("-inf"))
        done = torch.zeros(n, dtype=torch.bool)
        step = 2.5 * threat.eps / budget
        trace = []
        for _ in range(budget + 1):
            z, conf = view.per_class_search(x_adv)
            winner = conf.argmax(dim=1)
            with torch.no_grad():
                decided = view.logits(z[rows, winner]).argmax(dim=1)
            success = ~done & (decided != y)
            offsets = (z - x_adv[:, None]).detach()
            point = x_adv.clone().requires_grad_(True)
            with torch.enable_grad():
                logp = torch.log_softmax(
                    view.logits((point[:, None] + offsets).flatten(0, 1)), dim=1
                ).view(n, -1, conf.shape[1])
                own = logp.diagonal(dim1=1, dim2=2)  # log F(z_t)_t, shape n × C
                others = own.scatter(1, y[:, None], float("-inf")).amax(dim=1)
                margin = others - own.gather(1, y[:, None]).squeeze(1)
                moved = ascent_step(point, margin, x, threat.eps, threat.norm, threat.bounds, step)
            trace.append(float(margin.detach().mean()))
            improve = success | (~done & (margin.detach() > best_margin))
            best[improve] = x_adv[improve]
            best_margin = torch.where(improve, margin.detach(), best_margin)
            done |= success
            if bool(done.all()):
                break
            x_adv = torch.where(done.view(-1, *([1] * len(shape))), x_adv, moved)
        queries = torch.full((n,), len(trace), dtype=torch.long)
        return AttackOutput(best, queries, {"loss": trace})

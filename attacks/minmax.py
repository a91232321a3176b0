"""The min-max attack through a shell's own per-class searches (MCN, NCN by bisection, any shell offering one).

Maximise over x' in the ε-ball the margin
    max_{t≠y} log F(z_t(x'))_t − log F(z_y(x'))_y,
where z_t(x') is the shell's own most t-confident point around x'. By Danskin's theorem the
gradient of a max over the inner search is the gradient at the maximiser, so each outer step
runs the shell's search once, holds the offsets d_t = z_t − x' fixed, and differentiates
log F(x' + d_t)_t with respect to x'. A targeted row fixes t instead of taking the max: its
margin is log F(z_t(x'))_t − log F(z_y(x'))_y for one wrong class t (MultiTargeted, Gowal et al.
2019), so the outer ascent also climbs toward classes other than the one leading at the start.

Paper: the min-max view of robustness and Danskin's theorem follow Madry et al., "Towards Deep
Learning Models Resistant to Adversarial Attacks", ICLR 2018; applying it through a shell's own
inner search is this suite's.
Threat: L∞ or L2, ε. View: shell-aware (F white-box and the shell's per-class search).
Needs: `per-class-search` (any shell that exposes one, not only MCN).
Budget: outer iterations (default 20) per restart. Rows per point: the untargeted one plus
`targets` targeted ones (default 0), toward the wrong classes the shell's own per-class search
rates most confident at x. Queries: shell searches per point (one per row and iteration, over all
restarts).
Defaults: step 2.5·ε/iterations, 5 restarts: the first at x, then an ODS start (Tashiro et al. 2020)
and a uniform start in the ε-ball in turn, each on the points still unbroken; the first iterate the
shell misclassifies is kept.
"""

from __future__ import annotations

import torch

from attacks.base import AttackOutput, TargetableAttack
from attacks.starts import schedule, start
from robustness_eval.ascent import ascent_step
from robustness_eval.types import AttackKind, Threat


class MinMax(TargetableAttack):
    """Outer PGD on the shell's per-class search margin (see module docstring)."""

    name = "minmax"
    kind = AttackKind.SHELL_AWARE
    view = "shell-aware"
    description = "min-max through the shell's per-class searches (Danskin gradient), untargeted and targeted"

    def __init__(self, budget: int = 20, restarts: int = 5, targets: int = 0, first_restart: int = 0) -> None:
        super().__init__(budget, restarts, targets, first_restart)

    requires = frozenset({"per-class-search", "deterministic"})

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n = x.shape[0]
        aims = self._aims(view, x, y)
        best = x.clone()
        margin = torch.full((n,), float("-inf"), device=x.device)
        done = torch.zeros(n, dtype=torch.bool, device=x.device)
        queries = torch.zeros(n, dtype=torch.long, device="cpu")
        trace: list[float] = []
        for kind in schedule(self.restarts, "x", self.first_restart):  # later restarts: the points still unbroken
            todo = (~done).nonzero().squeeze(1)
            if not len(todo):
                break
            begin = start(kind, x[todo], threat.eps, threat, generator, view.logits)
            found, found_margin, found_done, more, searched = self._ascend(view, x[todo], y[todo], aims[todo],
                                                                          threat, budget, begin)
            better = found_done | (~done[todo] & (found_margin > margin[todo]))
            best[todo[better]] = found[better]
            margin[todo[better]] = found_margin[better]
            done[todo[found_done]] = True
            queries[todo.cpu()] += searched.cpu()
            trace = more if len(more) > len(trace) else trace
        return AttackOutput(best, queries, {"loss": trace})

    def _aims(self, view, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per point, the rows' classes: -1 (untargeted), then the `targets` wrong classes the shell's own
        per-class search rates most confident at x."""
        untargeted = torch.full((x.shape[0], 1), -1, dtype=torch.long, device=x.device)
        if not self.targets:
            return untargeted
        _, conf = view.per_class_search(x)
        k = min(self.targets, conf.shape[1] - 1)
        ranked = conf.scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices
        return torch.cat([untargeted, ranked], dim=1)

    def _ascend(self, view, x, y, aims, threat: Threat, budget: int, x_adv: torch.Tensor):
        """One outer ascent of every row from `x_adv`: per point the first iterate the shell misclassifies,
        else the best margin; whether it broke; the mean-margin trace; the searches each point used."""
        n, shape = x.shape[0], tuple(x.shape[1:])
        rows_per = aims.shape[1]
        owner = torch.arange(n, device=x.device).repeat_interleave(rows_per)
        aim, center, label = aims.reshape(-1), x[owner], y[owner]
        z_adv = x_adv[owner].clone()
        m = len(owner)
        row_best, row_margin = z_adv.clone(), torch.full((m,), float("-inf"), device=x.device)
        done = torch.zeros(n, dtype=torch.bool, device=x.device)
        first = torch.full((n,), m, dtype=torch.long, device=x.device)  # the first row that broke each point
        searched = torch.zeros(n, dtype=torch.long, device=x.device)
        step = 2.5 * threat.eps / budget
        latest = torch.zeros(m, device=x.device)  # each row's latest margin (a finished row keeps its last)
        trace = []
        for _ in range(budget + 1):
            live = (~done[owner]).nonzero().squeeze(1)
            if not len(live):
                break
            z, conf = view.per_class_search(z_adv[live])
            searched += torch.bincount(owner[live], minlength=n)
            winner = conf.argmax(dim=1)
            with torch.no_grad():
                decided = view.logits(z[torch.arange(len(live), device=x.device), winner]).argmax(dim=1)
            success = decided != label[live]
            offsets = (z - z_adv[live][:, None]).detach()
            point = z_adv[live].clone().requires_grad_(True)
            with torch.enable_grad():
                logp = torch.log_softmax(
                    view.logits((point[:, None] + offsets).flatten(0, 1)), dim=1
                ).view(len(live), -1, conf.shape[1])
                own = logp.diagonal(dim1=1, dim2=2)  # log F(z_t)_t, shape rows × C
                others = own.scatter(1, label[live][:, None], float("-inf"))
                toward = torch.where(aim[live] < 0, others.amax(dim=1),
                                     own.gather(1, aim[live].clamp_min(0)[:, None]).squeeze(1))
                margin = toward - own.gather(1, label[live][:, None]).squeeze(1)
                moved = ascent_step(point, margin, center[live], threat.eps, threat.norm, threat.bounds, step)
            latest[live] = margin.detach()
            trace.append(float(latest.mean()))
            improve = success | (margin.detach() > row_margin[live])
            row_best[live[improve]] = z_adv[live[improve]]
            row_margin[live[improve]] = torch.where(success, torch.full_like(margin, float("inf")),
                                                    margin.detach())[improve]
            hit = live[success]
            first.scatter_reduce_(0, owner[hit], hit, reduce="amin")
            done |= first < m
            z_adv[live] = moved
        score = row_margin.view(n, rows_per)
        pick = torch.where(done, first - torch.arange(n, device=x.device) * rows_per, score.argmax(dim=1))
        chosen = row_best.view(n, rows_per, *shape)[torch.arange(n, device=x.device), pick]
        best_margin = score.gather(1, pick[:, None]).squeeze(1)
        return chosen, best_margin, done, trace, searched


class TargetedMinMax(MinMax):
    """Min-max toward the shell's 3 most confident wrong classes beside the untargeted row (see module docstring)."""

    name = "minmax-t"
    description = "min-max through the shell's per-class searches toward its likeliest wrong classes"

    def __init__(self, budget: int = 20, restarts: int = 1, targets: int = 3, first_restart: int = 0) -> None:
        super().__init__(budget, restarts, targets, first_restart)

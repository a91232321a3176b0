"""The min-max attack through a shell's own per-class searches (MCN, NCN by bisection, any shell offering one).

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
Budget: outer iterations (default 30) per restart. Queries: shell searches per point (one per
iteration, over all restarts).
Defaults: step 2.5·ε/iterations, 1 restart at x (restarts r > 0 start uniformly in the ε-ball,
on the points still unbroken), the first iterate the shell misclassifies is kept.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from robustness_eval.ascent import ascent_step
from robustness_eval.norms import project, random_in_ball
from robustness_eval.types import AttackKind, Threat, check_positive_int


class MinMax(Attack):
    """Outer PGD on the shell's per-class search margin (see module docstring)."""

    name = "minmax"
    kind = AttackKind.SHELL_AWARE
    view = "shell-aware"
    description = "min-max through the shell's per-class searches (Danskin gradient)"

    def __init__(self, budget: int = 30, restarts: int = 1) -> None:
        super().__init__(budget)
        self.restarts = check_positive_int(restarts, "restarts")

    requires = frozenset({"per-class-search", "deterministic"})

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        best, margin, done, trace = self._ascend(view, x, y, threat, budget, x.clone())
        queries = torch.full((x.shape[0],), len(trace), dtype=torch.long, device="cpu")
        for _ in range(1, self.restarts):  # restart r > 0: a uniform start in the ε-ball, unbroken points only
            todo = (~done).nonzero().squeeze(1)
            if not len(todo):
                break
            start = random_in_ball(tuple(x[todo].shape), threat.eps, threat.norm, generator).to(x)
            start = project(x[todo] + start, x[todo], threat.eps, threat.norm, threat.bounds)
            found, found_margin, found_done, more = self._ascend(view, x[todo], y[todo], threat, budget, start)
            better = found_done | (found_margin > margin[todo])
            best[todo[better]] = found[better]
            margin[todo[better]] = found_margin[better]
            done[todo[found_done]] = True
            queries[todo.cpu()] += len(more)
            trace = more if len(more) > len(trace) else trace
        return AttackOutput(best, queries, {"loss": trace})

    def _ascend(self, view, x, y, threat: Threat, budget: int, x_adv: torch.Tensor):
        """One outer ascent from `x_adv`: the first iterate the shell misclassifies, else the best margin."""
        n, shape = x.shape[0], tuple(x.shape[1:])
        rows = torch.arange(n, device=x.device)
        best = x_adv.clone()
        best_margin = torch.full((n,), float("-inf"), device=x.device)
        done = torch.zeros(n, dtype=torch.bool, device=x.device)
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
        return best, best_margin, done, trace

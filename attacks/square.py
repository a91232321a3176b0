"""Square attack through the query-counting oracle.

Paper: Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020. Threat: L∞ or L2, ε. View: the shell as a black box (oracle).
Budget: oracle queries per point (default 1,000): one for the start, one per iteration.
L∞: the paper's vertical-stripe start and ±ε square updates, the fraction of changed pixels
starting at p = 0.05 and halved on the paper's schedule (rescaled to the budget). L2: a random
start on the ε-sphere and square-window Gaussian updates renormalised onto the sphere (a
simplification of the paper's mass-moving update, same random-search acceptance rule).
Margin loss on log-probabilities; an update is kept only if it raises the margin. On a randomized shell each
row's answer is the mean of `draws` calls (EOT, default 4), each counted against the budget.
`targets` = k > 0 (``square-t``, default 3): k rows per point, each ascending the targeted margin
log G_t − max_{j≠t} log G_j toward one of the k wrong classes the shell rates likeliest at the
start, the point's budget shared by its rows (each row's query is charged to its point); any row
the shell misclassifies breaks its point.
Inputs that are not images are viewed as squares (digits: 8×8) or as one row.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput, check_targets
from attacks.blackbox import spatial_shape
from attacks.losses import margin, targeted_margin
from robustness_eval.norms import project
from robustness_eval.types import AttackKind, Norm, Threat, check_positive_int

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def fraction(iteration: int, budget: int, p_init: float) -> float:
    """The paper's piecewise-constant schedule, rescaled from 10,000 iterations to `budget`."""
    scaled = int(iteration / budget * 10000)
    return p_init / 2 ** sum(scaled > mark for mark in _SCHEDULE)


class Square(Attack):
    """Random search over square-shaped updates (see module docstring)."""

    name = "square"
    kind = AttackKind.SCORE_BASED
    view = "oracle"
    description = "Square attack, random search with square updates (black box)"

    def __init__(self, budget: int = 1000, p_init: float = 0.05, targets: int = 0, draws: int | None = None) -> None:
        super().__init__(budget)
        self.p_init = p_init
        self.draws = None if draws is None else check_positive_int(draws, "draws")
        self.targets = check_targets(targets)

    def _run(self, oracle, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        c, h, w = spatial_shape(shape)
        eps = threat.eps
        points = torch.arange(n, device="cpu")
        if self.targets and budget > 2:  # one query at x ranks the wrong classes; each row then needs ≥ 1
            probs = oracle(x, points)
            k = min(self.targets, probs.shape[1] - 1, budget - 1)
            aims = torch.log(probs.clamp_min(1e-12)).scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices
        else:
            k, aims = 1, torch.full((n, 1), -1, dtype=torch.long, device=x.device)
        owner = torch.arange(n, device="cpu").repeat_interleave(k)  # row → point
        aim, labels = aims.reshape(-1), y.repeat_interleave(k)
        rows = len(owner)
        here = owner.to(x.device)
        img = x.reshape(n, c, h, w)[here]
        delta = _initial_delta(threat, (rows, c, h, w), x, generator)

        def candidate(d: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
            flat = (img[which] + d).reshape(len(which), *shape)
            return project(flat, x[here[which]], eps, threat.norm, threat.bounds)

        def scores(z: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(the row's objective, whether the shell misclassifies it) from one oracle query per row."""
            logp = torch.log(oracle(z, owner[which]).clamp_min(1e-12))
            wrong = margin(logp, labels[which])
            toward = aim[which]
            value = torch.where(toward < 0, wrong, targeted_margin(logp, toward.clamp_min(0)))
            return value.cpu(), (wrong > 0).cpu()  # per-row bookkeeping lives on the CPU

        everyone = torch.arange(rows, device="cpu")
        current = candidate(delta, everyone)
        loss, fooled = scores(current, everyone)
        broken = torch.zeros(n, dtype=torch.bool, device="cpu")
        broken[owner[fooled]] = True
        trace = [float(loss.mean())]
        iterations = max(1, budget // (k * getattr(oracle, "draws", 1)))  # a randomized shell's rows cost draws
        for it in range(1, iterations):
            todo = (~broken[owner] & (oracle.remaining()[owner] >= k)).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            new = _square_step(delta[todo], fraction(it, iterations, self.p_init), threat, generator)
            proposal = candidate(new, todo)
            new_loss, new_fooled = scores(proposal, todo)
            better = new_loss > loss[todo]
            keep = todo[better]
            delta[keep] = new[better]
            current[keep] = proposal[better]
            loss[keep], fooled[keep] = new_loss[better], new_fooled[better]
            broken[owner[keep[new_fooled[better]]]] = True
            trace.append(float(loss.mean()))
        # per point: a row the shell misclassifies if any, else its row with the highest objective
        rank = torch.where(fooled, torch.full_like(loss, float("inf")), loss).view(n, k)  # on the CPU
        pick = rank.argmax(dim=1)
        x_adv = current.view(n, k, *shape)[torch.arange(n, device=x.device), pick.to(x.device)]
        return AttackOutput(x_adv, oracle.queries.clone(), {"loss": trace})


def _initial_delta(threat: Threat, size: tuple[int, int, int, int], x: torch.Tensor, generator) -> torch.Tensor:
    """Square's start: vertical stripes of ±ε (L∞), or a Gaussian scaled to ε (L2); rows × C × H × W."""
    rows, c, h, w = size
    if threat.norm is Norm.LINF:
        delta = threat.eps * (torch.randint(0, 2, (rows, c, 1, w), generator=generator, device="cpu").to(x) * 2 - 1)
        return delta.expand(rows, c, h, w).clone()
    delta = torch.randn(rows, c, h, w, generator=generator, device="cpu").to(x)
    return delta * threat.eps / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _square_step(old: torch.Tensor, p: float, threat: Threat, generator) -> torch.Tensor:
    """One proposal per row of `old` (rows × C × H × W): a random square window holding a share `p` of the
    image set to ±ε per channel (L∞), or bumped by ±ε/side and rescaled to the L2 sphere."""
    rows, c, h, w = old.shape
    eps, device = threat.eps, old.device
    side = max(1, min(h, w, round((p * h * w) ** 0.5)))
    top = torch.randint(0, h - side + 1, (rows,), generator=generator, device="cpu").to(device).view(-1, 1, 1, 1)
    left = torch.randint(0, w - side + 1, (rows,), generator=generator, device="cpu").to(device).view(-1, 1, 1, 1)
    hh = torch.arange(h, device=device).view(1, 1, h, 1)
    ww = torch.arange(w, device=device).view(1, 1, 1, w)
    window = (hh >= top) & (hh < top + side) & (ww >= left) & (ww < left + side)
    if threat.norm is Norm.LINF:
        signs = torch.randint(0, 2, (rows, c, 1, 1), generator=generator, device="cpu")
        return torch.where(window, (eps * (signs.to(old) * 2 - 1)).expand_as(old), old)
    bump = torch.randn(rows, c, 1, 1, generator=generator, device="cpu").to(old).sign()
    new = old + window * bump * eps / side
    return new * eps / new.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


class TargetedSquare(Square):
    """Square with a targeted margin toward the shell's 3 likeliest wrong classes (see module docstring)."""

    name = "square-t"
    description = "Square attack toward the shell's likeliest wrong classes, budget shared (black box)"

    def __init__(self, budget: int = 1000, p_init: float = 0.05, targets: int = 3, draws: int | None = None) -> None:
        super().__init__(budget, p_init, targets, draws)

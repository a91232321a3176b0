"""The shell-aware look-ahead attack: plant a confident wrong neighbour the shell will find.

Paper: none; the ε+δ reasoning follows Wu et al.'s own analysis of MCN: if some x'' within
ε + δ of x is classified as t ≠ y by F with high confidence, its projection x' onto the ε-ball
lies within δ of x'', so MCN's search from x' can reach x''. For NCN the target confidence is
p at radius ε: then F(x') ≥ p and NCN returns x' unchanged, labelled t.

Threat: L∞ or L2, ε. View: shell-aware (F white-box, the shell's δ / p, and the shell itself to
choose among the per-class candidates). Needs: a deterministic search (`search`).
Budget: iterations of the targeted ascent (default 40) per climb; every wrong class is a target,
all points × targets × climbs in one batch. Restarts (default 6): the first from x, then an ODS
start (Tashiro et al. 2020) and a uniform start in the reach ball in turn, on the points whose
shell is not yet fooled; a restart from ODS or uniform starts runs `climbs` (default 4) climbs per
target and keeps, per target, the highest one and the one with the steepest rise. Climbs are
cheap (passes of F); the shell's queries are not, so the shell is asked about two candidates per
target and restart whatever the number of climbs.
Objective (default 'margin'): the targeted CW margin l_t − max_{j≠t} l_j, or 'logprob', log F_t.
With `deep` (default) each row climbs its whole budget and keeps its highest-objective confident
iterate; without it, the first iterate with F_t ≥ `confidence` (0.99). Why deep on the margin: a
point at the edge of a confident region does not survive the projection onto the ε-ball, and the
log-probability stops moving once F is confident; measured on the active test's orthogonal
plants (digits), deep margin look-ahead with 6 restarts finds 56 of 58 where the shallow
log-probability one with 3 restarts found 50 (docs/DESIGN.md, Truth checks).
Candidates per target: the projection of the best iterate onto the ε-ball, and (`rise`, default)
the ε-ball corner x + ε·sign(∇) of the gradient at the iterate that the climb's largest one-step
rise reached: where a climb crossed into a confident region, that gradient says which way the
region rises, and the corner goes furthest that way while the projection keeps the coordinates
F's gradient pulled elsewhere. Measured with look-ahead alone on the digits active test's decoy
plants (57): 22 found by projections from one climb per start, about 50 with the rise's corner,
53–54 with four climbs per start; orthogonal 54–55 → 58 of 58 (docs/DESIGN.md, Truth checks).
Queries: forward passes of F per point, plus one shell query per candidate checked.
"""

from __future__ import annotations

import torch

from attacks.base import AttackOutput, RestartingAttack
from attacks.losses import targeted_log_prob, targeted_margin
from attacks.starts import schedule, start
from robustness_eval.ascent import projected_ascent
from robustness_eval.norms import ascent_direction, project
from robustness_eval.types import AttackKind, Threat, check_positive_int

OBJECTIVES = ("logprob", "margin")


class SteepestRise:
    """Per row, the gradient at the iterate that the largest one-step rise of the objective reached (where a climb
    entered a confident region, the direction that region rises). Call it with each iterate's objective and
    gradient in order; `watch` does so from inside an objective, through a hook on the iterate's gradient."""

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.largest: torch.Tensor | None = None
        self.direction: torch.Tensor | None = None

    def __call__(self, loss: torch.Tensor, grad: torch.Tensor) -> None:
        if self.previous is not None:
            rise = loss - self.previous
            if self.largest is None:
                self.largest, self.direction = rise, grad.detach().clone()
            else:
                higher = rise > self.largest
                self.largest = torch.where(higher, rise, self.largest)
                self.direction = torch.where(higher.view(-1, *([1] * (grad.dim() - 1))), grad.detach(),
                                             self.direction)
        self.previous = loss

    def watch(self, z: torch.Tensor, loss: torch.Tensor) -> None:
        """Record `loss` at iterate `z` with z's gradient, when the ascent computes it."""
        z.register_hook(lambda grad: self(loss.detach(), grad))


class LookAhead(RestartingAttack):
    """Targeted confident PGD on F at radius ε + δ (MCN) or ε (NCN), projected to ε (see module docstring)."""

    name = "lookahead"
    kind = AttackKind.SHELL_AWARE
    view = "shell-aware"
    description = "targeted confident attack on F at ε+δ, projected to ε (knows δ / p)"

    def __init__(self, budget: int = 40, confidence: float = 0.99, restarts: int = 6, deep: bool = True,
                 objective: str = "margin", first_restart: int = 0, rise: bool = True, climbs: int = 4) -> None:
        super().__init__(budget, restarts, first_restart)
        self.rise = bool(rise)
        self.climbs = check_positive_int(climbs, "climbs")
        self.confidence = confidence
        self.deep = bool(deep)
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}")
        self.objective = objective

    requires = frozenset({"search", "deterministic"})

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        kinds = schedule(self.restarts, "x", self.first_restart)
        x_adv, score, trace = self._attempt(view, x, y, threat, budget, kinds[0], generator)
        with torch.no_grad():
            k = view.logits(x[:1]).shape[1] - 1
        asked = k * (2 if self.rise else 1)  # candidates the shell is asked about

        def per_attempt(kind: str) -> int:  # F's passes per climb, and one shell query per candidate
            return (budget + 1) * k * (1 if kind == "x" else self.climbs) + asked

        queries = torch.full((x.shape[0],), per_attempt(kinds[0]), dtype=torch.long, device="cpu")
        for kind in kinds[1:]:  # further restarts: ODS or uniform starts, on the points not yet broken
            todo = (score <= 1.0).nonzero().squeeze(1)  # score > 1: the shell already errs there
            if not len(todo):
                break
            found, found_score, _ = self._attempt(view, x[todo], y[todo], threat, budget, kind, generator)
            better = found_score > score[todo]
            x_adv[todo[better]] = found[better]
            score[todo[better]] = found_score[better]
            queries[todo.cpu()] += per_attempt(kind)
        return AttackOutput(x_adv, queries, {"loss": trace})

    def _attempt(self, view, x, y, threat: Threat, budget: int, kind: str, generator):
        """Targeted climbs toward every wrong class from starts of `kind` (x: one climb; ods or uniform: `climbs`
        of them, in the reach ball); per target, the shell is asked about the projection of the highest climb's
        best iterate and the ε-corner of the steepest rise's gradient. Returns the chosen candidate per point, its
        score (> 1 when the shell misclassifies it), the trace."""
        n, shape = x.shape[0], tuple(x.shape[1:])
        with torch.no_grad():
            num_classes = view.logits(x[:1]).shape[1]
        # a shell with a confidence threshold (NCN) keeps an already p-confident x' itself: aim at
        # p within ε; a shell without one searches its whole radius: aim at ε + radius
        reach = threat.eps + (view.radius if view.threshold is None else 0.0)
        goal = max(self.confidence, view.threshold or 0.0)
        targets = (y[:, None] + torch.arange(1, num_classes, device=y.device)[None]) % num_classes  # n × (C-1)
        k = num_classes - 1
        climbs = 1 if kind == "x" else self.climbs  # climbs from x would all be the same
        center = x[:, None].expand(n, k, *shape).reshape(n * k, *shape)
        rows = center.repeat(climbs, *([1] * len(shape)))  # climb-major: climb c is rows c·n·k … (c+1)·n·k − 1
        target = targets.reshape(-1).repeat(climbs)
        begin = start(kind, rows, reach, threat, generator, view.logits)

        def objective(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = view.logits(z)
            logp = targeted_log_prob(logits, target)
            value = logp if self.objective == "logprob" else targeted_margin(logits, target)
            if self.rise and z.requires_grad:
                rise.watch(z, value)
            return value, logp.detach().exp() >= goal

        rise = SteepestRise()
        best, _, value, trace = projected_ascent(objective, (rows, reach), threat.norm, threat.bounds, budget,
                                                 2.5 * reach / budget, begin, stop_at_success=not self.deep)
        per_target = torch.arange(n * k, device=x.device)
        highest = value.view(climbs, n * k).argmax(dim=0)
        sets = [project(best.view(climbs, n * k, *shape)[highest, per_target], center, threat.eps, threat.norm,
                        threat.bounds)]
        if rise.direction is not None:
            steepest = rise.largest.view(climbs, n * k).argmax(dim=0)
            direction = rise.direction.view(climbs, n * k, *shape)[steepest, per_target]
            sets.append(project(center + threat.eps * ascent_direction(direction, threat.norm), center,
                                threat.eps, threat.norm, threat.bounds))
        candidates = torch.stack([c.view(n, k, *shape) for c in sets], dim=1).flatten(1, 2)  # n × (sets·k) × input
        probs = view.shell_probs(candidates.flatten(0, 1)).view(n, candidates.shape[1], -1)
        wrong = probs.argmax(dim=2) != y[:, None]
        # prefer a candidate the shell already gets wrong; otherwise the one with least true-class mass
        true_mass = probs.gather(2, y[:, None, None].expand(n, candidates.shape[1], 1)).squeeze(2)
        score = torch.where(wrong, 2.0 - true_mass, -true_mass)
        pick = score.argmax(dim=1)
        chosen = torch.arange(n, device=x.device)
        return candidates[chosen, pick], score[chosen, pick], trace

"""The shell-aware look-ahead attack: plant a confident wrong neighbour the shell will find.

Paper: none; the ε+δ reasoning follows Wu et al.'s own analysis of MCN: if some x'' within
ε + δ of x is classified as t ≠ y by F with high confidence, its projection x' onto the ε-ball
lies within δ of x'', so MCN's search from x' can reach x''. For NCN the target confidence is
p at radius ε: then F(x') ≥ p and NCN returns x' unchanged, labelled t.

Threat: L∞ or L2, ε. View: shell-aware (F white-box, the shell's δ / p, and the shell itself to
choose among the per-class candidates). Needs: a deterministic search (`search`).
Budget: iterations of the targeted ascent (default 40) per restart; every wrong class is a
target, all points × targets in one batch. Restarts (default 6): the first from x, then an ODS
start (Tashiro et al. 2020) and a uniform start in the reach ball in turn, on the points whose
shell is not yet fooled.
Objective (default 'margin'): the targeted CW margin l_t − max_{j≠t} l_j, or 'logprob', log F_t.
With `deep` (default) each row climbs its whole budget and keeps its highest-objective confident
iterate; without it, the first iterate with F_t ≥ `confidence` (0.99). Why deep on the margin: a
point at the edge of a confident region does not survive the projection onto the ε-ball, and the
log-probability stops moving once F is confident; measured on the active test's orthogonal
plants (digits), deep margin look-ahead with 6 restarts finds 56 of 58 where the shallow
log-probability one with 3 restarts found 50; 10 or 20 restarts find no more (docs/DESIGN.md,
Truth checks).
Queries: forward passes of F per point, plus one shell query per candidate checked.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from attacks.losses import targeted_log_prob, targeted_margin
from attacks.starts import schedule, start
from robustness_eval.ascent import projected_ascent
from robustness_eval.norms import project
from robustness_eval.types import AttackKind, Threat, check_positive_int

OBJECTIVES = ("logprob", "margin")


class LookAhead(Attack):
    """Targeted confident PGD on F at radius ε + δ (MCN) or ε (NCN), projected to ε (see module docstring)."""

    name = "lookahead"
    kind = AttackKind.SHELL_AWARE
    view = "shell-aware"
    description = "targeted confident attack on F at ε+δ, projected to ε (knows δ / p)"

    def __init__(self, budget: int = 40, confidence: float = 0.99, restarts: int = 6, deep: bool = True,
                 objective: str = "margin", first_restart: int = 0) -> None:
        super().__init__(budget)
        self.first_restart = first_restart
        self.confidence = confidence
        self.restarts = check_positive_int(restarts, "restarts")
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
        per_attempt = (budget + 1) * k + k  # F's passes per target, and one shell query per candidate
        queries = torch.full((x.shape[0],), per_attempt, dtype=torch.long, device="cpu")
        for kind in kinds[1:]:  # further restarts: ODS or uniform starts, on the points not yet broken
            todo = (score <= 1.0).nonzero().squeeze(1)  # score > 1: the shell already errs there
            if not len(todo):
                break
            found, found_score, _ = self._attempt(view, x[todo], y[todo], threat, budget, kind, generator)
            better = found_score > score[todo]
            x_adv[todo[better]] = found[better]
            score[todo[better]] = found_score[better]
            queries[todo.cpu()] += per_attempt
        return AttackOutput(x_adv, queries, {"loss": trace})

    def _attempt(self, view, x, y, threat: Threat, budget: int, kind: str, generator):
        """One targeted ascent per wrong class from a start of `kind` (x, ods or uniform, in the reach ball):
        the chosen candidate per point, its score (> 1 when the shell misclassifies it), the trace."""
        n, shape = x.shape[0], tuple(x.shape[1:])
        with torch.no_grad():
            num_classes = view.logits(x[:1]).shape[1]
        # a shell with a confidence threshold (NCN) keeps an already p-confident x' itself: aim at
        # p within ε; a shell without one searches its whole radius: aim at ε + radius
        reach = threat.eps + (view.radius if view.threshold is None else 0.0)
        goal = max(self.confidence, view.threshold or 0.0)
        targets = (y[:, None] + torch.arange(1, num_classes, device=y.device)[None]) % num_classes  # n × (C-1)
        k = num_classes - 1
        center = x[:, None].expand(n, k, *shape).reshape(n * k, *shape)
        target = targets.reshape(-1)
        begin = start(kind, center, reach, threat, generator, view.logits)

        def objective(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = view.logits(z)
            logp = targeted_log_prob(logits, target)
            value = logp if self.objective == "logprob" else targeted_margin(logits, target)
            return value, logp.detach().exp() >= goal

        best, _, _, trace = projected_ascent(objective, (center, reach), threat.norm, threat.bounds,
                                             budget, 2.5 * reach / budget, begin, stop_at_success=not self.deep)
        candidates = project(best, center, threat.eps, threat.norm, threat.bounds)
        probs = view.shell_probs(candidates).view(n, k, -1)
        wrong = probs.argmax(dim=2) != y[:, None]
        # prefer a candidate the shell already gets wrong; otherwise the one with least true-class mass
        true_mass = probs.gather(2, y[:, None, None].expand(n, k, 1)).squeeze(2)
        score = torch.where(wrong, 2.0 - true_mass, -true_mass)
        pick = score.argmax(dim=1)
        rows = torch.arange(n, device=x.device)
        return candidates.view(n, k, *shape)[rows, pick], score[rows, pick], trace

"""Verdicts over repeated inference for randomized targets.

A randomized defense answers the same input differently from one query to the next, so one number cannot say
how robust it is. Croce et al. ("Evaluating the Adversarial Robustness of Adaptive Test-time Defenses", ICML
2022) report the mean accuracy over inference runs beside the worst case, where a point counts only if it is
right in every run; DiffHammer (NeurIPS 2024) gives the attacker N submissions and counts a point as fallen if
any one of them is misclassified, which is the worst case with N = R.

After the battery, each point's clean input and its final input (the verified break, or x where none was found)
are classified `runs` (R) more times by every randomized target, its generator reseeded from the run seed first.
Per point it records how many runs were right; accuracy comes three ways: **mean** over runs (the expected
accuracy of one inference), **majority** (right in more than half of the runs) and **worst case** (right in all
R). The worst case leads: it is the figure an attacker with R tries faces. Cost: 2·R·n queries of the target.
A deterministic target, or R = 1, gets no record (its runs cannot differ) and keeps today's single figures.
"""

from __future__ import annotations

import time

import torch

from robustness_eval.records import RepeatedFigures, RepeatedInference
from robustness_eval.stats import clopper_pearson
from robustness_eval.units import Context, reseed_randomized
from robustness_eval.verify import predict_labels

FIGURES = ("worst_case", "majority", "mean")  # the order the report shows them in: the first leads


def figures(right: torch.Tensor, runs: int) -> RepeatedFigures:
    """Accuracy three ways from per-point counts of right runs (each in 0 … runs), with 95 % Clopper–Pearson
    intervals over the points for the two per-point verdicts."""
    n = len(right)
    worst, majority = int((right == runs).sum()), int((2 * right > runs).sum())
    intervals = {"worst_case": clopper_pearson(worst, n), "majority": clopper_pearson(majority, n)}
    return RepeatedFigures(worst_case=worst / n, majority=majority / n, mean=float(right.sum()) / (n * runs),
                           intervals=intervals)


def right_counts(target, x: torch.Tensor, y: torch.Tensor, runs: int) -> torch.Tensor:
    """How many of `runs` calls of `target` classify each row of `x` as `y` (on the CPU)."""
    return sum((predict_labels(target, x) == y).long().cpu() for _ in range(runs))


def repeated_inference(context: Context, adversarial: dict, runs: int, seed: int) -> dict[str, RepeatedInference]:
    """Per randomized target of `context`: its clean and robust accuracy over `runs` inference runs, three ways
    (see the module docstring), and each point's count of right runs. `adversarial` maps a target to
    {point: verified break}; the points it leaves out keep x."""
    record = {}
    if runs < 2:
        return record
    for target, shell in context.shells.items():
        if not getattr(shell, "randomized", False):
            continue
        start = time.perf_counter()
        final = context.x.clone()
        for point, found in adversarial.get(target, {}).items():
            final[point] = found.to(final)
        reseed_randomized(context, seed)
        clean = right_counts(shell, context.x, context.y, runs)
        robust = right_counts(shell, final, context.y, runs)
        record[target] = RepeatedInference(runs=runs, leads=FIGURES[0], clean=figures(clean, runs),
                                           robust=figures(robust, runs), right_clean=clean.tolist(),
                                           right_robust=robust.tolist(), seconds=time.perf_counter() - start)
    return record

"""Uncertainty of the figures: exact binomial intervals and an exact paired test.

With 150–200 points an accuracy is known only to several percentage points; a report must say
whether a shell's gain or loss over the base model is distinguishable from noise.
"""

from __future__ import annotations

from scipy.stats import binomtest

ACTIVE_PASS_SHARE = 0.95  # the share of planted adversarial examples the battery must find (the active test's bar)


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> list[float]:
    """The exact (Clopper–Pearson) interval for a binomial proportion."""
    if trials == 0:
        return [0.0, 1.0]
    interval = binomtest(successes, trials).proportion_ci(confidence_level=level, method="exact")
    return [float(interval.low), float(interval.high)]


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    return float(binomtest(only_first, discordant, 0.5).pvalue)

"""Full gradients through an attack-time surrogate, averaged over its draws; and the fixed-randomness attack.

Papers: Lee & Kim, "Robust Evaluation of Diffusion-Based Adversarial Purification", ICCV 2023 (full gradients
through a purification process configured apart from the defense, fewer steps, PGD-200 with EOT-20: approximate
gradients overstate robustness); Croce et al., "Evaluating the Adversarial Robustness of Adaptive Test-time
Defenses", ICML 2022 (Hedge attacked with 5 inner steps while the defense used 20); Athalye, Engstrom, Ilyas &
Kwok, ICML 2018 (EOT); Liu & Wei 2025 (the defense's randomness fixed, one seed, as a white-box protocol).
Threat: L∞ or L2 ball of radius ε inside the input bounds. Update: Madry et al.'s PGD, cross-entropy, step
2.5·ε/iterations, restarts from uniform and ODS starts in turn. Budget: iterations per restart (default 100, 2
restarts), as for PGD.

- ``pgd-surrogate`` (view `surrogate`, needs the capability `surrogate`): the gradient is that of log p̄(x), p̄
  the surrogate's probabilities averaged over `draws` calls (EOT; default 8, 1 on a deterministic surrogate).
  The surrogate is the shell's own `surrogate()` (DiffPure's shorter chain, MCN's unrolled search) or the
  user's `shell_surrogate`. Queries: surrogate passes per point (each draw).
- ``pgd-fixed`` (view `fixed`, needs `reseed` and a gradient: `differentiable` or `surrogate`): the target's
  randomness is fixed per unit, reseeding it with one seed before every pass, so PGD climbs one deterministic
  function (the shell itself when it is differentiable, else its surrogate). Queries: passes per point.

Every candidate is verified on the real, randomized shell by the runner (majority of 5 queries, after the
target is reseeded away from the attack's fixed seed), exactly as for any other attack.
"""

from __future__ import annotations

from attacks.pgd import PGD
from robustness_eval.types import AttackKind, check_positive_int


class SurrogatePGD(PGD):
    """PGD through the surrogate's averaged probabilities (see module docstring)."""

    name = "pgd-surrogate"
    kind = AttackKind.EOT
    view = "surrogate"
    loss = "ce"
    requires = frozenset({"surrogate"})
    description = "PGD with full gradients through the attack-time surrogate, EOT over its draws"

    def __init__(self, budget: int = 100, restarts: int = 2, rel_step: float = 2.5, targets: int = 0,
                 first_restart: int = 0, draws: int | None = None, search_shells: bool = True) -> None:
        super().__init__(budget, restarts, rel_step, targets, first_restart=first_restart)  # ODS and uniform starts
        self.draws = None if draws is None else check_positive_int(draws, "draws")
        self.search_shells = bool(search_shells)

    def skip_reason(self, offered: frozenset[str]) -> str | None:
        """Needs a surrogate; with `search_shells=False` (the `fast` preset) it leaves deterministic shells with a
        per-class search (MCN, NCN) to the look-ahead and min-max, which use that search directly."""
        reason = super().skip_reason(offered)
        if reason is None and not self.search_shells and {"per-class-search", "deterministic"} <= offered:
            return ("the surrogate attack on a deterministic shell with a per-class search runs in the `full` "
                    "preset and escalation, not in `fast` (unrolled BPDA's slot; look-ahead and min-max use the "
                    "search there)")
        return reason


class FixedRandomnessPGD(PGD):
    """PGD on the target with its randomness fixed by one seed per unit (see module docstring)."""

    name = "pgd-fixed"
    kind = AttackKind.WHITE_BOX
    view = "fixed"
    loss = "ce"
    requires = frozenset({"reseed"})
    description = "PGD on the randomized shell with its randomness fixed by one seed (white box)"

    def __init__(self, budget: int = 100, restarts: int = 2, rel_step: float = 2.5, targets: int = 0,
                 mixed: bool = True, deep: bool = True, first_restart: int = 0) -> None:
        super().__init__(budget, restarts, rel_step, targets, mixed, deep, first_restart)

    @classmethod
    def needs(cls) -> str:
        return "reseed, differentiable or surrogate"

    def skip_reason(self, offered: frozenset[str]) -> str | None:
        if "reseed" in offered and offered & {"differentiable", "surrogate"}:
            return None
        return f"needs {self.needs()}; the target offers {', '.join(sorted(offered)) or 'nothing'}"

"""White-box attacks on a differentiable shell G, end to end: the true gradient of G, not F's.

Paper: Carlini & Wagner, "MagNet and 'Efficient Defenses Against Adversarial Attacks' are Not
Robust to Adversarial Examples", 2017 (attack the whole defended model); Athalye, Carlini & Wagner,
ICML 2018 (EOT over a randomized defense); the update is Madry et al.'s PGD.
Threat: L∞ or L2 ball of radius ε inside the input bounds.

A shell that keeps the graph from x to G(x) (a purifier network such as MagNet's autoencoder, or a
differentiable random transformation such as resizing and padding) declares the capability
`differentiable`. Through it the strongest attack is the plain one, run on G itself (Carlini &
Wagner broke MagNet this way, 2017): BPDA's identity would throw away a gradient that exists.
View: `end-to-end`, G's log-probabilities with their gradient; on a randomized G each evaluation
averages G's probabilities over `draws` of the shell's randomness (EOT, Athalye et al. 2018).
Budget: iterations per restart and target (default 100, step 2.5·ε/iterations), as for PGD; 8 draws
per evaluation on a randomized shell (`draws`). Queries: passes of G per point (each of the draws).

- ``pgd-e2e``: PGD on G with cross-entropy, 3 starts (uniform, ODS, uniform).
- ``cw-e2e-t``: the targeted margin on G toward each of its 3 likeliest wrong classes at x.
"""

from __future__ import annotations

from attacks.pgd import PGD
from robustness_eval.types import AttackKind, check_positive_int


class EndToEndPGD(PGD):
    """PGD on the differentiable shell itself (see module docstring)."""

    name = "pgd-e2e"
    kind = AttackKind.WHITE_BOX
    view = "end-to-end"
    loss = "ce"
    requires = frozenset({"differentiable"})
    description = "PGD through the differentiable shell end to end (EOT over its draws when randomized)"

    def __init__(self, budget: int = 100, restarts: int = 3, rel_step: float = 2.5, targets: int = 0,
                 mixed: bool = True, deep: bool = True, first_restart: int = 0, draws: int | None = None) -> None:
        super().__init__(budget, restarts, rel_step, targets, mixed, deep, first_restart)
        self.draws = None if draws is None else check_positive_int(draws, "draws")


class TargetedEndToEndCW(EndToEndPGD):
    """The targeted CW margin on the differentiable shell toward its likeliest wrong classes."""

    name = "cw-e2e-t"
    loss = "margin"
    description = "targeted CW margin through the differentiable shell toward its 3 likeliest wrong classes"

    def __init__(self, budget: int = 100, restarts: int = 1, rel_step: float = 2.5, targets: int = 3,
                 mixed: bool = True, deep: bool = True, first_restart: int = 0, draws: int | None = None) -> None:
        super().__init__(budget, restarts, rel_step, targets, mixed, deep, first_restart, draws)

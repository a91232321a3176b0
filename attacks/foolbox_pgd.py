"""Foolbox 3's PGD on the base model: a second, independent opinion on our own PGD.

Paper: Madry et al. 2018 (as implemented by Foolbox's LinfPGD / L2PGD, Rauber et al. 2020).
Threat: L∞ or L2 ball of radius ε inside the bounds. View: white-box base model F.
Budget: iterations (default 40); `restarts` independent random starts (default 2).
Defaults: relative step 2.5/iterations (the same rule as our PGD, so the two are comparable
step for step), cross-entropy loss, uniform random start.
"""

from __future__ import annotations

import foolbox as fb
import torch

from attacks.base import Attack, AttackOutput, global_rng_from
from robustness_eval.types import AttackKind, Norm, Threat, check_positive_int


class FoolboxPGD(Attack):
    """Foolbox LinfPGD / L2PGD on F, restarts run one after the other."""

    name = "fb-pgd"
    kind = AttackKind.TRANSFER
    view = "base"
    description = "Foolbox 3 PGD on the base model (second opinion), transferred"

    def __init__(self, budget: int = 40, restarts: int = 2, rel_step: float = 2.5) -> None:
        super().__init__(budget)
        self.restarts = check_positive_int(restarts, "restarts")
        self.rel_step = rel_step

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        # device given explicitly: without it Foolbox moves the model to cuda:0 in place on any CUDA machine
        model = fb.PyTorchModel(view.model, bounds=(threat.bounds.lower, threat.bounds.upper), device=x.device)
        cls = fb.attacks.LinfPGD if threat.norm is Norm.LINF else fb.attacks.L2PGD
        attack = cls(steps=budget, rel_stepsize=self.rel_step / budget, random_start=True)
        x_adv = x.clone()
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        with global_rng_from(generator):  # foolbox draws from torch's global generator
            for _ in range(self.restarts):
                _, clipped, success = attack(model, x, y, epsilons=threat.eps)
                new = success & ~found
                x_adv[new] = clipped[new]
                found |= success
        queries = torch.full((x.shape[0],), (budget + 1) * self.restarts, dtype=torch.long, device="cpu")
        return AttackOutput(x_adv, queries)

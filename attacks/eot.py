"""EOT: expectation over the randomized shell's own sampling.

Paper: Athalye et al., "Synthesizing Robust Adversarial Examples", ICML 2018 (and BPDA+EOT in
"Obfuscated Gradients…", ICML 2018). Threat: L∞ or L2, ε. View: shell-aware (F white-box and
the shell's sampling of neighbours). Budget: outer iterations (default 30). Each iteration draws
`draws` neighbours u of the current point from the shell's own distribution, passes the gradient
straight through the draw (u = x' + (u − x').detach()), and ascends the margin of the mean
probabilities. Queries: neighbours drawn per point. `draws=1` is the single-draw attack.
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from attacks.losses import margin
from attacks.pgd import projected_ascent
from robustness_eval.types import AttackKind, Threat, check_positive_int


class EOT(Attack):
    """PGD on the mean probabilities over the shell's random neighbours (see module docstring)."""

    name = "eot"
    kind = AttackKind.EOT
    view = "shell-aware"
    description = "EOT: gradients averaged over the randomized shell's own draws"

    def __init__(self, budget: int = 30, draws: int = 32) -> None:
        super().__init__(budget)
        self.draws = check_positive_int(draws, "draws")

    def applies_to(self, shell_kind: str, randomized: bool) -> bool:
        return randomized

    def _neighbours(self, view, z: torch.Tensor) -> torch.Tensor:
        taken = []
        count = 0
        while count < self.draws:
            batch = view.sample_points(z.detach())  # (n, samples, *input)
            taken.append(batch)
            count += batch.shape[1]
        return torch.cat(taken, dim=1)[:, : self.draws]

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:

        def objective(z: torch.Tensor):
            u = self._neighbours(view, z)
            through = z[:, None] + (u - z[:, None]).detach()
            probs = torch.softmax(view.logits(through.flatten(0, 1)), 1).view(*u.shape[:2], -1)
            mean = probs.mean(dim=1)
            return margin(torch.log(mean + 1e-12), y), mean.detach().argmax(1) != y

        best, done, _, trace = projected_ascent(objective, x, threat.eps, threat.norm, threat.bounds,
                                                budget, 2.5 * threat.eps / budget, x)
        return AttackOutput(best, done, torch.full((x.shape[0],), len(trace) * self.draws),
                            {"loss": trace})

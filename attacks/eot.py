"""EOT: gradients averaged over random transformations of the input.

Paper: Athalye et al., "Synthesizing Robust Adversarial Examples", ICML 2018, and BPDA+EOT in
Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018.
Threat: L∞ or L2, ε. View: shell-aware (F white-box and the shell's own sampling or search).
Budget: outer iterations (default 30) of PGD on the margin of the mean probabilities.

- Randomized shell (vote): each iteration draws `draws` neighbours u of the current point from
  the shell's own distribution and passes the gradient straight through the draw
  (u = x' + (u − x').detach()). Queries: neighbours drawn per point. `draws=1` is the
  single-draw attack.
- Deterministic search shell (MCN, NCN), BPDA+EOT: the shell's selection of z* = H(x') is
  piecewise constant in x', so the straight-through gradient jumps between classes' search
  points. Each iteration draws `draws` points x' + u (u uniform in the `spread`·ε ball, clipped
  to the bounds), runs the shell's search on each and averages F's probabilities at the search
  points, with the gradient passed straight through H; one more search at x' itself decides
  success. Queries: shell searches per point, (draws + 1) per iteration.

Defaults: 32 draws on a randomized shell (one forward of F each), 4 on a search shell (one
shell search each; 8 found no more of the digits active test's orthogonal plants at twice the
cost); spread 0.25. `search_shells=False` (the `fast` preset) skips deterministic search shells
that also offer a per-class search (MCN, NCN), where look-ahead and min-max use that search: on
them BPDA+EOT broke nothing in any active-test construction, default run or defenses-study run
measured, for about a tenth of the default run's time. Search-only shells (purifiers: JPEG,
bit-depth, a user's `search`) keep it, since there it is one of the few shell-aware attacks (it
broke one MNIST JPEG point in the defenses study).
"""

from __future__ import annotations

import torch

from attacks.base import Attack, AttackOutput
from attacks.losses import margin
from robustness_eval.ascent import projected_ascent
from robustness_eval.norms import random_in_ball
from robustness_eval.types import AttackKind, Threat, check_nonnegative, check_positive_int


class EOT(Attack):
    """PGD on the mean probabilities over random transformations (see module docstring)."""

    name = "eot"
    kind = AttackKind.EOT
    view = "shell-aware"
    description = "EOT: gradients averaged over the shell's draws, or BPDA over input noise on search shells"

    def __init__(self, budget: int = 30, draws: int | None = None, spread: float = 0.25,
                 search_shells: bool = True) -> None:
        super().__init__(budget)
        self.draws = None if draws is None else check_positive_int(draws, "draws")
        self.spread = check_nonnegative(spread, "spread")
        self.search_shells = bool(search_shells)

    @classmethod
    def needs(cls) -> str:
        return "sampling or search"

    def skip_reason(self, offered: frozenset[str]) -> str | None:
        """EOT needs the shell's random draws (`sampling`) or a deterministic `search` to pass through; with
        `search_shells=False` it leaves shells that also offer a per-class search to other attacks."""
        if "sampling" in offered:
            return None
        if "search" in offered:
            if self.search_shells or "per-class-search" not in offered:  # a purifier: BPDA+EOT is one of few
                return None
            return ("BPDA+EOT on a deterministic search shell runs in the `full` preset and escalation, not in "
                    "`fast`: it found nothing there that the fast preset's other attacks missed (docs/DESIGN.md)")
        return f"needs sampling or search; the target offers {', '.join(sorted(offered)) or 'nothing'}"

    def _shell_draws(self, view, z: torch.Tensor, draws: int) -> torch.Tensor:
        taken = []
        count = 0
        while count < draws:
            batch = view.sample_points(z.detach())  # (n, samples, *input)
            taken.append(batch)
            count += batch.shape[1]
        return torch.cat(taken, dim=1)[:, :draws]

    def _run(self, view, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        randomized = view.randomized
        draws = self.draws or (32 if randomized else 4)
        shape = tuple(x.shape[1:])

        def mean_probs(through: torch.Tensor) -> torch.Tensor:  # (n, draws, *input) → (n, classes)
            logits = view.logits(through.flatten(0, 1))
            return torch.softmax(logits, 1).view(*through.shape[:2], -1).mean(dim=1)

        def vote_objective(z: torch.Tensor):
            u = self._shell_draws(view, z, draws)
            mean = mean_probs(z[:, None] + (u - z[:, None]).detach())
            return margin(torch.log(mean + 1e-12), y), mean.detach().argmax(1) != y

        def search_objective(z: torch.Tensor):
            noise = random_in_ball((z.shape[0] * draws, *shape), self.spread * threat.eps, threat.norm,
                                   generator, dtype=z.dtype).to(z).view(z.shape[0], draws, *shape)
            moved = (z[:, None] + noise).clamp(threat.bounds.lower, threat.bounds.upper)
            found = view.search(moved.detach().flatten(0, 1)).view_as(moved)
            mean = mean_probs(moved + (found - moved).detach())  # forward H(u), backward identity
            with torch.no_grad():
                wrong = view.logits(view.search(z.detach())).argmax(1) != y
            return margin(torch.log(mean + 1e-12), y), wrong

        objective = vote_objective if randomized else search_objective
        best, _, _, trace = projected_ascent(objective, (x, threat.eps), threat.norm, threat.bounds,
                                                budget, 2.5 * threat.eps / budget, x)
        per_step = draws if randomized else draws + 1
        return AttackOutput(best, torch.full((x.shape[0],), len(trace) * per_step, device="cpu"),
                            {"loss": trace})

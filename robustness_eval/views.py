"""Views of a target: what an attack is allowed to use, and nothing more.

- `BaseModelView`: white-box access to the base classifier F (logits with gradients).
- `ShellOracle`: the shell as a black box; every input row queried is counted against the
  point it belongs to, and a query that would take a point past its budget is refused.
- `ShellAwareView`: F white-box plus the shell's public parameters (norm, δ, p) and its own
  per-class search, for attacks that know how the shell works (look-ahead, min-max, BPDA).
- `EndToEndView`: a differentiable shell's own log-probabilities with their gradient (averaged
  over `draws` of its randomness when it is randomized: EOT), for white-box attacks on G itself.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness_eval.types import Bounds, Norm


class BudgetExceededError(RuntimeError):
    """Raised when a query would take a point past its oracle budget."""


class BaseModelView:
    """White-box access to the base classifier F."""

    def __init__(self, model: nn.Module, bounds: Bounds) -> None:
        self.model = model
        self.bounds = bounds

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), differentiable."""
        return self.model(x)


class ShellOracle:
    """Black-box, query-counting access to a shell's probabilities.

    `budget` is the number of input rows each point may query (None: unlimited, still counted).
    A query of k rows for point i costs k queries for point i.
    """

    def __init__(self, shell: nn.Module, num_points: int, budget: int | None) -> None:
        if budget is not None and budget < 1:
            raise ValueError(f"`budget` must be an integer ≥ 1 or None (got {budget!r})")
        self._shell = shell
        self.budget = budget
        self.queries = torch.zeros(num_points, dtype=torch.long, device="cpu")
        self.randomized = bool(getattr(shell, "randomized", False))

    def remaining(self) -> torch.Tensor:
        """Queries each point may still make (a large number when unlimited)."""
        if self.budget is None:
            return torch.full_like(self.queries, 2**62)
        return self.budget - self.queries

    def __call__(self, x: torch.Tensor, point_index: torch.Tensor) -> torch.Tensor:
        """Probabilities G(x) for rows `x`, row i charged to point `point_index[i]`."""
        point_index = torch.as_tensor(point_index, dtype=torch.long, device="cpu").reshape(-1)
        if point_index.numel() != x.shape[0]:
            raise ValueError("`point_index` needs one entry per row of `x`")
        cost = torch.bincount(point_index, minlength=len(self.queries))
        if self.budget is not None and bool(((self.queries + cost) > self.budget).any()):
            over = int(((self.queries + cost) > self.budget).nonzero()[0])
            raise BudgetExceededError(
                f"point {over} would use {int(self.queries[over] + cost[over])} queries, over its "
                f"budget of {self.budget}; check `remaining()` before querying"
            )
        self.queries += cost
        with torch.no_grad():
            return self._shell(x.detach().clone())

    def labels(self, x: torch.Tensor, point_index: torch.Tensor) -> torch.Tensor:
        """The shell's decisions for rows `x` (decision-based access; same cost)."""
        return self(x, point_index).argmax(dim=1)


class ShellAwareView(BaseModelView):
    """F white-box plus the shell's public parameters and its own per-class search."""

    def __init__(self, model: nn.Module, shell: nn.Module, bounds: Bounds) -> None:
        super().__init__(model, bounds)
        self._shell = shell
        self.shell_kind: str = str(getattr(shell, "kind", type(shell).__name__))
        self.norm: Norm = Norm.parse(getattr(shell, "norm", Norm.LINF))
        self.radius: float = float(getattr(shell, "radius", 0.0) or 0.0)
        threshold = getattr(shell, "threshold", None)
        self.threshold: float | None = None if threshold is None else float(threshold)
        self.randomized: bool = bool(getattr(shell, "randomized", False))

    def per_class_search(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The shell's own per-class search points (B, C, *input) and confidences as log-odds (B, C)."""
        return self._shell.per_class_search(x.clone())

    def search(self, x: torch.Tensor) -> torch.Tensor:
        """The shell's search point z* = H(x)."""
        return self._shell.search(x.clone())

    def sample_points(self, x: torch.Tensor) -> torch.Tensor:
        """One query's random neighbours (B, samples, *input), for randomized shells."""
        if not hasattr(self._shell, "sample_points"):
            raise TypeError(f"the {self.shell_kind} shell does not sample neighbours")
        return self._shell.sample_points(x.clone())

    def shell_probs(self, x: torch.Tensor) -> torch.Tensor:
        """G(x) (no gradient)."""
        with torch.no_grad():
            return self._shell(x.detach().clone())


class EndToEndView(BaseModelView):
    """A differentiable shell as the white-box model: `logits(x)` = log G(x), gradient kept; on a randomized
    shell log of G's probabilities averaged over `draws` calls (the expectation EOT differentiates)."""

    EOT_DRAWS = 8

    def __init__(self, shell: nn.Module, bounds: Bounds, draws: int | None = None) -> None:
        super().__init__(shell, bounds)
        self.randomized = bool(getattr(shell, "randomized", False))
        self.draws = (draws or self.EOT_DRAWS) if self.randomized else 1

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.model(x)
        for _ in range(self.draws - 1):
            probs = probs + self.model(x)
        return torch.log((probs / self.draws).clamp_min(1e-30))

"""Views of a target: what an attack is allowed to use, and nothing more.

- `BaseModelView`: white-box access to the base classifier F (logits with gradients).
- `ShellOracle`: the shell as a black box; every input row queried is counted against the
  point it belongs to, and a query that would take a point past its budget is refused.
- `ShellAwareView`: F white-box plus the shell's public parameters (norm, δ, p) and its own
  per-class search, for attacks that know how the shell works (look-ahead, min-max, BPDA).
- `EndToEndView`: a differentiable shell's own log-probabilities with their gradient (averaged
  over `draws` of its randomness when it is randomized: EOT), for white-box attacks on G itself; the same view
  of an attack-time surrogate gives attacks its gradients while breaks are verified on G.
- `FixedRandomnessView`: a randomized module reseeded with one seed before every pass, so an attack climbs one
  deterministic function.

On a randomized shell the oracle can average `draws` answers per row (EOT for black-box attacks); each draw
is one query.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness_eval.types import Bounds, Norm


class BudgetExceededError(RuntimeError):
    """Raised when a query would take a point past its oracle budget."""


class TargetOutputError(ValueError):
    """A model or shell returned NaN, infinite or wrongly shaped scores for a batch during the run."""


def checked(out: torch.Tensor, rows: int, role: str) -> torch.Tensor:
    """`out` if it is (rows, classes) and finite; a TargetOutputError naming `role` and the batch size if not.
    One reduction per batch: every score an attack or a verdict uses passes here."""
    if out.dim() != 2 or out.shape[0] != rows:
        raise TargetOutputError(f"{role} returned scores of shape {tuple(out.shape)} for a batch of {rows}; it must "
                                "return (batch, classes) for every batch size")
    if not bool(torch.isfinite(out).all()):
        raise TargetOutputError(f"{role} returned NaN or infinite scores for a batch of {rows} during the run (the "
                                "probe's batches of 1, 3 and 16 were finite): fix its forward for this batch size "
                                "(a smaller --chunk / chunk= changes the batch sizes the run uses)")
    return out


class BaseModelView:
    """White-box access to the base classifier F (`role` names it in errors)."""

    def __init__(self, model: nn.Module, bounds: Bounds, role: str = "the base model F") -> None:
        self.model = model
        self.bounds = bounds
        self.role = role

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), differentiable."""
        return checked(self.model(x), x.shape[0], self.role)


class ShellOracle:
    """Black-box, query-counting access to a shell's probabilities.

    `budget` is the number of shell calls each point may make (None: unlimited, still counted). A query of k
    rows for point i costs k·draws queries for point i: on a randomized shell every row's answer is the mean of
    `draws` calls (EOT), each counted; a deterministic shell is asked once per row.
    """

    def __init__(self, shell: nn.Module, num_points: int, budget: int | None, draws: int = 1) -> None:
        if budget is not None and budget < 1:
            raise ValueError(f"`budget` must be an integer ≥ 1 or None (got {budget!r})")
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise ValueError(f"`draws` must be an integer ≥ 1 (got {draws!r})")
        self._shell = shell
        self.budget = budget
        self.queries = torch.zeros(num_points, dtype=torch.long, device="cpu")
        self.randomized = bool(getattr(shell, "randomized", False))
        self.draws = draws if self.randomized else 1

    def remaining(self) -> torch.Tensor:
        """Rows each point may still query (a large number when unlimited): its queries left over `draws`."""
        if self.budget is None:
            return torch.full_like(self.queries, 2**62)
        return (self.budget - self.queries).div(self.draws, rounding_mode="floor")

    def __call__(self, x: torch.Tensor, point_index: torch.Tensor) -> torch.Tensor:
        """Probabilities G(x) for rows `x`, row i charged to point `point_index[i]`."""
        point_index = torch.as_tensor(point_index, dtype=torch.long, device="cpu").reshape(-1)
        if point_index.numel() != x.shape[0]:
            raise ValueError("`point_index` needs one entry per row of `x`")
        cost = torch.bincount(point_index, minlength=len(self.queries)) * self.draws
        if self.budget is not None and bool(((self.queries + cost) > self.budget).any()):
            over = int(((self.queries + cost) > self.budget).nonzero()[0])
            raise BudgetExceededError(
                f"point {over} would use {int(self.queries[over] + cost[over])} queries, over its "
                f"budget of {self.budget}; check `remaining()` before querying"
            )
        self.queries += cost
        with torch.no_grad():
            if self.draws == 1:
                return checked(self._shell(x.detach().clone()), x.shape[0], "the shell")
            probs = self._shell(x.detach().repeat(self.draws, *([1] * (x.dim() - 1))))  # one call, a draw per row
        return checked(probs, x.shape[0] * self.draws, "the shell").view(self.draws, x.shape[0], -1).mean(0)

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
            return checked(self._shell(x.detach().clone()), x.shape[0], "the shell")


class EndToEndView(BaseModelView):
    """A differentiable shell as the white-box model: `logits(x)` = log G(x), gradient kept; on a randomized
    shell log of G's probabilities averaged over `draws` calls (the expectation EOT differentiates)."""

    EOT_DRAWS = 8

    def __init__(self, shell: nn.Module, bounds: Bounds, draws: int | None = None, role: str = "the shell") -> None:
        if draws is not None and (isinstance(draws, bool) or not isinstance(draws, int) or draws < 1):
            raise ValueError(f"`draws` must be an integer ≥ 1 or None (got {draws!r})")
        super().__init__(shell, bounds, role)
        self.randomized = bool(getattr(shell, "randomized", False))
        self.draws = (draws or self.EOT_DRAWS) if self.randomized else 1

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """log of G's probabilities averaged over `draws` draws, all drawn in one call on `draws` copies of the
        batch (each row of each copy gets its own draw)."""
        if self.draws == 1:
            return torch.log(checked(self.model(x), x.shape[0], self.role).clamp_min(1e-30))
        probs = checked(self.model(x.repeat(self.draws, *([1] * (x.dim() - 1)))), x.shape[0] * self.draws, self.role)
        return torch.log(probs.view(self.draws, x.shape[0], -1).mean(0).clamp_min(1e-30))


class FixedRandomnessView(BaseModelView):
    """`logits(x)` = log of a randomized module's probabilities with its generator reseeded to `seed` before every
    pass: one fixed draw of its randomness per row, the same at every iteration (a module that cannot reseed is
    used as it is)."""

    def __init__(self, module: nn.Module, bounds: Bounds, seed: int, role: str = "the shell") -> None:
        super().__init__(module, bounds, role)
        self.seed, self.randomized, self.draws = seed, False, 1

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if callable(getattr(self.model, "reseed", None)):
            self.model.reseed(self.seed)
        return torch.log(checked(self.model(x), x.shape[0], self.role).clamp_min(1e-30))

"""MCN_δ, the most confident neighbour shell (Wu et al., Algorithm 1).

For each class t, projected ascent on an objective of F(z)_t over z in the δ-ball of x
intersected with the input bounds; z_t is the most t-confident point seen (x itself included);
z* is the z_t whose F(z_t)_t is largest, and G(x) = softmax(F(z*)). Confidences are compared as
log-odds, l_t − logsumexp_{j≠t} l_j, which is monotone in F(z)_t but does not saturate at 1.0 in
float32: comparing saturated probabilities would break ties by class index and make the shell
depend on the order of the classes.

Layout: all points × classes × restarts are one batch of rows (row = (point, class, restart)),
so a search costs `steps + 1` forward and `steps` backward passes of F on B·C·R rows.
Restart 0 starts at x; restart r > 0 starts at x + δ·u_r with u_r a fixed pattern drawn once
from `seed`, so the search is deterministic and each point's result is independent of its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustness_eval.ascent import ascent_step, unrolled_ball_ascent
from robustness_eval.norms import project, random_in_ball
from robustness_eval.types import Bounds, Norm, check_nonnegative, check_positive_int
from shells.base import Shell

OBJECTIVES = ("logprob", "cw")
SEARCH_DTYPES = ("float32", "bfloat16")


def log_odds(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log(F_t / (1 − F_t)) = l_t − logsumexp_{j≠t} l_j, with t = `target[i]` for row i."""
    own = logits.gather(1, target[:, None]).squeeze(1)
    return own - torch.logsumexp(logits.scatter(1, target[:, None], float("-inf")), dim=1)


@dataclass
class SearchSettings:
    """How MCN searches (see `MCNShell` for each field), validated where it is built."""

    steps: int = 20
    restarts: int = 1
    step_size: float | None = None
    objective: str = "logprob"
    chunk_rows: int = 8192
    seed: int = 0
    search_dtype: str = "float32"

    def __post_init__(self) -> None:
        self.steps = check_positive_int(self.steps, "steps")
        self.restarts = check_positive_int(self.restarts, "restarts")
        self.step_size = None if self.step_size is None else check_nonnegative(self.step_size, "step_size")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of: {', '.join(OBJECTIVES)}")
        self.chunk_rows = check_positive_int(self.chunk_rows, "chunk_rows")
        if self.search_dtype not in SEARCH_DTYPES:
            raise ValueError(f"unknown search_dtype {self.search_dtype!r}; choose one of: "
                             f"{', '.join(SEARCH_DTYPES)}")


class MCNShell(Shell):
    """Most confident neighbour within radius `delta` (L∞ or L2).

    Args:
        model: base classifier F returning logits.
        delta: search radius δ ≥ 0 (δ = 0 gives back F).
        norm: 'linf' or 'l2'.
        bounds: input box the search stays in.

    Settings (keywords, `SearchSettings`):
        steps: projected ascent steps per class and restart.
        restarts: starts per class (the first at x).
        step_size: ascent step; default 2.5·δ/steps (Madry et al.'s rule).
        objective: 'logprob' (log F(z)_t, sign/normalised gradient ascent) or 'cw'
            (the margin logit_t − max_{j≠t} logit_j, Carlini–Wagner style).
        chunk_rows: rows per forward pass, to bound memory.
        seed: seed of the fixed restart pattern.
        search_dtype: 'float32' (default) or 'bfloat16': the precision of F's passes inside the
            search (autocast; the iterates stay float32). The shell's answer G(x) = softmax(F(z*)) is
            always computed in float32, and the verifying shell is this same shell.
    """

    kind = "mcn"
    capabilities = frozenset({"search", "per-class-search", "ball-ascent", "deterministic", "surrogate"})
    settings_type = SearchSettings

    def __init__(self, model: nn.Module, delta: float, norm: Norm | str = Norm.LINF,
                 bounds: Bounds = Bounds(), **settings) -> None:
        super().__init__(model, norm, bounds)
        self.radius = check_nonnegative(delta, "delta")
        self.use_settings(settings)
        self._patterns: dict[tuple, torch.Tensor] = {}

    def restart_pattern(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Unit-radius start offsets, one per restart (the first is zero)."""
        key = (shape, like.dtype, like.device)
        if key not in self._patterns:
            g = torch.Generator(device="cpu").manual_seed(self.seed)
            offsets = random_in_ball((self.restarts - 1, *shape), 1.0, self.norm, g)
            zero = torch.zeros(1, *shape, device="cpu")
            self._patterns[key] = torch.cat([zero, offsets]).to(like.device, like.dtype)
        return self._patterns[key]

    def objective_of(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The per-row objective the inner ascent climbs for class `target` (selection uses `log_odds`)."""
        if self.objective == "cw":
            own = logits.gather(1, target[:, None]).squeeze(1)
            others = logits.scatter(1, target[:, None], float("-inf"))
            return own - others.amax(dim=1)
        return torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)

    def per_class_search(self, x: torch.Tensor, delta: float | torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per class t the most t-confident point z_t and its confidence as log-odds.

        Returns z of shape (B, C, *input) and log(F(z_t)_t / (1 − F(z_t)_t)) of shape (B, C)
        (monotone in F(z_t)_t; argmax picks the most confident class). `delta` may be a tensor
        with one radius per point (NCN's bisection uses this).
        """
        x = x.detach()
        radius = torch.as_tensor(self.radius if delta is None else delta, dtype=x.dtype,
                                 device=x.device).expand(x.shape[0])
        with torch.no_grad():
            base_logits = self.base_model(x[:1])
        num_classes = base_logits.shape[1]
        rows_per_point = num_classes * self.restarts
        points_per_chunk = max(1, self.chunk_rows // rows_per_point)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.search_dtype == "bfloat16"):
            results = [self._search_chunk(x[i : i + points_per_chunk], radius[i : i + points_per_chunk],
                                          num_classes)
                       for i in range(0, x.shape[0], points_per_chunk)]
        return torch.cat([r[0] for r in results]), torch.cat([r[1] for r in results]).float()

    def _search_chunk(self, x: torch.Tensor, radius: torch.Tensor, num_classes: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, r = x.shape[0], num_classes, self.restarts
        shape = tuple(x.shape[1:])
        center = x[:, None, None].expand(b, c, r, *shape).reshape(b * c * r, *shape)
        row_radius = radius[:, None, None].expand(b, c, r).reshape(-1)
        target = torch.arange(c, device=x.device)[None, :, None].expand(b, c, r).reshape(-1)
        pattern = self.restart_pattern(shape, x)[None, None].expand(b, c, r, *shape)
        offset = pattern.reshape(b * c * r, *shape) * row_radius.view(-1, *([1] * len(shape)))
        z = project(center + offset, center, row_radius, self.norm, self.bounds)
        step = (2.5 * row_radius / self.steps if self.step_size is None
                else torch.full_like(row_radius, self.step_size)).view(-1, *([1] * len(shape)))

        best_z = center.clone()
        with torch.no_grad():  # x is always a candidate: every row starts with its score at x
            best_conf = log_odds(self.base_model(x).repeat_interleave(c * r, dim=0), target)
        for k in range(self.steps + 1):
            last = k == self.steps  # the last point is only scored: no graph needed
            with torch.set_grad_enabled(not last):
                z.requires_grad_(not last)
                logits = self.base_model(z)
                objective = None if last else self.objective_of(logits, target)
            conf = log_odds(logits.detach(), target)
            better = conf > best_conf
            best_conf = torch.where(better, conf, best_conf)
            best_z = torch.where(better.view(-1, *([1] * len(shape))), z.detach(), best_z)
            if last:
                break
            z = ascent_step(z, objective, center, row_radius, self.norm, self.bounds, step)
        best_conf = best_conf.view(b, c, r)
        pick = best_conf.argmax(dim=2)  # best restart per class
        conf = best_conf.gather(2, pick[..., None]).squeeze(2)
        z_best = best_z.view(b, c, r, *shape)
        index = pick.view(b, c, 1, *([1] * len(shape))).expand(b, c, 1, *shape)
        return z_best.gather(2, index).squeeze(2), conf

    def search(self, x: torch.Tensor) -> torch.Tensor:
        z, conf = self.per_class_search(x)
        winner = conf.argmax(dim=1)
        return z[torch.arange(x.shape[0], device=x.device), winner]

    def surrogate(self, unroll: int = 8) -> nn.Module:
        """The attack-time surrogate: G with the search replaced by a differentiable unrolled copy of its per-class
        ascent (`unroll` steps, the graph kept; unrolled BPDA in the gradient slot every shell may fill)."""
        return UnrolledMCN(self, unroll)


class UnrolledMCN(nn.Module):
    """softmax(F(z)) at the winner of an unrolled, differentiable copy of an MCN shell's per-class search."""

    def __init__(self, shell: MCNShell, unroll: int = 8) -> None:
        super().__init__()
        self.shell, self.unroll = shell, check_positive_int(unroll, "unroll")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shell = self.shell
        z = unrolled_ball_ascent(shell.base_model, x, shell.radius, shell.norm, shell.bounds, self.unroll)
        return torch.softmax(shell.base_model(z), dim=1)

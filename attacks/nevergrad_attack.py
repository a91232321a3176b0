"""Nevergrad optimizers as black-box attacks on the shell.

Paper: Rapin & Teytaud, "Nevergrad - A gradient-free optimization platform", 2018 (the
library); any optimizer in `nevergrad.optimizers.registry` (tried: CMA, DiagonalCMA, DE,
OnePlusOne, NGOpt, TBPSA). Threat: L∞ or L2, ε.
View: the shell as a black box (oracle). Budget: oracle queries per point (default 400).
The perturbation lives on a coarse grid (`grid`² cells per channel, or `grid`·2 cells for flat
inputs), upsampled to the input by nearest neighbour; L∞ maps it through ε·tanh, L2 projects
it onto the ε-ball. Each step asks every point's optimizer for `workers` candidates and sends
all points × candidates to the oracle in one call; the loss is the negative margin.
"""

from __future__ import annotations

import gc
import warnings

import nevergrad as ng
import numpy as np
import torch

from attacks.base import Attack, AttackOutput
from attacks.blackbox import oracle_margin, spatial_shape
from robustness_eval.norms import project
from robustness_eval.types import AttackKind, Norm, Threat, check_positive_int

OPTIMIZERS = ("CMA", "DiagonalCMA", "DE", "OnePlusOne", "NGOpt", "TBPSA")


class NevergradAttack(Attack):
    """One Nevergrad optimizer per point on a low-dimensional perturbation (see module docstring)."""

    name = "ng-cma"
    kind = AttackKind.SCORE_BASED
    view = "oracle"
    description = "Nevergrad optimizer on a coarse-grid perturbation (black box)"
    optimizer = "CMA"

    def __init__(self, budget: int = 400, workers: int = 8, grid: int = 4,
                 optimizer: str | None = None) -> None:
        super().__init__(budget)
        self.workers = check_positive_int(workers, "workers")
        self.grid = check_positive_int(grid, "grid")
        name = optimizer or self.optimizer
        if name not in ng.optimizers.registry:
            raise ValueError(f"unknown Nevergrad optimizer {name!r}; try one of: {', '.join(OPTIMIZERS)}")
        self.optimizer = name

    def _upsample(self, params: torch.Tensor, shape: tuple[int, ...], layout, threat: Threat):
        c, h, w = layout
        gh, gw = (min(h, self.grid), min(w, self.grid)) if h > 1 else (1, min(w, 2 * self.grid))
        coarse = params.view(-1, c, gh, gw)
        fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="nearest")
        fine = fine.reshape(-1, *shape)
        return threat.eps * torch.tanh(fine) if threat.norm is Norm.LINF else fine * threat.eps

    def _run(self, oracle, x, y, threat: Threat, budget: int, generator) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        layout = spatial_shape(shape)
        c, h, w = layout
        dim = c * (min(h, self.grid) * min(w, self.grid) if h > 1 else min(w, 2 * self.grid))
        seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator, device="cpu").tolist()
        optimizers = []
        for seed in seeds:
            param = ng.p.Array(shape=(dim,))
            param.random_state = np.random.RandomState(seed)
            optimizers.append(ng.optimizers.registry[self.optimizer](
                parametrization=param, budget=budget, num_workers=self.workers))
        try:
            with warnings.catch_warnings():
                # NGOpt's meta-model fits a quadratic (scikit-learn) and minimises it (scipy's
                # Powell), both warning about overflow on flat losses: internal to the
                # optimizer, not about the results
                warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(scipy|sklearn)\.")
                # its float() of a 1-element array: the deprecation behind the numpy pin
                warnings.filterwarnings("ignore", category=DeprecationWarning,
                                        module=r"nevergrad\.optimization\.metamodel")
                return self._search(optimizers, oracle, x, y, threat, dim, layout)
        except Exception as error:  # re-raised below without its traceback
            failure = f"{type(error).__name__}: {error}"
        finally:
            # Recast optimizers (NGOpt's sub-solvers) run in threads that stop only when the
            # optimizer is collected. A traceback keeps them alive, and the interpreter then
            # never exits; so the error is re-raised without it, after a collection.
            optimizers.clear()
            gc.collect()
        raise RuntimeError(f"Nevergrad optimizer {self.optimizer} failed: {failure}")

    def _search(self, optimizers, oracle, x, y, threat: Threat, dim: int, layout) -> AttackOutput:
        n, shape = x.shape[0], tuple(x.shape[1:])
        best = x.clone()
        found = torch.zeros(n, dtype=torch.bool, device="cpu")
        best_loss = torch.full((n,), float("-inf"), device="cpu")
        trace = []
        while True:
            todo = (~found & (oracle.remaining() >= self.workers)).nonzero().squeeze(1).tolist()
            if not todo:
                break
            asked = [[optimizers[i].ask() for _ in range(self.workers)] for i in todo]
            params = torch.tensor(np.stack([[a.value for a in row] for row in asked]), dtype=x.dtype, device=x.device)
            delta = self._upsample(params.view(-1, dim), shape, layout, threat)
            rows = torch.tensor(todo, device="cpu").repeat_interleave(self.workers)
            candidates = project(x[rows] + delta, x[rows], threat.eps, threat.norm, threat.bounds)
            losses = oracle_margin(oracle, candidates, y[rows], rows).view(len(todo), self.workers)
            for j, i in enumerate(todo):
                for k, a in enumerate(asked[j]):
                    optimizers[i].tell(a, -float(losses[j, k]))
            top, arg = losses.max(dim=1)
            index = torch.tensor(todo, device="cpu")
            improve = top > best_loss[index]
            chosen = candidates.view(len(todo), self.workers, *shape)[torch.arange(len(todo), device=x.device), arg]
            best[index[improve]] = chosen[improve]
            best_loss[index[improve]] = top[improve]
            found[index] |= top > 0
            trace.append(float(best_loss[index].mean()))
        return AttackOutput(best, oracle.queries.clone(), {"loss": trace})


def _variant(optimizer: str, attack_name: str) -> type[NevergradAttack]:
    return type(f"Nevergrad{optimizer}", (NevergradAttack,),
                {"name": attack_name, "optimizer": optimizer,
                 "description": f"Nevergrad {optimizer} on a coarse-grid perturbation (black box)"})


NEVERGRAD_ATTACKS = [_variant(opt, f"ng-{opt.lower()}") for opt in OPTIMIZERS]

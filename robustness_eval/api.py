"""The Python API: `evaluate(model, shell, data, threat, attacks=...)`, mirroring `robustness-eval run`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from robustness_eval.data import Dataset
from robustness_eval.results import EvaluationResult
from robustness_eval.runner import evaluate as run_battery
from robustness_eval.store import ResultStore
from robustness_eval.types import Threat, check_positive_int
from shells.base import Shell


def evaluate(model: nn.Module, shell: Shell, data: Dataset | tuple[torch.Tensor, torch.Tensor],
             threat: Threat, attacks: str | list = "fast", n_points: int | None = 200, seed: int = 0,
             store_dir: str | Path | None = None, convergence: bool = False, quiet: bool = True,
             budgets: dict[str, int] | None = None) -> EvaluationResult:
    """Evaluate `model` and its `shell` on `data` under `threat`; every break re-verified.

    Args:
        model: any nn.Module mapping a batch inside the data's bounds to logits.
        shell: a shell around `model` (e.g. `shells.MCNShell(model, delta=0.1)`).
        data: a `Dataset` (its test split is used) or an `(x, y)` pair.
        threat: `Threat(norm, eps, bounds)`.
        attacks: 'fast' (default), 'full', a comma list of names, or Attack instances.
        n_points: evaluate the first N points (None: all).
        seed: fixes every random choice.
        store_dir: commit per-point rows to a SQLite store there (resumable); None keeps them in memory.
        convergence: rerun with every budget doubled and report the change.
        quiet: no progress bars.
        budgets: per-attack budget overrides by name.
    Returns:
        An `EvaluationResult` with the results.json fields; `.to_report(dir)` writes the report.
    """
    if isinstance(data, Dataset):
        x, y = data.x_test, data.y_test
    elif isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(f"`data` must be a robustness_eval.data.Dataset or an (x, y) pair (got {type(data).__name__})")
    if n_points is not None:
        n = min(check_positive_int(n_points, "n_points"), len(y))
        x, y = x[:n], y[:n]
    store = ResultStore(store_dir) if store_dir is not None else None
    try:
        return run_battery(model, shell, x, y, threat, attacks, seed=seed, quiet=quiet, store=store,
                           budgets=budgets, convergence=convergence,
                           config={"seed": seed, "attacks": attacks if isinstance(attacks, str) else "custom"})
    finally:
        if store is not None:
            store.close()

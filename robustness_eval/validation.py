"""Validation at the API boundary: every check `evaluate` makes before any work or any write.

Wrong types raise `TypeError`, bad values `ValueError`; each message names the argument and
says what to pass instead (scikit-learn's habit). Inside the suite the values are trusted.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from robustness_eval.data import Dataset
from robustness_eval.types import Threat, check_positive_int


def as_tensor(value, argument: str) -> torch.Tensor:
    """A torch tensor from a tensor or a NumPy array; a TypeError for anything else."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise TypeError(f"`{argument}` must be a torch.Tensor or a numpy array (got {type(value).__name__})")


def check_points(x, y, threat: Threat) -> tuple[torch.Tensor, torch.Tensor]:
    """x as floating point inside the threat's bounds, y as integer labels, same non-zero length."""
    x, y = as_tensor(x, "x"), as_tensor(y, "y")
    if not torch.is_floating_point(x):
        raise TypeError(f"`x` must hold floating-point inputs (got dtype {x.dtype}); pass x.float()")
    if torch.is_floating_point(y) or y.dtype == torch.bool or torch.is_complex(y):
        raise TypeError(f"`y` must hold integer class labels (got dtype {y.dtype}); pass y.long()")
    if y.dim() != 1:
        raise ValueError(f"`y` must be one label per point, shape (n,) (got shape {tuple(y.shape)})")
    if x.dim() < 2:
        raise ValueError(f"`x` must be a batch of inputs, shape (n, ...) (got shape {tuple(x.shape)})")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"`x` and `y` must have the same number of points (got {x.shape[0]} and {y.shape[0]})")
    if x.shape[0] == 0:
        raise ValueError("`x` holds no points; pass at least one")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise ValueError(f"`x` holds NaN or infinite values in {bad} point(s); pass finite inputs")
    low, high = float(x.min()), float(x.max())
    bounds = threat.bounds
    if low < bounds.lower - 1e-6 or high > bounds.upper + 1e-6:
        raise ValueError(f"`x` lies outside the threat's bounds [{bounds.lower:g}, {bounds.upper:g}] "
                         f"(its values span [{low:g}, {high:g}]); rescale x or pass "
                         f"Threat(..., bounds=Bounds({low:g}, {high:g}))")
    return x, y.long()


def check_flag(value, argument: str) -> bool:
    """A real boolean (a string such as 'false' is an error, not True)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{argument}` must be True or False (got {value!r})")
    return value


def select_points(data, n_points: int | None) -> tuple[torch.Tensor, torch.Tensor, str, dict, Callable | None]:
    """The first `n_points` points of `data` (a Dataset's test split or an (x, y) pair), with the data set's name,
    its split record and its ground-truth labeller (None when it has none)."""
    if isinstance(data, Dataset):
        x, y, name, split, truth = data.x_test, data.y_test, data.name, data.split, data.true_label
    elif isinstance(data, tuple | list) and len(data) == 2:
        (x, y), name, split, truth = data, "arrays", {"source": "(x, y) passed to evaluate()"}, None
        x, y = as_tensor(x, "x"), as_tensor(y, "y")
    else:
        raise TypeError(f"`data` must be a robustness_eval.data.Dataset or an (x, y) pair (got {type(data).__name__})")
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` must have the same number of points (got {len(x)} and {len(y)})")
    if n_points is not None:
        check_positive_int(n_points, "n_points")
        if n_points > len(y):
            warnings.warn(f"n_points is {n_points} but the data holds {len(y)} points; evaluating all {len(y)}",
                          stacklevel=4)
        x, y = x[:n_points], y[:n_points]
    return x, y, name, split, truth

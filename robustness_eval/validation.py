"""Validation at the API boundary: every check `evaluate` makes before any work or any write.

Wrong types raise `TypeError`, bad values `ValueError`; each message names the argument and
says what to pass instead (scikit-learn's habit). Inside the suite the values are trusted.
"""

from __future__ import annotations

import numpy as np
import torch

from robustness_eval.types import Threat


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

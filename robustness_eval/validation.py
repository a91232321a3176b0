"""Validation at the API boundary: every check `evaluate` makes before any work or any write.

Wrong types raise `TypeError`, bad values `ValueError`; each message names the argument and
says what to pass instead (scikit-learn's habit). Inside the suite the values are trusted.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from robustness_eval.modules import eval_mode
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


def check_model(model, x: torch.Tensor, y: torch.Tensor) -> int:
    """The model returns one row of ≥ 2 logits per input; labels lie in range. Returns the class count.

    A model in training mode is switched to eval mode, with a warning that says so.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module returning logits (got {type(model).__name__})")
    if model.training and not isinstance(model, torch.fx.GraphModule):
        warnings.warn("`model` was in training mode; evaluate() switched it to eval mode (model.eval())",
                      stacklevel=3)
        eval_mode(model)
    with torch.no_grad():
        out = model(x[:2])
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"`model` must return a tensor of logits (it returned {type(out).__name__})")
    if out.dim() != 2 or out.shape[0] != min(2, len(x)):
        raise ValueError(f"`model` must return logits of shape (batch, classes); for {min(2, len(x))} inputs it "
                         f"returned shape {tuple(out.shape)}")
    classes = int(out.shape[1])
    if classes < 2:
        raise ValueError(f"`model` must return at least 2 class logits per input (got {classes})")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise ValueError(f"`y` holds labels in [{low}, {high}] but the model has {classes} classes; "
                         f"labels must lie in [0, {classes - 1}]")
    return classes


def check_shell(shell, model: nn.Module, x: torch.Tensor, classes: int) -> None:
    """The shell is a module around the same model object, returning one probability row per input."""
    if not isinstance(shell, nn.Module):
        raise TypeError(f"`shell` must be a torch.nn.Module (a shell) or a factory(model, **options) "
                        f"(got {type(shell).__name__})")
    wrapped = getattr(shell, "base_model", None)
    if wrapped is not None and wrapped is not model:
        raise ValueError("`shell` wraps a different model object than `model`; build the shell around the "
                         "model you evaluate (or pass a factory and let evaluate() build it)")
    with torch.no_grad():
        out = shell(x[:2])
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (min(2, len(x)), classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"`shell` must return class probabilities of shape (batch, {classes}); "
                         f"it returned {shape}")


def check_flag(value, argument: str) -> bool:
    """A real boolean (a string such as 'false' is an error, not True)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{argument}` must be True or False (got {value!r})")
    return value

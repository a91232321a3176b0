"""Validation at the API boundary: every check `evaluate` makes before any work or any write.

Wrong types raise `TypeError`, bad values `ValueError`; each message names the argument and
says what to pass instead (scikit-learn's habit). Inside the suite the values are trusted.
"""

from __future__ import annotations

import math
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
    for tensor, argument in ((x, "x"), (y, "y")):
        if tensor.is_meta:
            raise ValueError(f"`{argument}` is on the meta device (a shape without values); pass a tensor holding "
                             "the data (on the CPU or a GPU)")
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
                         f"(its values span [{low:g}, {high:g}]); rescale x, or give the true bounds: on the command "
                         f"line as the .npz's `lower` and `upper` arrays (or a --data factory's Dataset bounds), in "
                         f"Python as Threat(..., bounds=Bounds({low:g}, {high:g}))")
    return x, y.long()


def threat_findings(threat: Threat, delta: float, dimension: int) -> list[str]:
    """Warnings for a threat that is valid but cannot be meant as given: infinite bounds, ε or δ at least the
    box's diameter in the threat's norm (inputs of `dimension` values: every input in the box is then within
    reach)."""
    bounds, findings = threat.bounds, []
    if math.isinf(bounds.lower) or math.isinf(bounds.upper):
        findings.append(f"the bounds [{bounds.lower:g}, {bounds.upper:g}] are infinite: attacks clip to them, so "
                        "nothing keeps their candidates in a valid input range; give the data's true bounds")
        return findings
    reach = bounds.width * (1.0 if threat.norm.value == "linf" else math.sqrt(dimension))
    for name, value in (("ε", threat.eps), ("δ", delta)):
        if value > reach:
            findings.append(f"{name} = {value:g} exceeds the box's diameter {reach:g} in {threat.norm.value}: every "
                            f"input in the bounds lies within reach, so the {name}-ball is the whole input space; "
                            "check the value")
    return findings


def battery_findings(attacks, budgets: dict | None, battery: list) -> list[str]:
    """Warnings for battery settings that are accepted but cannot do what they seem to: an empty name in a comma
    list (a stray comma), a budget for an attack this battery does not run."""
    findings = []
    if isinstance(attacks, str) and "," in attacks and any(not part.strip() for part in attacks.split(",")):
        findings.append(f"`attacks` / --attacks {attacks!r} has an empty name (a stray comma), ignored; list names "
                        "separated by single commas")
    running = {attack.name for attack in battery}
    for name in sorted(set(budgets or {}) - running):
        findings.append(f"a budget is given for {name} (--budget {name}=N / budgets={{'{name}': N}}) but the battery "
                        f"does not run it, so it changes nothing; add {name} to --attacks or drop the budget")
    return findings


def check_model_device(model) -> None:
    """Refuse a model whose weights are not materialised (the meta device): it has shapes but no values."""
    for name, tensor in [*getattr(model, "named_parameters", lambda: [])(), *getattr(model, "named_buffers",
                                                                                      lambda: [])()]:
        if tensor.is_meta:
            raise ValueError(f"`model` has {name} on the meta device (not materialised); load its weights first, "
                             "e.g. model.load_state_dict(state, assign=True) or model.to_empty(device='cpu') and "
                             "load_state_dict")


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

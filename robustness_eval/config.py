"""Run configuration: defaults < TOML file < command-line flags, and the resume rule.

A run's config holds everything needed to rerun it. `resolve` merges the three layers and
validates every value at the boundary, with errors that name the key and what to pass instead.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from robustness_eval.types import Norm, check_nonnegative, check_positive_int

DEFAULTS = {"dataset": "digits", "data_dir": None, "model": "adversarial", "shell": "mcn",
            "norm": "linf", "eps": "0.1", "delta": "0.1", "p": 0.9, "attacks": "fast",
            "n_points": 200, "seed": 0, "budget": [], "convergence": True, "crosscheck": True,
            "sanity": True}
KEYS = tuple(DEFAULTS)


def _float_list(value, key: str) -> list[float]:
    parts = value if isinstance(value, list) else str(value).split(",")
    try:
        numbers = [float(p) for p in parts if str(p).strip() != ""]
    except ValueError:
        raise ValueError(f"`{key}` must be a number or a comma list of numbers (got {value!r})") from None
    if not numbers:
        raise ValueError(f"`{key}` needs at least one value (got {value!r})")
    return [check_nonnegative(v, key) for v in numbers]


def parse_budgets(items: list[str]) -> dict[str, int]:
    """`NAME=N` strings to a dict; a clear error for anything else."""
    budgets = {}
    for item in items or []:
        name, sep, number = str(item).partition("=")
        if not sep or not number.strip().isdigit() or int(number) < 1:
            raise ValueError(f"`--budget` takes NAME=N with N ≥ 1, e.g. square=2000 (got {item!r})")
        budgets[name.strip()] = int(number)
    return budgets


def load_toml(path: str | Path) -> dict:
    """Read a TOML config; unknown keys are an error that lists the valid ones."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path} does not exist")
    data = tomllib.loads(path.read_text())
    data = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(unknown)} in {path}; valid keys: {', '.join(KEYS)}")
    return data


def resolve(explicit: dict, toml: dict | None = None, stored: dict | None = None) -> dict:
    """Merge the layers into a validated config.

    `explicit` holds only flags the user typed. With `stored` (a resume), an explicit value that
    differs from the stored one is an error naming the keys.
    """
    if stored is not None:
        base = {k: stored.get(k, DEFAULTS[k]) for k in KEYS}
        differ = [k for k, v in explicit.items() if _normal(k, v) != _normal(k, base[k])]
        if differ:
            detail = "; ".join(f"{k}: stored {base[k]!r}, given {explicit[k]!r}" for k in differ)
            raise ValueError(f"cannot resume with a different config: {', '.join(differ)} differ ({detail})")
        merged = base
    else:
        merged = {**DEFAULTS, **(toml or {}), **explicit}
    config = dict(merged)
    config["norm"] = Norm.parse(config["norm"], "--norm").value
    config["eps"] = ",".join(f"{v:g}" for v in _float_list(config["eps"], "--eps"))
    config["delta"] = ",".join(f"{v:g}" for v in _float_list(config["delta"], "--delta"))
    config["n_points"] = check_positive_int(int(config["n_points"]), "--n-points")
    config["seed"] = int(config["seed"])
    config["p"] = float(config["p"])
    config["budget"] = sorted(f"{k}={v}" for k, v in parse_budgets(config["budget"]).items())
    return config


def _normal(key: str, value):
    if key in ("eps", "delta"):
        return _float_list(value, key)
    if key == "budget":
        return sorted(parse_budgets(value).items())
    if key == "norm":
        return Norm.parse(value).value
    return value


def grid(config: dict) -> list[tuple[float, float]]:
    """Every (ε, δ) combination of a sweep, the primary (first ε, first δ) first."""
    return [(e, d) for e in _float_list(config["eps"], "eps") for d in _float_list(config["delta"], "delta")]

"""Run configuration for the CLI: defaults < TOML file < command-line flags.

A run's config holds everything needed to rerun it. `load_toml` type-checks every value when the
file is read (a string "false" is not a boolean; `n_points = 10.7` is not an integer) and names
the file in every error; `resolve` merges the layers and validates every value, with errors that
name the flag and what to pass instead.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from robustness_eval.options import TOML_TYPES, config_fields, default_of, flag_of, key_of, spec_of
from robustness_eval.types import Norm, check_nonnegative, check_positive_int, check_probability

DEFAULTS = {key_of(f): default_of(f) for f in config_fields()}
KEYS = tuple(DEFAULTS)
ALIASES = {"dataset": "data"}
FLAGS = {key: flag_of(key) for key in KEYS}
TOML_KEY_TYPES = {key_of(f): TOML_TYPES[spec_of(f).toml] for f in config_fields()}


def float_list(value, key: str) -> list[float]:
    """A number, a list of numbers, or a comma string, as a list of finite numbers ≥ 0."""
    parts = value if isinstance(value, list) else str(value).split(",")
    if len(parts) > 1 and any(str(p).strip() == "" for p in parts):
        raise ValueError(f"`{key}` has an empty value in {value!r}; separate the values by single commas, "
                         "e.g. 0.05,0.1")
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
    """Read and type-check a TOML config; every error names the file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--config {path} is a directory; pass a TOML file")
    if not path.is_file():
        raise FileNotFoundError(f"--config {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--config {path} is not valid TOML: {error}") from None
    named = {}
    for key in data:
        canonical = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        if canonical in named:
            raise ValueError(f"--config {path} sets `{canonical}` twice (as `{named[canonical]}` and `{key}`, an "
                             "alias or another spelling of it); keep one")
        named[canonical] = key
    data = {canonical: data[key] for canonical, key in named.items()}
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(unknown)} in {path}; valid keys: {', '.join(KEYS)}")
    for key, value in data.items():
        accepts, wanted = TOML_KEY_TYPES[key]
        if not accepts(value):
            raise ValueError(f"--config {path}: `{key}` must be {wanted} (got {value!r})")
    if isinstance(data.get("attacks"), list):
        data["attacks"] = ",".join(data["attacks"])
    return data


def resolve(explicit: dict, toml: dict | None = None) -> dict:
    """Merge defaults < TOML < flags into a validated config (errors name the flag)."""
    config = {**DEFAULTS, **(toml or {}), **explicit}
    config["norm"] = Norm.parse(config["norm"], "--norm").value
    config["eps"] = ",".join(f"{v:g}" for v in float_list(config["eps"], "--eps"))
    config["delta"] = ",".join(f"{v:g}" for v in float_list(config["delta"], "--delta"))
    config["p"] = check_probability(config["p"], "--p")
    config["n_points"] = check_positive_int(config["n_points"], "--n-points")  # a file or flag cannot say "all"
    for f in config_fields():  # the run options' own checks, naming the flag
        check = spec_of(f).check
        if check is not None:
            config[key_of(f)] = check(config[key_of(f)], flag_of(key_of(f)))
    config["budget"] = sorted(f"{k}={v}" for k, v in parse_budgets(config["budget"]).items())
    return config


def grid(config: dict) -> tuple[list[float], list[float]]:
    """The ε and δ values of a run; the first of each is the primary run."""
    return float_list(config["eps"], "--eps"), float_list(config["delta"], "--delta")


def run_name(config: dict) -> str:
    """The default output directory's name: data, model, shell, threat and seed, filesystem-safe."""
    def label(spec: str) -> str:
        text = str(spec).rpartition(":")[2] if ":" in str(spec) else Path(str(spec)).stem or str(spec)
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text)

    return (f"{label(config['data'])}-{label(config['model'])}-{label(config['shell'])}-{config['norm']}"
            f"-eps{config['eps'].replace(',', '_')}-delta{config['delta'].replace(',', '_')}"
            f"-seed{config['seed']}")

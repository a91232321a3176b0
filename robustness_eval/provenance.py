"""Provenance and the run's configuration: what decides the numbers, recorded in every results.json.

The configuration is bound to the run directory (a resume with any other value is refused);
`VOLATILE` keys are provenance a resume may change.
"""

from __future__ import annotations

import hashlib
import platform

import torch
from torch import nn

from attacks.base import Attack
from robustness_eval.code_identity import code_record
from robustness_eval.options import RunOptions, execution_keys
from robustness_eval.results import describe_shell
from robustness_eval.types import Threat
from robustness_eval.zoo import model_hash
from shells.base import plain

VOLATILE = ("call", "versions", *execution_keys())  # provenance: a resume may change device or backend


def versions() -> dict:
    """Versions that decide the numbers (recorded in every run's config)."""
    import foolbox
    import nevergrad
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "foolbox": foolbox.__version__,
            "nevergrad": nevergrad.__version__}


def data_hash(x: torch.Tensor, y: torch.Tensor) -> str:
    """A short SHA-256 of the evaluated points and labels (float32 / int64 bytes)."""
    digest = hashlib.sha256()
    digest.update(x.detach().cpu().float().contiguous().numpy().tobytes())
    digest.update(y.detach().cpu().long().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_label(model: nn.Module) -> str:
    """The zoo kind of a zoo model ('adversarial'), else the model's class path."""
    return getattr(model, "zoo_kind", None) or f"{type(model).__module__}.{type(model).__qualname__}"


def battery_record(battery: list[Attack]) -> list[list]:
    """Each attack's name, budget and scalar settings (restarts, step sizes): a resume must match them."""
    return [[attack.name, attack.budget, {k: v for k, v in sorted(vars(attack).items())
                                          if k not in ("budget", "only_target") and isinstance(v, int | float | str)}]
            for attack in battery]


def run_config(config: dict, shell, eps: float, delta: float, threat: Threat) -> dict:
    return {**config, "eps_value": eps, "delta_value": delta, "shell_parameters": describe_shell(shell),
            "threat": {"norm": threat.norm.value, "eps": eps, "bounds": [threat.bounds.lower, threat.bounds.upper]}}


def configuration(points: dict, model: nn.Module, shell: nn.Module, threat: Threat, sweep: tuple[list, list],
                  battery: list[Attack], options: RunOptions, factory=None) -> dict:
    """The run's configuration: the points (dataset, split, data_hash, n_points_used), F, the shell, the threat
    and its sweep, the battery, every recorded option, the code (the suite's identity and the user's files behind
    F, the shell, its `factory` and the surrogates), and provenance (versions, device, backend, the call)."""
    eps_values, delta_values = sweep
    attacks = options.attacks
    return {
        **points, "model": model_label(model), "model_hash": model_hash(model),
        "shell": describe_shell(shell)["kind"], "norm": threat.norm.value,
        "eps": ",".join(f"{e:g}" for e in eps_values), "delta": ",".join(f"{d:g}" for d in delta_values),
        "attacks": attacks if isinstance(attacks, str) else ",".join(a.name if isinstance(a, Attack) else str(a)
                                                                   for a in attacks),
        "battery": battery_record(battery),
        "budget": sorted(f"{k}={v}" for k, v in (options.budgets or {}).items()),
        **options.record(), "chunk": options.chunk,
        "call": dict(options.call or {"command": "(Python API) robustness_eval.evaluate"}),
        "versions": versions(), "device": str(options.device),
        "bpda": None if options.bpda is None else model_hash(options.bpda), "backend": options.backend.name,
        "shell_surrogate": None if options.shell_surrogate is None else plain(options.shell_surrogate),
        "code": code_record([model, shell, factory, options.bpda, options.shell_surrogate]),
    }

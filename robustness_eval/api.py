"""The one evaluation: `evaluate(model, shell, data, threat, ...)`. The CLI only loads and calls it.

One call runs the whole job for any model, shell and data: validation, the battery (base and
shell on the same points), the doubled-budget convergence rerun, the Foolbox cross-check, the
sanity checks, the active test, ε/δ sweeps, ground truth where the data has it, example panels,
provenance (hashes of weights and points, versions, the call) and config binding (a store
refuses a run whose model, data, threat, shell or battery differ from the one it holds).
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from attacks.base import Attack
from robustness_eval import sanity
from robustness_eval.active import PLANTS, active_test, caveat
from robustness_eval.backends import LocalBackend, RayBackend, make_backend
from robustness_eval.crosscheck import pgd_crosscheck
from robustness_eval.data import Dataset
from robustness_eval.escalation import TIME_CAP_SECONDS, escalate
from robustness_eval.probe import probe_bpda, probe_model, probe_shell
from robustness_eval.restart_check import restart_check
from robustness_eval.results import EvaluationResult, describe_shell
from robustness_eval.runner import resolve_battery, run_battery
from robustness_eval.store import DB_NAME, ResultStore, compare_configs
from robustness_eval.types import Threat, check_nonnegative, check_positive_int, check_probability, check_seed
from robustness_eval.units import Context
from robustness_eval.validation import as_tensor, check_flag, check_points
from robustness_eval.zoo import model_hash
from shells.base import can_rebuild
from shells.registry import accepted_options, call_factory

SANITY_SUBSET = 30
VOLATILE = ("call", "versions", "device", "backend")  # provenance: a resume may change device or backend
EXAMPLE_COUNT = 6


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


@dataclass
class ShellSource:
    """The shell under evaluation, and how to build the same shell around another model or δ."""

    shell: nn.Module
    factory: Callable | None
    options: dict
    randomized: bool = False  # found random by the probe though it does not say so: so are its rebuilds

    def takes(self, option: str) -> bool:
        if self.factory is not None:
            return option in accepted_options(self.factory, {option: None})
        return can_rebuild(self.shell)

    def rebuild(self, model: nn.Module, **changes) -> nn.Module | None:
        """The shell around `model` with `changes` (delta, ...); None when it cannot be rebuilt."""
        if self.factory is not None:
            built = call_factory(self.factory, model, {**self.options, **changes})
        else:
            built = self.shell.rebuild(model, **changes) if can_rebuild(self.shell) else None
        if built is not None and self.randomized:
            built.randomized = True
        return built


def _shell_source(shell, model: nn.Module, threat: Threat, seed: int, options: dict | None) -> ShellSource:
    if isinstance(shell, nn.Module):
        if options:
            raise ValueError("`shell_options` apply only when `shell` is a factory; the shell instance "
                             "already has its parameters")
        return ShellSource(shell, None, {})
    if not callable(shell):
        raise TypeError(f"`shell` must be a shell module or a factory(model, **options) (got {type(shell).__name__})")
    merged = {"delta": threat.eps, "p": 0.9, "norm": threat.norm, "bounds": threat.bounds, "seed": seed,
              **(options or {})}
    check_nonnegative(merged["delta"], "shell_options['delta']")
    check_probability(merged["p"], "shell_options['p']")
    try:
        built = call_factory(shell, model, merged)
    except Exception as error:
        raise ValueError(f"the shell factory raised {type(error).__name__}: {error}") from error
    if not isinstance(built, nn.Module):
        raise TypeError(f"the shell factory must return a torch.nn.Module shell (it returned {type(built).__name__})")
    return ShellSource(built, shell, merged)


def _points(data, n_points: int | None) -> tuple[torch.Tensor, torch.Tensor, str, dict, Callable | None]:
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


def _battery_record(battery: list[Attack]) -> list[list]:
    """Each attack's name, budget and scalar settings (restarts, step sizes): a resume must match them."""
    return [[attack.name, attack.budget, {k: v for k, v in sorted(vars(attack).items())
                                          if k not in ("budget", "only_target") and isinstance(v, int | float | str)}]
            for attack in battery]


def evaluate(model: nn.Module, shell, data: Dataset | tuple, threat: Threat, **options) -> EvaluationResult:
    """Evaluate `model` and its shell on `data` under `threat`: the whole job, every break re-verified.

    Args:
        model: any nn.Module mapping a batch inside the threat's bounds to logits.
        shell: a shell module around `model` (e.g. `shells.MCNShell(model, delta=0.1)`), or a
            factory `factory(model, **options)` that builds one (options: delta, p, norm, bounds,
            seed; it may take only those it uses). The active test, the δ → 0 ablation and δ sweeps
            rebuild the shell around other models or radii: a factory or a built-in shell can be
            rebuilt; another instance cannot, and those parts are reported as not run.
        data: a `Dataset` (its test split) or an `(x, y)` pair of tensors or NumPy arrays.
        threat: `Threat(norm, eps, bounds)`; `x` must lie inside its bounds.
        **options: the keywords of `prepare_evaluation`, documented there (attacks='fast',
            n_points=200, seed=0, store_dir=None, convergence=True, crosscheck=True,
            sanity_checks=True, sweep_eps=(), sweep_delta=(), budgets=None, shell_options=None,
            chunk=None, device='auto', escalation=True, escalation_cap=600, bpda=None, backend='local',
            ray_address=None, workers=None, quiet=True, call=None).
    Returns:
        An `EvaluationResult` with the results.json fields; `.to_report(dir)` writes the report.
    Raises:
        TypeError / ValueError: a wrong type or value, before any work starts or anything is written.
    """
    return prepare_evaluation(model, shell, data, threat, **options).run()


@dataclass
class Evaluation:
    """A validated evaluation, ready to run: nothing has been computed or written yet."""

    model: nn.Module
    source: ShellSource
    x: torch.Tensor
    y: torch.Tensor
    threat: Threat
    truth: Callable | None
    config: dict
    battery: list[Attack]
    attacks: str | list
    budgets: dict | None
    store_dir: Path | None
    combos: list[tuple[float, float]]
    quiet: bool
    surrogate: nn.Module | None = None
    backend: LocalBackend | RayBackend = field(default_factory=LocalBackend)
    findings: list[str] = field(default_factory=list)  # the probe's warnings, recorded in the result too

    def run(self) -> EvaluationResult:
        """Run (or resume) every combination of the sweep; return the primary result."""
        results = []
        primary_delta = self.combos[0][1]
        for position, (eps, delta) in enumerate(self.combos):
            primary = position == 0
            directory = None if self.store_dir is None else (
                self.store_dir if primary else self.store_dir / "sweep" / f"eps{eps:g}-delta{delta:g}")
            shell = self.source.shell if delta == primary_delta else self.source.rebuild(self.model, delta=delta)
            if not self.quiet:
                print(f"[{position + 1}/{len(self.combos)}] ε = {eps:g}, δ = {delta:g}: {len(self.y)} points",
                      flush=True)
            results.append(_one_run(self, shell, self.threat.with_eps(eps), _run_config(self.config, shell, eps,
                                                                                         delta, self.threat),
                                    directory, primary))
        first = results[0]
        if len(results) > 1:
            first.extras["sweep"] = [
                {"eps": r.config["eps_value"], "delta": r.config["delta_value"],
                 "clean_accuracy": r.clean_accuracy, "robust_accuracy": r.robust_accuracy,
                 "transfer_robust_accuracy": r.transfer_robust_accuracy} for r in results]
            if self.store_dir is not None:
                first.save(self.store_dir)
        return first


def _run_config(config: dict, shell, eps: float, delta: float, threat: Threat) -> dict:
    return {**config, "eps_value": eps, "delta_value": delta, "shell_parameters": describe_shell(shell),
            "threat": {"norm": threat.norm.value, "eps": eps, "bounds": [threat.bounds.lower, threat.bounds.upper]}}


CHUNK_BY_DEVICE = {"cpu": 50, "cuda": 500}


def default_chunk(device: torch.device) -> int:
    """Points per unit of work on `device`: 50 on the CPU; 500 on a GPU, which a 50-point chunk leaves
    mostly idle (MCN on an H200: 2,207 points/s at 50 per call, 23,058 at 500)."""
    return CHUNK_BY_DEVICE.get(device.type, 50)


def resolve_device(device) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N' as a torch.device that exists here."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}; pass auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index is not None and resolved.index >= count):
            raise ValueError(f"device {device!r}: CUDA {'device' if count else 'is'} not available on this machine "
                             f"({count} GPU(s)); pass device='cpu' or 'auto'")
    elif resolved.type != "cpu":
        raise ValueError(f"unknown device {device!r}; pass auto, cpu, cuda or cuda:N")
    return resolved


def _stored_chunk(directory: Path | None) -> int | None:
    """The chunk size of the run already in `directory` (a resume keeps it), if any."""
    if directory is None or not (directory / DB_NAME).exists():
        return None
    store = ResultStore.reader(directory)
    try:
        return (store.config() or {}).get("chunk")
    finally:
        store.close()


def _check_store_dir(store_dir) -> Path | None:
    """The run directory, if it can be one: not a file, writable where it will be created."""
    if store_dir is None:
        return None
    if not isinstance(store_dir, str | Path):
        raise TypeError(f"`store_dir` must be a path or None (got {type(store_dir).__name__})")
    path = Path(store_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output directory {path} exists and is not a directory; choose another")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"output directory {path} cannot be created: {existing} is a file; choose another")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output directory {path} cannot be written ({existing} is not writable); choose another")
    try:  # permissions are not the whole story (a read-only or virtual file system): try it
        os.rmdir(tempfile.mkdtemp(prefix=".robustness-eval-probe-", dir=existing))
    except OSError as error:
        raise ValueError(f"output directory {path} cannot be created under {existing} ({error.strerror}); "
                         "choose another") from None
    return path


def _check_stored_config(directory: Path | None, config: dict) -> None:
    """Refuse, before any work, a run directory whose store holds a different configuration."""
    if directory is None or not (directory / DB_NAME).exists():
        return
    store = ResultStore.reader(directory)
    try:
        stored = store.config()
    finally:
        store.close()
    if stored is None:
        raise ValueError(f"{directory / DB_NAME} holds no run configuration (an empty or foreign store); "
                         "remove it or choose another directory")
    compare_configs(stored, config, directory, VOLATILE)


def prepare_evaluation(model: nn.Module, shell, data: Dataset | tuple, threat: Threat, *,
                       attacks: str | list = "fast", n_points: int | None = 200, seed: int = 0,
                       store_dir: str | Path | None = None, convergence: bool = True, crosscheck: bool = True,
                       sanity_checks: bool = True, sweep_eps: Sequence[float] = (),
                       sweep_delta: Sequence[float] = (), budgets: dict[str, int] | None = None,
                       shell_options: dict | None = None, chunk: int | None = None, device=None,
                       escalation: bool = True, escalation_cap: float = TIME_CAP_SECONDS,
                       bpda: nn.Module | None = None, backend: str | LocalBackend | RayBackend = "local",
                       ray_address: str | None = None, workers: int | None = None, quiet: bool = True,
                       call: dict | None = None) -> Evaluation:
    """Validate every argument of `evaluate` and return the `Evaluation` to run; nothing is computed or written.

    Keyword args:
        attacks: 'fast' (default), 'full', a comma list of names, or Attack instances.
        n_points: evaluate the first N points (None: all; more than the data holds: all, with a warning).
        seed: fixes every random choice.
        store_dir: the run directory: a SQLite store committed chunk by chunk, results.json and
            sweep sub-runs. Calling again with the same store_dir resumes; a different
            configuration is refused with the keys that differ. None keeps everything in memory.
        convergence: rerun the battery with every budget doubled and report the change.
        crosscheck: our PGD against Foolbox's on the base model, standalone.
        sanity_checks: the sanity verdicts and the active test.
        sweep_eps, sweep_delta: further ε and δ values; every combination runs, the primary first.
        budgets: per-attack budget overrides by name (integers ≥ 1).
        shell_options: with a factory, options that override the defaults (delta = ε, p = 0.9,
            norm, bounds and seed from the threat and `seed`).
        chunk: points per committed unit of work (None: the stored run's, else 50 on the CPU and 500 on a
            GPU); part of the configuration, so a resume rebuilds the same units.
        device: 'auto' (default: CUDA when available), 'cpu', 'cuda' or 'cuda:N'. The model (in
            place), the shell and the points are moved there; everything the suite creates is made on
            the inputs' device, and random draws come from seeded CPU generators, so the streams
            are the same on every device.
        escalation: when an indicator fires on a target (masked gradients, flat traces, black-box
            beating white-box, an unbounded attack below 100 %, doubled budgets moving the verdict, a
            ladder still falling steeply at its end),
            run escalation rounds on its unbroken points until the verdict stops moving (see
            `robustness_eval.escalation`).
        escalation_cap: seconds after which no further escalation round starts (default 600).
        bpda: a differentiable stand-in for the base model (same interface), whose gradient the
            escalation's BPDA on F follows while F decides success; default: straight-through
            estimators for F's rounding, floor, ceil and sign.
        backend: where the battery's units run: 'local' (default, this process) or 'ray' (Ray tasks; needs
            the `ray` extra), or a `LocalBackend` / `RayBackend` instance. The numbers do not depend on
            it; it is recorded as provenance, and a resume may change it.
        ray_address: with 'ray': None starts a local Ray runtime; 'auto' or an address joins a cluster.
        workers: with 'ray': units in flight at once (default: the cluster's CPUs, or GPUs on CUDA).
        quiet: no progress output.
        call: how the evaluation was invoked (the CLI passes its command line); provenance only.
    Raises:
        TypeError for wrong types and ValueError for bad values.
    """
    if not isinstance(threat, Threat):
        raise TypeError(f"`threat` must be a robustness_eval.Threat (got {type(threat).__name__})")
    for flag, name in ((convergence, "convergence"), (crosscheck, "crosscheck"),
                       (sanity_checks, "sanity_checks"), (escalation, "escalation"), (quiet, "quiet")):
        check_flag(flag, name)
    check_nonnegative(escalation_cap, "escalation_cap")
    if bpda is not None and not isinstance(bpda, nn.Module):
        raise TypeError(f"`bpda` must be a torch.nn.Module standing in for the base model (got {type(bpda).__name__})")
    check_seed(seed, "seed")
    if chunk is not None:
        check_positive_int(chunk, "chunk")
    target_device = resolve_device(device)
    runner_backend = make_backend(backend, ray_address, workers, target_device)
    if isinstance(runner_backend, RayBackend):
        runner_backend.check_reachable()
    if not isinstance(attacks, str | list | tuple):
        raise TypeError(f"`attacks` must be a preset name, a comma list, or a list of names or Attack instances "
                        f"(got {type(attacks).__name__})")
    if budgets is not None and not isinstance(budgets, dict):
        raise TypeError(f"`budgets` must be a dict of attack name → integer budget (got {type(budgets).__name__})")
    directory = _check_store_dir(store_dir)
    if directory is not None:
        ResultStore.check_free(directory)
    chunk = chunk or _stored_chunk(directory) or default_chunk(target_device)
    x, y, data_name, split, truth = _points(data, n_points)
    x, y = check_points(x, y, threat)
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module returning logits (got {type(model).__name__})")
    model.to(target_device)  # in place, as nn.Module.to does: the shell wraps this same object
    x, y = x.to(target_device).clone(), y.to(target_device).clone()  # the caller's tensors stay theirs
    classes, findings = probe_model(model, x, y)
    source = _shell_source(shell, model, threat, seed, shell_options)
    source.shell.to(target_device)
    undeclared = probe_shell(source.shell, model, x, classes)  # non-empty: found random, now marked so
    source.randomized, findings = bool(undeclared), findings + undeclared
    battery = resolve_battery(attacks, budgets)  # unknown or repeated names, bad budgets
    eps_values = list(dict.fromkeys([threat.eps, *(check_nonnegative(e, "sweep_eps") for e in sweep_eps)]))
    primary_delta = (check_nonnegative(source.options["delta"], "delta") if source.factory is not None
                     else float(getattr(source.shell, "radius", 0.0) or 0.0))
    delta_values = list(dict.fromkeys([primary_delta,
                                       *(check_nonnegative(d, "sweep_delta") for d in sweep_delta)]))
    if len(delta_values) > 1 and not source.takes("delta"):
        raise ValueError("`sweep_delta` needs a shell that can be rebuilt with another δ: pass a factory "
                         "that takes `delta`, or a built-in shell")
    config = {
        "dataset": data_name, "split": split, "data_hash": data_hash(x, y), "n_points_used": len(y),
        "model": model_label(model), "model_hash": model_hash(model),
        "shell": describe_shell(source.shell)["kind"], "norm": threat.norm.value,
        "eps": ",".join(f"{e:g}" for e in eps_values), "delta": ",".join(f"{d:g}" for d in delta_values),
        "attacks": attacks if isinstance(attacks, str) else ",".join(a.name if isinstance(a, Attack) else str(a)
                                                                   for a in attacks),
        "battery": _battery_record(battery), "budget": sorted(f"{k}={v}" for k, v in (budgets or {}).items()),
        "seed": seed, "convergence": convergence, "crosscheck": crosscheck, "sanity": sanity_checks,
        "chunk": chunk, "call": dict(call or {"command": "(Python API) robustness_eval.evaluate"}),
        "versions": versions(), "device": str(target_device), "escalation": escalation,
        "escalation_cap": float(escalation_cap), "bpda": None if bpda is None else model_hash(bpda),
        "backend": runner_backend.name,
    }
    combos = [(e, d) for e in eps_values for d in delta_values]
    _check_stored_config(directory, _run_config(config, source.shell, *combos[0], threat))
    if bpda is not None:
        bpda.to(target_device)
        probe_bpda(bpda, model, x)
    for finding in findings:
        warnings.warn(finding, stacklevel=3)
    return Evaluation(model, source, x, y, threat, truth, config, battery, attacks, budgets, directory, combos,
                      quiet, bpda, runner_backend, findings)


def _one_run(job: Evaluation, shell, threat: Threat, config: dict, directory: Path | None,
             primary: bool) -> EvaluationResult:
    model, x, y, seed = job.model, job.x, job.y, config["seed"]
    store = ResultStore(directory)
    try:
        store.bind_config(config, volatile=VOLATILE)
        start = time.perf_counter()
        result = run_battery(model, shell, x, y, threat, job.attacks, seed=seed, quiet=job.quiet, config=config,
                             store=store, budgets=job.budgets, chunk=config["chunk"],
                             convergence=primary and config["convergence"], backend=job.backend)
        battery_x2 = resolve_battery(job.attacks, job.budgets, 2.0) if primary and config["convergence"] else None
        battery = job.battery
        if primary:
            batteries = {"main": battery, **({"x2": battery_x2} if battery_x2 else {})}
            result, added = restart_check(result, Context(model, shell, x, y, threat), batteries, store, seed,
                                          config["chunk"], job.quiet, job.backend)
            battery = [*battery, *added]
        if primary and config["escalation"]:
            unbounded = _cached(store, "unbounded", lambda: asdict(sanity.unbounded_attack(
                model, shell, x[:SANITY_SUBSET], y[:SANITY_SUBSET], threat, seed))) if config["sanity"] else None
            result = escalate(result, model, shell, x, y, threat, battery, battery_x2, store, seed, config["chunk"],
                              unbounded and unbounded["values"], surrogate=job.surrogate,
                              time_cap=config["escalation_cap"], quiet=job.quiet, backend=job.backend)
        if primary and config["crosscheck"]:
            result.extras["crosscheck"] = _cached(store, "crosscheck",
                                                  lambda: pgd_crosscheck(model, x, y, threat, seed=seed))
        if primary and config["sanity"]:
            result.extras.update(_cached(store, "truth_checks", lambda: _truth_checks(
                result, model, shell, job.source, x, y, threat, job.battery, seed, store.meta("unbounded"),
                job.backend)))
        if job.truth is not None:
            result.extras["ground_truth"] = ground_truth(result.adversarial, job.truth, y)
        for target, points in result.extras.get("unsteady", {}).items():
            warnings.warn(f"the {target} target answered differently to the same input on {len(points)} candidate(s) "
                          f"that were misclassified once (points {points[:5]}{' ...' if len(points) > 5 else ''}); "
                          "they were not counted as breaks. A shell that is random must declare "
                          "`randomized = True` to be verified by majority vote", stacklevel=2)
        if job.findings:
            result.extras["probe"] = list(job.findings)
        result.examples = example_panels(model, shell, x, y, result.adversarial.get("shell", {}))
        result.extras["seconds"] = time.perf_counter() - start
        if directory is not None:
            result.save(directory)
        return result
    finally:
        store.close()


def _cached(store: ResultStore, key: str, compute: Callable[[], dict]) -> dict:
    """A store-cached extra: computed once, so a resumed run does not redo it."""
    value = store.meta(key)
    if value is None:
        value = compute()
        store.set_meta(key, value)
    return value


def _truth_checks(result: EvaluationResult, model, shell, source: ShellSource, x, y, threat: Threat,
                  battery: list[Attack], seed: int, unbounded: dict | None, backend) -> dict:
    """Sanity verdicts and the active test; the shell is rebuilt around F at δ = 0 and around F'."""
    at_zero = source.rebuild(model, delta=0.0) if source.takes("delta") else None
    verdicts = sanity.run_all(result.to_json(), model, shell, at_zero, x, y, threat, seed=seed,
                              subset=SANITY_SUBSET, unbounded=unbounded)
    subset = min(len(y), max(PLANTS.values()))
    radius = float(getattr(shell, "radius", 0.0) or 0.0)
    if source.factory is None and not can_rebuild(shell):
        active = {"status": "not run", "reason": "the shell cannot be rebuilt around the planted model: "
                                                 "pass a factory(model, **options) instead of an instance"}
    else:
        active = active_test(model, lambda planted: source.rebuild(planted), x[:subset], y[:subset], threat,
                             radius, battery, seed=seed, backend=backend)
        n, robust = result.n_points, result.robust_accuracy["shell"]
        breaks = round(n * (result.clean_accuracy["shell"] - robust))
        active["caveat"] = caveat(active, robust, breaks, n)
    return {"sanity": verdicts, "active_test": active}


def ground_truth(adversarial: dict, true_label, y: torch.Tensor) -> dict:
    """Class each verified break by the data's own labelling: true adversarial or label change.

    `adversarial` maps a target to {point index: x'}; `true_label` is the data set's oracle.
    """
    out = {}
    for target, found in adversarial.items():
        points = sorted(found)
        if not points:
            out[target] = {"true_adversarial": 0, "label_changing": 0}
            continue
        labels = true_label(torch.stack([found[i] for i in points]).to(y.device))
        same = int((labels.cpu() == y.cpu()[torch.tensor(points, device="cpu")]).sum())
        out[target] = {"true_adversarial": same, "label_changing": len(points) - same}
    return out


def example_panels(model: nn.Module, shell, x: torch.Tensor, y: torch.Tensor, found: dict,
                   count: int = EXAMPLE_COUNT) -> dict | None:
    """x, x', and the shell's search points for both, with the labels shown (the report's example grid)."""
    chosen = sorted(found)[:count]
    if not chosen:
        return None
    index = torch.tensor(chosen, device=x.device)
    clean, adv = x[index], torch.stack([found[i] for i in chosen]).to(x)
    search = getattr(shell, "search", None)
    has_search = "search" in describe_shell(shell)["capabilities"]
    with torch.no_grad():
        panels = {"x": (clean, shell(clean)), "x'": (adv, shell(adv))}
        if has_search and callable(search):
            z, z_adv = search(clean), search(adv)
            panels["z*(x)"] = (z, torch.softmax(model(z), 1))
            panels["z*(x')"] = (z_adv, torch.softmax(model(z_adv), 1))
    return {"index": chosen, "label": y[index].cpu().tolist(),
            "panels": {name: {"images": images.detach().cpu().float().numpy(),
                              "predicted": probs.argmax(1).cpu().tolist(),
                              "confidence": probs.max(1).values.cpu().tolist()}
                       for name, (images, probs) in panels.items()}}

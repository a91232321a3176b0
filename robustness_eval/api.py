"""The one evaluation: `evaluate(model, shell, data, threat, ...)`. The CLI only loads and calls it.

One call runs the whole job for any model, shell and data: validation and the probe, the battery
(base and shell on the same points), the doubled-budget round (or the restart check), escalation, the
Foolbox cross-check, the sanity checks, the active test, ε/δ sweeps, ground truth where the data has
it, example panels, provenance and config binding (a store refuses a run whose model, data, threat,
shell or battery differ from the one it holds). This module is the facade: the options live in
`robustness_eval.options`, the phases of a run in `robustness_eval.pipeline`.
"""

from __future__ import annotations

import warnings

from torch import nn

from robustness_eval.backends import RayBackend, make_backend
from robustness_eval.cost import check_limit, estimate
from robustness_eval.data import Dataset
from robustness_eval.devices import default_chunk, resolve_device
from robustness_eval.modules import borrowed
from robustness_eval.options import RunOptions
from robustness_eval.pipeline import Evaluation, ground_truth
from robustness_eval.probe import probe_bpda, probe_model, probe_shell
from robustness_eval.progress import PhaseClock
from robustness_eval.provenance import configuration, data_hash, run_config
from robustness_eval.results import EvaluationResult
from robustness_eval.run_directory import check_store_dir, check_stored_config, stored_config
from robustness_eval.runner import resolve_battery
from robustness_eval.shell_source import ShellSource, bind_dataset, shell_source
from robustness_eval.store import ResultStore
from robustness_eval.types import Threat, check_nonnegative
from robustness_eval.validation import (
    battery_findings,
    check_model_device,
    check_points,
    select_points,
    threat_findings,
)

__all__ = ["Evaluation", "RunOptions", "default_chunk", "evaluate", "ground_truth", "prepare_evaluation",
           "resolve_device"]


def evaluate(model: nn.Module, shell, data: Dataset | tuple, threat: Threat, **options) -> EvaluationResult:
    """Evaluate `model` and its shell on `data` under `threat`: the whole job, every break re-verified.

    Args:
        model: any nn.Module mapping a batch inside the threat's bounds to logits.
        shell: a shell module around `model` (e.g. `shells.MCNShell(model, delta=0.1)`), or a
            factory `factory(model, **options)` that builds one (options: delta, p, norm, bounds,
            seed; it may take only those it uses). The active test, the δ → 0 ablation and δ sweeps
            rebuild the shell around other models or radii: a factory or any `shells.Shell` can be
            rebuilt; another module cannot, and those parts are reported as not run.
        data: a `Dataset` (its test split) or an `(x, y)` pair of tensors or NumPy arrays.
        threat: `Threat(norm, eps, bounds)`; `x` must lie inside its bounds.
        **options: the fields of `robustness_eval.options.RunOptions`, each documented there:
            attacks='fast', n_points=200 (None: all), seed=0, store_dir=None (a directory makes the
            run resumable; the same directory again resumes, another configuration is refused),
            convergence, crosscheck, sanity_checks, restart_check, escalation (all True),
            escalation_cap=600, sweep_eps=(), sweep_delta=(), budgets=None, shell_options=None,
            chunk=None, bpda=None, shell_surrogate=None (a module or factory for gradients only; default the
            shell's own `surrogate()`), eot_draws=None, inference_runs=10 (R: a randomized target's clean and
            final inputs classified R more times, accuracy reported worst case, majority and mean),
            device='auto', backend='local', ray_address=None, workers=None, quiet=True, call=None.
    Returns:
        An `EvaluationResult` with the results.json fields; `.to_report(dir)` writes the report.
    Raises:
        TypeError / ValueError: a wrong type or value, before any work starts or anything is written.
    """
    return prepare_evaluation(model, shell, data, threat, **options).run()


def prepare_evaluation(model: nn.Module, shell, data: Dataset | tuple, threat: Threat,
                       options: RunOptions | None = None, **keywords) -> Evaluation:
    """Validate every argument of `evaluate`, probe F and the shell, and return the `Evaluation` to run;
    nothing is computed or written, and the caller's modules are given back in the modes they came in.
    `keywords` (a `RunOptions` field each) override `options`."""
    options = RunOptions.from_keywords(**{**(options.keywords() if options else {}), **keywords})
    if not isinstance(threat, Threat):
        raise TypeError(f"`threat` must be a robustness_eval.Threat (got {type(threat).__name__})")
    clock = PhaseClock(options.quiet)
    try:
        with borrowed([model, shell, options.bpda, options.shell_surrogate]), \
                clock.phase("checks and probe", "the inputs, F and the shell probed, the battery's cost"):
            evaluation = _prepare(model, shell, data, threat, options)
    finally:
        clock.close()
    evaluation.prepared.update(clock.seconds)
    return evaluation


def _prepare(model: nn.Module, shell, data: Dataset | tuple, threat: Threat, options: RunOptions) -> Evaluation:
    device = resolve_device(options.device)
    backend = make_backend(options.backend, options.ray_address, options.workers, device)
    if isinstance(backend, RayBackend):
        backend.check_reachable()
    directory = check_store_dir(options.store_dir)
    if directory is not None:
        ResultStore.check_free(directory)
    stored = stored_config(directory)
    options = options.replace(device=device, backend=backend,
                              chunk=options.chunk or (stored or {}).get("chunk") or default_chunk(device))
    x, y, data_name, split, truth = select_points(data, options.n_points)
    x, y = check_points(x, y, threat)
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module returning logits (got {type(model).__name__})")
    check_model_device(model)
    model.to(device)  # in place, as nn.Module.to does: the shell wraps this same object
    x, y = x.to(device).clone(), y.to(device).clone()  # the caller's tensors stay theirs
    timings: dict[str, float] = {}  # the probe's seconds per point, for the cost estimate
    classes, findings = probe_model(model, x, y, timings)
    source = shell_source(bind_dataset(shell, data), model, threat, options.seed, options.shell_options)
    source.shell.to(device)
    undeclared = probe_shell(source.shell, model, x, classes, timings)  # non-empty: found random, marked so in the run
    source.randomized, findings = bool(undeclared), findings + undeclared
    if source.randomized:
        source.shell.randomized = True  # for the configuration below; given back by `borrowed`
    battery = resolve_battery(options.attacks, options.budgets, draws=options.eot_draws)  # unknown names, bad budgets
    options = options.replace(shell_surrogate=_shell_surrogate(options, model, threat, device))
    sweep = _sweep(threat, source, options)
    findings += threat_findings(threat, sweep[1][0], x[0].numel())
    findings += battery_findings(options.attacks, options.budgets, battery)
    cost = estimate(battery, len(y), timings["model"], timings["shell"], options.convergence)
    check_limit(cost, options.budget_limit_hours, options.budgets)
    points = {"dataset": data_name, "split": split, "data_hash": data_hash(x, y), "n_points_used": len(y)}
    config = configuration(points, model, source.shell, threat, sweep, battery, options, source.factory)
    combos = [(e, d) for e in sweep[0] for d in sweep[1]]
    check_stored_config(directory, run_config(config, source.shell, *combos[0], threat), stored)
    if options.bpda is not None:
        options.bpda.to(device)
        probe_bpda(options.bpda, model, x)
    for finding in findings:
        warnings.warn(finding, stacklevel=4)
    return Evaluation(model=model, source=source, x=x, y=y, threat=threat, truth=truth, config=config, battery=battery,
                      options=options, store_dir=directory, combos=combos, findings=findings, cost=cost)


def _shell_surrogate(options: RunOptions, model: nn.Module, threat: Threat, device) -> nn.Module | None:
    """The user's attack-time surrogate of the shell: the module given, or built by the factory given with the
    shell's options (delta = ε, p, the threat's norm and bounds, the seed, `shell_options`), on the run's device."""
    given = options.shell_surrogate
    if given is None:
        return None
    if not isinstance(given, nn.Module):
        try:
            given = shell_source(given, model, threat, options.seed, options.shell_options).shell
        except (TypeError, ValueError) as error:
            raise ValueError(f"`shell_surrogate`: {error}") from None
    return given.to(device)


def _sweep(threat: Threat, source: ShellSource, options: RunOptions) -> tuple[list[float], list[float]]:
    """The ε and δ values of the run, the primary (the threat's ε, the shell's δ) first."""
    eps_values = list(dict.fromkeys([threat.eps, *(check_nonnegative(e, "sweep_eps") for e in options.sweep_eps)]))
    primary_delta = (check_nonnegative(source.options["delta"], "delta") if source.factory is not None
                     else float(getattr(source.shell, "radius", 0.0) or 0.0))
    delta_values = list(dict.fromkeys([primary_delta,
                                       *(check_nonnegative(d, "sweep_delta") for d in options.sweep_delta)]))
    if len(delta_values) > 1 and not source.takes("delta"):
        raise ValueError("`sweep_delta` needs a shell that can be rebuilt with another δ: pass a factory "
                         "that takes `delta`, or a built-in shell")
    return eps_values, delta_values

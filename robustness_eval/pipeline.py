"""One evaluation run, phase by phase: the battery, the restart check, escalation, the cross-check, the truth
checks, ground truth and the example panels, each committed to or cached in the run's store.

`Evaluation` is what `prepare_evaluation` returns: every input validated and probed, nothing computed or
written yet; `Evaluation.run()` runs every (ε, δ) combination, the primary first.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from attacks.base import Attack
from robustness_eval import sanity
from robustness_eval.active import PLANTS, active_test
from robustness_eval.cost import CostEstimate
from robustness_eval.crosscheck import pgd_crosscheck
from robustness_eval.escalation import escalate
from robustness_eval.modules import borrowed, eval_mode
from robustness_eval.options import RunOptions
from robustness_eval.progress import PhaseClock
from robustness_eval.provenance import VOLATILE, run_config
from robustness_eval.records import ActiveTest, Caveat, GroundTruthCounts, SanityVerdict, SweepRow
from robustness_eval.repeated import repeated_inference
from robustness_eval.restart_check import record_from_doubled_round, restart_check
from robustness_eval.results import EvaluationResult, describe_shell
from robustness_eval.runner import Run, attack_seed, attacks_run, run_battery
from robustness_eval.shell_source import ShellSource
from robustness_eval.store import ResultStore
from robustness_eval.types import Threat
from robustness_eval.units import Context
from shells.base import can_rebuild

SANITY_SUBSET = 30
EXAMPLE_COUNT = 6


@dataclass
class Evaluation:
    """A validated evaluation, ready to run: nothing has been computed or written yet. `options` are the run's
    `RunOptions` with device, backend, chunk and surrogates resolved; every phase reads its settings there."""

    model: nn.Module
    source: ShellSource
    x: torch.Tensor
    y: torch.Tensor
    threat: Threat
    truth: Callable | None
    config: dict  # the record bound to the run directory and written to results.json
    battery: list[Attack]
    options: RunOptions
    store_dir: Path | None
    combos: list[tuple[float, float]]
    findings: list[str] = field(default_factory=list)  # the probe's warnings, recorded in the result too
    cost: CostEstimate | None = None  # the battery's estimated cost, shown before it starts
    prepared: dict[str, float] = field(default_factory=dict)  # seconds of the phases before `run` (the first rows
    # of the primary result's phase_seconds): the checks and probe, and from the CLI the loading before them

    def run(self) -> EvaluationResult:
        """Run (or resume) every combination of the sweep; return the primary result. The caller's modules are
        given back in the modes they came in (a shell found random is marked so only while it runs)."""
        modules = [self.model, self.source.shell, self.options.bpda, self.options.shell_surrogate]
        with borrowed(modules, self.source.shell if self.source.randomized else None):
            eval_mode(self.model)
            return self._run_all()

    def _run_all(self) -> EvaluationResult:
        if not self.options.quiet and self.cost is not None:
            print(f"estimated cost: {self.cost.describe()}", flush=True)
        results = []
        primary_delta = self.combos[0][1]
        for position, (eps, delta) in enumerate(self.combos):
            primary = position == 0
            directory = None if self.store_dir is None else (
                self.store_dir if primary else self.store_dir / "sweep" / f"eps{eps:g}-delta{delta:g}")
            shell = self.source.shell if delta == primary_delta else self.source.rebuild(self.model, delta=delta)
            if not self.options.quiet:
                print(f"[{position + 1}/{len(self.combos)}] ε = {eps:g}, δ = {delta:g}: {len(self.y)} points",
                      flush=True)
            results.append(run_one(self, shell, self.threat.with_eps(eps), run_config(self.config, shell, eps,
                                                                                         delta, self.threat),
                                    directory, primary))
        first = results[0]
        if len(results) > 1:
            rows = [SweepRow(eps=r.config["eps_value"], delta=r.config["delta_value"], clean_accuracy=r.clean_accuracy,
                             robust_accuracy=r.robust_accuracy, transfer_robust_accuracy=r.transfer_robust_accuracy)
                    for r in results]
            first.extras["sweep"] = [row.to_json() for row in rows]
            if self.store_dir is not None:
                first.save(self.store_dir)
        return first


def run_one(job: Evaluation, shell, threat: Threat, config: dict, directory: Path | None,
            primary: bool) -> EvaluationResult:
    """One (ε, δ) run of the evaluation in `directory`; the primary run also gets every check. Each phase is named
    on screen as it runs (unless quiet) and its seconds go to `extras.phase_seconds`."""
    options, store, clock = job.options, ResultStore(directory), PhaseClock(job.options.quiet)
    try:
        store.bind_config(config, volatile=VOLATILE)
        start = time.perf_counter()
        surrogate = options.shell_surrogate if shell is job.source.shell else None  # a sweep's rebuild has its own
        run = Run(Context(job.model, shell, job.x, job.y, threat, surrogate), options.seed, store, options.chunk,
                  options.backend, options.quiet)
        convergence = primary and options.convergence
        with clock.phase("battery", "then its doubled-budget round" if convergence else ""):
            result = run_battery(run, job.battery, None, convergence, config)
        if primary:
            result = _checks(result, run, job, clock)
        result.extras.update(_closing_phases(result, run, job, clock))
        result.examples = example_panels(job.model, shell, job.x, job.y, result.adversarial.get("shell", {}))
        result.extras["seconds"] = time.perf_counter() - start
        phases = {**(job.prepared if primary else {}), **clock.seconds}
        result.extras["phase_seconds"] = {name: round(seconds, 2) for name, seconds in phases.items()}
        if directory is not None:
            result.store_digest = store.digest()
            result.save(directory)
        return result
    finally:
        clock.close()
        store.close()


def _closing_phases(result: EvaluationResult, run: Run, job: Evaluation, clock: PhaseClock) -> dict:
    """Repeated inference (randomized targets), ground truth (data that has it), the unsteady warning and the probe's
    findings: the extras every run gets after its battery and checks."""
    extras: dict = {}
    randomized = any(getattr(target, "randomized", False) for target in run.context.shells.values())
    if randomized and job.options.inference_runs > 1:
        with clock.phase("repeated inference", f"{job.options.inference_runs} runs"):
            repeated = _cached(run.store, "repeated_inference", lambda: {
                target: record.to_json() for target, record in repeated_inference(
                    run.context, result.adversarial, job.options.inference_runs,
                    attack_seed(job.options.seed, "repeated-inference")).items()})
        if repeated:
            extras["repeated_inference"] = repeated
    if job.truth is not None:
        extras["ground_truth"] = {target: counts.to_json() for target, counts in
                                  ground_truth(result.adversarial, job.truth, job.y).items()}
    for target, points in result.extras.get("unsteady", {}).items():
        warnings.warn(f"the {target} target answered differently to the same input on {len(points)} candidate(s) "
                      f"that were misclassified once (points {points[:5]}{' ...' if len(points) > 5 else ''}); "
                      "they were not counted as breaks. A shell that is random must declare "
                      "`randomized = True` to be verified by majority vote", stacklevel=4)
    if job.findings:
        extras["probe"] = list(job.findings)
    return extras


def _checks(result: EvaluationResult, run: Run, job: Evaluation, clock: PhaseClock) -> EvaluationResult:
    """The primary run's checks, in order: the restart check, escalation, the cross-check, the truth checks."""
    context, store, seed, options = run.context, run.store, run.seed, job.options
    ran = attacks_run(job.battery, options.convergence)
    if options.restart_check and options.convergence:  # the doubled round continued every start schedule
        result.extras["restart_check"] = record_from_doubled_round(result, run, ran[len(job.battery):])
    elif options.restart_check:
        with clock.phase("restart check"):
            result, added = restart_check(result, run, job.battery, ran)
        ran = [*ran, *added]
    x, y = context.x[:SANITY_SUBSET], context.y[:SANITY_SUBSET]
    if options.escalation:
        with clock.phase("escalation", f"at most {options.escalation_cap:g} s"):
            unbounded = _cached(store, "unbounded", lambda: sanity.unbounded_attack(
                context.model, context.shell, x, y, context.threat, seed).to_json()) if options.sanity_checks else None
            rates = SanityVerdict.from_json(unbounded).values if unbounded else None  # per target
            result = escalate(result, run, ran, rates, surrogate=options.bpda, time_cap=options.escalation_cap)
    if options.crosscheck:
        with clock.phase("cross-check", "Foolbox vs our PGD on F"):
            result.extras["crosscheck"] = _cached(store, "crosscheck", lambda: pgd_crosscheck(run).to_json())
    if options.sanity_checks:
        result.extras.update(_cached(store, "truth_checks", lambda: _truth_checks(
            result, run, job, store.meta("unbounded"), clock)))
    return result


def _cached(store: ResultStore, key: str, compute: Callable[[], dict]) -> dict:
    """A store-cached extra: computed once, so a resumed run does not redo it."""
    value = store.meta(key)
    if value is None:
        value = compute()
        store.set_meta(key, value)
    return value


def _truth_checks(result: EvaluationResult, run: Run, job: Evaluation, unbounded: dict | None,
                  clock: PhaseClock) -> dict:
    """Sanity verdicts and the active test; the shell is rebuilt around F at δ = 0 and around F'."""
    model, shell, y, source = run.context.model, run.context.shell, run.context.y, job.source
    at_zero = source.rebuild(model, delta=0.0) if source.takes("delta") else None
    with clock.phase("sanity checks"):
        verdicts = sanity.run_all(result.record(), run, at_zero, subset=SANITY_SUBSET, unbounded=unbounded)
    subset = min(len(y), max(PLANTS.values()))
    radius = float(getattr(shell, "radius", 0.0) or 0.0)
    if source.factory is None and not can_rebuild(shell):
        active = ActiveTest(status="not run", reason="the shell cannot be rebuilt around the planted model: "
                                                     "pass a factory(model, **options) instead of an instance")
    else:
        active = active_test(run, lambda planted: source.rebuild(planted), radius, job.battery,
                             plants={name: min(count, subset) for name, count in PLANTS.items()},
                             convergence=job.options.convergence, restarts=job.options.restart_check, clock=clock)
        n, robust = result.n_points, result.robust_accuracy["shell"]
        breaks = round(n * (result.clean_accuracy["shell"] - robust))
        active.caveat = Caveat.of(active.parts(), robust, breaks, n)
    return {"sanity": [verdict.to_json() for verdict in verdicts], "active_test": active.to_json()}


def ground_truth(adversarial: dict, true_label, y: torch.Tensor) -> dict[str, GroundTruthCounts]:
    """Class each verified break by the data's own labelling: true adversarial or label change.

    `adversarial` maps a target to {point index: x'}; `true_label` is the data set's oracle.
    """
    out = {}
    for target, found in adversarial.items():
        points = sorted(found)
        if not points:
            out[target] = GroundTruthCounts(true_adversarial=0, label_changing=0)
            continue
        labels = true_label(torch.stack([found[i] for i in points]).to(y.device))
        same = int((labels.cpu() == y.cpu()[torch.tensor(points, device="cpu")]).sum())
        out[target] = GroundTruthCounts(true_adversarial=same, label_changing=len(points) - same)
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

"""One `robustness-eval run`: data, model, shell(s), the battery, the store, the report.

A sweep (several ε or δ) runs every combination; the first is the primary run, written to the
output directory itself, the others to `sweep/eps…-delta…/`. Each has its own store, so each
resumes independently, and the primary report plots the whole sweep.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from robustness_eval import sanity
from robustness_eval.active import active_test
from robustness_eval.config import grid, parse_budgets
from robustness_eval.crosscheck import pgd_crosscheck
from robustness_eval.data import load_dataset
from robustness_eval.results import EvaluationResult
from robustness_eval.runner import evaluate
from robustness_eval.store import ResultStore
from robustness_eval.types import Norm, Threat
from robustness_eval.zoo import load_model, model_hash
from shells.factory import build_shell

VOLATILE = ("command", "versions")


def versions() -> dict:
    """Versions that decide the numbers (recorded in every run's config)."""
    import foolbox
    import nevergrad
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "foolbox": foolbox.__version__,
            "nevergrad": nevergrad.__version__}


def run_name(config: dict) -> str:
    return (f"{config['dataset']}-{config['model']}-{config['shell']}-{config['norm']}"
            f"-eps{config['eps'].replace(',', '_')}-delta{config['delta'].replace(',', '_')}"
            f"-seed{config['seed']}")


def truth_checks(result: EvaluationResult, model, shell, data, x, y, threat: Threat, config: dict,
                 store: ResultStore) -> dict:
    """Sanity verdicts and the active test, cached in the store so a resumed run does not redo them."""
    cached = store.meta("truth_checks")
    if cached is not None:
        return cached
    results = result.to_json()
    at_zero = (build_shell(config["shell"], model, threat.norm, data.bounds, 0.0, config["p"], seed=config["seed"])
               if config["shell"] in ("mcn", "vote") else None)
    verdicts = sanity.run_all(results, model, shell, at_zero, x, y, threat, seed=config["seed"])
    subset = min(len(y), 60)
    active = active_test(model, lambda planted: build_shell(config["shell"], planted, threat.norm, data.bounds,
                                                            shell.radius, config["p"], seed=config["seed"]),
                         x[:subset], y[:subset], threat, shell.radius, config["attacks"], seed=config["seed"])
    checks = {"sanity": verdicts, "active_test": active}
    store.set_meta("truth_checks", checks)
    return checks


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
        truth = true_label(torch.stack([found[i] for i in points]))
        same = int((truth == y[torch.tensor(points)]).sum())
        out[target] = {"true_adversarial": same, "label_changing": len(points) - same}
    return out


def run_job(config: dict, out: Path, command: str, quiet: bool = True) -> EvaluationResult:
    """Run (or resume) every combination of the sweep; return the primary result."""
    data = load_dataset(config["dataset"], config["data_dir"], seed=config["seed"])
    model = load_model(data, config["model"], seed=config["seed"], quiet=quiet)
    n = min(config["n_points"], len(data.y_test))
    x, y = data.x_test[:n], data.y_test[:n]
    norm = Norm.parse(config["norm"])
    budgets = parse_budgets(config["budget"])
    derived = {"split": data.split, "model_hash": model_hash(model), "n_points_used": n}
    combos = grid(config)
    results = []
    for position, (eps, delta) in enumerate(combos):
        primary = position == 0
        directory = out if primary else out / "sweep" / f"eps{eps:g}-delta{delta:g}"
        store = ResultStore(directory)
        try:
            full = {**config, **derived, "eps_value": eps, "delta_value": delta,
                    "command": command, "versions": versions()}
            store.bind_config(full, volatile=VOLATILE)
            threat = Threat(norm, eps, data.bounds)
            shell = build_shell(config["shell"], model, norm, data.bounds, delta, config["p"],
                                seed=config["seed"])
            if not quiet:
                print(f"[{position + 1}/{len(combos)}] ε = {eps:g}, δ = {delta:g}: {n} points", flush=True)
            start = time.perf_counter()
            result = evaluate(model, shell, x, y, threat, config["attacks"], seed=config["seed"],
                              quiet=quiet, config=full, store=store, budgets=budgets,
                              convergence=primary and config["convergence"])
            if primary and config["crosscheck"]:
                check = store.meta("crosscheck")
                if check is None:
                    check = pgd_crosscheck(model, x, y, threat, seed=config["seed"])
                    store.set_meta("crosscheck", check)
                result.extras["crosscheck"] = check
            if primary and config["sanity"]:
                result.extras.update(truth_checks(result, model, shell, data, x, y, threat, config, store))
            if data.true_label is not None:
                result.extras["ground_truth"] = ground_truth(result.adversarial, data.true_label, y)
            result.extras["seconds"] = time.perf_counter() - start
            result.save(directory)
            results.append(result)
        finally:
            store.close()
    primary = results[0]
    if len(results) > 1:
        primary.extras["sweep"] = [
            {"eps": r.config["eps_value"], "delta": r.config["delta_value"],
             "clean_accuracy": r.clean_accuracy, "robust_accuracy": r.robust_accuracy,
             "transfer_robust_accuracy": r.transfer_robust_accuracy} for r in results]
        primary.save(out)
    return primary

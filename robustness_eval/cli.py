"""The `robustness-eval` command: run an evaluation, list attacks, train zoo models."""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from robustness_eval.types import Norm, check_nonnegative, check_positive_int

DEFAULTS = {"dataset": "digits", "model": "adversarial", "shell": "mcn", "norm": "linf",
            "eps": 0.1, "delta": 0.1, "p": 0.9, "attacks": "fast", "n_points": 200, "seed": 0}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustness-eval",
        description="Evaluate the adversarial robustness of model shells (MCN, NCN, vote) "
                    "honestly: transfer, shell-aware and adaptive attacks, every break re-verified.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate a model and its shell; write results.json and report.md",
                         description="Evaluate base model and shell on the same points with the "
                                     "attack battery. Every flag is optional.")
    run.add_argument("--dataset", default=DEFAULTS["dataset"],
                     help="digits (default), mnist or synthetic")
    run.add_argument("--data-dir", default=None,
                     help="directory with MNIST-layout IDX files (default: ../shared/data/mnist)")
    run.add_argument("--model", default=DEFAULTS["model"],
                     help="zoo model: adversarial (PGD-trained, default) or standard")
    run.add_argument("--shell", default=DEFAULTS["shell"], help="mcn (default), ncn, vote or none")
    run.add_argument("--norm", default=DEFAULTS["norm"], help="linf (default) or l2")
    run.add_argument("--eps", type=float, default=DEFAULTS["eps"], help="attack radius ε (default 0.1)")
    run.add_argument("--delta", type=float, default=DEFAULTS["delta"],
                     help="shell radius δ (MCN, vote) or NCN's radius limit (default 0.1)")
    run.add_argument("--p", type=float, default=DEFAULTS["p"], help="NCN confidence threshold (default 0.9)")
    run.add_argument("--attacks", default=DEFAULTS["attacks"],
                     help="preset (fast, full) or comma list of names; see `robustness-eval attacks`")
    run.add_argument("--n-points", type=int, default=DEFAULTS["n_points"],
                     help="test points to evaluate, the first N of the test split (default 200)")
    run.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed for everything (default 0)")
    run.add_argument("--out", default=None, help="output directory (default reports/<name>)")
    run.add_argument("--no-crosscheck", action="store_true",
                     help="skip the standalone Foolbox-vs-ours PGD comparison on the base model")
    run.add_argument("--quiet", action="store_true", help="no progress output")

    sub.add_parser("attacks", help="list attacks, their kinds and default budgets, and the presets")

    train = sub.add_parser("train", help="train (or load from cache) a zoo model and print its accuracy")
    train.add_argument("--dataset", default=DEFAULTS["dataset"], help="digits, mnist or synthetic")
    train.add_argument("--data-dir", default=None, help="directory with MNIST-layout IDX files")
    train.add_argument("--model", default=DEFAULTS["model"], help="adversarial or standard")
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train.add_argument("--retrain", action="store_true", help="ignore the cache")
    return parser


def _versions() -> dict:
    import foolbox
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "foolbox": foolbox.__version__}


def cmd_run(args: argparse.Namespace) -> int:
    from attacks.registry import build_battery
    from robustness_eval.crosscheck import pgd_crosscheck
    from robustness_eval.data import load_dataset
    from robustness_eval.runner import evaluate
    from robustness_eval.types import Threat
    from robustness_eval.zoo import load_model, model_hash
    from shells.factory import build_shell

    norm = Norm.parse(args.norm, "--norm")
    check_nonnegative(args.eps, "--eps")
    check_nonnegative(args.delta, "--delta")
    check_positive_int(args.n_points, "--n-points")
    battery = build_battery(args.attacks)
    data = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    model = load_model(data, args.model, seed=args.seed, quiet=args.quiet)
    threat = Threat(norm, args.eps, data.bounds)
    shell = build_shell(args.shell, model, norm, data.bounds, args.delta, args.p, seed=args.seed)
    n = min(args.n_points, len(data.y_test))
    x, y = data.x_test[:n], data.y_test[:n]
    name = (f"{args.dataset}-{args.model}-{args.shell}-{norm.value}-eps{args.eps:g}"
            f"-delta{args.delta:g}-seed{args.seed}")
    out = Path(args.out) if args.out else Path("reports") / name
    config = {"dataset": args.dataset, "data_dir": args.data_dir, "model": args.model,
              "shell": args.shell, "norm": norm.value, "eps": args.eps, "delta": args.delta,
              "p": args.p, "attacks": args.attacks, "n_points": n, "seed": args.seed,
              "split": data.split, "model_hash": model_hash(model), "versions": _versions(),
              "command": "robustness-eval " + shlex.join(sys.argv[1:])}
    if not args.quiet:
        print(f"{name}: {n} points, battery {[a.name for a in battery]}", flush=True)
    start = time.perf_counter()
    result = evaluate(model, shell, x, y, threat, battery, seed=args.seed, quiet=args.quiet,
                      config=config)
    if not args.no_crosscheck:
        result.extras["crosscheck"] = pgd_crosscheck(model, x, y, threat, seed=args.seed)
    result.extras["seconds"] = time.perf_counter() - start
    report = result.to_report(out)
    if not args.quiet:
        _summary(result.to_json())
        print(f"wrote {out / 'results.json'} and {report}")
    return 0


def _summary(results: dict) -> None:
    from robustness_eval.report import headline, pct

    print(f"{'':32s}{'base F':>10s}{'shell G':>10s}")
    for label, key in [("clean accuracy", "clean_accuracy"),
                       ("robust accuracy (transfer only)", "transfer_robust_accuracy"),
                       ("robust accuracy (worst case)", "robust_accuracy")]:
        print(f"{label:32s}{pct(results[key]['base']):>10s}{pct(results[key]['shell']):>10s}")
    print(headline(results))


def cmd_attacks(_: argparse.Namespace) -> int:
    from attacks.registry import ATTACKS, PRESETS

    print(f"{'name':15s} {'kind':15s} {'view':12s} {'budget':>7s}  description")
    for name, cls in ATTACKS.items():
        print(f"{name:15s} {cls.kind.value:15s} {cls.view:12s} {cls().budget:7d}  {cls.description}")
    for preset, entries in PRESETS.items():
        listed = [name if budget is None else f"{name}({budget})" for name, budget in entries]
        print(f"preset {preset}: {', '.join(listed)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from robustness_eval.data import load_dataset
    from robustness_eval.zoo import accuracy, cache_dir, load_model, model_hash

    data = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    start = time.perf_counter()
    model = load_model(data, args.model, seed=args.seed, retrain=args.retrain, quiet=False)
    print(f"{args.dataset} {args.model}: test accuracy {accuracy(model, data.x_test, data.y_test):.1%}, "
          f"hash {model_hash(model)}, {time.perf_counter() - start:.1f}s, cache {cache_dir()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    commands = {"run": cmd_run, "attacks": cmd_attacks, "train": cmd_train}
    try:
        return commands[args.command](args)
    except (ValueError, FileNotFoundError, TypeError) as error:
        print(f"robustness-eval: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The `robustness-eval` command: run an evaluation, list attacks, train zoo models."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustness-eval",
        description="Evaluate the adversarial robustness of model shells (MCN, NCN, vote) "
                    "honestly: transfer, shell-aware and adaptive attacks, every break re-verified.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate a model and its shell; write results and a report",
                         description="Evaluate base model and shell on the same points with the "
                                     "attack battery; every break is re-verified. Every flag is "
                                     "optional; precedence: defaults < --config FILE < flags.")
    run.add_argument("--config", default=None, help="TOML file with any of the keys below")
    run.add_argument("--dataset", help="digits (default), mnist or synthetic")
    run.add_argument("--data-dir", help="directory with MNIST-layout IDX files (default: ../shared/data/mnist)")
    run.add_argument("--model", help="zoo model: adversarial (PGD-trained, default) or standard")
    run.add_argument("--shell", help="mcn (default), ncn, vote or none")
    run.add_argument("--norm", help="linf (default) or l2")
    run.add_argument("--eps", help="attack radius ε, or a comma list for an ε sweep (default 0.1)")
    run.add_argument("--delta", help="shell radius δ (NCN: its radius limit), or a comma list for a "
                                     "δ sweep (default 0.1)")
    run.add_argument("--p", type=float, help="NCN confidence threshold (default 0.9)")
    run.add_argument("--attacks", help="preset (fast, full) or comma list; see `robustness-eval attacks`")
    run.add_argument("--budget", action="append", metavar="NAME=N",
                     help="override one attack's budget, e.g. --budget square=2000 (repeatable)")
    run.add_argument("--n-points", type=int, help="evaluate the first N test points (default 200)")
    run.add_argument("--seed", type=int, help="seed for everything (default 0)")
    run.add_argument("--no-convergence", dest="convergence", action="store_false", default=None,
                     help="skip the rerun with every budget doubled")
    run.add_argument("--no-crosscheck", dest="crosscheck", action="store_false", default=None,
                     help="skip the standalone Foolbox-vs-ours PGD comparison on the base model")
    run.add_argument("--no-sanity", dest="sanity", action="store_false", default=None,
                     help="skip the sanity checks and the active test")
    run.add_argument("--out", default=None, help="output directory (default reports/<name>)")
    run.add_argument("--resume", metavar="DIR", default=None,
                     help="continue an interrupted run in DIR; finished work is never redone")
    run.add_argument("--quiet", action="store_true", help="no progress output")

    report = sub.add_parser("report", help="(re)write report.md, report.html and plots for a run directory")
    report.add_argument("directory", help="a directory written by `robustness-eval run`")

    check = sub.add_parser("check-shell", help="property-test a shell: every invariant that applies to it",
                           description="Run the Hypothesis invariants on factory(model) -> shell and print "
                                       "a table; exits 1 if any invariant fails.")
    check.add_argument("factory", help="module:factory, e.g. robustness_eval.testing.factories:mcn_linf")
    check.add_argument("--profile", default="quick", help="quick (15 examples, default) or thorough (200)")

    sub.add_parser("attacks", help="list attacks, their kinds and default budgets, and the presets")

    train = sub.add_parser("train", help="train (or load from cache) a zoo model and print its accuracy")
    train.add_argument("--dataset", default="digits", help="digits, mnist or synthetic")
    train.add_argument("--data-dir", default=None, help="directory with MNIST-layout IDX files")
    train.add_argument("--model", default="adversarial", help="adversarial or standard")
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train.add_argument("--retrain", action="store_true", help="ignore the cache")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from robustness_eval.config import KEYS, load_toml, resolve
    from robustness_eval.job import run_job, run_name
    from robustness_eval.report import write_report
    from robustness_eval.store import DB_NAME, ResultStore

    explicit = {k: getattr(args, k) for k in KEYS if getattr(args, k, None) is not None}
    if args.resume:
        directory = Path(args.resume)
        if not (directory / DB_NAME).exists():
            raise FileNotFoundError(f"--resume {directory}: no {DB_NAME} there; start a run with --out")
        store = ResultStore(directory)
        stored = store.config()
        store.close()
        config = resolve(explicit, stored=stored)
        out = directory
    else:
        config = resolve(explicit, load_toml(args.config) if args.config else None)
        out = Path(args.out) if args.out else Path("reports") / run_name(config)
    from attacks.registry import build_battery

    build_battery(config["attacks"])  # unknown names fail before any work
    command = "robustness-eval " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["run"] else "(API)"
    if not args.quiet:
        print(f"{run_name(config)} -> {out}", flush=True)
    result = run_job(config, out, command, quiet=args.quiet)
    report = write_report(out)
    if not args.quiet:
        _summary(result.to_json())
        print(f"wrote {out / 'results.json'}, {report} and {report.with_suffix('.html')}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from robustness_eval.report import write_report

    path = write_report(Path(args.directory))
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0


def _summary(results: dict) -> None:
    from robustness_eval.report import headline, pct

    print(f"{'':32s}{'base F':>10s}{'shell G':>10s}")
    for label, key in [("clean accuracy", "clean_accuracy"),
                       ("robust accuracy (transfer only)", "transfer_robust_accuracy"),
                       ("robust accuracy (worst case)", "robust_accuracy")]:
        print(f"{label:32s}{pct(results[key]['base']):>10s}{pct(results[key]['shell']):>10s}")
    print(headline(results))


def cmd_check_shell(args: argparse.Namespace) -> int:
    from robustness_eval.testing.kit import check_shell, format_table, load_factory

    verdicts = check_shell(load_factory(args.factory), args.profile)
    print(format_table(verdicts))
    return 1 if any(v.status == "fail" for v in verdicts) else 0


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
    commands = {"run": cmd_run, "report": cmd_report, "attacks": cmd_attacks, "check-shell": cmd_check_shell,
                "train": cmd_train}
    try:
        return commands[args.command](args)
    except (ValueError, FileNotFoundError) as error:
        print(f"robustness-eval: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # python -m robustness_eval.cli
    sys.exit(main())

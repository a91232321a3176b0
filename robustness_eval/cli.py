"""The `robustness-eval` command: flags and TOML → load model, shell and data → `evaluate` → report.

Every error is one line on stderr: exit 2 when the input is rejected before any work starts
(nothing is written then), 1 when a run fails after it started; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from robustness_eval.options import add_flags

if TYPE_CHECKING:
    from robustness_eval.records import ResultsRecord

CODE_NOTE = ("Loading module:factory, file.py:factory, TorchScript or export files runs their code "
             "with your rights: only load files you trust.")


class RunFailedError(Exception):
    """A run that failed after work started (exit code 1)."""


class UsageError(Exception):
    """A command line argparse refused (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused command line is one line on stderr, not the usage block."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="robustness-eval",
        description="Evaluate the adversarial robustness of model shells (MCN, NCN, vote, or your own) "
                    "honestly: transfer, shell-aware and adaptive attacks, every break re-verified.",
        epilog=CODE_NOTE)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    debug = argparse.ArgumentParser(add_help=False)  # --debug after the command too (`run ... --debug`)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")

    run = sub.add_parser("run", parents=[debug], help="evaluate a model and its shell; write results and a report",
                         description="Evaluate base model and shell on the same points with the "
                                     "attack battery; every break is re-verified. Every flag is "
                                     "optional; precedence: defaults < --config FILE < flags.",
                         epilog=CODE_NOTE)
    run.add_argument("--config", default=None, help="TOML file with any of the keys below")
    run.add_argument("--out", default=None, help="output directory (default reports/<name>)")
    run.add_argument("--resume", metavar="DIR", default=None,
                     help="continue an interrupted run in DIR with its stored configuration (no configuration "
                          "flags); finished work is never redone")
    add_flags(run)  # every option's flag, from robustness_eval.options

    report = sub.add_parser("report", parents=[debug],
                            help="(re)write report.md, report.html and plots for a run directory")
    report.add_argument("directory", help="a directory written by `robustness-eval run`")

    check = sub.add_parser("check-shell", parents=[debug],
                           help="property-test a shell: every invariant that applies to it",
                           description="Run the Hypothesis invariants on factory(model) -> shell and print "
                                       "a table; exits 1 if any invariant fails, 2 if the factory cannot be "
                                       "loaded.", epilog=CODE_NOTE)
    check.add_argument("factory", help="module:factory or path/to/file.py:factory, e.g. "
                                       "robustness_eval.testing.factories:mcn_linf")
    check.add_argument("--profile", default="quick", help="quick (15 examples, default) or thorough (200)")
    check.add_argument("--input-shape", default=None, metavar="C,H,W",
                       help="the input shape the shell is written for, e.g. 1,8,8 (default: drawn flat shapes)")
    check.add_argument("--data", default=None, help="draw inputs of this bundled data set's shape and bounds "
                                                    "(digits, mnist, synthetic)")

    _add_compare(sub, debug)
    sub.add_parser("attacks", parents=[debug], help="list attacks, their kinds and default budgets, and the presets")

    train = sub.add_parser("train", parents=[debug],
                           help="train (or load) a zoo model; say whether it matches the shipped weights")
    train.add_argument("--data", "--dataset", dest="data", default="digits", help="digits, mnist or synthetic")
    train.add_argument("--data-dir", default=None, help="directory with MNIST-layout IDX files")
    train.add_argument("--model", default="adversarial", help="adversarial or standard")
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train.add_argument("--retrain", action="store_true", help="train anew instead of loading shipped or cached weights")
    return parser


def _add_compare(sub, debug: argparse.ArgumentParser) -> None:
    """The `compare` subcommand's flags."""
    comparison = sub.add_parser(
        "compare", parents=[debug],
        help="several finished runs side by side: one table and one plot (Markdown and HTML)",
        description="Read each directory's results.json and write compare.md, compare.html and compare.png: "
                    "clean, transfer-only and worst-case robust accuracy with intervals, the attack with most "
                    "breaks, the active test's found shares and caveat. Runs under different threats are refused "
                    "unless --allow-different-threats is given.")
    comparison.add_argument("directories", nargs="+", help="two or more directories written by `robustness-eval run`")
    comparison.add_argument("--out", default="reports/compare", help="output directory (default reports/compare)")
    comparison.add_argument("--labels", default=None,
                            help="comma list of row labels, one per directory (default: the directory names)")
    comparison.add_argument("--annotations", default=None, metavar="FILE",
                            help="TOML file with a table per label whose keys become text columns, e.g. [magnet] "
                                 "protocol = \"...\"")
    comparison.add_argument("--allow-different-threats", action="store_true",
                            help="compare runs made under different threats (norm, ε, bounds) anyway")


def _prepare(config: dict, out: Path, command: str, explicit: set[str], args: argparse.Namespace, clock):
    """Load what the config names (the phase "loading" on `clock`) and validate it all: the `Evaluation` to run
    (nothing written yet)."""
    from robustness_eval.api import prepare_evaluation
    from robustness_eval.config import grid, parse_budgets
    from robustness_eval.loading import load_data, load_model, load_surrogate, shell_factory, shell_surrogate_factory
    from robustness_eval.options import run_keywords
    from robustness_eval.types import Threat
    from shells.registry import accepted_options

    quiet = args.quiet
    with clock.phase("loading", "data, model, shell"):
        data = load_data(config["data"], config["data_dir"], seed=config["seed"])
        if "data_dir" in explicit and config["data"] not in ("mnist", "cifar10"):
            warnings.warn(f"--data-dir is ignored: --data {config['data']} does not read a directory", stacklevel=2)
        factory = shell_factory(config["shell"])
        for key in ("p", "delta", "search_dtype"):
            if key in explicit and key not in accepted_options(factory, {key: None}):
                warnings.warn(f"--{key.replace('_', '-')} is ignored: the shell {config['shell']!r} takes no {key}",
                              stacklevel=2)
        model = load_model(config["model"], data, config["arch"], seed=config["seed"], quiet=quiet)
        surrogate = load_surrogate(config["bpda"], model) if config.get("bpda") else None
        shell_surrogate = (shell_surrogate_factory(config["shell_surrogate"]) if config.get("shell_surrogate")
                           else None)
    eps, delta = grid(config)
    execution = {name: getattr(args, name) for name in ("device", "backend", "ray_address", "workers",
                                                          "budget_limit_hours")}
    return prepare_evaluation(
        model, factory, data, Threat(config["norm"], eps[0], data.bounds), **run_keywords(config), **execution,
        store_dir=out, sweep_eps=eps[1:], sweep_delta=delta[1:], budgets=parse_budgets(config["budget"]),
        shell_options={"delta": delta[0], "p": config["p"], "search_dtype": config.get("search_dtype", "float32")},
        bpda=surrogate, shell_surrogate=shell_surrogate, quiet=quiet,
        call={"command": command, "cli": config, "cwd": os.getcwd()})


def _stored_cli_config(directory: Path) -> tuple[dict, str]:
    from robustness_eval.store import DB_NAME, ResultStore

    if not (directory / DB_NAME).is_file():
        raise FileNotFoundError(f"--resume {directory}: no {DB_NAME} there; start a run with --out")
    store = ResultStore.reader(directory)
    try:
        stored = store.config()
    finally:
        store.close()
    call = (stored or {}).get("call", {})
    if "cli" not in call:
        raise ValueError(f"--resume {directory}: the store holds no run started by `robustness-eval run`; "
                         "resume an API run by calling evaluate() again with the same store_dir")
    return call["cli"], call["command"], call.get("cwd")


@contextmanager
def _started_in(directory: str | None, quiet: bool) -> Iterator[None]:
    """Run a resume in the directory its run was started from, so the relative paths it recorded (data, model,
    shell files) name the same files; back where it was afterwards."""
    here = os.getcwd()
    if directory is None or directory == here:
        yield
        return
    if not Path(directory).is_dir():
        warnings.warn(f"the run was started in {directory}, which no longer exists; its relative paths are read "
                      f"from {here}", stacklevel=3)
        yield
        return
    if not quiet:
        print(f"resuming in {directory}, where the run was started (its relative paths are read from there)")
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(here)


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from robustness_eval.config import FLAGS, KEYS, load_toml, resolve, run_name

    explicit = {k: getattr(args, k) for k in KEYS if getattr(args, k, None) is not None}
    if args.resume:
        given = sorted(FLAGS[k] for k in explicit) + [f for f, v in (("--config", args.config),
                                                                        ("--out", args.out)) if v]
        if given:
            raise ValueError(f"--resume takes no configuration flags (got {', '.join(given)}); it continues the "
                             "run with its stored configuration (execution flags --device, --backend, --ray-address, "
                             "--workers, --quiet, --debug are fine)")
        out = Path(args.resume).resolve()
        config, command, started_in = _stored_cli_config(out)
    else:
        config = resolve(explicit, load_toml(args.config) if args.config else None)
        out = Path(args.out) if args.out else Path("reports") / run_name(config)
        command, started_in = "robustness-eval " + shlex.join(argv), None
    with _started_in(started_in, args.quiet):
        return _run_and_report(config, out, command, explicit, args)


def _run_and_report(config: dict, out: Path, command: str, explicit: dict, args: argparse.Namespace) -> int:
    from robustness_eval.config import run_name
    from robustness_eval.progress import PhaseClock
    from robustness_eval.report import write_report

    clock = PhaseClock(args.quiet)
    try:
        evaluation = _prepare(config, out, command, set(explicit), args, clock)
    finally:
        clock.close()
    evaluation.prepared = {**clock.seconds, **evaluation.prepared}  # the loading, then the checks and probe
    if not args.quiet:
        print(f"{run_name(config)} -> {out}", flush=True)
    try:
        result = evaluation.run()
        if not args.quiet:
            print("▸ report (report.md, report.html, plots/)", file=sys.stderr, flush=True)
        report = write_report(out)
    except KeyboardInterrupt:
        raise
    except Exception as error:
        raise RunFailedError(f"the run in {out} failed: {type(error).__name__}: {error}; finished chunks are "
                             f"kept, continue with: robustness-eval run --resume {out}") from error
    if not args.quiet:
        _summary(result.record())
        print(f"wrote {out / 'results.json'}, {report} and {report.with_suffix('.html')}")
    return 0


def cmd_report(args: argparse.Namespace, _: list[str]) -> int:
    from robustness_eval.report import write_report

    path = write_report(Path(args.directory))
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0


def cmd_compare(args: argparse.Namespace, _: list[str]) -> int:
    from robustness_eval.comparison import compare

    labels = None if args.labels is None else [label.strip() for label in args.labels.split(",")]
    path = compare(args.directories, args.out, labels, args.annotations, args.allow_different_threats)
    print(f"wrote {path}, {path.with_suffix('.html')} and {path.with_suffix('.png')}")
    return 0


def _summary(results: ResultsRecord) -> None:
    from robustness_eval.report import headline, pct

    print(f"{'':32s}{'base F':>10s}{'shell G':>10s}")
    for label, key in [("clean accuracy", "clean_accuracy"),
                       ("robust accuracy (transfer only)", "transfer_robust_accuracy"),
                       ("robust accuracy (worst case)", "robust_accuracy")]:
        figures = getattr(results, key)
        print(f"{label:32s}{pct(figures['base']):>10s}{pct(figures['shell']):>10s}")
    print(headline(results))


def cmd_check_shell(args: argparse.Namespace, _: list[str]) -> int:
    from robustness_eval.testing.kit import check_shell, format_table, input_space, load_factory

    space = input_space(args.input_shape, args.data)
    factory = load_factory(args.factory, space)  # called as `run` calls it; exit 2 when it cannot be imported
    verdicts = check_shell(factory, args.profile, space)
    print(format_table(verdicts))
    return 1 if any(v.status == "fail" for v in verdicts) else 0


def cmd_attacks(_: argparse.Namespace, __: list[str]) -> int:
    from attacks.registry import ESCALATION, PRESETS, attack_classes

    print(f"{'name':15s} {'kind':15s} {'view':12s} {'budget':>7s}  {'needs':28s} description")
    for name, cls in attack_classes().items():
        needs = cls.needs().replace(", ", ",")
        print(f"{name:15s} {cls.kind.value:15s} {cls.view:12s} {cls().budget:7d}  {needs:28s} {cls.description}")
    for preset, entries in PRESETS.items():
        listed = []
        for name, budget, options in entries:
            settings = [*([str(budget)] if budget else []), *(f"{k}={v}" for k, v in options.items())]
            listed.append(f"{name}({', '.join(settings)})" if settings else name)
        print(f"preset {preset}: {', '.join(listed)}")
    for group, entries in ESCALATION.items():
        listed = [f"{name}({', '.join([str(budget), *(f'{k}={v}' for k, v in counts.items())])})"
                  for name, budget, counts in entries]
        print(f"escalation round 1 ({group}; round n: × 2^(n-1)): {', '.join(listed)}")
    return 0


def cmd_train(args: argparse.Namespace, _: list[str]) -> int:
    from robustness_eval.data import load_dataset
    from robustness_eval.zoo import accuracy, cache_dir, load_model, model_hash, shipped_hash

    data = load_dataset(args.data, args.data_dir, seed=args.seed)
    start = time.perf_counter()
    model = load_model(data, args.model, seed=args.seed, retrain=args.retrain, quiet=False)
    digest = model_hash(model)
    shipped = shipped_hash(data, args.model, args.seed)
    match = ("no shipped weights for this recipe" if shipped is None else
             "matches the shipped weights" if shipped == digest else f"differs from the shipped weights ({shipped})")
    print(f"{args.data} {args.model}: test accuracy {accuracy(model, data.x_test, data.y_test):.1%}, "
          f"hash {digest} ({match}), {time.perf_counter() - start:.1f}s, cache {cache_dir()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except UsageError as error:
        print(f"robustness-eval: error: {error}", file=sys.stderr)
        return 2
    commands = {"run": cmd_run, "report": cmd_report, "compare": cmd_compare, "attacks": cmd_attacks,
                "check-shell": cmd_check_shell, "train": cmd_train}
    with warnings.catch_warnings():  # the suite's own warnings, each one line, every time
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = _show_warning
        return _dispatch(commands[args.command], args, argv)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"robustness-eval: warning: {message}", file=sys.stderr)


def _dispatch(command, args: argparse.Namespace, argv: list[str]) -> int:
    try:
        return command(args, argv)
    except KeyboardInterrupt:
        if args.debug:
            raise
        where = f": resume with robustness-eval run --resume {args.out or args.resume}" if args.command == "run" and (
            args.out or args.resume) else ""
        print(f"robustness-eval: interrupted; finished chunks are kept{where}", file=sys.stderr)
        return 130
    except RunFailedError as error:
        if args.debug:
            raise
        print(f"robustness-eval: error: {error}", file=sys.stderr)
        return 1
    except SystemExit as error:  # argparse exits before this; here it is user code (a factory, a model, a shell)
        if args.debug:
            raise
        print(f"robustness-eval: error: user code called sys.exit({error.code!r}) during `{args.command}`; a "
              "model, shell or data factory must raise an exception (or return) instead of exiting", file=sys.stderr)
        return 1
    except Exception as error:  # every other error was raised before any work: bad input
        if args.debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"robustness-eval: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # python -m robustness_eval.cli
    sys.exit(main())

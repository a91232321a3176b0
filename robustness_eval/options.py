"""Run options in one place: each field states its default, type, doc, CLI flag, TOML type and binding.

`RunOptions` holds the keywords of `evaluate` / `prepare_evaluation`; `Inputs` holds what the CLI
loads and hands to them as objects (data, model, shell, threat; `--bpda`'s factory). Everything
else is derived from these two tables: the CLI parser (`add_flags`), the TOML reader's types and
the defaults (`robustness_eval.config`), `evaluate`'s keywords, the run configuration written to
results.json, and which flags a `--resume` accepts. An option is *configuration* (bound to the run
directory: a resume with another value is refused) or *execution* (where and how it runs: device,
backend, workers, quiet), which a resume may change.

Adding an option is a field here and the code that reads it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from torch import nn

from robustness_eval.cost import DEFAULT_LIMIT_HOURS
from robustness_eval.types import check_nonnegative, check_positive_int, check_seed

CONFIG, EXECUTION = "config", "execution"
ESCALATION_CAP_SECONDS = 600.0


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# TOML types: what a value may be in a config file, and how to say it
TOML_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "integer": (_is_int, "an integer"),
    "count": (_is_int, "an integer ≥ 1"),
    "number": (_is_number, "a number"),
    "seconds": (_is_number, "a number of seconds ≥ 0"),
    "probability": (_is_number, "a number in (0, 1)"),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    "numbers": (lambda v: _is_number(v) or isinstance(v, str) or (isinstance(v, list) and all(map(_is_number, v))),
                'a number, a list of numbers, or a comma string such as "0.05,0.1"'),
    "names": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(a, str) for a in v)),
              'a preset or comma string ("fast", "pgd,square") or a list of names'),
    "strings": (lambda v: isinstance(v, list) and all(isinstance(b, str) for b in v),
                'a list of "NAME=N" strings, e.g. ["square=2000"]'),
    "search dtype": (lambda v: v in ("float32", "bfloat16"), '"float32" or "bfloat16"'),
}


@dataclass(frozen=True)
class Spec:
    """How one option appears outside Python.

    key: its name in TOML, the CLI's config record and results.json (default: the field's name);
    flag: the CLI flag (None: API only); toml: a `TOML_TYPES` name (None: not in a config file);
    binding: CONFIG or EXECUTION; cli: further `add_argument` keywords (type, choices, metavar, action);
    aliases: more flag spellings; check: validates the API value (raises naming the argument);
    recorded: written as it is into the run's configuration (results.json's config, bound to the store).
    """

    doc: str
    key: str | None = None
    flag: str | None = None
    toml: str | None = None
    binding: str = CONFIG
    cli: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    check: Callable[[Any, str], Any] | None = None
    recorded: bool = False


def option(default, doc: str, **spec) -> Any:
    """A dataclass field carrying its `Spec`."""
    made = Spec(doc, **spec)
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata={"spec": made})
    return field(default=default, metadata={"spec": made})


def _flag_check(value, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{argument}` must be True or False (got {value!r})")
    return value


def _optional_positive(value, argument: str):
    return None if value is None else check_positive_int(value, argument)


def _attack_list(value, argument: str):
    if not isinstance(value, str | list | tuple):
        raise TypeError(f"`{argument}` must be a preset name, a comma list, or a list of names or Attack instances "
                        f"(got {type(value).__name__})")
    return value


def _budget_dict(value, argument: str):
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"`{argument}` must be a dict of attack name → integer budget (got {type(value).__name__})")
    return value


def _surrogate_or_none(value, argument: str):
    if value is not None and not isinstance(value, nn.Module) and not callable(value):
        raise TypeError(f"`{argument}` must be a torch.nn.Module returning the shell's probabilities with their "
                        f"graph, or a factory(model, **shell options) building one (got {type(value).__name__})")
    return value


def _optional_draws(value, argument: str):
    return None if value is None else check_positive_int(value, argument)


def _module_or_none(value, argument: str):
    if value is not None and not isinstance(value, nn.Module):
        raise TypeError(f"`{argument}` must be a torch.nn.Module standing in for the base model "
                        f"(got {type(value).__name__})")
    return value


@dataclass(frozen=True)
class RunOptions:
    """The keywords of `evaluate` and `prepare_evaluation` (see each field's doc)."""

    attacks: Any = option("fast", "preset (fast, full) or comma list; see `robustness-eval attacks`",
                          flag="--attacks", toml="names", check=_attack_list)
    n_points: int | None = option(200, "evaluate the first N test points (default 200)", flag="--n-points",
                                  toml="count", cli={"type": int}, check=_optional_positive)
    seed: int = option(0, "seed for everything (default 0)", flag="--seed", toml="integer", cli={"type": int},
                       check=check_seed, recorded=True)
    store_dir: Any = option(None, "the run directory (store, results.json, sweep sub-runs); the CLI's --out")
    convergence: bool = option(True, "the rerun with every budget doubled", flag="--no-convergence",
                               toml="boolean", check=_flag_check, recorded=True)
    crosscheck: bool = option(True, "the standalone Foolbox-vs-ours PGD comparison on the base model",
                              flag="--no-crosscheck", toml="boolean", check=_flag_check, recorded=True)
    sanity_checks: bool = option(True, "the sanity checks and the active test", key="sanity",
                                 flag="--no-sanity", toml="boolean", check=_flag_check, recorded=True)
    restart_check: bool = option(True, "the rerun of every attack with restarts with as many new restarts",
                                 flag="--no-restart-check", toml="boolean", check=_flag_check, recorded=True)
    sweep_eps: tuple = option((), "further ε values (the CLI takes them as --eps a,b)")
    sweep_delta: tuple = option((), "further δ values (the CLI takes them as --delta a,b)")
    budgets: dict | None = option(None, "per-attack budget overrides by name (the CLI's --budget NAME=N)",
                                  check=_budget_dict)
    shell_options: dict | None = option(None, "with a factory, options that override the defaults")
    chunk: int | None = option(None, "points per committed unit of work (default: 50 on the CPU, 500 on a GPU; a "
                                     "resume keeps the stored one)", flag="--chunk", toml="count",
                               cli={"type": int}, check=_optional_positive)
    escalation: bool = option(True, "escalation when an indicator says the attacks failed for the wrong "
                                    "reason", flag="--no-escalation", toml="boolean", check=_flag_check,
                             recorded=True)
    escalation_cap: float = option(ESCALATION_CAP_SECONDS,
                                   "seconds of escalation: no round starts that would end past them at twice the "
                                   "last round's time (default 600)",
                                   flag="--escalation-cap", toml="seconds", cli={"type": float},
                                   check=check_nonnegative, recorded=True)
    bpda: Any = option(None, "a differentiable stand-in for the base model (the CLI loads it from --bpda)",
                       check=_module_or_none)
    shell_surrogate: Any = option(None, "an attack-time surrogate of the shell, for gradients only: a module with "
                                        "the shell's interface (probabilities, graph kept) or a factory(model, "
                                        "**shell options) building one (the CLI loads it from --shell-surrogate); "
                                        "default: the shell's own surrogate(), if it has one",
                                  check=_surrogate_or_none)
    eot_draws: int | None = option(None, "draws averaged per gradient by the EOT attacks (pgd-e2e, cw-e2e-t, "
                                         "pgd-surrogate) and per query by the black-box ones on a randomized target "
                                         "(default: each attack's own, 8 and 4)", flag="--eot-draws", toml="count",
                                   cli={"type": int}, check=_optional_draws, recorded=True)
    inference_runs: int = option(10, "R: after the battery every randomized target classifies each clean and final "
                                     "input R more times; accuracy is reported as the mean over runs, by majority "
                                     "and worst case (right in all R); costs 2·R·n queries per randomized target "
                                     "(default 10; 1 turns it off)", flag="--inference-runs", toml="count",
                                 cli={"type": int}, check=check_positive_int, recorded=True)
    budget_limit_hours: float = option(DEFAULT_LIMIT_HOURS, "refuse, before any work, a battery whose estimated cost "
                                                           "(each attack's queries × one query's measured seconds × "
                                                           "points) exceeds this many hours (default 24; 0: no limit); "
                                                           "allowed with --resume", flag="--budget-limit-hours",
                                       binding=EXECUTION, cli={"type": float}, check=check_nonnegative)
    device: Any = option(None, "auto (CUDA when available, default), cpu, cuda or cuda:N; allowed with --resume",
                         flag="--device", binding=EXECUTION, cli={"default": "auto"})
    backend: Any = option("local", "where the battery's units run: local (this process, default) or ray (Ray "
                                   "tasks; pip install -e \".[ray]\"); same numbers either way; allowed with --resume",
                          flag="--backend", binding=EXECUTION, cli={"choices": ["local", "ray"]})
    ray_address: str | None = option(None, "with --backend ray: auto or host:port joins a cluster (default: start "
                                           "a local Ray runtime); allowed with --resume", flag="--ray-address",
                                     binding=EXECUTION)
    workers: int | None = option(None, "with --backend ray: units in flight at once (default: the cluster's CPUs, "
                                       "or its GPUs with --device cuda); allowed with --resume", flag="--workers",
                                 binding=EXECUTION, cli={"type": int})
    quiet: bool = option(True, "no progress output", flag="--quiet", binding=EXECUTION, check=_flag_check,
                         cli={"action": "store_true", "default": False})
    call: dict | None = option(None, "how the evaluation was invoked (provenance only)", binding=EXECUTION)

    @classmethod
    def from_keywords(cls, **keywords) -> RunOptions:
        """The options `evaluate(**keywords)` names, checked; an unknown keyword is a TypeError naming the valid
        ones."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(keywords) - set(names))
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; evaluate() takes: {', '.join(names)}")
        made = cls(**keywords)
        for f in fields(cls):
            spec = f.metadata["spec"]
            if spec.check is not None:
                spec.check(getattr(made, f.name), f.name)
        return made

    def replace(self, **changes) -> RunOptions:
        return replace(self, **changes)

    def keywords(self) -> dict:
        """These options as `evaluate` keywords (the objects themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def record(self) -> dict:
        """The options recorded as they are in the run's configuration, under their keys."""
        return {key_of(f): float(v) if isinstance(v := getattr(self, f.name), int) and f.type == "float" else v
                for f in fields(self) if spec_of(f).recorded}


@dataclass(frozen=True)
class Inputs:
    """What the CLI loads and passes to `evaluate` as objects: the data, F, the shell and the threat."""

    data: str = option("digits", "digits (default), mnist, synthetic, cifar10, a file.npz (x, y, optional "
                                 "lower/upper), module:factory or path/to/file.py:factory returning a Dataset or "
                                 "(x, y)",
                       flag="--data", aliases=("--dataset",), toml="string")
    data_dir: str | None = option(None, "directory for mnist (IDX layout; default ../shared/data/mnist) or cifar10",
                                  flag="--data-dir", toml="string")
    model: str = option("adversarial", "zoo model adversarial (default) or standard; module:factory, "
                                       "path/to/file.py:factory, a TorchScript or .pt2 export file, or a weights "
                                       "file with --arch", flag="--model", toml="string")
    arch: str | None = option(None, "module:factory building the architecture a --model weights file fits",
                              flag="--arch", toml="string")
    shell: str = option("mcn", "mcn (default), ncn, vote, none, a registered shell, or module:factory / "
                               "path/to/file.py:factory called as factory(model, delta=, p=, norm=, bounds=, "
                               "seed=) (it may take only those it uses)", flag="--shell", toml="string")
    norm: str = option("linf", "linf (default) or l2", flag="--norm", toml="string")
    eps: str = option("0.1", "attack radius ε, or a comma list for an ε sweep (default 0.1)", flag="--eps",
                      toml="numbers")
    delta: str = option("0.1", "shell radius δ (NCN: its radius limit), or a comma list for a δ sweep "
                               "(default 0.1)", flag="--delta", toml="numbers")
    p: float = option(0.9, "confidence threshold for shells that take one, e.g. NCN (default 0.9)", flag="--p",
                      toml="probability", cli={"type": float})
    budget: list = option([], "override one attack's budget, e.g. --budget square=2000 (repeatable)",
                          flag="--budget", toml="strings", cli={"action": "append", "metavar": "NAME=N"})
    search_dtype: str = option("float32", "precision of F's passes inside the shell's search, for shells that "
                                          "take it (default float32); part of the shell's definition",
                               flag="--search-dtype", toml="search dtype", cli={"choices": ["float32", "bfloat16"]})
    bpda: str | None = option(None, "module:factory or file.py:factory returning a differentiable stand-in for "
                                    "the base model, called as factory(model); the escalation's BPDA on F follows "
                                    "its gradient (default: straight-through rounding and sign)", flag="--bpda",
                              toml="string")
    shell_surrogate: str | None = option(None, "module:factory or file.py:factory building the shell's attack-time "
                                               "surrogate, called like a --shell factory (model, delta=, p=, norm=, "
                                               "bounds=, seed=); gradient attacks differentiate it, breaks are "
                                               "verified on the shell (default: the shell's own surrogate())",
                                         flag="--shell-surrogate", toml="string")


def spec_of(f) -> Spec:
    return f.metadata["spec"]


def default_of(f):
    return f.default_factory() if f.default is MISSING else f.default


def config_fields() -> list:
    """Every option a config file and the CLI's record hold: the inputs, then the run options."""
    return [f for f in [*fields(Inputs), *fields(RunOptions)] if spec_of(f).toml is not None]


def key_of(f) -> str:
    return spec_of(f).key or f.name


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The `run` command's flags, from both tables (execution flags default to their value, the others to None,
    so the CLI knows which flags were given)."""
    for f in [*fields(Inputs), *fields(RunOptions)]:
        spec = spec_of(f)
        if spec.flag is None:
            continue
        keywords = dict(spec.cli)
        doc = spec.doc
        if isinstance(default_of(f), bool) and spec.flag.startswith("--no-"):
            keywords.update(action="store_false", default=None)
            doc = "skip " + doc
        elif spec.binding == EXECUTION:
            keywords.setdefault("default", default_of(f))
        parser.add_argument(spec.flag, *spec.aliases, dest=key_of(f), help=doc, **keywords)


def flag_of(key: str) -> str:
    """The CLI flag of a config key ('n_points' → '--n-points')."""
    for f in [*fields(Inputs), *fields(RunOptions)]:
        if key_of(f) == key and spec_of(f).flag:
            return spec_of(f).flag
    return "--" + key.replace("_", "-")


def run_keywords(config: dict) -> dict:
    """The `RunOptions` keywords a CLI config record sets (configuration options only; inputs are loaded)."""
    return {f.name: config[key_of(f)] for f in fields(RunOptions)
            if spec_of(f).binding == CONFIG and spec_of(f).toml is not None and key_of(f) in config}


def execution_keys() -> tuple[str, ...]:
    """Options a resume may change: execution options by their config-record key."""
    return tuple(key_of(f) for f in fields(RunOptions) if spec_of(f).binding == EXECUTION)

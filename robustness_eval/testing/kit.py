"""Run the invariants against a shell factory with Hypothesis and collect readable verdicts.

Profiles: `quick` (CI, 15 examples per invariant) and `thorough` (200 examples). A failing
invariant reports Hypothesis's shrunk counterexample: the smallest case it could find. An
exception raised inside the shell fails the invariant the same way (with its shrunk input); a
factory that raises or returns something that is not a shell fails the `factory` row.
Inputs are drawn in shapes of every kind unless an `InputSpace` names the shape (and bounds) the
shell is written for: `--input-shape 1,8,8` or `--data digits`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, settings
from torch import nn

from robustness_eval.testing.invariants import INVARIANTS, Invariant
from robustness_eval.testing.strategies import TinyMLP, cases
from robustness_eval.types import Bounds, Norm

PROFILES = {"quick": 15, "thorough": 200}
RUN_EPS, RUN_P = 0.1, 0.9  # the shell options `robustness-eval run` passes a factory by default (delta = ε)
DATA_SHAPES = {"digits": ((64,), Bounds(0.0, 1.0)), "synthetic": ((20,), Bounds(0.0, 1.0)),
               "mnist": ((1, 28, 28), Bounds(0.0, 1.0)), "cifar10": ((3, 32, 32), Bounds(0.0, 1.0))}


@dataclass
class Verdict:
    """One invariant's outcome for one shell."""

    invariant: str
    status: str  # pass | fail | n/a | not run
    counterexample: str = ""
    message: str = ""


@dataclass(frozen=True)
class InputSpace:
    """The input shapes drawn for a shell (None: every kind) and the bounds they lie in."""

    shapes: tuple[tuple[int, ...], ...] | None = None
    bounds: Bounds = Bounds(0.0, 1.0)


def input_space(input_shape: str | tuple | None = None, data: str | None = None) -> InputSpace:
    """An `InputSpace` from `--input-shape 1,8,8` or `--data digits` (not both); errors name the flag."""
    if input_shape is not None and data is not None:
        raise ValueError("pass --input-shape or --data, not both")
    if data is not None:
        if data not in DATA_SHAPES:
            raise ValueError(f"unknown --data {data!r}; choose one of: {', '.join(DATA_SHAPES)}")
        shape, bounds = DATA_SHAPES[data]
        return InputSpace((shape,), bounds)
    if input_shape is None:
        return InputSpace()
    parts = input_shape if isinstance(input_shape, tuple) else tuple(str(input_shape).split(","))
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--input-shape takes positive integers separated by commas, e.g. 1,8,8 "
                         f"(got {input_shape!r})") from None
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"--input-shape takes positive integers separated by commas, e.g. 1,8,8 (got {input_shape!r})")
    return InputSpace((shape,))


def load_factory(spec: str, space: InputSpace = InputSpace()) -> Callable:
    """Import `module:factory` or `path/to/file.py:factory` (a clear error for anything else), called as `run`
    calls a shell factory (see `called_as_run`)."""
    from robustness_eval.loading import load_object

    factory = load_object(spec, "shell factory")
    if not callable(factory):
        raise ValueError(f"shell factory {spec}: not callable; pass module:factory where factory(model) returns "
                         "a shell")
    return called_as_run(factory, space)  # check_shell, applicable and check_invariant bind it too; once is enough


def called_as_run(factory: Callable, space: InputSpace = InputSpace()) -> Callable:
    """`model -> factory(model, **options)` with the options `robustness-eval run` passes by default and the
    factory accepts: delta = ε = 0.1, p = 0.9, norm linf, the input space's bounds, seed 0."""
    from shells.registry import call_factory

    if getattr(factory, "called_as_run", False):
        return factory
    options = {"delta": RUN_EPS, "p": RUN_P, "norm": Norm.LINF, "bounds": space.bounds, "seed": 0}

    def build(model: nn.Module) -> nn.Module:
        return call_factory(factory, model, options)

    build.__name__ = build.__qualname__ = getattr(factory, "__name__", "factory")
    build.called_as_run = True
    return build


def probe_factory(factory: Callable, space: InputSpace = InputSpace()):
    """Build the shell around a tiny model: (shell, None), or (None, why the factory is broken)."""
    shape = (space.shapes or ((4,),))[0]
    size = 1
    for d in shape:
        size *= d
    try:
        shell = factory(TinyMLP(size, 3, 0, 1.0).eval())
    except Exception as error:
        return None, f"the factory raised {type(error).__name__}: {error}"
    if not isinstance(shell, nn.Module):
        return None, f"the factory returned {type(shell).__name__}, not a shell (a torch.nn.Module)"
    if getattr(shell, "base_model", None) is None and not hasattr(shell, "kind"):
        return None, (f"the factory returned a {type(shell).__name__} that is not a shell (no base_model, no "
                      "kind): did it return the bare model?")
    return shell, None


def applicable(factory: Callable, space: InputSpace = InputSpace()) -> list[Invariant]:
    """The invariants that hold for the kind of shell the factory builds (probed on a tiny model)."""
    shell, problem = probe_factory(called_as_run(factory, space), space)
    if problem:
        raise ValueError(problem)
    return [inv for inv in INVARIANTS if inv.applies_to(shell)]


def check_invariant(factory: Callable, invariant: Invariant, profile: str = "quick", seed: int = 0,
                    space: InputSpace = InputSpace()) -> Verdict:
    """Run one invariant on many drawn cases (the factory called as `run` calls it); the verdict carries the shrunk
    counterexample."""
    factory = called_as_run(factory, space)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    failing: dict = {}

    @settings(max_examples=PROFILES[profile], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False,
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(case=cases(shapes=list(space.shapes) if space.shapes else None, bounds=space.bounds))
    def property_holds(case):
        try:
            invariant.check(factory, case)
        except AssertionError as error:
            failing["case"], failing["message"] = repr(case), str(error)
            raise
        except Exception as error:  # a crash inside the shell is a failure of the shell, with its input
            failing["case"] = repr(case)
            failing["message"] = f"the shell raised {type(error).__name__}: {error}"
            raise AssertionError(failing["message"]) from error

    try:
        property_holds()
    except AssertionError:
        # the last failure recorded is the shrunk one: Hypothesis replays it at the end
        return Verdict(invariant.name, "fail", failing.get("case", ""), failing.get("message", ""))
    return Verdict(invariant.name, "pass")


def check_shell(factory: Callable, profile: str = "quick", space: InputSpace = InputSpace()) -> list[Verdict]:
    """Every invariant for this shell: pass / fail (with counterexample) / n/a; a broken factory fails its row. The
    factory is called as `run` calls it (`called_as_run`), through the API as through the CLI."""
    factory = called_as_run(factory, space)
    shell, problem = probe_factory(factory, space)
    if problem:
        return [Verdict("factory", "fail", message=problem),
                *(Verdict(inv.name, "not run") for inv in INVARIANTS)]
    chosen = {inv.name for inv in INVARIANTS if inv.applies_to(shell)}
    return [Verdict("factory", "pass"),
            *(check_invariant(factory, inv, profile, space=space) if inv.name in chosen else Verdict(inv.name, "n/a")
              for inv in INVARIANTS)]


def format_table(verdicts: list[Verdict]) -> str:
    lines = [f"{'invariant':28s} {'result':7s} counterexample"]
    for v in verdicts:
        detail = (f"{v.message} | {v.counterexample}" if v.counterexample else v.message) if v.status == "fail" else ""
        lines.append(f"{v.invariant:28s} {v.status:7s} {detail}")
    return "\n".join(lines)

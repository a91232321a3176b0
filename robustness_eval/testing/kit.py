"""Run the invariants against a shell factory with Hypothesis and collect readable verdicts.

Profiles: `quick` (CI, 15 examples per invariant) and `thorough` (200 examples). A failing
invariant reports Hypothesis's shrunk counterexample: the smallest case it could find.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, settings

from robustness_eval.testing.invariants import INVARIANTS, Invariant
from robustness_eval.testing.strategies import TinyMLP, cases

PROFILES = {"quick": 15, "thorough": 200}


@dataclass
class Verdict:
    """One invariant's outcome for one shell."""

    invariant: str
    status: str  # pass | fail | n/a
    counterexample: str = ""
    message: str = ""


def load_factory(spec: str) -> Callable:
    """Import `module:factory`; a clear error for anything else."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"shell factory must look like module:factory (got {spec!r})")
    if os.getcwd() not in sys.path:  # a console script does not search the working directory
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r} for --shell {spec}: {error}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attribute!r}; pass module:factory where "
                         "factory(model) returns a shell")
    return factory


def applicable(factory: Callable) -> list[Invariant]:
    """The invariants that hold for the kind of shell the factory builds (probed on a tiny model)."""
    probe = factory(TinyMLP(4, 3, 0, 1.0).eval())
    return [inv for inv in INVARIANTS if inv.applies_to(probe)]


def check_invariant(factory: Callable, invariant: Invariant, profile: str = "quick",
                    seed: int = 0) -> Verdict:
    """Run one invariant on many drawn cases; the verdict carries the shrunk counterexample."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    failing: dict = {}

    @settings(max_examples=PROFILES[profile], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), print_blob=False,
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(case=cases())
    def property_holds(case):
        try:
            invariant.check(factory, case)
        except AssertionError as error:
            failing["case"], failing["message"] = repr(case), str(error)
            raise

    try:
        property_holds()
    except AssertionError:
        # the last failure recorded is the shrunk one: Hypothesis replays it at the end
        return Verdict(invariant.name, "fail", failing.get("case", ""), failing.get("message", ""))
    return Verdict(invariant.name, "pass")


def check_shell(factory: Callable, profile: str = "quick") -> list[Verdict]:
    """Every invariant for this shell: pass / fail (with counterexample) / n/a."""
    chosen = {inv.name for inv in applicable(factory)}
    return [check_invariant(factory, inv, profile) if inv.name in chosen else Verdict(inv.name, "n/a")
            for inv in INVARIANTS]


def format_table(verdicts: list[Verdict]) -> str:
    lines = [f"{'invariant':28s} {'result':6s} counterexample"]
    for v in verdicts:
        detail = f"{v.message} | {v.counterexample}" if v.status == "fail" else ""
        lines.append(f"{v.invariant:28s} {v.status:6s} {detail}")
    return "\n".join(lines)

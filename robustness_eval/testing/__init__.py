"""Property-testing kit for shells: strategies, invariants, a runner, a pytest plugin."""

from robustness_eval.testing.invariants import INVARIANTS, Invariant, InvariantViolationError
from robustness_eval.testing.kit import Verdict, check_invariant, check_shell, format_table, load_factory
from robustness_eval.testing.strategies import Case, base_models, cases, inputs, shell_parameters

__all__ = ["INVARIANTS", "Case", "Invariant", "InvariantViolationError", "Verdict", "base_models", "cases",
           "check_invariant", "check_shell", "format_table", "inputs", "load_factory", "shell_parameters"]

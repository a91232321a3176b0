"""The property-testing kit: every shipped shell passes, every mutant is caught with a counterexample."""

from __future__ import annotations

import subprocess
import sys

import pytest

from robustness_eval.cli import main
from robustness_eval.testing import check_shell, load_factory
from robustness_eval.testing.factories import SHIPPED
from tests.mutants import MUTANTS


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_shell_passes_every_invariant_that_applies(name):
    verdicts = check_shell(load_factory(f"robustness_eval.testing.factories:{name}"))
    failed = [v for v in verdicts if v.status == "fail"]
    assert not failed, failed
    assert sum(v.status == "pass" for v in verdicts) >= 3


@pytest.mark.parametrize("name", MUTANTS)
def test_every_mutant_is_caught_with_a_readable_counterexample(name):
    verdicts = check_shell(load_factory(f"tests.mutants:{name}"))
    failed = [v for v in verdicts if v.status == "fail"]
    assert failed, f"mutant {name} passed every invariant"
    assert all(v.counterexample.startswith("Case(") and v.message for v in failed)


def test_check_shell_cli_prints_a_table_and_exits_nonzero_on_failure(capsys):
    assert main(["check-shell", "robustness_eval.testing.factories:identity"]) == 0
    assert "valid_probabilities" in capsys.readouterr().out
    assert main(["check-shell", "tests.mutants:edits_in_place"]) == 1
    out = capsys.readouterr().out
    assert "input_untouched_and_modes    fail" in out and "Case(seed=" in out


def test_bad_factory_spec_gets_a_clear_error(capsys):
    assert main(["check-shell", "no_colon_here"]) == 2
    assert "module:factory" in capsys.readouterr().err


def test_pytest_plugin_runs_the_kit_against_a_user_shell(tmp_path):
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--shell-kit",
               "tests.mutants:log_probabilities", "--shell-kit-only", "-q", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "shell_kit::valid_probabilities" in run.stdout
    ok = subprocess.run([*command[:6], "robustness_eval.testing.factories:identity", *command[7:]],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("kind", ["mcn", "ncn"])
def test_shipped_shells_hold_their_invariants_for_drawn_parameters(kind):
    from hypothesis import given, settings

    from robustness_eval.testing import cases, shell_parameters
    from robustness_eval.testing.invariants import search_in_ball_and_bounds, valid_probabilities
    from shells import build_shell

    @settings(max_examples=12, deadline=None, derandomize=True, database=None)
    @given(params=shell_parameters(), case=cases(shapes=[(8,), (64,)]))
    def holds(params, case):
        def factory(model):
            return build_shell(kind, model, params["norm"], case.bounds, params["delta"], params["p"])

        valid_probabilities(factory, case)
        search_in_ball_and_bounds(factory, case)

    holds()

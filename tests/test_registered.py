"""Table-driven tests over every registered attack and shell, built-in or added by entry point.

The tables are read from the registries when the tests are collected, as Foolbox's tests walk
its attacks and torchattacks' walk `__all__`: a new attack or shell is tested the moment it is
registered. The conftest puts a third-party package (tests/plugin) on sys.path, whose entry
points add one attack and one shell, and the first test checks that the tables hold them.
"""

from __future__ import annotations

import copy
import inspect
import json

import pytest
import torch
from torch import nn

import robustness_eval
from attacks.registry import ATTACKS, attack_classes
from robustness_eval.results import describe_shell
from robustness_eval.shell_source import ShellSource
from robustness_eval.store import ConfigMismatchError, compare_configs
from robustness_eval.types import Bounds, Norm, Threat
from robustness_eval.views import BaseModelView, EndToEndView, FixedRandomnessView, ShellAwareView, ShellOracle
from shells import MCNShell, NCNShell, Shell, VoteShell, capabilities
from shells.registry import BUILT_IN, build_shell, shell_factories

ATTACK_NAMES = sorted(attack_classes())
SHELL_NAMES = sorted(shell_factories())
SMALL_BUDGETS = {"hsj": 30, "boundary": 30, "square": 6, "square-t": 6, "spsa": 8}


def test_the_tables_hold_every_registered_attack_and_shell_including_entry_points():
    assert set(ATTACKS) <= set(ATTACK_NAMES) and set(BUILT_IN) <= set(SHELL_NAMES)
    assert "plugin-sign-pgd" in ATTACK_NAMES and "plugin-blur" in SHELL_NAMES


def _target_for(attack, model) -> Shell:
    """A shell offering what `attack` needs: MCN (search, per-class search, ball ascent), a vote, else a
    differentiable reformer."""
    from robustness_eval.testing.factories import magnet, resize_pad

    for shell in (MCNShell(model, 0.1, steps=2), VoteShell(model, 0.1, samples=4), magnet(model), resize_pad(model)):
        if attack.skip_reason(capabilities(shell)) is None:
            return shell
    raise AssertionError(f"{attack.name} applies to neither MCN nor a vote shell")


def _view(attack, model, shell, n: int):
    if attack.view == "base":
        return BaseModelView(model, Bounds())
    if attack.view == "oracle":
        return ShellOracle(shell, n, attack.budget)
    if attack.view == "end-to-end":
        return EndToEndView(shell, Bounds())
    if attack.view == "surrogate":
        return EndToEndView(shell.surrogate(), Bounds())
    if attack.view == "fixed":
        return FixedRandomnessView(shell, Bounds(), seed=0)
    return ShellAwareView(model, shell, Bounds())


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_every_attack_returns_candidates_in_the_ball_and_bounds_reproducibly(name, digits, digits_adversarial):
    cls = attack_classes()[name]
    attack = cls(budget=SMALL_BUDGETS.get(name, 3))
    x, y = digits.x_test[:4], digits.y_test[:4]
    threat = Threat("linf", 0.1)
    runs = []
    for _ in range(2):
        shell = _target_for(attack, digits_adversarial)
        out = attack(_view(attack, digits_adversarial, shell, len(y)), x, y, threat, seed=3)
        runs.append(out)
        assert out.x_adv.shape == x.shape and out.x_adv.dtype == x.dtype and out.x_adv.device == x.device
        assert float((out.x_adv - x).abs().max()) <= threat.eps + 1e-5
        assert float(out.x_adv.min()) >= -1e-6 and float(out.x_adv.max()) <= 1 + 1e-6
        assert out.queries.shape == (len(y),) and bool((out.queries >= 0).all())
    assert torch.equal(runs[0].x_adv, runs[1].x_adv), f"{name} gave other candidates for the same seed"


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_every_attack_at_zero_eps_returns_the_points_themselves(name, digits, digits_adversarial):
    attack = attack_classes()[name](budget=SMALL_BUDGETS.get(name, 3))
    x, y = digits.x_test[:3], digits.y_test[:3]
    shell = _target_for(attack, digits_adversarial)
    out = attack(_view(attack, digits_adversarial, shell, len(y)), x, y, Threat("linf", 0.0), seed=0)
    assert torch.equal(out.x_adv, x)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_every_attack_module_docstring_names_paper_threat_view_and_budget(name):
    text = (inspect.getmodule(attack_classes()[name]).__doc__ or "").lower()
    for word in ("paper", "threat", "view", "budget", "default"):
        assert word in text, f"{name}'s module docstring lacks '{word}'"


# shells: every constructor argument recorded once, bound to the store, rebuilt ------------------------

STRING_ALTERNATIVES = {"logprob": "cw", "cw": "logprob", "bisection": "penalty", "penalty": "bisection",
                       "float32": "bfloat16", "bfloat16": "float32", "linf": "l2", "l2": "linf"}


def _another(name: str, value, model):
    """A valid value other than `value` for the constructor argument `name`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):  # fewer steps where more would pass a bound (DiffPure's steps ≤ t*)
        return value - 1 if name in ("steps", "surrogate_steps") and value > 1 else value + 1
    if isinstance(value, float):
        return value / 2 if 0 < value < 1 else value * 2 + 0.1
    if isinstance(value, Norm):
        return Norm.L2 if value is Norm.LINF else Norm.LINF
    if isinstance(value, Bounds):
        return Bounds(value.lower, value.upper + 1.0)
    if isinstance(value, str):
        return STRING_ALTERNATIVES[value]
    if value is None:
        return {"around_mcn": MCNShell(model, 0.05, steps=2), "image_shape": (1, 8, 8)}.get(name, 0.01)
    if isinstance(value, Shell):
        return None
    if isinstance(value, nn.Module):  # a defense's trained part: the same module with other weights
        other = copy.deepcopy(value)
        with torch.no_grad():
            next(other.parameters()).add_(1.0)
        return other
    raise AssertionError(f"no other value for argument {name}={value!r}: add one to the test's table")


def _built(name: str, model) -> Shell:
    from robustness_eval.data import load_digits

    return build_shell(name, model, "linf", Bounds(), 0.1, dataset=load_digits())


@pytest.mark.parametrize("name", SHELL_NAMES)
def test_every_shell_binds_every_constructor_argument_so_a_resume_with_another_is_refused(name, digits_adversarial):
    shell = _built(name, digits_adversarial)
    assert isinstance(shell, Shell), f"{name} is not a Shell subclass: it records no arguments"
    stored = {"shell_parameters": describe_shell(shell)}
    assert shell.shell_arguments, f"{name} recorded no constructor arguments"
    for argument, value in shell.shell_arguments.items():
        changed = type(shell)(digits_adversarial, **{**shell.shell_arguments,
                                                    argument: _another(argument, value, digits_adversarial)})
        with pytest.raises(ConfigMismatchError, match=rf"shell_parameters\.{argument}\b"):
            compare_configs(stored, {"shell_parameters": describe_shell(changed)}, "run")


@pytest.mark.parametrize("name", SHELL_NAMES)
def test_every_shell_rebuilds_to_itself_and_takes_the_suites_options(name, digits_adversarial, digits_standard):
    shell = _built(name, digits_adversarial)
    again = shell.rebuild(digits_standard)
    assert again.base_model is digits_standard and describe_shell(again) == describe_shell(shell)
    at_zero = shell.rebuild(digits_adversarial, delta=0.0)
    if shell.option_parameters.get("delta", "delta") in shell.shell_arguments:
        assert at_zero.radius == 0.0 and describe_shell(at_zero)["kind"] == describe_shell(shell)["kind"]
    else:  # a shell without δ (a purifier) is rebuilt unchanged; the δ → 0 ablation does not apply to it
        assert describe_shell(at_zero) == describe_shell(shell)
        assert not ShellSource(shell, None, {}).takes("delta")


def test_a_resume_of_an_ncn_run_with_another_alpha_is_refused_naming_the_key(digits, digits_adversarial, tmp_path):
    def run(alpha: float):
        shell = NCNShell(digits_adversarial, 0.9, max_radius=0.1, method="penalty", steps=2, alpha=alpha)
        return robustness_eval.evaluate(digits_adversarial, shell, (digits.x_test[:4], digits.y_test[:4]),
                                        Threat("linf", 0.1), attacks="pgd", budgets={"pgd": 2}, n_points=None,
                                        convergence=False, crosscheck=False, sanity_checks=False, escalation=False,
                                        store_dir=tmp_path)

    run(10.0)
    with pytest.raises(ConfigMismatchError, match=r"shell_parameters\.alpha: stored 10\.0, now 20\.0"):
        run(20.0)
    assert run(10.0).n_points == 4


# one options table: a run option added in one place reaches the CLI, TOML, the API and the binding ---------

def test_an_option_from_the_table_works_through_api_cli_and_toml_and_binds_the_store(digits, digits_adversarial,
                                                                                      tmp_path, capsys):
    from robustness_eval import api
    from robustness_eval.cli import main
    from robustness_eval.options import RunOptions

    x, y = digits.x_test[:6], digits.y_test[:6]
    kwargs = dict(attacks="pgd", budgets={"pgd": 2}, n_points=None, convergence=False, crosscheck=False,
                  sanity_checks=False, escalation=False)
    on = robustness_eval.evaluate(digits_adversarial, MCNShell(digits_adversarial, 0.1, steps=2), (x, y),
                                  Threat("linf", 0.1), **kwargs)
    off = api.prepare_evaluation(digits_adversarial, MCNShell(digits_adversarial, 0.1, steps=2), (x, y),
                                 Threat("linf", 0.1), RunOptions(restart_check=False), **kwargs).run()
    assert "restart_check" in on.extras and "restart_check" not in off.extras
    assert on.config["restart_check"] is True and off.config["restart_check"] is False

    quick = ["--n-points", "4", "--attacks", "pgd", "--budget", "pgd=2", "--no-convergence", "--no-escalation",
             "--no-crosscheck", "--no-sanity", "--quiet"]
    assert main(["run", *quick, "--no-restart-check", "--out", str(tmp_path / "flag")]) == 0
    toml = tmp_path / "run.toml"
    toml.write_text("restart_check = false\n")
    assert main(["run", *quick, "--config", str(toml), "--out", str(tmp_path / "toml")]) == 0
    for name in ("flag", "toml"):
        written = json.loads((tmp_path / name / "results.json").read_text())
        assert written["config"]["restart_check"] is False and "restart_check" not in written["extras"]
    toml.write_text('restart_check = "no"\n')
    assert main(["run", *quick, "--config", str(toml), "--out", str(tmp_path / "bad")]) == 2
    assert "`restart_check` must be true or false" in capsys.readouterr().err
    assert main(["run", *quick, "--out", str(tmp_path / "flag")]) == 2  # the store holds restart_check = false
    assert "restart_check" in capsys.readouterr().err
    with pytest.raises(TypeError, match=r"unknown option.*restart_checks.*evaluate\(\) takes"):
        robustness_eval.evaluate(digits_adversarial, MCNShell(digits_adversarial, 0.1), (x, y), Threat("linf", 0.1),
                                 restart_checks=False)

"""The battery runner and the CLI: worst case per point, re-verified breaks, the results contract."""

from __future__ import annotations

import json

import pytest
import torch

from robustness_eval.cli import main
from robustness_eval.crosscheck import pgd_crosscheck
from robustness_eval.runner import Run, run_battery
from robustness_eval.types import Threat
from robustness_eval.units import Context
from robustness_eval.verify import verify
from shells import IdentityShell, MCNShell, NCNShell, VoteShell
from tests.conftest import PatientPGD


@pytest.fixture(scope="module")
def mcn_result(digits, digits_adversarial):
    shell = MCNShell(digits_adversarial, 0.1, "linf", digits.bounds)
    x, y = digits.x_test[:40], digits.y_test[:40]
    threat = Threat("linf", 0.1)
    return run_battery(Run(Context(digits_adversarial, shell, x, y, threat), seed=0), "fast"), shell, x, y, threat


def test_every_counted_break_reverifies_on_its_target(mcn_result, digits_adversarial):
    result, shell, x, y, threat = mcn_result
    for name, target in (("base", digits_adversarial), ("shell", shell)):
        adversarial = result.adversarial[name]
        broken = [p["index"] for p in result.points if p["broken_by"][name]]
        assert sorted(adversarial) == sorted(broken)
        if broken:
            idx = torch.tensor(broken)
            x_adv = torch.stack([adversarial[i] for i in broken])
            assert verify(target, x[idx], x_adv, y[idx], threat).success.all()


def test_worst_case_is_per_point_and_below_every_rung(mcn_result):
    result = mcn_result[0]
    for target in ("base", "shell"):
        ladder = result.ladder(target)
        after = [rung["robust_accuracy_after"] for rung in ladder]
        assert after == sorted(after, reverse=True)
        assert result.robust_accuracy[target] == pytest.approx(after[-1])
        assert result.robust_accuracy[target] <= result.transfer_robust_accuracy[target]
        assert result.robust_accuracy[target] <= result.clean_accuracy[target]
        unbroken = sum(1 for p in result.points
                       if p[f"{target}_correct"] and p["broken_by"][target] is None)
        assert result.robust_accuracy[target] == pytest.approx(unbroken / result.n_points)
        assert sum(r["new_breaks"] for r in ladder) == sum(
            1 for p in result.points if p["broken_by"][target])


def test_shell_aware_attacks_run_only_on_the_shell(mcn_result):
    result = mcn_result[0]
    kinds = {(a["target"], a["kind"]) for a in result.attacks}
    assert ("shell", "shell-aware") in kinds and ("base", "shell-aware") not in kinds


def test_same_seed_same_numbers(digits, digits_adversarial):
    x, y = digits.x_test[:25], digits.y_test[:25]
    threat = Threat("linf", 0.1)

    def run():
        shell = NCNShell(digits_adversarial, 0.9, "linf", digits.bounds, max_radius=0.1, rounds=3)
        result = run_battery(Run(Context(digits_adversarial, shell, x, y, threat), seed=3), "pgd,lookahead").to_json()
        for rung in result["attacks"]:
            rung.pop("seconds")
        return result

    assert run() == run()


def test_randomized_shell_is_evaluated_by_majority(digits, digits_adversarial):
    shell = VoteShell(digits_adversarial, 0.05, samples=16)
    result = run_battery(Run(Context(digits_adversarial, shell, digits.x_test[:30], digits.y_test[:30],
                                     Threat("linf", 0.1))), "pgd")
    assert [a["target"] for a in result.attacks] == ["base", "shell"]
    assert 0 <= result.robust_accuracy["shell"] <= result.clean_accuracy["shell"]


def test_our_pgd_agrees_with_foolbox_on_the_base_model(digits, digits_adversarial):
    x, y = digits.x_test[:200], digits.y_test[:200]
    check = pgd_crosscheck(Run(Context(digits_adversarial, IdentityShell(digits_adversarial), x, y,
                                       Threat("linf", 0.1))))
    assert abs(check.ours - check.foolbox) <= 0.01 + 1e-9, check


def test_cli_end_to_end_on_a_tiny_configuration(tmp_path):
    out = tmp_path / "run"
    code = main(["run", "--n-points", "12", "--attacks", "pgd,lookahead,minmax", "--budget", "pgd=20",
                 "--budget", "lookahead=10", "--budget", "minmax=5", "--out", str(out), "--quiet", "--no-crosscheck"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    for key in ("config", "n_points", "clean_accuracy", "robust_accuracy", "retained_accuracy",
                "attacks", "points"):
        assert key in results
    assert results["n_points"] == 12 and len(results["points"]) == 12
    assert results["config"]["shell"] == "mcn" and results["config"]["threat"]["eps"] == 0.1
    rung = results["attacks"][0]
    assert set(rung) >= {"name", "kind", "target", "robust_accuracy_after", "new_breaks",
                         "queries_median", "seconds"}
    report = (out / "report.md").read_text()
    assert "The paper's view beside the truth" in report
    assert f"{100 * results['robust_accuracy']['shell']:.1f} %" in report


@pytest.mark.parametrize("argv, message", [
    (["run", "--shell", "mnc"], "unknown shell 'mnc'; choose one of: mcn, ncn, vote, none"),
    (["run", "--norm", "l3"], "unknown --norm 'l3'; choose one of: linf, l2"),
    (["run", "--attacks", "pgd,nope"], "unknown attack 'nope'"),
    (["run", "--eps", "-1"], "`--eps` must be a finite number ≥ 0"),
    (["run", "--dataset", "cifar"], "unknown --data 'cifar'"),
])
def test_cli_rejects_bad_input_with_a_clear_error(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_breaks_of_the_doubled_budget_round_count_in_the_worst_case(digits, digits_standard):
    x, y = digits.x_test[:30], digits.y_test[:30]
    run = Run(Context(digits_standard, IdentityShell(digits_standard), x, y, Threat("linf", 0.1)))
    alone = run_battery(run, [PatientPGD(budget=1, restarts=1)])
    assert alone.robust_accuracy["shell"] == alone.clean_accuracy["shell"]  # budget 1 breaks nothing
    result = run_battery(Run(run.context), [PatientPGD(budget=1, restarts=1)], convergence=True)
    rungs = {r["name"]: r for r in result.ladder("shell")}
    assert list(rungs) == ["patient-pgd", "patient-pgd@x2"] and rungs["patient-pgd@x2"]["new_breaks"] > 0
    assert result.robust_accuracy["shell"] < result.clean_accuracy["shell"]
    conv = result.extras["convergence"]
    broken = sum(1 for p in result.points if p["broken_by"]["shell"] == "patient-pgd@x2")
    assert conv["new_breaks"]["shell"] == broken == rungs["patient-pgd@x2"]["new_breaks"]
    assert conv["change_pp"]["shell"] == round(-100 * broken / len(y), 2)
    assert conv["robust_accuracy"]["shell"] == result.robust_accuracy["shell"]
    # each doubled-round break re-verifies on the target
    idx = [p["index"] for p in result.points if p["broken_by"]["shell"] == "patient-pgd@x2"]
    x_adv = torch.stack([result.adversarial["shell"][i] for i in idx])
    assert verify(run.context.shell, x[idx], x_adv, y[idx], run.context.threat).success.all()


def test_the_doubled_round_doubles_budgets_and_continues_every_start_schedule():
    from attacks.path import TargetedGradientPath
    from attacks.pgd import PGD
    from robustness_eval.runner import doubled_attacks

    patient, single = doubled_attacks([PGD(budget=30, restarts=5), TargetedGradientPath(budget=7, restarts=1)])
    assert (patient.name, patient.budget, patient.restarts, patient.first_restart) == ("pgd@x2", 60, 5, 5)
    assert (single.name, single.budget, single.first_restart) == ("pgd-path-t@x2", 14, 0)  # one restart: from x

"""Escalation: masked base models are flagged, escalated, and end no higher than strong standalone attacks."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import robustness_eval
from attacks.bpda_base import BPDABase, StraightThrough
from attacks.square import Square
from robustness_eval.cli import main
from robustness_eval.escalation import indicators
from robustness_eval.records import GradientDiagnostics
from robustness_eval.types import Threat
from robustness_eval.verify import verify
from robustness_eval.views import BaseModelView, ShellOracle
from shells import IdentityShell
from tests.records_kit import results_record


class Quantized(nn.Module):
    """F behind input quantization to `levels` grey levels: zero gradient almost everywhere."""

    def __init__(self, model: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * (self.levels - 1)) / (self.levels - 1))


class Saturated(nn.Module):
    """F's logits scaled until softmax saturates in float32: cross-entropy gradients vanish."""

    def __init__(self, model: nn.Module, scale: float = 1e4) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


class Thresholded(nn.Module):
    """F behind a non-differentiable preprocessing step (binarising at 0.5), which no rounding op expresses."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x > 0.5).float())


class SoftThreshold(nn.Module):
    """The user's differentiable stand-in for `Thresholded` (a steep sigmoid)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.sigmoid((x - 0.5) * 20))


def _identity(model, norm, bounds):
    return IdentityShell(model, norm, bounds)


def _evaluate(model, digits, n, **kwargs):
    return robustness_eval.evaluate(model, _identity, digits, Threat("linf", 0.1), attacks="fast", n_points=n,
                                    crosscheck=False, **kwargs)


def test_the_straight_through_mode_passes_gradients_through_rounding():
    x = torch.tensor([0.2, 0.7], requires_grad=True)
    with StraightThrough():
        y = (torch.round(x * 3) / 3).sum() + x.sign().sum()
    (grad,) = torch.autograd.grad(y, x)
    assert torch.allclose(grad, torch.tensor([2.0, 2.0])) and y.item() == pytest.approx(1 / 3 + 2 / 3 + 2)


def test_a_quantized_model_is_flagged_escalated_and_ends_at_the_strongest_standalone_attack(digits,
                                                                                          digits_adversarial):
    model = Quantized(digits_adversarial).eval()
    n = 100
    result = _evaluate(model, digits, n, sanity_checks=False, convergence=False)
    base_rounds = [r for r in result.escalation if r["target"] == "base"]
    assert base_rounds and "zero or non-finite input gradients" in base_rounds[0]["indicators"][0]
    assert base_rounds[-1]["stopped"]  # rounds stop by rule, not by falling off the end
    # the same points, two strong standalone attacks, every success verified on F
    x, y = digits.x_test[:n], digits.y_test[:n]
    with torch.no_grad():
        right = model(x).argmax(1) == y
    square = Square(budget=5000)(ShellOracle(IdentityShell(model), int(right.sum()), 5000), x[right], y[right],
                                 Threat("linf", 0.1), seed=1)
    bpda = BPDABase(budget=100)(BaseModelView(model, Threat("linf", 0.1).bounds), x[right], y[right],
                                Threat("linf", 0.1), seed=1)
    standalone = {}
    for name, out in (("square", square), ("bpda", bpda)):
        broken = verify(model, x[right], out.x_adv, y[right], Threat("linf", 0.1)).success
        standalone[name] = float((~broken).sum()) / n
    reported = result.robust_accuracy["base"]
    assert reported <= min(standalone.values()) + 0.01, (reported, standalone, result.escalation)


@pytest.mark.parametrize("make, surrogate", [(Saturated, None), (Thresholded, SoftThreshold)],
                         ids=["saturated-logits", "thresholded-input"])
def test_other_masked_models_are_flagged_and_escalated(digits, digits_adversarial, make, surrogate):
    model = make(digits_adversarial).eval()
    result = _evaluate(model, digits, 40, sanity_checks=False, convergence=False,
                       bpda=surrogate(digits_adversarial) if surrogate else None)
    rounds = [r for r in result.escalation if r["target"] == "base"]
    assert rounds and rounds[0]["indicators"]
    assert any(a["name"].startswith("bpda-base@esc") for a in result.attacks)


def test_the_cli_escalates_a_masked_model_and_reports_the_rounds(tmp_path, capsys):
    source = tmp_path / "masked.py"
    source.write_text("import torch\nfrom torch import nn\nfrom robustness_eval.data import load_digits\n"
                      "from robustness_eval.zoo import load_model\n\n"
                      "class Quantized(nn.Module):\n    def __init__(self, model):\n        super().__init__()\n"
                      "        self.model = model\n\n    def forward(self, x):\n"
                      "        return self.model(torch.round(x * 3) / 3)\n\n"
                      "def build():\n    return Quantized(load_model(load_digits(), 'adversarial'))\n")
    out = tmp_path / "run"
    assert main(["run", "--model", f"{source}:build", "--shell", "none", "--n-points", "30", "--no-crosscheck",
                 "--no-convergence", "--no-sanity", "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["escalation"] and results["escalation"][0]["target"] == "base"
    assert "## Escalation" in (out / "report.md").read_text()


def test_nothing_escalates_when_no_indicator_fires():
    attacks = [{"target": "base", "name": "pgd", "kind": "transfer", "attacked": 10, "new_breaks": 2,
                "loss_trace": [0.1, 0.5, 0.6, 0.6]},
               {"target": "base", "name": "square", "kind": "score-based", "attacked": 8, "new_breaks": 0}]
    extras = {"convergence": {"budget_scale": 2.0, "robust_accuracy": {"base": 0.8}, "change_pp": {"base": 0.0}}}
    clean = {"base": GradientDiagnostics(points=10, zero_gradient_share=0.0, nonfinite_gradient_share=0.0,
                                         gradient_norm_median=1.0, gradient_norm_spread_90_10=2.0)}
    assert indicators(results_record(attacks, extras), clean, {"base": 1.0}, "base") == []
    attacks[1]["new_breaks"] = 1
    assert indicators(results_record(attacks, extras), clean, {"base": 1.0}, "base") == [
        "black-box or noise attacks broke 1 point(s) the white-box attacks left"]


def test_a_ladder_still_falling_steeply_at_its_end_escalates():
    """MNIST at the paper's scale: min-max, the last adaptive attack with breaks, broke 32 of 50."""
    def ladder(last_breaks: int):
        return results_record([
            {"target": "shell", "name": "pgd", "kind": "transfer", "attacked": 100, "new_breaks": 40,
             "loss_trace": [0.1, 0.5, 0.6, 0.6]},
            {"target": "shell", "name": "minmax", "kind": "shell-aware", "attacked": 50, "new_breaks": last_breaks,
             "loss_trace": [0.1, 0.5, 0.6, 0.6]},
            {"target": "shell", "name": "eot", "kind": "eot", "attacked": 50 - last_breaks, "new_breaks": 0,
             "loss_trace": [0.1, 0.5, 0.6, 0.6]}])

    clean = {"shell": GradientDiagnostics(points=10, zero_gradient_share=0.0, nonfinite_gradient_share=0.0,
                                          gradient_norm_median=1.0, gradient_norm_spread_90_10=2.0)}
    assert indicators(ladder(32), clean, None, "shell") == [
        "the ladder is still falling steeply: minmax, the last adaptive attack with breaks, broke 32 of the 50 "
        "points it attacked"]
    assert indicators(ladder(2), clean, None, "shell") == []  # 4 %: flattening out


class Lottery(nn.Module):
    """Class 1 wins only where frac(z_0 / 0.05) > 0.8, with a zero gradient everywhere else: a uniform start
    in the ε = 0.1 ball lands there with probability 0.2 and PGD cannot walk there, so each further restart
    breaks about a fifth of the points still standing."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        phase = torch.remainder(z[:, 0], 0.05) / 0.05
        return torch.stack([torch.ones_like(phase), 1000.0 * torch.relu(phase - 0.8)], dim=1)


def _lottery_run(convergence: bool):
    """PGD with 2 restarts on the lottery model, 40 points whose clean phases (0.25 … 0.61) all start right."""
    from attacks.pgd import PGD

    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(40, 4, generator=g)
    x[:, 0] = 0.3125 + 0.002 * (torch.arange(40) % 10)
    y = torch.zeros(40, dtype=torch.long)
    model = Lottery()
    return robustness_eval.evaluate(model, IdentityShell(model), (x, y), Threat("linf", 0.1),
                                    attacks=[PGD(budget=5, restarts=2)], convergence=convergence, crosscheck=False,
                                    sanity_checks=False, n_points=None)


def test_more_restarts_that_move_the_verdict_fire_the_indicator_and_escalate():
    result = _lottery_run(convergence=False)
    check = result.extras["restart_check"]["base"]
    assert check["attacks"] == ["pgd@restarts"] and check["new_breaks"] >= 4
    assert check["change_pp"] <= -10 and check["robust_accuracy_after"] < check["robust_accuracy_before"]
    rounds = [r for r in result.escalation if r["target"] == "base"]
    assert rounds and any("more restarts moved robust accuracy" in i for i in rounds[0]["indicators"])
    # and the indicator reads the check alone: no change, no indicator
    quiet = results_record([], {"restart_check": {"base": {**check, "change_pp": 0.0, "new_breaks": 0}}})
    assert not indicators(quiet, {}, None, "base")


def test_with_the_doubled_round_more_restarts_are_its_own_and_still_fire_the_indicator():
    """With convergence on, the doubled round continues the start schedules (no separate check with less); the
    restart record is read off its rungs and a move still escalates."""
    result = _lottery_run(convergence=True)
    check = result.extras["restart_check"]["base"]
    assert check["round"] == "x2" and check["attacks"] == ["pgd@x2"] and check["new_breaks"] >= 4
    assert not any(a["name"].endswith("@restarts") for a in result.attacks)
    assert result.extras["convergence"]["new_breaks"]["base"] == check["new_breaks"]
    rounds = [r for r in result.escalation if r["target"] == "base"]
    assert rounds and any("more restarts moved robust accuracy" in i for i in rounds[0]["indicators"])


def test_escalation_on_a_shell_brings_the_attacks_its_capabilities_allow(digits_adversarial, digits):
    """A differentiable randomized shell escalates with end-to-end PGD and EOT; a search shell with the
    shell-aware attacks; transfer PGD with more restarts and Square on both."""
    from robustness_eval.escalation import round_attacks
    from shells import MCNShell, capabilities
    from shells.resize_pad import ResizePadShell

    resize = ResizePadShell(digits_adversarial, bounds=digits.bounds)
    mcn = MCNShell(digits_adversarial, delta=0.1, norm="linf", bounds=digits.bounds)
    on_resize = {a.name for a in round_attacks("shell", capabilities(resize), 1, None)}
    on_mcn = {a.name for a in round_attacks("shell", capabilities(mcn), 2, None)}
    assert {"pgd@esc1", "pgd-e2e@esc1", "cw-e2e-t@esc1", "eot@esc1", "square@esc1"} <= on_resize
    assert "minmax@esc1" not in on_resize
    assert {"pgd@esc2", "eot@esc2", "minmax@esc2", "lookahead@esc2", "square@esc2"} <= on_mcn
    assert not {"pgd-e2e@esc2", "cw-e2e-t@esc2"} & on_mcn


def test_escalation_stops_before_a_round_that_would_end_past_the_time_cap():
    from robustness_eval.escalation import stop_reason

    assert stop_reason(0.0, 10, 5, 600) == "moved less than 0.5 pp"
    assert stop_reason(2.0, 10, 5, 600) == ""  # the next round (about 10 s) fits
    assert stop_reason(2.0, 601, 5, 600) == "time cap reached"
    assert stop_reason(2.0, 400, 150, 600).startswith("time cap: the next round (about 300 s")


def test_a_transfer_round_of_one_name_runs_on_the_shell_after_it_ran_on_f(digits_adversarial, digits):
    """Escalation names round n's transfer PGD `pgd@escn` on F and on the shell alike: each is crafted on F for
    its own target's points, so the shell's round is not taken for F's, already done (its chunks once shared a
    key, and the shell's round attacked no point)."""
    from attacks.noise import RandomNoise
    from attacks.pgd import PGD
    from robustness_eval.runner import Run, run_battery, run_more
    from robustness_eval.units import Context

    x, y = digits.x_test[:20], digits.y_test[:20]
    run = Run(Context(digits_adversarial, IdentityShell(digits_adversarial), x, y, Threat("linf", 0.1)))
    run_battery(run, [RandomNoise()])
    run_more([PGD(budget=5, restarts=1).renamed("pgd@esc1", target) for target in ("base", "shell")], run)
    for target in ("base", "shell"):
        noise_breaks = sum(row["success"] for row in run.store.rows("main", target, "noise"))
        alive = int(run.store.load_clean(target, len(y)).sum()) - noise_breaks
        assert alive > 0 and len(run.store.rows("main", target, "pgd@esc1")) == alive, target

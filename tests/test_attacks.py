"""Attacks break an undefended model at large ε, break nothing at ε = 0, and respect the call shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.losses import margin
from attacks.registry import ATTACKS, build_battery
from robustness_eval.ascent import ascent_step
from robustness_eval.types import Threat
from robustness_eval.verify import verify
from robustness_eval.views import BaseModelView, ShellAwareView
from shells import MCNShell, NCNShell


def _view(attack, model, shell, bounds):
    return BaseModelView(model, bounds) if attack.view == "base" else ShellAwareView(model, shell, bounds)


def _clean_correct(digits, model, n=60):
    x, y = digits.x_test[:n], digits.y_test[:n]
    keep = model(x).argmax(1) == y
    return x[keep], y[keep]


@pytest.mark.parametrize("name", ["pgd", "cw", "fb-pgd", "pgd-path", "lookahead", "minmax"])
@pytest.mark.parametrize("norm, eps", [("linf", 0.4), ("l2", 4.0)])
def test_attack_breaks_undefended_model_at_large_eps(digits, digits_standard, name, norm, eps):
    x, y = _clean_correct(digits, digits_standard)
    threat = Threat(norm, eps)
    shell = MCNShell(digits_standard, 0.02, norm, digits.bounds, steps=5)
    attack = ATTACKS[name](budget=20)
    target = shell if attack.view == "shell-aware" else digits_standard
    out = attack(_view(attack, digits_standard, shell, digits.bounds), x, y, threat)
    rate = verify(target, x, out.x_adv, y, threat).success.float().mean()
    assert rate >= 0.95, f"{name} broke only {rate:.0%} at {norm} ε={eps}"


def test_lookahead_reaches_ncn_threshold(digits, digits_standard):
    x, y = _clean_correct(digits, digits_standard, 40)
    shell = NCNShell(digits_standard, 0.9, "linf", digits.bounds, max_radius=0.1, rounds=4, steps=10)
    threat = Threat("linf", 0.3)
    out = ATTACKS["lookahead"](budget=30)(ShellAwareView(digits_standard, shell, digits.bounds), x, y, threat)
    assert verify(shell, x, out.x_adv, y, threat).success.float().mean() >= 0.95


def test_gradient_path_keeps_the_first_checkpoint_the_shell_gets_wrong(digits, digits_adversarial):
    """On-gradient plants: the shell errs from the opening full-radius step, not from where F's loss peaks."""
    from robustness_eval.active import plant

    x, y = _clean_correct(digits, digits_adversarial, 40)
    threat = Threat("linf", 0.1)
    planted = plant(digits_adversarial, x, y, threat, 0.1)
    shell = MCNShell(planted, 0.1, "linf", digits.bounds)
    view = ShellAwareView(planted, shell, digits.bounds)
    out = ATTACKS["pgd-path"](budget=10)(view, x, y, threat)
    assert verify(shell, x, out.x_adv, y, threat).success.float().mean() >= 0.9
    # where the opening step (x + ε·sign ∇margin) already fools the shell, that very point is returned
    z = x.clone().requires_grad_(True)
    opening = ascent_step(z, margin(planted(z), y), x, 0.1, threat.norm, threat.bounds, 0.1)
    first = shell(opening).argmax(1) != y
    assert first.float().mean() >= 0.5
    assert torch.equal(out.x_adv[first], opening[first])


def test_candidates_are_projected_into_ball_and_bounds(digits, digits_standard):
    x, y = _clean_correct(digits, digits_standard, 20)
    threat = Threat("l2", 0.5)
    out = ATTACKS["pgd"](budget=10)(BaseModelView(digits_standard, digits.bounds), x, y, threat)
    assert ((out.x_adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()
    assert out.x_adv.min() >= 0 and out.x_adv.max() <= 1


def test_unknown_attack_lists_valid_names():
    with pytest.raises(ValueError, match="choose presets or names from: fast, full, pgd"):
        build_battery("pgd,spsaa")


def test_full_preset_covers_every_attack_and_kind_and_applies_to_mcn():
    from robustness_eval.types import AttackKind

    battery = build_battery("full", budgets={"square": 7})
    assert [a.name for a in battery] == list(ATTACKS)
    assert {a.kind for a in battery} == set(AttackKind)
    assert next(a for a in battery if a.name == "square").budget == 7  # user budgets win over the preset
    # on the default (deterministic MCN) run every kind but white-box (end to end through a differentiable
    # shell) must have at least one applicable attack; a differentiable reformer gets that one too
    from robustness_eval.testing.factories import magnet
    from shells import MCNShell, capabilities

    offered = capabilities(MCNShell(nn.Linear(4, 3), 0.1))
    kinds = {a.kind for a in battery if a.skip_reason(offered) is None}
    assert kinds == set(AttackKind) - {AttackKind.WHITE_BOX}
    offered = capabilities(magnet(nn.Linear(4, 3)))
    assert AttackKind.WHITE_BOX in {a.kind for a in battery if a.skip_reason(offered) is None}


def test_attack_is_deterministic_for_a_seed(digits, digits_standard):
    x, y = _clean_correct(digits, digits_standard, 20)
    view = BaseModelView(digits_standard, digits.bounds)
    threat = Threat("linf", 0.05)
    a = ATTACKS["pgd"](budget=5)(view, x, y, threat, seed=7).x_adv
    b = ATTACKS["pgd"](budget=5)(view, x, y, threat, seed=7).x_adv
    assert torch.equal(a, b)


class ConstantClass(nn.Module):
    """Says class 0 for every input: a point labelled 0 has no adversarial example at all."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], self.classes, device=x.device)
        logits[:, 0] = 5.0
        return logits


@pytest.mark.parametrize("name", ["hsj", "boundary"])
def test_decision_attacks_leave_points_without_an_adversarial_start_unbroken_and_walk_the_rest(name, digits):
    """Foolbox's decision attacks raise when their noise search finds no misclassified start for a point; the
    suite's wrappers keep such a point at x (not broken) and attack the others, instead of failing the run."""
    from attacks.registry import attack_classes
    from robustness_eval.views import ShellOracle
    from shells import IdentityShell

    x, y = digits.x_test[:8], digits.y_test[:8].clone()
    y[:3] = 0
    target = IdentityShell(ConstantClass())
    attack = attack_classes()[name](budget=200)
    out = attack(ShellOracle(target, len(y), attack.budget), x, y, Threat("linf", 0.1), seed=0)
    assert torch.equal(out.x_adv[:3], x[:3]) and out.trace["no_start"] == 3
    result = verify(target, x, out.x_adv, y, Threat("linf", 0.1))
    assert not bool(result.success[:3].any()) and bool(result.success[3:].all())

"""Sanity checks catch a weakened battery and pass the default one; the active test; ground truth."""

from __future__ import annotations

import pytest
import torch

from attacks.pgd import PGD
from robustness_eval import sanity
from robustness_eval.active import CONSTRUCTIONS, active_test, plant
from robustness_eval.api import ground_truth
from robustness_eval.data import make_synthetic
from robustness_eval.records import ActivePart, ActiveTest, Caveat, GroundTruthCounts
from robustness_eval.runner import Run
from robustness_eval.types import Threat
from robustness_eval.units import Context
from robustness_eval.verify import verify
from shells import IdentityShell, MCNShell
from tests.conftest import PatientPGD
from tests.records_kit import results_record


class FeeblePGD(PGD):
    """A deliberately weakened attack: one step of a tiny size."""

    name = "feeble"

    def __init__(self, budget: int = 1) -> None:
        super().__init__(budget=1, restarts=1, rel_step=0.01)


@pytest.fixture(scope="module")
def setting(digits, digits_adversarial):
    x, y = digits.x_test[:30], digits.y_test[:30]
    shell = MCNShell(digits_adversarial, 0.1, "linf", digits.bounds)
    return digits_adversarial, shell, x, y, Threat("linf", 0.1)


def test_unbounded_check_fails_for_a_weakened_attack_and_passes_the_default(setting):
    model, shell, x, y, threat = setting
    weak = sanity.unbounded_attack(model, shell, x, y, threat, attacks=[FeeblePGD()])
    strong = sanity.unbounded_attack(model, shell, x, y, threat)
    assert weak.status == "fail" and strong.status == "pass", (weak, strong)


def test_active_test_fails_a_weakened_battery_and_passes_the_default(setting):
    model, _, x, y, threat = setting

    def make(planted):
        return MCNShell(planted, 0.1, "linf", threat.bounds)

    run = Run(Context(model, IdentityShell(model), x, y, threat))
    weak = active_test(run, make, 0.1, attacks=[FeeblePGD()])
    strong = active_test(run, make, 0.1, attacks="fast")
    assert weak.valid >= 20
    assert weak.status == "fail" and weak.share_found < 0.95
    assert strong.status == "pass" and strong.share_found >= 0.95
    # every construction is reported on its own, and the off-gradient plants are harder to find
    for result in (weak, strong):
        assert set(result.constructions) == set(CONSTRUCTIONS)
        assert result.share_found == result.constructions["on-gradient"].share_found
    assert weak.off_gradient_share_found <= strong.off_gradient_share_found


def test_orthogonal_plants_are_off_the_path_transfer_pgd_follows(setting):
    """Madry's PGD on F' finds (nearly) every on-gradient plant and clearly fewer orthogonal ones."""
    model, _, x, y, threat = setting
    madry = PGD(40, 2, mixed=False, deep=False)  # uniform starts, first success: the plain gradient path
    result = active_test(Run(Context(model, IdentityShell(model), x, y, threat)),
                         lambda planted: MCNShell(planted, 0.1, "linf", threat.bounds), 0.1,
                         attacks=[madry], plants={"on-gradient": 30, "orthogonal": 30}).constructions
    assert result["on-gradient"].share_found >= 0.9
    assert result["orthogonal"].share_found <= result["on-gradient"].share_found - 0.2


def test_plants_are_real_adversarial_examples_inside_the_ball(setting):
    model, _, x, y, threat = setting
    planted = plant(model, x, y, threat, 0.1)
    shell = MCNShell(planted, 0.1, "linf", threat.bounds)
    x_adv = (x + threat.eps * planted.directions.view_as(x)).clamp(0, 1)
    check = verify(shell, x, x_adv, y, threat)
    assert check.in_ball.all() and check.in_bounds.all()
    assert check.success.float().mean() >= 0.8
    # the plant is invisible from x itself: the planted model agrees with F on the clean points' shell
    assert torch.equal(shell(x).argmax(1), MCNShell(model, 0.1, "linf", threat.bounds)(x).argmax(1))


@pytest.mark.parametrize("construction", ["orthogonal", "other-class"])
def test_off_gradient_plants_are_real_adversarial_examples_off_fs_gradient_path(setting, construction):
    model, _, x, y, threat = setting
    on_path = plant(model, x, y, threat, 0.1)
    planted = plant(model, x, y, threat, 0.1, construction, seed=1)
    shell = MCNShell(planted, 0.1, "linf", threat.bounds)
    x_adv = (x + threat.eps * planted.directions.view_as(x)).clamp(0, 1)
    check = verify(shell, x, x_adv, y, threat)
    assert check.in_ball.all() and check.in_bounds.all() and check.success.float().mean() >= 0.8
    assert torch.equal(shell(x).argmax(1), MCNShell(model, 0.1, "linf", threat.bounds)(x).argmax(1))
    # the planted direction leaves F's gradient path: far from the on-gradient sign pattern, or another class
    agreement = (planted.directions * on_path.directions).sum(1) / on_path.directions.abs().sum(1)
    if construction == "orthogonal":
        assert agreement.abs().max() < 0.5 and torch.equal(planted.wrong, on_path.wrong)
    else:
        assert (planted.wrong != on_path.wrong).all() and (planted.wrong != y).all()


def _mostly_verified(setting, construction: str):
    """F' of `construction` and the MCN shell around it, after checking that x + εu is a verified adversarial
    example (in the ball, in the bounds, the shell fooled) for at least 80 % of the points."""
    model, _, x, y, threat = setting
    planted = plant(model, x, y, threat, 0.1, construction, seed=1)
    shell = MCNShell(planted, 0.1, "linf", threat.bounds)
    check = verify(shell, x, (x + threat.eps * planted.directions.view_as(x)).clamp(0, 1), y, threat)
    assert check.in_ball.all() and check.in_bounds.all() and check.success.float().mean() >= 0.8
    return planted, shell


def test_decoy_plants_lie_off_a_gradient_path_the_decoy_makes_confidently_right(setting):
    model, _, x, y, threat = setting
    planted, shell = _mostly_verified(setting, "decoy")
    assert torch.equal(shell(x).argmax(1), MCNShell(model, 0.1, "linf", threat.bounds)(x).argmax(1))
    # F's gradient path toward the plant's class ends, at the ball's surface, confidently right on F'
    path = planted.model.directions.view_as(x)
    assert torch.equal(planted.model.wrong, y) and torch.equal(planted.model.labels, planted.wrong)
    on_path = (x + threat.eps * path).clamp(0, 1)
    with torch.no_grad():
        assert (planted(on_path).softmax(1).gather(1, y[:, None]) > 0.9).all()
    # and the plant is off that path: where both may move either way (the bounds mask both alike elsewhere),
    # its signs agree with the path's as often as chance (pooled over ~440 coordinates: 0 ± 0.05)
    free = ((x >= 0.2) & (x <= 0.8)).flatten(1).float()
    pooled = (planted.directions.flatten(1) * path.flatten(1) * free).sum() / free.sum()
    assert pooled.abs() < 0.15


def test_lure_plants_verify_and_their_lure_rises_three_times_as_fast_along_another_direction(setting):
    model, _, x, y, _ = setting
    planted, _ = _mostly_verified(setting, "lure")
    lure, u = planted.model.directions.view_as(x), planted.directions.view_as(x)
    assert torch.equal(planted.model.wrong, planted.wrong) and planted.model.boost == 0.0

    def added_margin(outer, inner, z: torch.Tensor) -> torch.Tensor:  # what one layer adds to l_w − l_y
        with torch.no_grad():
            shift = outer(z) - inner(z)
        return shift.gather(1, planted.wrong[:, None]).squeeze(1) - shift.gather(1, y[:, None]).squeeze(1)

    step = 0.02
    per_coordinate = {name: (added_margin(outer, inner, x + step * d) - added_margin(outer, inner, x))
                      / (step * d.flatten(1).abs().sum(1))
                      for name, d, outer, inner in (("lure", lure, planted.model, model),
                                                    ("plant", u, planted, planted.model))}
    ratio = per_coordinate["lure"] / per_coordinate["plant"]
    assert torch.allclose(ratio, torch.full_like(ratio, 3.0), rtol=1e-3), ratio
    # the lure is off F's gradient path and off the plant (pooled sign agreement 0 ± 0.05 by chance)
    free = ((x >= 0.2) & (x <= 0.8)).flatten(1).float()
    for other in (u, model_gradient_sign(model, x, y, planted.wrong)):
        assert ((lure.flatten(1) * other.flatten(1) * free).sum() / free.sum()).abs() < 0.15


def model_gradient_sign(model, x, y, wrong):
    z = x.detach().requires_grad_(True)
    logits = model(z)
    (logits.gather(1, wrong[:, None]) - logits.gather(1, y[:, None])).sum().backward()
    return z.grad.sign()


def test_the_headline_says_how_much_missed_plants_can_overstate_robust_accuracy():
    from robustness_eval.report import overstatement

    def active(**shares):
        parts = {name: ActivePart(status="pass", found=round(40 * share), evaluated=40, share_found=share)
                 for name, share in shares.items()}
        test = ActiveTest(status="pass", share_found=shares["on-gradient"], constructions=parts)
        test.caveat = Caveat.of(parts, robust_accuracy=0.6, breaks=30, n=100)
        return test

    assert overstatement(active(**{"on-gradient": 1.0, "orthogonal": 0.975, "other-class": 0.99})) == ""
    sentence = overstatement(active(**{"on-gradient": 1.0, "orthogonal": 0.875, "other-class": 0.9}))
    # f = 35 / 40: about 30 × (1 − f) / f = 4.3 of 100 points missed, at most 1 − f = 12.5 pp
    assert "found only 35 of 40 (87.5 %" in sentence and "test's orthogonal planted" in sentence
    assert "overstated by about 4.3 pp" in sentence and "by at most 12.5 pp" in sentence
    assert overstatement(None) == "" and overstatement(ActiveTest(status="not run", reason="L2")) == ""
    # a results.json from before the caveat was recorded gets it from the same figures when it is read
    legacy = results_record(extras={"active_test": {"status": "fail", "share_found": 0.92, "found": 23,
                                                    "evaluated": 25}})
    assert "by at most 8.0 pp" in overstatement(legacy.extras.active_test)


def test_flat_or_falling_loss_traces_are_flagged():
    results = results_record([
        {"target": "shell", "name": "bpda", "kind": "bpda", "loss_trace": [1.0, 1.0, 1.0, 1.0]},
        {"target": "shell", "name": "minmax", "kind": "shell-aware", "loss_trace": [-3.0, -2.0, -1.0, 0.5]},
        {"target": "shell", "name": "lookahead", "kind": "shell-aware", "loss_trace": [-3.0, -1.0, -0.9, -0.9]},
    ])
    statuses = {v.name: v.status for v in sanity.loss_traces(results)}
    assert statuses == {"loss trace of bpda": "fail", "loss trace of minmax": "warn",
                        "loss trace of lookahead": "pass"}


def test_convergence_and_noise_checks_read_the_results():
    results = results_record([{"target": "shell", "kind": "baseline", "new_breaks": 5},
                              {"target": "shell", "kind": "transfer", "new_breaks": 2}],
                             {"convergence": {"budget_scale": 2.0, "robust_accuracy": {"base": 0.8, "shell": 0.7},
                                              "change_pp": {"base": 0.0, "shell": -4.5}}})
    assert sanity.convergence(results).status == "fail"
    assert sanity.noise_vs_attacks(results).status == "fail"


def test_ground_truth_separates_true_adversarials_from_label_changes():
    data = make_synthetic(seed=0)
    x, y = data.x_test[:6], data.y_test[:6]
    other = (y + 1) % data.num_classes
    donor = torch.stack([data.x_test[(data.y_test == c).nonzero()[0, 0]] for c in other])
    adversarial = {"shell": {0: x[0] + 0.001, 1: x[1].clone(), 2: donor[2], 3: donor[3]}}
    counts = ground_truth(adversarial, data.true_label, y)
    assert counts == {"shell": GroundTruthCounts(true_adversarial=2, label_changing=2)}


class ForgetfulPGD(PGD):
    """Returns the last iterate of a long, large-step walk: it forgets what it found on the way."""

    name = "forgetful"

    def _run(self, view, x, y, threat, budget, generator):
        from attacks.base import AttackOutput
        from robustness_eval.norms import ascent_direction, project

        z = x.clone()
        for _ in range(budget):
            z.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(view.logits(z), y)
            (grad,) = torch.autograd.grad(loss, z)
            z = project(z.detach() + threat.eps * ascent_direction(grad, threat.norm), x, threat.eps,
                        threat.norm, threat.bounds)
        return AttackOutput(x.clone(), torch.zeros(len(y), dtype=torch.bool), torch.zeros(len(y), dtype=torch.long))


def test_silent_success_is_caught_and_the_real_pgd_is_clean(setting):
    model, _, x, y, _ = setting
    threat = Threat("linf", 0.3)
    assert sanity.silent_success(model, x, y, threat, attack=ForgetfulPGD(budget=10)).status == "fail"
    assert sanity.silent_success(model, x, y, threat).status == "pass"


def test_a_construction_whose_points_the_shell_misclassifies_in_the_battery_is_not_run(setting, monkeypatch):
    """A randomized shell can verify a plant's point correct and misclassify it on the battery's draw: with no
    point left to attack, the construction says so instead of reporting a 0 % found share and a caveat."""
    import robustness_eval.active as active

    model, _, x, y, threat = setting

    class AllMisclassified:
        def __init__(self, points: int) -> None:
            self.points = [{"shell_correct": False, "broken_by": {"shell": None}} for _ in range(points)]

        def ladder(self, _target: str) -> list:
            return []

    monkeypatch.setattr(active, "run_battery", lambda run, attacks, **_: AllMisclassified(len(run.context.y)))
    result = active_test(Run(Context(model, IdentityShell(model), x, y, threat)),
                         lambda planted: MCNShell(planted, 0.1, "linf", threat.bounds), 0.1,
                         plants={"on-gradient": 10, "orthogonal": 10})
    for part in result.constructions.values():
        assert part.status == "not run" and part.share_found is None and part.valid > 0, part
    assert result.off_gradient_share_found is None
    assert Caveat.of(result.parts(), 0.5, 5, 30) is None


def test_the_active_test_counts_the_doubled_budget_round_and_the_restart_check(setting):
    """The active test measures the attacks whose breaks the verdict counts: an attack that finds nothing at its
    battery budget but does at twice it finds plants only when the doubled round runs."""
    model, _, x, y, threat = setting
    run = Run(Context(model, IdentityShell(model), x, y, threat))

    def make(planted):
        return MCNShell(planted, 0.1, "linf", threat.bounds)

    plants = {"on-gradient": 20}
    without = active_test(run, make, 0.1, [PatientPGD(budget=1, restarts=1)], plants, convergence=False)
    counted = active_test(run, make, 0.1, [PatientPGD(budget=1, restarts=1)], plants, convergence=True)
    assert without.found == 0 and counted.found > 0
    assert counted.found_by["patient-pgd@x2"] == counted.found
    # the restart check runs on the plants too: its rungs are named in what found them
    restarts = active_test(run, make, 0.1, [PatientPGD(budget=1, restarts=2)], plants, convergence=False)
    assert "patient-pgd@restarts" in restarts.found_by

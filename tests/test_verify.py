"""Verification rejects every kind of invalid candidate and accepts a real one."""

from __future__ import annotations

import torch

from robustness_eval.types import Bounds, Threat
from robustness_eval.verify import verify
from shells import IdentityShell


def _real_adversarial(model, x, y, threat):
    from attacks.pgd import PGD
    from robustness_eval.views import BaseModelView

    return PGD(40, 1)(BaseModelView(model, threat.bounds), x, y, threat).x_adv


def test_verification_rejects_out_of_ball_out_of_bounds_and_correct(digits, digits_standard):
    threat = Threat("linf", 0.3, Bounds())
    x, y = digits.x_test[:30], digits.y_test[:30]
    keep = digits_standard(x).argmax(1) == y
    x, y = x[keep], y[keep]
    adv = _real_adversarial(digits_standard, x, y, threat)
    ok = verify(digits_standard, x, adv, y, threat)
    assert ok.success.any(), "fixture: PGD at ε=0.3 must break some digits points"
    hit = ok.success
    # the same misclassified points, pushed just outside the ball
    outside = x + (adv - x) * (threat.eps + 1e-3) / (adv - x).abs().amax(1, keepdim=True).clamp_min(1e-9)
    pushed = outside[hit].clamp(0, 1)
    beyond = (pushed - x[hit]).abs().amax(1) > threat.eps + 1e-5
    assert beyond.any(), "fixture: some pushed candidates must stay outside the ball"
    far = verify(digits_standard, x[hit], pushed, y[hit], threat)
    assert not far.in_ball[beyond].any() and not far.success[beyond].any()
    # out of bounds by more than the tolerance
    below = adv.clone()
    below[:, 0] = -0.01
    assert not verify(digits_standard, x, below, y, Threat("linf", 1.0)).in_bounds.any()
    # correctly classified candidates: the clean points themselves
    assert not verify(digits_standard, x, x.clone(), y, threat).success.any()
    # NaN candidates never count
    assert not verify(digits_standard, x, torch.full_like(x, float("nan")), y, threat).success.any()


class Flaky(torch.nn.Module):
    """A randomized target that says class 1 with probability `q`, else class 0."""

    randomized = True

    def __init__(self, q: float) -> None:
        super().__init__()
        self.q = q
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wrong = torch.rand(x.shape[0], generator=self.generator) < self.q
        return torch.stack([(~wrong).float(), wrong.float()], dim=1)


def test_randomized_target_counts_only_by_majority():
    x = torch.rand(400, 4) * 0.5
    y = torch.zeros(400, dtype=torch.long)
    threat = Threat("linf", 0.1)
    rare = verify(Flaky(0.3), x, x, y, threat, repeats=9).misclassified.float().mean()
    often = verify(Flaky(0.7), x, x, y, threat, repeats=9).misclassified.float().mean()
    single = verify(Flaky(0.3), x, x, y, threat, repeats=1).misclassified.float().mean()
    # P(Binomial(9, 0.3) ≥ 5) ≈ 0.099 and P(Binomial(9, 0.7) ≥ 5) ≈ 0.90
    assert rare < 0.16 < single
    assert often > 0.84


def test_identity_shell_verifies_like_the_model(digits, digits_standard):
    x, y = digits.x_test[:50], digits.y_test[:50]
    wrong = digits_standard(x).argmax(1) != y
    got = verify(IdentityShell(digits_standard), x, x, y, Threat("linf", 0.1), repeats=3)
    assert torch.equal(got.misclassified, wrong)

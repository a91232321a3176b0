"""Shells against closed forms on a two-class logistic model, and their basic invariants."""

from __future__ import annotations

import math

import pytest
import torch

from robustness_eval.norms import distance
from robustness_eval.types import Bounds, Norm
from shells import IdentityShell, MCNShell, NCNShell, VoteShell, build_shell
from tests.conftest import sigmoid

WIDE = Bounds(-10.0, 10.0)  # bounds far away, so the closed forms hold exactly


def _points(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(seed)) * 0.5


@pytest.mark.parametrize("norm, dual", [("linf", 1), ("l2", 2)])
def test_mcn_matches_closed_form_on_logistic_model(logistic, norm, dual):
    model, w, b = logistic
    delta = 0.3
    x = _points()
    shell = MCNShell(model, delta, norm, WIDE, steps=20)
    s = (x @ w + b).tolist()
    expected = torch.tensor([sigmoid(abs(v) + delta * float(w.norm(p=dual))) for v in s])
    got = shell(x).amax(dim=1)
    assert torch.allclose(got, expected, atol=1e-4)
    # the winning class is the one F already favours, and z* sits on the sphere of radius δ
    assert torch.equal(shell(x).argmax(1), (x @ w + b > 0).long())
    assert torch.allclose(distance(shell.search(x) - x, Norm.parse(norm)), torch.full((16,), delta),
                          atol=1e-5)


@pytest.mark.parametrize("method", ["bisection", "penalty"])
@pytest.mark.parametrize("norm, dual", [("linf", 1), ("l2", 2)])
def test_ncn_distance_matches_closed_form(logistic, norm, dual, method):
    model, w, b = logistic
    p, radius = 0.95, 2.0
    x = _points(seed=1)
    shell = NCNShell(model, p, norm, WIDE, max_radius=radius, method=method, rounds=12, steps=30,
                     lr=0.02, alpha=10.0, growth=4.0)
    z = shell.search(x)
    s = x @ w + b
    expected = torch.clamp(math.log(p / (1 - p)) - s.abs(), min=0) / w.norm(p=dual)
    got = distance(z - x, Norm.parse(norm))
    assert not shell.last_infeasible.any()
    assert (torch.softmax(model(z), 1).amax(1) >= p).all()  # feasible exactly
    # never nearer than the true optimum; no further than the solver's resolution
    assert (got >= expected - 1e-4).all()
    slack = radius / 2**12 + 1e-3 if method == "bisection" else 0.05 * expected.max() + 1e-3
    assert (got <= expected + slack).all(), (got - expected).max()


def test_ncn_returns_x_when_already_confident(logistic):
    model, w, _ = logistic
    x = w[None] * 2.0  # s = 2·|w|² + b, far past logit(0.9)
    shell = NCNShell(model, 0.9, "l2", WIDE, max_radius=1.0)
    assert torch.equal(shell.search(x), x)


def test_ncn_reports_infeasible_points(logistic):
    model, _, _ = logistic
    x = torch.zeros(1, 5)
    shell = NCNShell(model, 0.999999, "l2", WIDE, max_radius=0.01)
    shell.search(x)
    assert shell.last_infeasible.tolist() == [True]


@pytest.mark.parametrize("kind", ["mcn", "ncn"])
def test_search_point_stays_in_ball_and_bounds(digits, digits_standard, kind):
    x = digits.x_test[:20]
    shell = build_shell(kind, digits_standard, "linf", digits.bounds, delta=0.1, p=0.99)
    z = shell.search(x)
    assert (distance(z - x, Norm.LINF) <= 0.1 + 1e-6).all()
    assert z.min() >= 0 and z.max() <= 1


@pytest.mark.parametrize("objective, restarts", [("logprob", 1), ("cw", 3)])
def test_mcn_never_lowers_max_confidence(digits, digits_standard, objective, restarts):
    x = digits.x_test[:40]
    shell = MCNShell(digits_standard, 0.05, "linf", digits.bounds, steps=5, restarts=restarts,
                     objective=objective)
    base = torch.softmax(digits_standard(x), 1).amax(1)
    assert (shell(x).amax(1) >= base - 1e-6).all()


def test_mcn_with_zero_radius_is_the_base_model(digits, digits_standard):
    x = digits.x_test[:30]
    shell = MCNShell(digits_standard, 0.0, "l2", digits.bounds)
    assert torch.allclose(shell(x), torch.softmax(digits_standard(x), 1), atol=1e-6)
    assert torch.allclose(IdentityShell(digits_standard)(x), shell(x), atol=1e-6)


def test_mcn_is_batch_independent(digits, digits_standard):
    x = digits.x_test[:12]
    shell = MCNShell(digits_standard, 0.1, "linf", digits.bounds, restarts=2)
    together = shell(x)
    alone = torch.cat([shell(x[i : i + 1]) for i in range(len(x))])
    assert torch.allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("restarts", [1, 2])
def test_batched_searches_equal_a_naive_per_point_loop(digits, digits_standard, restarts):
    # the benchmarks' naive references (one point, class and restart at a time) must agree
    # with the batched shells, NCN's early stop for points infeasible at its limit included
    from benchmarks.shell_throughput import naive_mcn, naive_ncn

    x = digits.x_test[:40]
    mcn = MCNShell(digits_standard, 0.1, "linf", steps=5, restarts=restarts)
    assert torch.allclose(mcn.search(x[:4]), naive_mcn(mcn, x[:4]), atol=1e-5)
    ncn = NCNShell(digits_standard, 0.999, "linf", max_radius=0.05, steps=5, rounds=3, restarts=restarts)
    with torch.no_grad():
        unsure = x[torch.softmax(digits_standard(x), 1).amax(1) < 0.999][:6]
    found = ncn.search(unsure)
    assert ncn.last_infeasible.any() and not ncn.last_infeasible.all()  # both branches exercised
    assert torch.allclose(found, naive_ncn(ncn, unsure), atol=1e-5)


def test_vote_shell_is_seeded_and_returns_probabilities(digits, digits_standard):
    x = digits.x_test[:10]
    a = VoteShell(digits_standard, 0.1, seed=3)(x)
    b = VoteShell(digits_standard, 0.1, seed=3)(x)
    assert torch.equal(a, b)
    assert torch.allclose(a.sum(1), torch.ones(10)) and (a >= 0).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "mnc"}, "choose one of: mcn, ncn, vote, none"),
    ({"kind": "mcn", "delta": -0.1}, "`delta` must be a finite number ≥ 0"),
    ({"kind": "ncn", "p": 1.5}, "`p` must lie strictly between 0 and 1"),
])
def test_bad_shell_arguments_name_the_argument(digits_standard, kwargs, message):
    args = {"model": digits_standard, "norm": "linf", "bounds": Bounds(), "delta": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_shell(**args)


def test_a_shells_settings_are_keywords_by_name_validated_recorded_and_rebuilt(logistic):
    """MCN's and NCN's settings live in a dataclass; users, option binding and the record still see each by name."""
    import inspect

    from shells.registry import accepted_options

    model, _, _ = logistic
    parameters = inspect.signature(MCNShell).parameters
    assert parameters["steps"].default == 20 and parameters["search_dtype"].default == "float32"
    assert accepted_options(MCNShell, {"delta": 0.1, "p": 0.9, "seed": 3}) == {"delta": 0.1, "seed": 3}
    shell = MCNShell(model, 0.1, "linf", WIDE, steps=3, objective="cw")
    assert (shell.steps, shell.restarts, shell.objective) == (3, 1, "cw")
    assert {"steps": 3, "restarts": 1, "step_size": None, "objective": "cw", "chunk_rows": 8192, "seed": 0,
            "search_dtype": "float32"}.items() <= shell.describe().items()
    rebuilt = shell.rebuild(model, delta=0.2)
    assert (rebuilt.radius, rebuilt.steps, rebuilt.objective) == (0.2, 3, "cw")
    with pytest.raises(TypeError, match="MCNShell takes no setting 'stepz'; its settings are: steps, restarts"):
        MCNShell(model, 0.1, stepz=3)
    with pytest.raises(ValueError, match="steps"):
        MCNShell(model, 0.1, steps=0)
    ncn = NCNShell(model, 0.9, "linf", WIDE, max_radius=0.3, steps=4, restarts=2)
    assert (ncn.radius, ncn.mcn.radius, ncn.mcn.steps, ncn.mcn.restarts) == (0.3, 0.3, 4, 2)
    assert ncn.rebuild(model, delta=0.4).radius == 0.4
    with pytest.raises(ValueError, match="unknown method"):
        NCNShell(model, 0.9, method="newton")

"""Stochastic defenses: DiffPure, verdicts over repeated inference, surrogate and fixed-randomness gradients, EOT in
the black-box oracle, and RayS."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import robustness_eval
from attacks.rays import RayS
from attacks.registry import build_battery
from attacks.surrogate import FixedRandomnessPGD, SurrogatePGD
from robustness_eval.generative import load_generative
from robustness_eval.repeated import repeated_inference
from robustness_eval.runner import Run, run_battery, skipped_attacks
from robustness_eval.stats import clopper_pearson
from robustness_eval.types import Bounds, Threat
from robustness_eval.units import Context
from robustness_eval.views import FixedRandomnessView, ShellOracle
from shells import DiffPureShell, MCNShell, RandomizedShell, capabilities
from tests.conftest import TwoClassLogistic

QUIET = {"convergence": False, "crosscheck": False, "sanity_checks": False, "escalation": False,
         "restart_check": False}


class FlipShell(RandomizedShell):
    """Answers F's label, except that each query flips it to the next class with probability x[:, 0] (so every
    point's flip probability is known from the point itself)."""

    kind = "flip"

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        super().__init__(model)
        self.reseed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            probs = torch.softmax(self.base_model(x), 1)
        flip = torch.rand(x.shape[0], generator=self.generator).to(x.device) < x[:, 0]
        return torch.where(flip[:, None], probs.roll(1, dims=1), probs)


@pytest.fixture
def diffpure(digits, digits_standard):
    return DiffPureShell(digits_standard, load_generative(digits, "diffusion"), t_star=10, steps=10,
                         surrogate_steps=2, bounds=digits.bounds)


def test_worst_case_over_runs_is_below_majority_and_both_match_the_known_flip_probability():
    n, runs, q = 400, 10, 0.1
    model = TwoClassLogistic(torch.tensor([0.0, 1.0]), 0.0)
    x = torch.stack([torch.full((n,), q), torch.full((n,), 2.0)], dim=1)  # F says class 1, confidently
    y = torch.ones(n, dtype=torch.long)
    record = repeated_inference(Context(model, FlipShell(model), x, y, Threat("linf", 0.1, Bounds(0, 2))), {},
                                runs, seed=0)["shell"]
    predicted = {"worst_case": (1 - q) ** runs,
                 "majority": sum(math.comb(runs, k) * (1 - q) ** k * q ** (runs - k)
                                 for k in range(runs // 2 + 1, runs + 1))}
    for figures in (record.clean, record.robust):
        assert figures.worst_case < figures.majority
        for name, value in predicted.items():
            low, high = clopper_pearson(round(getattr(figures, name) * n), n)
            assert low <= value <= high, (name, getattr(figures, name), value)
        assert figures.mean == pytest.approx(1 - q, abs=0.02)
    assert record.runs == runs and record.leads == "worst_case" and len(record.right_clean) == n


def test_a_deterministic_target_or_a_single_run_gets_no_repeated_inference_record(digits, digits_standard):
    x, y = digits.x_test[:6], digits.y_test[:6]
    context = Context(digits_standard, MCNShell(digits_standard, 0.1, steps=2), x, y, Threat("linf", 0.1))
    assert repeated_inference(context, {}, 10, seed=0) == {}
    flip = Context(digits_standard, FlipShell(digits_standard), x, y, Threat("linf", 0.1))
    assert repeated_inference(flip, {}, 1, seed=0) == {}


class ConstantShell(nn.Module):
    """Says class 0 for every input: nothing can break it on points labelled 0."""

    randomized = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.9, 0.1]).to(x).expand(x.shape[0], 2).clone()


def test_a_surrogate_candidate_that_does_not_break_the_real_shell_is_never_counted():
    model = TwoClassLogistic(torch.tensor([1.0, 1.0]), -0.2).eval()  # class 0 near the origin, class 1 a step away
    x, y = torch.zeros(8, 2), torch.zeros(8, dtype=torch.long)
    surrogate = nn.Sequential(model, nn.Softmax(dim=1))  # the surrogate: F itself, easy to push to class 1
    result = robustness_eval.evaluate(model, ConstantShell(), (x, y), Threat("linf", 0.5), attacks="pgd-surrogate",
                                      shell_surrogate=surrogate, n_points=None, **QUIET)
    rung = next(r for r in result.attacks if r["target"] == "shell")
    assert rung["attacked"] == 8 and rung["new_breaks"] == 0 and result.robust_accuracy["shell"] == 1.0
    view = torch.log(surrogate(torch.full((1, 2), 0.5)))  # what the surrogate says at the attack's reach
    assert int(view.argmax()) == 1  # the surrogate alone would have called every point broken


def test_diffpure_surrogate_finds_breaks_that_verify_on_the_real_shell(digits, digits_standard, diffpure):
    x, y = digits.x_test[:24], digits.y_test[:24]
    result = robustness_eval.evaluate(digits_standard, diffpure, (x, y), Threat("linf", 0.1), attacks="pgd-surrogate",
                                      budgets={"pgd-surrogate": 20}, n_points=None, **QUIET)
    broken = [p["index"] for p in result.points if p["broken_by"]["shell"] == "pgd-surrogate"]
    assert broken
    for point in broken:
        assert (result.adversarial["shell"][point] - x[point]).abs().max() <= 0.1 + 1e-5
    # the ten fresh inference runs after the battery: every break is misclassified in some run, and the breaks
    # are misclassified in most runs on the whole (a majority of 5 can pass a point the shell gets right 6 of 10)
    runs = result.extras["repeated_inference"]["shell"]
    wrong = [runs["runs"] - runs["right_robust"][point] for point in broken]
    assert min(wrong) >= 1 and sum(wrong) > runs["runs"] * len(broken) / 2, wrong


def test_mcn_offers_its_unrolled_search_as_a_surrogate_and_breaks_through_it_verify(digits, digits_standard):
    shell = MCNShell(digits_standard, 0.05, steps=5)
    assert "surrogate" in capabilities(shell)
    x, y = digits.x_test[:16], digits.y_test[:16]
    grad_x = x.clone().requires_grad_(True)
    probs = shell.surrogate(unroll=3)(grad_x)
    (grad,) = torch.autograd.grad(probs[:, 0].sum(), grad_x)
    assert torch.isfinite(grad).all() and bool((grad != 0).any())
    result = robustness_eval.evaluate(digits_standard, shell, (x, y), Threat("linf", 0.1), attacks="pgd-surrogate",
                                      budgets={"pgd-surrogate": 10}, n_points=None, **QUIET)
    assert result.robust_accuracy["shell"] < result.clean_accuracy["shell"]


def test_diffpure_is_reseedable_differentiable_and_its_draws_are_fixed_by_a_seed(digits, diffpure):
    x = digits.x_test[:5]
    assert {"differentiable", "reseed", "surrogate", "sampling"} <= capabilities(diffpure)
    diffpure.reseed(3)
    first = diffpure(x)
    diffpure.reseed(3)
    assert torch.equal(first, diffpure(x)) and not torch.equal(first, diffpure(x))
    grad_x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log(diffpure(grad_x)[:, 0]).sum(), grad_x)
    assert torch.isfinite(grad).all() and bool((grad != 0).any())
    assert diffpure.surrogate().steps == 2 and diffpure.describe()["t_star"] == 10
    with pytest.raises(ValueError, match="`steps` must be at most `t_star`"):
        DiffPureShell(diffpure.base_model, diffpure.denoiser, t_star=4, steps=5)


def test_checkpointed_reverse_steps_give_the_gradient_of_the_plain_graph(digits, diffpure):
    x = digits.x_test[:4].clone().requires_grad_(True)
    diffpure.reseed(0)
    (checkpointed,) = torch.autograd.grad(diffpure(x)[:, 1].sum(), x)
    diffpure.reseed(0)
    z = 2 * x - 1
    a = diffpure.denoiser.alpha_bar[10]
    z = a.sqrt() * z + (1 - a).sqrt() * diffpure._draw(z)
    from shells.diffpure import reverse_schedule

    for now, then in reverse_schedule(10, 10):
        z = diffpure._reverse_step(z, diffpure._draw(z) if then > 0 else torch.zeros_like(z), now, then)
    plain = torch.softmax(diffpure.base_model((z.clamp(-1, 1) + 1) / 2), 1)[:, 1].sum()
    (expected,) = torch.autograd.grad(plain, x)
    assert torch.allclose(checkpointed, expected, atol=1e-6)


def test_the_fixed_randomness_view_sees_one_deterministic_function(digits, diffpure):
    view = FixedRandomnessView(diffpure, digits.bounds, seed=11)
    x = digits.x_test[:6]
    assert torch.equal(view.logits(x), view.logits(x))
    assert FixedRandomnessPGD().skip_reason(capabilities(diffpure)) is None
    assert "reseed" in FixedRandomnessPGD().skip_reason(capabilities(MCNShell(diffpure.base_model, 0.1)))


def test_the_oracle_averages_draws_on_a_randomized_shell_and_counts_every_one(digits_standard, digits):
    x = digits.x_test[:3]
    flip = FlipShell(digits_standard)
    oracle = ShellOracle(flip, 3, budget=20, draws=4)
    assert oracle.remaining().tolist() == [5, 5, 5]
    oracle(torch.cat([x, x[:1]]), torch.tensor([0, 1, 2, 0]))
    assert oracle.queries.tolist() == [8, 4, 4] and oracle.remaining().tolist() == [3, 4, 4]
    assert ShellOracle(MCNShell(digits_standard, 0.1), 3, budget=20, draws=4).draws == 1  # deterministic: asked once


def test_fast_runs_the_stochastic_attacks_on_diffpure_and_leaves_the_surrogate_to_full_on_mcn(diffpure):
    mcn = MCNShell(diffpure.base_model, 0.1)
    offered = {"mcn": capabilities(mcn), "diffpure": capabilities(diffpure)}
    skipped = {(s["target"], s["attack"]) for s in skipped_attacks(build_battery("fast"), offered)}
    assert ("mcn", "pgd-surrogate") in skipped and ("mcn", "pgd-fixed") in skipped
    assert not {("diffpure", name) for name in ("pgd-e2e", "cw-e2e-t", "pgd-fixed", "eot", "pgd-surrogate")} & skipped
    assert ("mcn", "pgd-surrogate") not in {(s["target"], s["attack"])
                                             for s in skipped_attacks(build_battery("full"), offered)}
    assert [a.draws for a in build_battery("pgd-surrogate,square,pgd-e2e", draws=3)] == [3, 3, 3]


def test_rays_finds_the_known_smallest_linf_flip_of_a_linear_model():
    w = torch.linspace(-1.0, 1.5, 24) + 0.05
    model = nn.Sequential(TwoClassLogistic(w, 0.3), nn.Softmax(dim=1))
    x = torch.rand(10, 24, generator=torch.Generator().manual_seed(0))
    score = x @ w + 0.3
    y = (score > 0).long()
    smallest = score.abs() / w.abs().sum()  # the L∞ distance to the hyperplane, reached at the corner −sign(w)
    box = Bounds(-50, 50)  # wide enough that no ray is clipped
    # below every point's smallest flip nothing can be found, and the search, never stopped early, converges on it
    below = Threat("linf", float(smallest.min()) * 0.9, box)
    short = RayS(budget=3000)(ShellOracle(model, 10, budget=3000), x, y, below)
    assert not bool((model(short.x_adv).argmax(1) != y).any())
    assert torch.allclose(torch.tensor(short.trace["radius"]), smallest, rtol=0.01), (short.trace["radius"], smallest)
    # above it every point flips inside the ball
    oracle = ShellOracle(model, 10, budget=3000)
    out = RayS(budget=3000)(oracle, x, y, Threat("linf", float(smallest.max()) * 1.02, box))
    assert bool((model(out.x_adv).argmax(1) != y).all()) and int(oracle.queries.max()) <= 3000
    assert bool(((out.x_adv - x).abs().amax(1) <= float(smallest.max()) * 1.02 + 1e-6).all())


def test_rays_runs_through_the_battery_in_full_and_escalation(digits, digits_standard):
    from robustness_eval.escalation import round_attacks

    assert "rays" in {a.name for a in build_battery("full")}
    names = {a.name for a in round_attacks("shell", capabilities(MCNShell(digits_standard, 0.1)), 1, None)}
    assert "rays@esc1" in names
    x, y = digits.x_test[:10], digits.y_test[:10]
    run = Run(Context(digits_standard, MCNShell(digits_standard, 0.1, steps=2), x, y, Threat("linf", 0.2)))
    result = run_battery(run, [RayS(budget=200)])
    assert result.robust_accuracy["base"] < result.clean_accuracy["base"]


def test_surrogate_pgd_and_fixed_pgd_build_from_the_registry_with_their_own_names():
    assert isinstance(build_battery("pgd-surrogate")[0], SurrogatePGD)
    assert isinstance(build_battery("pgd-fixed")[0], FixedRandomnessPGD)


def test_cli_takes_a_shell_surrogate_factory_and_the_report_and_compare_show_repeated_inference(tmp_path):
    from robustness_eval import compare
    from robustness_eval.cli import main

    factory = tmp_path / "stand_in.py"
    factory.write_text("from torch import nn\n\n\ndef build(model):\n"
                       "    return nn.Sequential(model, nn.Softmax(dim=1))\n")
    quick = ["--n-points", "12", "--budget", "pgd=5", "--budget", "pgd-surrogate=5", "--budget", "square=20",
             "--no-crosscheck", "--no-convergence", "--no-restart-check", "--no-sanity", "--no-escalation", "--quiet"]
    vote, mcn = tmp_path / "vote", tmp_path / "mcn"
    assert main(["run", *quick, "--shell", "vote", "--attacks", "pgd,pgd-surrogate,square", "--inference-runs", "4",
                 "--shell-surrogate", f"{factory}:build", "--out", str(vote)]) == 0
    assert main(["run", *quick, "--shell", "mcn", "--attacks", "pgd,square", "--out", str(mcn)]) == 0
    results = json.loads((vote / "results.json").read_text())
    assert results["config"]["shell_surrogate"]["module"] == "torch.nn.modules.container.Sequential"
    assert any(r["name"] == "pgd-surrogate" and r["target"] == "shell" for r in results["attacks"])
    record = results["extras"]["repeated_inference"]["shell"]
    assert record["runs"] == 4 and set(record["robust"]) >= {"worst_case", "majority", "mean"}
    assert "repeated_inference" not in json.loads((mcn / "results.json").read_text())["extras"]
    report = (vote / "report.md").read_text()
    assert f"robust accuracy over 4 inference runs: worst case, majority, mean | deterministic | worst case " \
           f"{100 * record['robust']['worst_case']:.1f} %" in report
    assert "the worst case over those runs leads" in report
    markdown = compare([vote, mcn], tmp_path / "cmp").read_text()
    assert "Randomized shells over repeated inference" in markdown and "| vote | 4 |" in markdown


def test_a_verdict_resting_on_transfer_and_black_box_attacks_alone_says_so(digits, digits_standard):
    from robustness_eval.report import headline

    x, y = digits.x_test[:8], digits.y_test[:8]
    forward_only = robustness_eval.evaluate(digits_standard, FlipShell(digits_standard), (x, y), Threat("linf", 0.1),
                                            attacks="pgd,eot,square", budgets={"pgd": 5, "square": 8},
                                            n_points=None, inference_runs=2, **QUIET)
    assert "rests on transfer and black-box attacks alone" in headline(forward_only.record())
    searched = robustness_eval.evaluate(digits_standard, MCNShell(digits_standard, 0.1, steps=2), (x, y),
                                        Threat("linf", 0.1), attacks="pgd,bpda", budgets={"pgd": 5, "bpda": 3},
                                        n_points=None, **QUIET)
    assert "black-box attacks alone" not in headline(searched.record())

"""Devices: nothing the suite creates lands off its inputs' device; one `device` for the whole job.

There is no GPU in CI, so the guard runs the whole job with `torch.device("meta")` as the default
device: any tensor created without an explicit device lands on `meta`, and the first time it
meets the CPU inputs torch raises. On the code before the device work (commit 'Default example
regenerated ...') this test failed at once inside MCN's search: its restart pattern was created
with `torch.zeros(1, *shape)` and no device ("Cannot copy out of meta tensor; no data!"), the same
class of bug as the CUDA crash reported in the runner.
"""

from __future__ import annotations

import pytest
import torch

import robustness_eval
from robustness_eval.types import Threat
from shells import MCNShell, NCNShell, VoteShell, capabilities

FAST_SMALL = {"pgd": 5, "cw": 5, "noise": 5, "lookahead": 5, "minmax": 4, "bpda": 3, "eot": 2, "square": 20}


@pytest.mark.parametrize("make_shell", [
    lambda m: MCNShell(m, 0.1, steps=3, restarts=2),
    lambda m: NCNShell(m, 0.9, max_radius=0.1, steps=3, rounds=2),
    lambda m: VoteShell(m, 0.05, samples=4),
], ids=["mcn", "ncn", "vote"])
def test_the_whole_job_creates_nothing_on_the_default_device(digits, digits_adversarial, make_shell):
    shell = make_shell(digits_adversarial)
    with torch.device("meta"):
        result = robustness_eval.evaluate(
            digits_adversarial, shell, digits, Threat("linf", 0.1), attacks="fast", budgets=FAST_SMALL,
            n_points=12, convergence=True, crosscheck=True, sanity_checks=True)
    assert result.n_points == 12 and result.extras["sanity"] and result.extras["active_test"]["planted"] == 12


def test_every_registered_attack_creates_nothing_on_the_default_device(digits, digits_adversarial):
    from attacks.registry import ATTACKS

    budgets = {name: 2 for name in ATTACKS} | {"hsj": 30, "boundary": 30, "square": 6, "spsa": 8}
    shell = MCNShell(digits_adversarial, 0.1, steps=2)
    with torch.device("meta"):
        result = robustness_eval.evaluate(
            digits_adversarial, shell, digits, Threat("linf", 0.3), attacks="full", budgets=budgets, n_points=4,
            convergence=False, crosscheck=False, sanity_checks=False)
    applies = {name for name, cls in ATTACKS.items() if cls().skip_reason(capabilities(shell)) is None}
    assert {a["name"] for a in result.attacks if "@" not in a["name"]} == applies
    assert any(a["name"].endswith("@restarts") for a in result.attacks)  # the restart check ran on `meta` too
    from robustness_eval.testing.factories import diffpure

    rest = set(ATTACKS) - applies
    purifier = diffpure(digits_adversarial)  # differentiable, randomized, reseedable, with a surrogate
    assert not {name for name in rest if ATTACKS[name]().skip_reason(capabilities(purifier))}
    with torch.device("meta"):  # the end-to-end and fixed-randomness attacks, on a differentiable random shell
        result = robustness_eval.evaluate(
            digits_adversarial, purifier, digits, Threat("linf", 0.3), attacks=",".join(sorted(rest)),
            budgets=budgets, n_points=4, convergence=False, crosscheck=False, sanity_checks=False)
    assert {a["name"] for a in result.attacks if "@" not in a["name"]} == rest


@pytest.mark.parametrize("device, message", [
    ("tpu", "unknown device 'tpu'"), ("cuda:99", "CUDA"), (3, "unknown device 3"),
])
def test_a_device_that_cannot_be_used_is_refused(digits, digits_adversarial, device, message):
    if device == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("this machine has 100 GPUs")
    with pytest.raises(ValueError, match=message):
        robustness_eval.evaluate(digits_adversarial, MCNShell(digits_adversarial, 0.1), digits, Threat("linf", 0.1),
                                 device=device)


def test_the_device_and_chunk_are_recorded_and_a_resume_keeps_the_stored_chunk(digits, digits_adversarial, tmp_path):
    def run(**kwargs):
        return robustness_eval.evaluate(digits_adversarial, MCNShell(digits_adversarial, 0.1, steps=2), digits,
                                        Threat("linf", 0.1), attacks="pgd", n_points=30, store_dir=tmp_path,
                                        convergence=False, crosscheck=False, sanity_checks=False, escalation=False,
                                        **kwargs)

    first = run(device="cpu", chunk=7)
    assert first.config["device"] == "cpu" and first.config["chunk"] == 7
    again = run(device="auto")  # chunk not given: the stored one, not the device's default
    assert again.config["chunk"] == 7 and again.robust_accuracy == first.robust_accuracy
    assert robustness_eval.api.default_chunk(torch.device("cpu")) == 50
    assert robustness_eval.api.default_chunk(torch.device("cuda")) == 500


def test_a_bfloat16_search_is_part_of_the_shells_definition_and_stays_in_the_ball(digits, digits_adversarial):
    from robustness_eval.norms import distance
    from robustness_eval.results import describe_shell

    x = digits.x_test[:60]
    full, low = MCNShell(digits_adversarial, 0.1), MCNShell(digits_adversarial, 0.1, search_dtype="bfloat16")
    z = low.search(x)
    assert bool((distance(z - x, low.norm) <= 0.1 + 1e-6).all()) and bool(((z >= 0) & (z <= 1)).all())
    assert z.dtype == x.dtype and low(x).dtype == torch.float32
    assert describe_shell(low)["search_dtype"] == "bfloat16" and describe_shell(full)["search_dtype"] == "float32"
    assert low.rebuild(digits_adversarial, delta=0.0).search_dtype == "bfloat16"
    with pytest.raises(ValueError, match="unknown search_dtype 'float16'"):
        MCNShell(digits_adversarial, 0.1, search_dtype="float16")
    # through a factory the option reaches the shell, and the store binds it
    result = robustness_eval.evaluate(digits_adversarial, lambda model, delta, search_dtype: MCNShell(
        model, delta, search_dtype=search_dtype), digits, Threat("linf", 0.1), attacks="pgd", n_points=5,
        shell_options={"search_dtype": "bfloat16"}, convergence=False, crosscheck=False, sanity_checks=False,
        escalation=False)
    assert result.config["shell_parameters"]["search_dtype"] == "bfloat16"

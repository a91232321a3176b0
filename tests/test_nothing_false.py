"""Nothing false gets through: outputs that are not what they claim, in-place edits, undeclared randomness.

Faults 1 and 2 of the "nothing false gets through" issue have a test here that failed on the code
before the probe (each run was accepted and reported numbers the shell's behaviour had changed);
the fuzz tests cover model and shell outputs as the hardening tests cover arguments.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import robustness_eval
from robustness_eval import api
from robustness_eval.types import Threat
from shells import MCNShell

RUN = dict(attacks="pgd", budgets={"pgd": 2}, n_points=None, convergence=False, crosscheck=False,
           sanity_checks=False, escalation=False)


def _evaluate(model, shell, x, y, **kwargs):
    return robustness_eval.evaluate(model, shell, (x, y), Threat("linf", 0.1), **{**RUN, **kwargs})


class Softmax(nn.Module):
    """G = softmax(F(x)): a plain shell for the tests to alter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), 1)


class ClampsInPlace(Softmax):
    """Fault 1: `x.data.clamp_` inside forward, for batches larger than `above` rows."""

    def __init__(self, model: nn.Module, above: int = 0) -> None:
        super().__init__(model)
        self.above = above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.above:
            x.data.clamp_(0.2, 0.8)
        return super().forward(x)


# fault 1: a shell that edits its input in place ----------------------------------------------------

def test_a_shell_editing_its_input_in_place_is_refused_and_the_callers_tensor_kept(digits, digits_adversarial):
    x, y = digits.x_test[:5].clone(), digits.y_test[:5]
    kept = x.clone()
    with pytest.raises(ValueError, match="`shell` modified its input tensor in place"):
        _evaluate(digits_adversarial, ClampsInPlace(digits_adversarial), x, y)
    assert torch.equal(x, kept)


def test_an_in_place_edit_the_probe_misses_cannot_change_the_base_models_results(digits, digits_adversarial):
    """Batches above the probe's sizes edit in place; every call the suite makes passes a copy, so F's
    results are those of a run beside a well-behaved shell, and the caller's tensor is untouched."""
    x, y = digits.x_test[:40].clone(), digits.y_test[:40]
    kept = x.clone()
    sneaky = _evaluate(digits_adversarial, ClampsInPlace(digits_adversarial, above=16), x, y)
    plain = _evaluate(digits_adversarial, Softmax(digits_adversarial), x, y)
    assert torch.equal(x, kept)
    assert sneaky.clean_accuracy["base"] == plain.clean_accuracy["base"]
    assert sneaky.robust_accuracy["base"] == plain.robust_accuracy["base"]
    assert [p["broken_by"]["base"] for p in sneaky.points] == [p["broken_by"]["base"] for p in plain.points]


def test_a_model_editing_its_input_in_place_is_refused(digits):
    class EditsInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            x.mul_(1.0 - 1e-3)
            return self.linear(x.flatten(1))

    model = EditsInput()
    with pytest.raises(ValueError, match="`model` modified its input tensor in place"):
        _evaluate(model, MCNShell(model, 0.1, steps=2), digits.x_test[:4], digits.y_test[:4])


# fault 2: randomness nobody declared ---------------------------------------------------------------

class NoisySearch(Softmax):
    """Fault 2: search(x) = clamp(x + 0.3·randn), with no `randomized` attribute."""

    def search(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 0.3 * torch.randn_like(x)).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.search(x))


def test_an_undeclared_random_shell_is_found_and_verified_as_randomized(digits, digits_adversarial):
    x, y = digits.x_test[:12], digits.y_test[:12]
    with pytest.warns(UserWarning, match="does not declare `randomized = True`; it is treated as randomized"):
        first = _evaluate(digits_adversarial, NoisySearch(digits_adversarial), x, y)
    assert first.config["shell_parameters"]["randomized"] is True
    assert any("does not declare" in finding for finding in first.extras["probe"])
    with pytest.warns(UserWarning, match="treated as randomized"):
        again = _evaluate(digits_adversarial, NoisySearch(digits_adversarial), x, y)
    assert again.robust_accuracy == first.robust_accuracy  # seeded through torch's generator per unit


class FlakyOffData(Softmax):
    """Deterministic on the clean points (so the probe sees nothing), a coin flip between F's answer and a
    wrong class on every other input: its breaks do not reproduce."""

    def __init__(self, model: nn.Module, clean: torch.Tensor) -> None:
        super().__init__(model)
        self.clean = clean.flatten(1)
        self.coins = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = super().forward(x)
        on_data = (torch.cdist(x.flatten(1), self.clean) < 1e-9).any(1)
        flip = (torch.rand(len(x), generator=self.coins) < 0.5) & ~on_data
        wrong = nn.functional.one_hot((probs.argmax(1) + 1) % probs.shape[1], probs.shape[1]).to(probs.dtype)
        return torch.where(flip[:, None], wrong, probs)


def test_a_break_that_does_not_reproduce_is_not_counted_and_is_reported(digits, digits_adversarial, tmp_path):
    x, y = digits.x_test[:30], digits.y_test[:30]
    with pytest.warns(UserWarning, match="answered differently to the same input"):
        result = _evaluate(digits_adversarial, FlakyOffData(digits_adversarial, x), x, y)
    assert result.extras["unsteady"]["shell"] and "base" not in result.extras["unsteady"]
    report = (result.to_report(tmp_path) and (tmp_path / "report.md").read_text())
    assert "answered differently to the same input" in report


def test_a_deterministic_shell_gets_no_probe_finding_and_the_same_results_json_keys(digits, digits_adversarial):
    x, y = digits.x_test[:8], digits.y_test[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = _evaluate(digits_adversarial, MCNShell(digits_adversarial, 0.1, steps=2), x, y)
    assert "probe" not in result.extras and "unsteady" not in result.extras


# the probe: model and shell outputs, fuzzed ---------------------------------------------------------

def _bad_output(kind: str, probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return {"nan": probs * float("nan"), "inf": probs + float("inf"), "logits": logits, "negative": -probs,
            "unnormalised": torch.exp(logits), "drops a row": probs[:-1] if len(probs) > 1 else probs[:0],
            "extra class": torch.cat([probs, probs[:, :1]], 1) / 2}[kind]


class BadOutput(Softmax):
    """A shell whose output is wrong in one way, for batches larger than `above` rows."""

    def __init__(self, model: nn.Module, kind: str, above: int) -> None:
        super().__init__(model)
        self.kind, self.above = kind, above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = super().forward(x)
        return _bad_output(self.kind, probs, self.model(x)) if len(x) > self.above else probs


SHELL_FAULTS = ["nan", "inf", "logits", "negative", "unnormalised", "drops a row", "extra class", "bare model"]


def _store() -> Path:
    return Path(os.environ["ROBUSTNESS_EVAL_CACHE"]).parent / f"probe-fuzz-{os.getpid()}"


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(SHELL_FAULTS), above=st.sampled_from([0, 1, 2, 3, 15]),
       as_factory=st.booleans())
def test_fuzzed_shell_outputs_are_refused_naming_the_shell_before_anything_is_written(digits, digits_adversarial,
                                                                                      kind, above, as_factory):
    model, store = digits_adversarial, _store()
    build = (lambda m: m) if kind == "bare model" else (lambda m: BadOutput(m, kind, above))
    shell = build if as_factory else build(model)
    with pytest.raises((ValueError, TypeError), match="`shell`"):
        api.prepare_evaluation(model, shell, (digits.x_test[:20], digits.y_test[:20]), Threat("linf", 0.1),
                               n_points=None, store_dir=store)
    assert not store.exists()


class BadModel(nn.Module):
    """A model whose logits are wrong in one way, for batches larger than `above` rows."""

    def __init__(self, kind: str, above: int) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.kind, self.above = kind, above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1))
        if len(x) <= self.above:
            return logits
        return {"nan": logits * float("nan"), "inf": logits + float("inf"), "integer": logits.long(),
                "drops a row": logits[:-1], "one class": logits[:, :1],
                "flat": logits.flatten()}[self.kind]


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["nan", "inf", "integer", "drops a row", "one class", "flat"]),
       above=st.sampled_from([0, 1, 2, 3, 15]))
def test_fuzzed_model_outputs_are_refused_naming_the_model(digits, kind, above):
    torch.manual_seed(0)
    model, store = BadModel(kind, above).eval(), _store()
    with pytest.raises((ValueError, TypeError), match="`model`"):
        api.prepare_evaluation(model, lambda m: Softmax(m), (digits.x_test[:20], digits.y_test[:20]),
                               Threat("linf", 0.1), n_points=None, store_dir=store)
    assert not store.exists()


def test_a_model_returning_probabilities_and_a_random_base_model_are_flagged(digits):
    torch.manual_seed(0)
    probabilities = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Softmax(1)).eval()
    with pytest.warns(UserWarning, match="seems to return probabilities.*return the scores before the softmax"):
        api.prepare_evaluation(probabilities, lambda m: Softmax(m), (digits.x_test[:8], digits.y_test[:8]),
                               Threat("linf", 0.1), n_points=None)

    class DropoutAlwaysOn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            return nn.functional.dropout(self.linear(x.flatten(1)), 0.5, training=True)

    with pytest.warns(UserWarning, match="answers differently to the same input in eval mode"):
        evaluation = api.prepare_evaluation(DropoutAlwaysOn().eval(), lambda m: Softmax(m),
                                            (digits.x_test[:8], digits.y_test[:8]), Threat("linf", 0.1),
                                            n_points=None)
    assert any("eval mode" in finding for finding in evaluation.findings)


@pytest.mark.parametrize("change, message", [
    (lambda x, model: (x.double(), model), r"`x` holds torch.float64 but `model` computes in \['torch.float32'\]"),
    (lambda x, model: (x.half(), model.half()), r"`model` computes in \['torch.float16'\].*pass model.float\(\)"),
    (lambda x, model: (x[:, :10], model), r"`model` fails on a batch of 1 point\(s\) of shape \(10,\)"),
])
def test_inputs_the_model_cannot_take_are_errors_naming_the_argument(digits, change, message):
    torch.manual_seed(0)
    x, model = change(digits.x_test[:6], nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval())
    with pytest.raises(ValueError, match=message):
        api.prepare_evaluation(model, lambda m: Softmax(m), (x, digits.y_test[:6]), Threat("linf", 0.1),
                               n_points=None)


def test_a_bpda_stand_in_of_the_wrong_shape_is_refused_before_work(digits, digits_adversarial):
    with pytest.raises(ValueError, match=r"`bpda` must return logits of the base model's shape \(1, 10\)"):
        api.prepare_evaluation(digits_adversarial, MCNShell(digits_adversarial, 0.1, steps=2),
                               (digits.x_test[:6], digits.y_test[:6]), Threat("linf", 0.1), n_points=None,
                               bpda=nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))


# the weak cases: one line naming the argument, before anything is written ----------------------------

USER_CODE = '''
import numpy as np
import torch
from torch import nn


def logits_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def points_float64():
    rng = np.random.default_rng(0)
    return rng.random((6, 64)), np.arange(6) % 10
'''

QUICK = ["--n-points", "4", "--attacks", "pgd", "--budget", "pgd=2", "--no-convergence", "--no-escalation",
         "--no-crosscheck", "--no-sanity", "--quiet"]


def _files(directory: Path) -> dict[str, list[str]]:
    """The bad inputs the weak cases name, written as a user would have them."""
    import numpy as np

    (directory / "user_code.py").write_text(USER_CODE)
    np.savez(directory / "array_bounds.npz", x=np.zeros((4, 64), np.float32), y=np.arange(4),
             lower=np.zeros(64), upper=np.ones(64))
    np.savez(directory / "objects.npz", x=np.array([[1.0, 2.0], [3.0]], dtype=object), y=np.arange(2))
    (directory / "empty.npz").write_bytes(b"")
    (directory / "truncated.npz").write_bytes((directory / "array_bounds.npz").read_bytes()[:200])
    torch.save({"weight": torch.zeros(3)}, directory / "weights.pt")
    code = str(directory / "user_code.py")
    return {
        "bounds per feature": (["--data", str(directory / "array_bounds.npz"), "--model", f"{code}:logits_model"],
                               "lower must be one number"),
        "object arrays": (["--data", str(directory / "objects.npz"), "--model", f"{code}:logits_model"],
                          "cannot be read without pickle"),
        "zero bytes": (["--data", str(directory / "empty.npz"), "--model", f"{code}:logits_model"],
                       "is empty (0 bytes)"),
        "truncated": (["--data", str(directory / "truncated.npz"), "--model", f"{code}:logits_model"],
                      "is not a readable .npz file"),
        "state dict of another architecture": (["--model", str(directory / "weights.pt"), "--arch",
                                                f"{code}:logits_model"], "Missing key(s)"),
        "missing model file": (["--model", str(directory / "nothere.pt")], "no such file"),
        "seed overflow": (["--seed", str(10**20)], "`--seed` must be an integer in [0, 2**63 - 1]"),
        "empty list value": (["--eps", "0.1,,0.2"], "`--eps` has an empty value"),
        "float64 inputs": (["--data", f"{code}:points_float64", "--model", f"{code}:logits_model"],
                           "`x` holds torch.float64 but `model` computes in"),
        "out on a read-only file system": (["--out", "/proc/robustness-eval-out"], "cannot be created under /proc"),
    }


@pytest.mark.parametrize("case", ["bounds per feature", "object arrays", "zero bytes", "truncated",
                                  "state dict of another architecture", "missing model file", "seed overflow",
                                  "empty list value", "float64 inputs", "out on a read-only file system"])
def test_each_weak_case_is_one_line_naming_the_argument_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    from robustness_eval.cli import main

    monkeypatch.chdir(tmp_path)
    argv, message = _files(tmp_path)[case]
    out = [] if "--out" in argv else ["--out", str(tmp_path / "out")]
    assert main(["run", *QUICK, *argv, *out]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "out").exists() and not Path("/proc/robustness-eval-out").exists()


def test_report_md_escapes_what_users_named_and_keeps_the_command_verbatim(tmp_path, digits, digits_adversarial):
    class Sneaky(Softmax):
        kind = "<script>x</script> | *bold* [link](http://e.x)"

    x, y = digits.x_test[:4], digits.y_test[:4]
    result = _evaluate(digits_adversarial, Sneaky(digits_adversarial), x, y)
    result.config["call"] = {"command": "robustness-eval run --shell 'a|b*c'"}
    result.to_report(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "<script>" not in markdown and "| *bold* [link]" not in markdown
    assert r"\<script\>x\</script\> \| \*bold\* \[link\](http://e.x)" in markdown
    assert "```\nrobustness-eval run --shell 'a|b*c'\n```" in markdown
    assert "&lt;script&gt;" in (tmp_path / "report.html").read_text()

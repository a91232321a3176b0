"""One pipeline for any model, shell and data: the CLI and the API run the same job on user code."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from torch import nn

import robustness_eval
from attacks.registry import build_battery
from robustness_eval.cli import main
from robustness_eval.data import load_npz
from robustness_eval.loading import load_model, load_object
from robustness_eval.runner import Run, run_battery, skipped_attacks
from robustness_eval.store import ConfigMismatchError
from robustness_eval.types import Threat
from robustness_eval.units import Context
from shells import MCNShell, capabilities

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODEL = f"{EXAMPLES / 'digits_model.py'}:build"
SHELL = f"{EXAMPLES / 'squeeze_shell.py'}:build"
DATA = EXAMPLES / "digits-test.npz"
USER_FLAGS = ["--model", MODEL, "--shell", SHELL, "--data", str(DATA), "--n-points", "16",
              "--attacks", "pgd,noise,lookahead,minmax,bpda,square", "--budget", "square=40", "--quiet"]


def _comparable(results: dict) -> dict:
    """results.json without what legitimately differs between two invocations: timings and the call."""
    results = json.loads(json.dumps(results))
    results["config"].pop("call")
    results["extras"].pop("seconds")
    results.pop("store_digest", None)  # the store holds timings
    results["extras"].pop("phase_seconds", None)  # timings
    for rung in results["attacks"] + results.get("escalation", []):
        rung.pop("seconds")
    return results


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("user-cli")
    assert main(["run", *USER_FLAGS, "--out", str(out)]) == 0
    return out


def test_user_model_shell_and_data_from_the_cli_write_a_full_report(user_run):
    results = json.loads((user_run / "results.json").read_text())
    config, extras = results["config"], results["extras"]
    assert config["shell"] == "squeeze" and config["dataset"] == "digits-test"
    assert config["model"].endswith("digits_model.DigitsNet") and len(config["model_hash"]) == 16
    assert len(config["data_hash"]) == 16 and config["versions"]["torch"] == torch.__version__
    assert config["call"]["command"].startswith("robustness-eval run --model")
    assert {v["name"] for v in extras["sanity"]} >= {"unbounded attack reaches 100 %", "δ → 0 gives back F"}
    assert extras["active_test"]["status"] in ("pass", "fail", "not run") and "crosscheck" in extras
    report = (user_run / "report.md").read_text()
    for section in ("## Sanity checks", "## Active test", "## Attacks skipped", "## Reproduce", config["model_hash"]):
        assert section in report


def test_the_api_gives_the_same_results_json_as_the_cli(user_run, tmp_path):
    data = load_npz(DATA)
    model = load_object(MODEL, "--model")()
    factory = load_object(SHELL, "--shell")
    result = robustness_eval.evaluate(
        model, factory, data, Threat("linf", 0.1, data.bounds), n_points=16,
        attacks="pgd,noise,lookahead,minmax,bpda,square", budgets={"square": 40}, shell_options={"delta": 0.1},
        store_dir=tmp_path / "api")
    cli = json.loads((user_run / "results.json").read_text())
    api = json.loads((tmp_path / "api" / "results.json").read_text())
    assert api == result.to_json()
    assert _comparable(api) == _comparable(cli)


def test_a_shell_known_only_by_its_capabilities_gets_every_attack_they_allow(user_run):
    results = json.loads((user_run / "results.json").read_text())
    ran = {a["name"] for a in results["attacks"] if a["target"] == "shell" and "@" not in a["name"]}
    assert ran == {"pgd", "noise", "lookahead", "bpda", "square"}
    skipped = {row["attack"]: row["reason"] for row in results["extras"]["skipped"] if row["target"] == "shell"}
    assert skipped == {"minmax": "needs per-class-search; the target offers deterministic, search"}


def test_a_renamed_copy_of_mcn_gets_the_same_battery_and_numbers(digits, digits_adversarial):
    class Renamed(MCNShell):
        kind = "my-shell"

    kwargs = {"delta": 0.1, "steps": 5}
    original, renamed = MCNShell(digits_adversarial, **kwargs), Renamed(digits_adversarial, **kwargs)
    full = build_battery("full")
    skipped = skipped_attacks(full, {"shell": capabilities(original)})
    assert skipped_attacks(full, {"shell": capabilities(renamed)}) == skipped
    assert {entry["attack"] for entry in skipped} == {a.name for a in full if a.skip_reason(capabilities(original))}
    x, y, threat = digits.x_test[:8], digits.y_test[:8], Threat("linf", 0.1)
    runs = [run_battery(Run(Context(digits_adversarial, shell, x, y, threat)), "lookahead,minmax,bpda-unrolled,eot",
                        budgets={"eot": 3, "bpda-unrolled": 3, "minmax": 5, "lookahead": 5}).to_json()
            for shell in (original, renamed)]
    for run in runs:
        run["config"].pop("shell_parameters")
        for rung in run["attacks"]:
            rung.pop("seconds")
    assert runs[0] == runs[1]
    assert {a["name"] for a in runs[0]["attacks"]} == {"lookahead", "minmax", "bpda-unrolled", "eot"}


def test_resuming_with_another_eps_model_or_shell_names_the_difference(digits, digits_adversarial,
                                                                        digits_standard, tmp_path):
    def run(model, shell, eps):
        return robustness_eval.evaluate(model, shell, digits, Threat("linf", eps), attacks="pgd", n_points=6,
                                        store_dir=tmp_path, convergence=False, crosscheck=False, sanity_checks=False,
                                        escalation=False)

    first = run(digits_adversarial, MCNShell(digits_adversarial, 0.1, steps=3), 0.1)
    again = run(digits_adversarial, MCNShell(digits_adversarial, 0.1, steps=3), 0.1)  # same config: resumes
    assert _comparable(again.to_json()) == _comparable(first.to_json())
    with pytest.raises(ConfigMismatchError, match=r"eps.*differ"):
        run(digits_adversarial, MCNShell(digits_adversarial, 0.1, steps=3), 0.2)
    with pytest.raises(ConfigMismatchError, match=r"model_hash"):
        run(digits_standard, MCNShell(digits_standard, 0.1, steps=3), 0.1)
    with pytest.raises(ConfigMismatchError, match=r"shell_parameters"):
        run(digits_adversarial, MCNShell(digits_adversarial, 0.2, steps=3), 0.1)


def test_third_party_shells_and_attacks_register_through_entry_points(monkeypatch, digits_standard):
    import attacks.registry
    import shells.registry

    def fake(group):
        points = {"robustness_eval.shells": [EntryPoint("squeeze", "examples.squeeze_shell:build", group)],
                  "robustness_eval.attacks": [EntryPoint("pgd-again", "attacks.pgd:PGD", group)]}
        return points.get(group, [])

    monkeypatch.setattr(shells.registry, "entry_points", fake)
    monkeypatch.setattr(attacks.registry, "entry_points", fake)
    shell = shells.registry.build_shell("squeeze", digits_standard, "linf", shells.registry.Bounds(), 0.1)
    assert shell.kind == "squeeze" and capabilities(shell) == {"search", "deterministic"}
    assert [a.name for a in build_battery("pgd-again")] == ["pgd"]


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_model_files_load_as_torchscript_export_or_weights_with_arch(digits, digits_standard, tmp_path):
    x = digits.x_test[:5]
    expected = digits_standard(x)
    scripted = tmp_path / "model.ts.pt"
    torch.jit.script(digits_standard).save(str(scripted))
    exported = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(digits_standard, (x,)), str(exported))
    weights = tmp_path / "weights.pt"
    torch.save(digits_standard.state_dict(), weights)
    arch = tmp_path / "arch.py"
    arch.write_text("from robustness_eval.zoo import MLP\n\ndef build(input_shape, num_classes):\n"
                    "    return MLP(input_shape[0], num_classes)\n")
    for spec, extra in ((scripted, None), (exported, None), (weights, f"{arch}:build")):
        model = load_model(str(spec), digits, arch=extra)
        with torch.no_grad():
            assert torch.allclose(model(x), expected, atol=1e-5), spec
    with pytest.raises(ValueError, match="add --arch module:factory"):
        load_model(str(weights), digits)
    with pytest.raises(ValueError, match="does not fit --arch"):
        (tmp_path / "small.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(64, 10)\n")
        load_model(str(weights), digits, arch=f"{tmp_path / 'small.py'}:build")


@pytest.mark.parametrize("flags, message", [
    (["--model", "nope.py:build"], "--model nope.py does not exist"),
    (["--model", "examples/digits_model.py:missing"], "has no attribute 'missing'"),
    (["--shell", MODEL, "--data", "examples/digits-test.npz", "--model", MODEL], "the shell factory raised"),
    (["--data", "examples/digits-test.npz"], "--model adversarial is a zoo model"),
    (["--data", "missing.npz"], "--data missing.npz does not exist"),
])
def test_bad_user_code_specs_are_one_line_errors_before_any_write(flags, message, capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["run", *flags, "--n-points", "4", "--attacks", "pgd", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_shell_factory_returning_a_foreign_model_is_refused(digits, digits_standard, digits_adversarial):
    def wrong(model, delta):
        return MCNShell(digits_adversarial, delta)

    with pytest.raises(ValueError, match="wraps a different model object"):
        robustness_eval.evaluate(digits_standard, wrong, digits, Threat("linf", 0.1), n_points=4)
    with pytest.raises(TypeError, match=r"factory must return a torch\.nn\.Module"):
        robustness_eval.evaluate(digits_standard, lambda model: nn, digits, Threat("linf", 0.1), n_points=4)

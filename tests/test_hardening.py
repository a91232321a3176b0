"""Wrong inputs fail loudly at the boundary; a rejected command writes nothing; no traceback reaches a user.

Each numbered finding of the hardening issue has a test here that failed on the code before it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import robustness_eval
from robustness_eval import api
from robustness_eval.cli import main
from robustness_eval.store import DB_NAME, ResultStore, StoreBusyError
from robustness_eval.types import Threat
from shells import MCNShell

QUICK = ["--n-points", "6", "--attacks", "pgd", "--budget", "pgd=2", "--no-convergence", "--no-escalation",
         "--no-crosscheck",
         "--no-sanity", "--quiet"]


def _call(model, shell, x, y, **kwargs):
    return robustness_eval.evaluate(model, shell, (x, y), Threat("linf", 0.1), attacks="pgd", n_points=None,
                                    convergence=False, crosscheck=False, sanity_checks=False, escalation=False,
                                    **kwargs)


# 1. silent wrong results from the API ------------------------------------------------------------

@pytest.mark.parametrize("change, error, message", [
    (lambda x, y: (x * 255, y), ValueError, r"outside the threat's bounds \[0, 1\]"),
    (lambda x, y: (x, y.clone().fill_(99)), ValueError, r"labels in \[99, 99\] but the model has 10 classes"),
    (lambda x, y: (x.clone().index_fill_(0, torch.tensor([0]), float("nan")), y), ValueError, "NaN or infinite"),
    (lambda x, y: (x, y[:5]), ValueError, "same number of points"),
    (lambda x, y: (x, y.float()), TypeError, "integer class labels"),
    (lambda x, y: (x.tolist(), y), TypeError, "torch.Tensor or a numpy array"),
])
def test_bad_points_are_refused_before_any_work(digits, digits_adversarial, change, error, message):
    x, y = change(digits.x_test[:10], digits.y_test[:10])
    with pytest.raises(error, match=message):
        _call(digits_adversarial, MCNShell(digits_adversarial, 0.1, steps=2), x, y)


def test_numpy_points_are_accepted_and_give_the_tensor_result(digits, digits_adversarial):
    shell = MCNShell(digits_adversarial, 0.1, steps=2)
    x, y = digits.x_test[:8], digits.y_test[:8]
    from_numpy = _call(digits_adversarial, shell, x.numpy(), y.numpy())
    from_torch = _call(digits_adversarial, shell, x, y)
    assert from_numpy.robust_accuracy == from_torch.robust_accuracy


def test_a_shell_around_another_model_bad_budgets_and_bad_models_are_refused(digits, digits_adversarial,
                                                                              digits_standard):
    x, y = digits.x_test[:6], digits.y_test[:6]
    with pytest.raises(ValueError, match="wraps a different model object"):
        _call(digits_adversarial, MCNShell(digits_standard, 0.1), x, y)
    with pytest.raises(ValueError, match="`budget for pgd` must be an integer ≥ 1"):
        _call(digits_adversarial, MCNShell(digits_adversarial, 0.1), x, y, budgets={"pgd": -5})

    class OneLogit(nn.Module):
        def forward(self, z):
            return z.flatten(1)[:, :1]

    model = OneLogit()
    with pytest.raises(ValueError, match="at least 2 class logits"):
        _call(model, MCNShell(model, 0.1), x, y)

    class Flat(nn.Module):
        def forward(self, z):
            return z.flatten()

    model = Flat()
    with pytest.raises(ValueError, match=r"logits of shape \(batch, classes\)"):
        _call(model, MCNShell(model, 0.1), x, y)


def test_a_model_in_training_mode_runs_in_eval_mode_with_a_warning_and_is_given_back(digits, digits_standard):
    shell = MCNShell(digits_standard, 0.1, steps=2)
    model = digits_standard.train()  # e.g. trained further after the shell was built
    try:
        with pytest.warns(UserWarning, match="runs it in eval mode"):
            _call(model, shell, digits.x_test[:4], digits.y_test[:4])
        assert model.training  # the caller's mode, given back
    finally:
        model.eval()


# 2. --resume on an empty or garbage store -------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"not a database at all" * 10])
def test_resume_on_an_empty_or_garbage_store_is_an_error_not_a_new_run(tmp_path, capsys, content):
    (tmp_path / DB_NAME).write_bytes(content)
    assert main(["run", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a readable result store" in err and err.count("\n") == 1
    assert (tmp_path / DB_NAME).read_bytes() == content and not (tmp_path / "results.json").exists()


# 3. a rejected typo writes nothing ---------------------------------------------------------------

@pytest.mark.parametrize("typo, message", [
    (["--shell", "ncn", "--p", "1.5"], "`--p` must lie strictly between 0 and 1"),
    (["--shell", "nope"], "unknown shell 'nope'"),
    (["--budget", "nope=10"], "unknown attack 'nope'"),
    (["--attacks", "pgd,pgd"], "listed more than once"),
])
def test_a_rejected_typo_leaves_nothing_and_the_next_command_runs(typo, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *QUICK, *typo]) == 2
    assert message in capsys.readouterr().err
    assert not Path("reports").exists()
    assert main(["run", *QUICK]) == 0


# 4. TOML types -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ('convergence = "false"\n', "`convergence` must be true or false (got 'false')"),
    ('crosscheck = "no"\n', "`crosscheck` must be true or false"),
    ("n_points = true\n", "`n_points` must be an integer ≥ 1 (got True)"),
    ("n_points = 10.7\n", "`n_points` must be an integer ≥ 1 (got 10.7)"),
    ("attacks = 5\n", "`attacks` must be a preset or comma string"),
    ("eps = [0.1, \n", "is not valid TOML"),
])
def test_toml_values_are_type_checked_and_the_file_named(tmp_path, capsys, text, message):
    config = tmp_path / "run.toml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--n-points", "4", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(config) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_directory_given_as_config_is_named_as_such(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path)]) == 2
    assert "is a directory; pass a TOML file" in capsys.readouterr().err


# 5. check-shell on broken shells -----------------------------------------------------------------

BROKEN = '''
import torch
from shells import MCNShell, Shell

def bare(model):
    return model

def raises(model):
    raise RuntimeError("no GPU here")

def none(model):
    return None

class ImageOnly(Shell):
    kind = "image-only"

    def search(self, x):
        return x.reshape(-1, 1, 8, 8).clamp(0, 1).reshape(x.shape)

def image(model):
    return ImageOnly(model)
'''


@pytest.fixture
def broken_shells(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(BROKEN)
    return path


@pytest.mark.parametrize("name, message", [
    ("bare", "did it return the bare model?"), ("raises", "the factory raised RuntimeError: no GPU here"),
    ("none", "the factory returned NoneType"),
])
def test_check_shell_reports_a_broken_factory_in_its_table(broken_shells, capsys, name, message):
    assert main(["check-shell", f"{broken_shells}:{name}"]) == 1
    out = capsys.readouterr()
    assert "factory" in out.out and message in out.out and "Traceback" not in out.out + out.err


def test_check_shell_reports_a_crash_inside_the_shell_as_a_failed_invariant(broken_shells, capsys):
    assert main(["check-shell", f"{broken_shells}:image"]) == 1
    out = capsys.readouterr().out
    assert "fail" in out and "the shell raised RuntimeError" in out and "Case(" in out


def test_check_shell_draws_the_input_shape_a_shell_is_written_for(broken_shells, capsys):
    assert main(["check-shell", f"{broken_shells}:image", "--input-shape", "1,8,8"]) == 0
    assert main(["check-shell", f"{broken_shells}:image", "--data", "digits"]) == 0
    assert main(["check-shell", "no_such_module:make"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err


# 6. ordinary faults are one line, not a traceback ------------------------------------------------

def test_out_naming_a_file_or_under_a_file_is_a_one_line_error(tmp_path, capsys):
    afile = tmp_path / "taken"
    afile.write_text("x")
    for out in (afile, afile / "below"):
        assert main(["run", *QUICK, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("is not a directory" in err or "is a file" in err)
    assert afile.read_text() == "x"


def test_report_on_a_broken_results_json_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    assert main(["report", str(tmp_path)]) == 2
    assert "not a results.json written by robustness-eval" in capsys.readouterr().err
    (tmp_path / "results.json").write_text("{broken")
    assert main(["report", str(tmp_path)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_an_unwritable_out_is_refused_before_work(tmp_path, monkeypatch, capsys):
    from robustness_eval import run_directory

    monkeypatch.setattr(run_directory.os, "access", lambda path, mode: False)  # root can write anywhere: simulate
    assert main(["run", *QUICK, "--out", str(tmp_path / "new")]) == 2
    assert "cannot be written" in capsys.readouterr().err and not (tmp_path / "new").exists()


# 7. --resume keeps the original command and refuses --config / --out ----------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    assert main(["run", *QUICK, "--out", str(out)]) == 0
    return out


def test_resume_refuses_config_and_out_and_keeps_the_original_command(finished, capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("n_points = 4\n")
    assert main(["run", "--resume", str(finished), "--config", str(config)]) == 2
    assert main(["run", "--resume", str(finished), "--out", str(tmp_path)]) == 2
    assert "--resume takes no configuration flags" in capsys.readouterr().err
    original = json.loads((finished / "results.json").read_text())["config"]["call"]["command"]
    assert main(["run", "--resume", str(finished), "--quiet"]) == 0
    assert json.loads((finished / "results.json").read_text())["config"]["call"]["command"] == original
    assert original in (finished / "report.md").read_text() and "--resume" not in original


# 8. a repeated attack name -----------------------------------------------------------------------

def test_a_repeated_attack_name_is_an_error_in_the_api_too(digits, digits_adversarial):
    with pytest.raises(ValueError, match="'pgd' is listed more than once"):
        robustness_eval.evaluate(digits_adversarial, MCNShell(digits_adversarial, 0.1), digits,
                                 Threat("linf", 0.1), attacks="pgd,cw,pgd")


# flags that do not apply, the lock, Ctrl-C -------------------------------------------------------

def test_flags_that_do_not_apply_get_a_warning_naming_the_flag(tmp_path, capsys):
    assert main(["run", *QUICK, "--p", "0.8", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert main(["run", *QUICK, "--n-points", "5000", "--out", str(tmp_path / "all")]) == 0
    assert "n_points is 5000 but the data holds 360 points; evaluating all 360" in capsys.readouterr().err
    assert json.loads((tmp_path / "all" / "results.json").read_text())["n_points"] == 360
    assert "--p is ignored: the shell 'mcn' takes no p" in err
    assert "--data-dir is ignored: --data digits does not read a directory" in err


def test_two_runs_never_write_one_directory_at_once(digits, digits_adversarial, tmp_path):
    holder = ResultStore(tmp_path)
    try:
        with pytest.raises(StoreBusyError, match="another run is writing"):
            robustness_eval.evaluate(digits_adversarial, MCNShell(digits_adversarial, 0.1), digits,
                                     Threat("linf", 0.1), attacks="pgd", n_points=4, store_dir=tmp_path,
                                     convergence=False, crosscheck=False, sanity_checks=False, escalation=False)
    finally:
        holder.close()
    ResultStore(tmp_path).close()  # released with its holder


def test_ctrl_c_mid_chunk_stops_cleanly_and_resumes_to_the_same_results(tmp_path, private_cache):
    flags = ["--n-points", "60", "--attacks", "pgd,square", "--budget", "square=150", "--no-convergence",
             "--no-crosscheck", "--no-sanity", "--no-escalation", "--quiet"]
    env = {**os.environ, "ROBUSTNESS_EVAL_CACHE": str(private_cache)}
    out = tmp_path / "interrupted"
    # SIGINT as a terminal sends it, even where the suite runs in the background with SIGINT ignored (the
    # child would inherit that and never see it)
    process = subprocess.Popen([sys.executable, "-m", "robustness_eval.cli", "run", *flags, "--out", str(out)],
                               env=env, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:  # SIGINT once some, not all, chunks are in
        if (out / DB_NAME).exists():
            with sqlite3.connect(out / DB_NAME) as db:
                try:
                    if db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] > 0:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130, stderr
    assert "interrupted; finished chunks are kept" in stderr and "Traceback" not in stderr
    assert main(["run", "--resume", str(out)]) == 0
    uninterrupted = tmp_path / "whole"
    assert main(["run", *flags, "--out", str(uninterrupted)]) == 0

    def comparable(path):
        results = json.loads((path / "results.json").read_text())
        results["config"].pop("call")
        results["extras"].pop("seconds")
        results.pop("store_digest", None)  # the store holds timings
        results["extras"].pop("phase_seconds", None)  # timings
        for rung in results["attacks"]:
            rung.pop("seconds")
        return results

    assert comparable(out) == comparable(uninterrupted)


# fuzz: no traceback, every exit 0 / 1 / 2, nothing written by a rejected run ---------------------

FLAG_VALUES = {
    "--data": ["digits", "synthetic", "nope", "x.npz", "mod:fn", ""],
    "--model": ["adversarial", "standard", "nope", "missing.pt", "a:b"],
    "--shell": ["mcn", "ncn", "vote", "none", "nope", "m:f"],
    "--norm": ["linf", "l2", "l3", ""],
    "--eps": ["0.1", "-1", "abc", "0.05,0.1", "nan", "inf", ""],
    "--delta": ["0.1", "0", "-0.2", "x", "0,0.1"],
    "--p": ["0.9", "1.5", "0", "abc"],
    "--attacks": ["pgd", "pgd,pgd", "nope", "", ",", "fast"],
    "--budget": ["pgd=2", "pgd=-1", "pgd", "nope=3", "=4"],
    "--n-points": ["3", "0", "-4", "x", "999999"],
    "--seed": ["0", "x", "-1"],
    "--arch": ["a:b"],
    "--data-dir": ["/nonexistent"],
}


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(flags=st.lists(st.sampled_from(sorted(FLAG_VALUES)), min_size=1, max_size=4, unique=True).flatmap(
    lambda names: st.tuples(*(st.tuples(st.just(n), st.sampled_from(FLAG_VALUES[n])) for n in names))))
def test_fuzzed_cli_arguments_never_show_a_traceback_or_leave_a_store(flags, tmp_path_factory, monkeypatch):
    ran = []
    monkeypatch.setattr(api.Evaluation, "run", lambda self: ran.append(self) or (_ for _ in ()).throw(
        KeyboardInterrupt()))  # a valid configuration stops here: the fuzz tests the boundary only
    out = tmp_path_factory.mktemp("fuzz") / "out"
    argv = ["run", "--n-points", "3", *[part for pair in flags for part in pair], "--out", str(out), "--quiet"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stderr", captured := _Capture())
        code = main(argv)
    assert code in (2, 130), (argv, captured.text)
    assert "Traceback" not in captured.text and captured.text.count("\n") >= 1
    if code == 2:
        assert not ran and not out.exists(), argv
        assert captured.text.strip().splitlines()[-1].startswith("robustness-eval: error: "), captured.text


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(n_points=st.sampled_from([None, 0, -1, 3, 2.5, True, "3", 10**6]),
       seed=st.sampled_from([0, -3, 1.5, "0", None, True]),
       attacks=st.sampled_from(["pgd", "nope", "", "pgd,pgd", ["pgd"], 5, None]),
       budgets=st.sampled_from([None, {"pgd": 2}, {"pgd": 0}, {"nope": 3}, {"pgd": "2"}, [1]]),
       eps=st.sampled_from([0.1, 0.0, 2.0]),
       flag=st.sampled_from([True, False, "false", 1, None]),
       points=st.sampled_from(["ok", "scaled", "nan", "float-y", "short-y", "numpy"]))
def test_fuzzed_api_calls_raise_only_type_or_value_errors_before_writing(
        n_points, seed, attacks, budgets, eps, flag, points):
    from robustness_eval.data import load_digits
    from robustness_eval.zoo import load_model

    data = load_digits()
    model = load_model(data, "adversarial")
    x, y = data.x_test[:5], data.y_test[:5]
    x, y = {"ok": (x, y), "scaled": (x * 255, y), "nan": (x * float("nan"), y), "float-y": (x, y.float()),
            "short-y": (x, y[:2]), "numpy": (x.numpy(), np.asarray(y))}[points]
    store = Path(os.environ["ROBUSTNESS_EVAL_CACHE"]).parent / f"fuzz-api-{os.getpid()}"
    try:
        evaluation = api.prepare_evaluation(model, MCNShell(model, 0.1, steps=2), (x, y), Threat("linf", eps),
                                            attacks=attacks, n_points=n_points, seed=seed, budgets=budgets,
                                            convergence=flag, store_dir=store)
    except (TypeError, ValueError):
        assert not store.exists()
        return
    assert isinstance(evaluation, api.Evaluation) and not store.exists()


"""Nothing lost, nothing forged: the user's files, the store, the code, every batch and the caller's objects.

One test (or more) per fault a probe of the suite as a demanding new user found: each fails on the code
before the fix and passes after.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import robustness_eval
from robustness_eval.cli import main
from robustness_eval.cost import CostEstimate, check_limit
from robustness_eval.store import DB_NAME, ResultStore, StoreIntegrityError
from robustness_eval.types import Bounds, Threat
from shells import MCNShell

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--n-points", "24", "--attacks", "pgd,noise,lookahead", "--budget", "pgd=10", "--budget", "noise=10",
        "--budget", "lookahead=5", "--no-convergence", "--no-crosscheck", "--no-sanity", "--no-escalation",
        "--no-restart-check", "--inference-runs", "1", "--quiet"]
API = dict(attacks="pgd,noise", budgets={"pgd": 10, "noise": 10}, n_points=24, convergence=False, crosscheck=False,
           sanity_checks=False, escalation=False, restart_check=False, inference_runs=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, private_cache):
    out = tmp_path_factory.mktemp("trust") / "run"
    assert main(["run", *FAST, "--out", str(out)]) == 0
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


# --- 1. --out never overwrites the user's files ------------------------------------------------------------------
def test_out_into_a_directory_of_the_users_files_is_refused_and_nothing_is_touched(tmp_path, capsys):
    (tmp_path / "report.md").write_text("my notes\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "figure1.png").write_bytes(b"png")
    assert main(["run", *FAST, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not empty and holds no run (plots, report.md)" in err
    assert (tmp_path / "report.md").read_text() == "my notes\n"
    assert (tmp_path / "plots" / "figure1.png").read_bytes() == b"png"
    assert not (tmp_path / DB_NAME).exists()


def test_a_results_json_of_another_configuration_without_its_store_is_refused(finished, tmp_path, capsys):
    out = tmp_path / "example"
    out.mkdir()
    shutil.copy(finished / "results.json", out / "results.json")  # the state of a committed example
    before = (out / "results.json").read_text()
    assert main(["run", *FAST, "--eps", "0.2", "--out", str(out)]) == 2
    assert "different configuration" in capsys.readouterr().err
    assert (out / "results.json").read_text() == before


def test_a_report_redraw_deletes_only_the_plots_it_draws(finished, tmp_path):
    out = _copy(finished, tmp_path / "run")
    (out / "plots" / "figure1.png").write_bytes(b"mine")
    assert main(["report", str(out)]) == 0
    assert (out / "plots" / "figure1.png").read_bytes() == b"mine"
    assert (out / "plots" / "ladder.png").exists()


# --- 2. check-shell calls a factory as run does: the README's own example ---------------------------------------
def _readme_blur(tmp_path: Path) -> Path:
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "class Blur" in b)
    path = tmp_path / "myshell.py"
    path.write_text(block)
    return path


def test_check_shell_passes_the_readme_blur_example_that_run_accepts(tmp_path, capsys):
    path = _readme_blur(tmp_path)
    assert main(["check-shell", f"{path}:build", "--input-shape", "1,8,8"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^factory\s+pass", table, re.M), table
    assert main(["run", *FAST, "--shell", f"{path}:build", "--out", str(tmp_path / "run")]) == 0


def test_the_kit_api_calls_a_factory_as_run_does(tmp_path):
    from robustness_eval.loading import load_object
    from robustness_eval.testing import check_shell
    from robustness_eval.testing.kit import input_space

    build = load_object(f"{_readme_blur(tmp_path)}:build", "factory")  # the raw function, as a Python user has it
    verdicts = {v.invariant: v.status for v in check_shell(build, space=input_space("1,8,8"))}
    assert verdicts["factory"] == "pass" and "fail" not in verdicts.values()


# --- 3. the store knows itself: surgery on any table is refused -------------------------------------------------
def _surgery(db: sqlite3.Connection, table: str, operation: str) -> None:
    columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    where = " WHERE key = 'config'" if table == "meta" else ""
    row = list(db.execute(f"SELECT * FROM {table}{where} LIMIT 1").fetchone())
    key_column = {"meta": "key", "clean": "target", "rows": "attack", "chunks": "chunk"}[table]
    position = columns.index(key_column)
    if operation == "delete":
        condition = " AND ".join(f"{c} IS ?" for c in columns)
        db.execute(f"DELETE FROM {table} WHERE {condition}", row)
        return
    if operation == "edit":
        column = {"meta": "value", "clean": "correct", "rows": "success", "chunks": "seconds"}[table]
        value = {"meta": "{}", "clean": 1 - row[columns.index("correct")] if table == "clean" else 0,
                 "rows": 1 - row[columns.index("success")] if table == "rows" else 0, "chunks": 1e9}[table]
        condition = " AND ".join(f"{c} IS ?" for c in columns)
        db.execute(f"UPDATE {table} SET {column} = ? WHERE {condition}", [value, *row])
        return
    row[position] = f"{row[position]}-copy" if operation == "duplicate" else "forged"
    if operation == "insert" and table == "rows":
        row[columns.index("success")] = 1
    db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)


@pytest.mark.parametrize("operation", ["insert", "delete", "duplicate", "edit"])
@pytest.mark.parametrize("table", ["meta", "clean", "rows", "chunks"])
def test_store_surgery_in_any_table_is_refused_on_resume_and_report(finished, tmp_path, table, operation, capsys):
    out = _copy(finished, tmp_path / "run")
    with sqlite3.connect(out / DB_NAME) as db:
        _surgery(db, table, operation)
    db.close()
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{out / DB_NAME}: the {table} table" in err and "does not match the store's digest" in err, err
    assert main(["report", str(out)]) == 2
    assert f"the {table} table" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "said"), [(None, "holds results but no digest"),
                                            ("not json", "digest is not readable"),
                                            ('{"rows/main": "zz"}', "digest is not readable"),
                                            ('{"elsewhere": "01"}', "the meta table does not match")])
def test_a_store_whose_digest_is_missing_or_forged_is_refused(finished, tmp_path, value, said):
    out = _copy(finished, tmp_path / "run")
    with sqlite3.connect(out / DB_NAME) as db:
        if value is None:
            db.execute("DELETE FROM meta WHERE key = 'digest'")
        else:
            db.execute("UPDATE meta SET value = ? WHERE key = 'digest'", (value,))
    db.close()
    with pytest.raises(StoreIntegrityError, match=said):
        ResultStore.reader(out)


def test_results_json_records_the_store_digest_and_a_report_checks_it(finished, tmp_path, capsys):
    store = ResultStore.reader(finished)
    digest = store.digest()
    store.close()
    assert json.loads((finished / "results.json").read_text())["store_digest"] == digest
    out = _copy(finished, tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    results["store_digest"] = "0" * 64
    (out / "results.json").write_text(json.dumps(results))
    assert main(["report", str(out)]) == 2
    assert "was not written from" in capsys.readouterr().err


def test_an_untouched_store_resumes_to_the_same_results(finished, tmp_path):
    out = _copy(finished, tmp_path / "run")
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    first, again = (json.loads((d / "results.json").read_text()) for d in (finished, out))
    for results in (first, again):
        results["extras"].pop("seconds")
        results.pop("store_digest")  # the store holds timings
        results["extras"].pop("phase_seconds", None)  # timings
        results["config"].pop("call")
        for rung in results["attacks"]:
            rung.pop("seconds")
    assert first == again


# --- 4. every batch checked, and a batch-composition probe ------------------------------------------------------
class NaNForLargeBatches(nn.Module):
    """Finite logits for batches of up to 16 points (all the probe tries), NaN for larger ones."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out if len(x) <= 16 else out * float("nan")


def test_nan_logits_for_a_batch_size_the_probe_did_not_try_fail_the_run_naming_it(digits, digits_adversarial):
    model = NaNForLargeBatches(digits_adversarial)
    with pytest.raises(ValueError, match=r"the base model F returned NaN or infinite scores for a batch of 24"):
        robustness_eval.evaluate(model, MCNShell(model, 0.1), digits, Threat("linf", 0.1), **API)


class BatchCentred(nn.Module):
    """Test-time batch statistics: logits of x minus the batch mean (DENT-style adaptation)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x - x.mean(0, keepdim=True) + 0.5)


def test_a_model_whose_answer_depends_on_its_batch_is_warned_about_and_recorded(digits, digits_adversarial):
    model = BatchCentred(digits_adversarial)
    with pytest.warns(UserWarning, match="answers the same point differently alone and inside a batch"):
        result = robustness_eval.evaluate(model, lambda m: MCNShell(m, 0.05), digits, Threat("linf", 0.1),
                                          **{**API, "attacks": "pgd", "budgets": {"pgd": 5}})
    assert any("inside a batch" in finding for finding in result.extras["probe"])


# --- 5. a resume checks code as well as configuration -----------------------------------------------------------
SHELL_FILE = """
from shells import MCNShell

def build(model, delta):
    return MCNShell(model, delta, steps={steps})
"""


def test_a_resume_after_the_users_shell_file_changed_is_refused_naming_it(tmp_path, capsys):
    path = tmp_path / "usershell.py"
    path.write_text(SHELL_FILE.format(steps=3))
    out = tmp_path / "run"
    assert main(["run", *FAST, "--shell", f"{path}:build", "--out", str(out)]) == 0
    recorded = json.loads((out / "results.json").read_text())["config"]["code"]
    assert recorded["files"]["robustness_eval_user.usershell"]["file"] == str(path.resolve())
    path.write_text(SHELL_FILE.format(steps=3) + "\n# same constructor, other code\n")
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    assert f"the code in {path.resolve()} changed" in capsys.readouterr().err


def test_ray_workers_of_another_suite_version_are_refused_before_any_unit(digits, digits_adversarial, tmp_path,
                                                                         monkeypatch):
    pytest.importorskip("ray")
    import robustness_eval.backends as backends

    monkeypatch.setattr(backends, "suite_identity", lambda: "0.0.0+driver")
    with pytest.raises(backends.CodeMismatchError, match=r"Ray workers run robustness_eval .* the driver 0.0.0"):
        robustness_eval.evaluate(digits_adversarial, MCNShell(digits_adversarial, 0.1), digits, Threat("linf", 0.1),
                                 backend="ray", workers=1, store_dir=tmp_path / "ray", **API)
    store = ResultStore.reader(tmp_path / "ray")
    assert store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 0
    store.close()


# --- 6. the API validates at the door ----------------------------------------------------------------------------
@pytest.mark.parametrize("eps", ["0.1", True, None, torch.tensor(0.1)])
def test_threat_refuses_an_eps_that_is_not_a_real_number(eps):
    with pytest.raises(TypeError, match="`eps` must be a real number"):
        Threat("linf", eps)


def test_threat_takes_bounds_as_a_pair_and_refuses_anything_else():
    assert Threat("linf", 0.1, (0, 1)).bounds == Bounds(0.0, 1.0)
    assert Threat("linf", np.float32(0.25)).eps == 0.25
    with pytest.raises(TypeError, match=r"`bounds` must be a robustness_eval\.types\.Bounds or a \(lower, upper\)"):
        Threat("linf", 0.1, "0,1")
    with pytest.raises(TypeError, match=r"`bounds\.lower` must be a real number"):
        Bounds("0", 1)


def test_meta_device_inputs_and_models_are_refused_naming_the_argument(digits, digits_adversarial):
    x = torch.empty(24, 1, 8, 8, device="meta")
    with pytest.raises(ValueError, match="`x` is on the meta device"):
        robustness_eval.evaluate(digits_adversarial, MCNShell(digits_adversarial, 0.1), (x, digits.y_test[:24]),
                                 Threat("linf", 0.1), **API)
    with pytest.raises(TypeError, match=r"`model` must be a torch\.nn\.Module"):
        robustness_eval.evaluate("model.pt", lambda m: MCNShell(m, 0.1), digits, Threat("linf", 0.1), **API)
    meta_model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10, device="meta"))
    with pytest.raises(ValueError, match=r"`model` has 1\.weight on the meta device"):
        robustness_eval.evaluate(meta_model, lambda m: MCNShell(m, 0.1), digits, Threat("linf", 0.1), **API)


# --- 7. the caller's objects are given back as they came ---------------------------------------------------------
class UndeclaredNoise(nn.Module):
    """A shell that adds noise to its input but does not declare `randomized = True`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model((x + 0.05 * torch.randn_like(x)).clamp(0, 1)), 1)


def test_modes_and_inferred_flags_are_not_left_on_the_callers_objects(digits, digits_adversarial):
    model = digits_adversarial
    model.train()
    shell = UndeclaredNoise(model)
    try:
        with pytest.warns(UserWarning):
            result = robustness_eval.evaluate(model, shell, digits, Threat("linf", 0.1), **API)
        assert model.training and all(part.training for part in model.modules())
        assert "randomized" not in vars(shell)
        assert result.config["shell_parameters"]["randomized"] is True  # treated as randomized inside the run
    finally:
        model.eval()


# --- 8. a budget with no sane upper end is refused before any work ---------------------------------------------
def test_a_budget_whose_estimated_cost_is_absurd_is_refused_naming_the_flag(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *FAST, "--budget", "pgd=1000000000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--budget pgd=1000000000" in err and "over the limit of 24 h" in err and "--budget-limit-hours" in err
    assert not out.exists()


def test_the_limit_is_an_explicit_override():
    cost = CostEstimate({"pgd": 1e9}, 24)
    with pytest.raises(ValueError, match="over the limit of 1 h"):
        check_limit(cost, 1.0, {"pgd": 10**9})
    check_limit(cost, 0.0, {"pgd": 10**9})  # 0: no limit


# --- 9. messages that name what to fix ----------------------------------------------------------------------------
def test_a_factory_in_a_file_that_is_not_python_source_is_named(tmp_path, capsys):
    (tmp_path / "model.txt").write_text("def build():\n    pass\n")
    assert main(["run", *FAST, "--model", f"{tmp_path / 'model.txt'}:build", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "must be Python source ending in .py" in err and "NoneType" not in err


def test_a_factory_that_calls_sys_exit_is_an_error_with_a_message(tmp_path, capsys):
    (tmp_path / "exiting.py").write_text("import sys\n\ndef build(model):\n    sys.exit(3)\n")
    assert main(["run", *FAST, "--shell", f"{tmp_path / 'exiting.py'}:build", "--out", str(tmp_path / "o")]) == 2
    assert "SystemExit" in capsys.readouterr().err


def test_a_corrupted_store_is_named(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "run")
    data = bytearray((out / DB_NAME).read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    (out / DB_NAME).write_bytes(bytes(data))
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    assert f"{out / DB_NAME} is not a readable result store" in capsys.readouterr().err


def test_the_cli_messages_for_dtype_and_bounds_say_how_to_fix_them_on_the_command_line(tmp_path, capsys):
    x = np.full((30, 1, 8, 8), 2.0, dtype=np.float32)
    np.savez(tmp_path / "wide.npz", x=x, y=np.zeros(30, dtype=np.int64))
    model = f"{ROOT}/examples/digits_model.py:build"
    data = str(tmp_path / "wide.npz")
    assert main(["run", *FAST, "--data", data, "--model", model, "--out", str(tmp_path / "o")]) == 2
    assert "the .npz's `lower` and `upper` arrays" in capsys.readouterr().err


def test_debug_after_the_command_is_accepted():
    from robustness_eval.cli import _parser

    assert _parser().parse_args(["run", "--debug"]).debug is True
    assert _parser().parse_args(["--debug", "run"]).debug is True
    assert _parser().parse_args(["run"]).debug is False


def test_a_resume_from_another_directory_reads_relative_paths_where_the_run_started(tmp_path, monkeypatch):
    started = tmp_path / "project"
    started.mkdir()
    shutil.copy(ROOT / "examples" / "digits-test.npz", started / "data.npz")
    shutil.copy(ROOT / "examples" / "digits_model.py", started / "model.py")
    monkeypatch.chdir(started)
    assert main(["run", *FAST, "--data", "data.npz", "--model", "model.py:build", "--out", "run"]) == 0
    (started / "run" / "results.json").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", "--resume", str(started / "run"), "--quiet"]) == 0
    assert Path.cwd() == elsewhere
    assert (started / "run" / "results.json").exists()


def test_a_garbage_export_file_is_one_line(tmp_path, capfd):
    (tmp_path / "model.pt2").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["run", *FAST, "--model", str(tmp_path / "model.pt2"), "--out", str(tmp_path / "o")]) == 2
    err = capfd.readouterr().err
    assert "not a torch.export program" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# --- 10. silent acceptances become warnings (or errors where they cannot be meant) -------------------------------
@pytest.mark.parametrize(("flags", "said"), [
    (["--eps", "5"], "ε = 5 exceeds the box's diameter 1"),
    (["--delta", "2"], "δ = 2 exceeds the box's diameter 1"),
    (["--budget", "square=10"], "a budget is given for square"),
    (["--attacks", "pgd,noise,lookahead,"], "has an empty name (a stray comma)"),
])
def test_settings_that_cannot_do_what_they_seem_to_are_warned_about(flags, said, tmp_path, capsys):
    base = [f for f in FAST if f != "--quiet"]
    if "--attacks" in flags:
        at = base.index("--attacks")
        base = base[:at] + base[at + 2:]
    assert main(["run", *base, *flags, "--quiet", "--n-points", "12", "--out", str(tmp_path / "o")]) == 0
    assert said in capsys.readouterr().err


def test_infinite_bounds_are_warned_about(digits, digits_adversarial):
    x, y = digits.x_test[:12], digits.y_test[:12]
    with pytest.warns(UserWarning, match=r"the bounds \[-inf, inf\] are infinite"):
        robustness_eval.evaluate(digits_adversarial, lambda m: MCNShell(m, 0.05), (x, y),
                                 Threat("linf", 0.1, Bounds(-math.inf, math.inf)),
                                 **{**API, "attacks": "pgd", "budgets": {"pgd": 10}})


def test_a_config_naming_data_twice_is_refused(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('data = "digits"\ndataset = "mnist"\n')
    assert main(["run", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "sets `data` twice" in capsys.readouterr().err


def test_compare_of_a_run_with_itself_is_warned_about(finished, tmp_path, capsys):
    assert main(["compare", str(finished), str(finished), "--labels", "a,b", "--out", str(tmp_path / "c")]) == 0
    assert "is compared with itself" in capsys.readouterr().err


def test_markdown_escapes_ampersands_so_entities_in_names_render_as_typed():
    from robustness_eval.render import markdown_literal

    assert markdown_literal("a &lt;b&gt; & c") == "a \\&lt;b\\&gt; \\& c"


# --- escaping: hostile names in every field a user controls -----------------------------------------------------
HOSTILE = "<img src=x onerror=alert(1)> &lt;b&gt; *x* [l](http://e.x) | `c`"


class HostileShell(nn.Module):
    """A plain softmax shell whose kind and class path are hostile text."""

    kind = HOSTILE

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), 1)


HostileShell.__module__ = f"factories.{HOSTILE}"  # the factory path a class path shows


def _assert_inert(markdown: str, page: str) -> None:
    """Outside code fences (shown verbatim), every special character of the hostile text is escaped in Markdown;
    the HTML has no live tag and shows the entity as typed."""
    prose = re.sub(r"(`{3,})\n.*?\n\1", "", markdown, flags=re.S)
    assert HOSTILE[:4] in prose.replace("\\", "")  # the text is there, as text
    for live in (r"(?<!\\)<img", r"(?<!\\)&lt;b", r"(?<!\\)\[l(?<!\\)\]", r"(?<!\\)\*x(?<!\\)\*"):
        assert not re.search(live, prose), (live, prose)
    assert "<img src=x" not in page and "&amp;lt;b&amp;gt;" in page


def test_hostile_names_in_every_user_field_render_as_text_in_reports_and_comparisons(digits, digits_adversarial,
                                                                                    tmp_path):
    from robustness_eval.data import Dataset

    data = Dataset(HOSTILE, digits.x_train[:0], digits.y_train[:0], digits.x_test[:12], digits.y_test[:12], 10,
                   split={"source": HOSTILE})
    runs = []
    for number in (1, 2):
        result = robustness_eval.evaluate(digits_adversarial, HostileShell(digits_adversarial), data,
                                          Threat("linf", 0.1), **{**API, "attacks": "pgd", "budgets": {"pgd": 10}},
                                          call={"command": f"robustness-eval run --shell '{HOSTILE}'"})
        runs.append(tmp_path / f"run{number}")
        result.to_report(runs[-1])
        _assert_inert((runs[-1] / "report.md").read_text(), (runs[-1] / "report.html").read_text())
        assert "moves its input by at most 0 in linf" in (runs[-1] / "report.md").read_text()  # the threat's norm
    labels = [f"{HOSTILE} {n}" for n in (1, 2)]
    compared = robustness_eval.compare(runs, tmp_path / "cmp", labels, {labels[0]: {"note": HOSTILE}})
    _assert_inert(compared.read_text(), compared.with_suffix(".html").read_text())

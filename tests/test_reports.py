"""Result store, resume after SIGKILL, reports (Markdown, HTML, plots), config handling."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustness_eval.cli import main
from robustness_eval.report import write_report
from robustness_eval.stats import clopper_pearson, mcnemar_exact

TINY = ["--n-points", "24", "--attacks", "pgd,noise,lookahead,minmax,square", "--budget", "square=60",
        "--budget", "pgd=20", "--budget", "lookahead=10", "--budget", "minmax=5", "--no-crosscheck", "--quiet"]


def _strip_timings(results: dict) -> dict:
    results = json.loads(json.dumps(results))
    for rung in results["attacks"]:
        rung.pop("seconds")
    results["extras"].pop("seconds", None)
    results.pop("store_digest", None)  # the store holds timings
    results["extras"].pop("phase_seconds", None)  # timings
    results["config"].pop("call", None)
    return results


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, private_cache):
    out = tmp_path_factory.mktemp("finished")
    assert main(["run", *TINY, "--out", str(out)]) == 0
    return out


def test_same_seed_gives_identical_results(finished_run, tmp_path):
    again = tmp_path / "again"
    assert main(["run", *TINY, "--out", str(again)]) == 0
    first = json.loads((finished_run / "results.json").read_text())
    second = json.loads((again / "results.json").read_text())
    assert _strip_timings(first) == _strip_timings(second)


def test_sigkill_mid_attack_then_resume_matches_uninterrupted(finished_run, tmp_path, private_cache):
    out = tmp_path / "killed"
    env = {**os.environ, "ROBUSTNESS_EVAL_CACHE": str(private_cache), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "robustness_eval.cli", "run", *TINY, "--out", str(out)]
    process = subprocess.Popen(command, env=env, start_new_session=True)
    database = out / "results.sqlite"
    deadline = time.time() + 120
    killed_after = 0
    while time.time() < deadline and process.poll() is None:  # wait for some, not all, chunks
        if database.exists():
            try:
                with sqlite3.connect(database) as db:
                    killed_after = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            except sqlite3.OperationalError:
                killed_after = 0
            if killed_after >= 3:
                os.killpg(process.pid, signal.SIGKILL)
                break
        time.sleep(0.05)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "results.json").exists()
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    with sqlite3.connect(database) as db:
        keys = db.execute("SELECT phase, target, attack, point FROM rows").fetchall()
        chunks = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    assert len(keys) == len(set(keys))  # no row doubled
    assert chunks > killed_after
    resumed = json.loads((out / "results.json").read_text())
    finished = json.loads((finished_run / "results.json").read_text())
    assert _strip_timings(resumed) == _strip_timings(finished)  # no row lost or changed


def _copy_run(finished_run: Path, to: Path) -> Path:
    to.mkdir()
    for name in ("results.sqlite", "results.json"):
        (to / name).write_bytes((finished_run / name).read_bytes())
    return to


def test_resume_refuses_configuration_flags(finished_run, capsys):
    before = (finished_run / "results.json").read_text()
    assert main(["run", "--resume", str(finished_run), "--eps", "0.2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--resume takes no configuration flags (got --eps)" in err
    assert (finished_run / "results.json").read_text() == before


def test_a_run_into_a_directory_of_another_configuration_is_refused_before_work(finished_run, capsys):
    before = (finished_run / "results.json").read_text()
    assert main(["run", *TINY, "--eps", "0.2", "--out", str(finished_run)]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "eps" in err and "threat" in err
    assert (finished_run / "results.json").read_text() == before


def test_markdown_numbers_equal_results_json(finished_run):
    results = json.loads((finished_run / "results.json").read_text())
    report = (finished_run / "report.md").read_text()
    table = report.split("## The paper's view beside the truth")[1].split("##")[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]]
            for line in table.splitlines() if line.startswith("| ") and "%" in line}
    keys = {"clean accuracy": "clean_accuracy",
            "attack success, transfer only (paper's Table 1)": "transfer_attack_success_rate",
            "robust accuracy, transfer only": "transfer_robust_accuracy",
            "attack success, worst case over the battery": "attack_success_rate",
            "robust accuracy, worst case over the battery": "robust_accuracy"}
    for label, key in keys.items():
        assert rows[label] == [f"{100 * results[key][t]:.1f} %" for t in ("base", "shell")], label
    ladder = report.split("## The ladder")[1].split("##")[0]
    lines = [line for line in ladder.splitlines() if line.startswith("| ") and "%" in line]
    assert len(lines) == len(results["attacks"])
    for line, rung in zip(lines, results["attacks"], strict=True):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[:5] == [rung["target"], rung["name"], rung["kind"], str(rung["attacked"]),
                             str(rung["new_breaks"])]
        assert cells[5] == f"{100 * rung['robust_accuracy_after']:.1f} %"
        assert cells[8] == rung["needs"].replace("_", "\\_")  # the capabilities the attack used


def test_html_report_is_self_contained_with_plots_and_examples(finished_run):
    page = (finished_run / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 2
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "examples: x, x'" in html.unescape(page)
    assert (finished_run / "plots" / "examples.png").exists()


def test_report_command_rewrites_from_results(finished_run):
    (finished_run / "report.md").unlink()
    assert main(["report", str(finished_run)]) == 0
    assert (finished_run / "report.md").exists()


def test_toml_config_and_flag_precedence(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('n_points = 8\nattacks = "pgd"\neps = "0.05"\ncrosscheck = false\nconvergence = false\n')
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--eps", "0.02", "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_points"] == 8 and results["config"]["threat"]["eps"] == 0.02
    bad = tmp_path / "bad.toml"
    bad.write_text("epsilon = 0.1\n")
    with pytest.raises(ValueError, match="unknown config key"):
        from robustness_eval.config import load_toml

        load_toml(bad)


def test_sweep_writes_sub_runs_and_plots(tmp_path):
    out = tmp_path / "sweep"
    assert main(["run", "--n-points", "10", "--attacks", "pgd,lookahead", "--delta", "0,0.1",
                 "--no-crosscheck", "--no-convergence", "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [row["delta"] for row in results["extras"]["sweep"]] == [0.0, 0.1]
    assert (out / "sweep" / "eps0.1-delta0.1" / "results.json").exists()
    assert (out / "plots" / "sweep-delta.png").exists()
    # δ = 0: the shell is the base model, so their robust accuracies agree
    zero = results["extras"]["sweep"][0]
    assert zero["robust_accuracy"]["shell"] == pytest.approx(zero["robust_accuracy"]["base"])


def test_exact_statistics_match_known_values():
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.3084971, abs=1e-6)
    assert mcnemar_exact(0, 6) == pytest.approx(2 * 0.5**6)
    assert mcnemar_exact(3, 3) == pytest.approx(1.0)


def test_write_report_names_a_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"results\.json does not exist"):
        write_report(Path(tmp_path))


def test_python_api_mirrors_the_cli(digits, digits_adversarial, tmp_path):
    import robustness_eval
    from shells import MCNShell

    shell = MCNShell(digits_adversarial, 0.1, "linf", digits.bounds)
    result = robustness_eval.evaluate(digits_adversarial, shell, digits, robustness_eval.Threat("linf", 0.1),
                                      attacks="pgd,minmax", budgets={"pgd": 20, "minmax": 5}, n_points=15,
                                      store_dir=tmp_path / "store")
    assert result.n_points == 15 and set(result.robust_accuracy) == {"base", "shell"}
    report = result.to_report(tmp_path / "report")
    assert report.exists() and (tmp_path / "report" / "report.html").exists()
    assert (tmp_path / "store" / "results.sqlite").exists()
    with pytest.raises(TypeError, match=r"`data` must be a robustness_eval\.data\.Dataset"):
        robustness_eval.evaluate(digits_adversarial, shell, digits.x_test, robustness_eval.Threat("linf", 0.1))

"""`robustness-eval compare`: several runs side by side, figures read from each results.json; the report's plots."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from robustness_eval import compare
from robustness_eval.cli import main
from robustness_eval.plots import LADDER_TITLE, write_plots
from robustness_eval.records import typed_results
from robustness_eval.report import pct, write_report

TINY = ["--n-points", "24", "--attacks", "pgd,noise,lookahead,minmax,square", "--budget", "square=60",
        "--budget", "pgd=20", "--budget", "lookahead=10", "--budget", "minmax=5", "--no-crosscheck",
        "--no-convergence", "--no-restart-check", "--no-sanity", "--quiet"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict[str, Path]:
    runs = {}
    for shell in ("mcn", "jpeg"):
        out = tmp_path_factory.mktemp(shell)
        assert main(["run", *TINY, "--shell", shell, "--out", str(out)]) == 0
        runs[shell] = out
    return runs


def _results(directory: Path) -> dict:
    return json.loads((directory / "results.json").read_text())


def _table_row(markdown: str, label: str) -> list[str]:
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 2, rows  # one in the comparison table, one in the active-test table
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_compare_shows_each_runs_figures_from_its_results(two_runs, tmp_path):
    path = compare([two_runs["mcn"], two_runs["jpeg"]], tmp_path / "cmp", labels=["mcn", "jpeg"])
    markdown = path.read_text()
    header = [cell.strip() for cell in markdown.splitlines()[4].strip("|").split("|")]
    for label, directory in two_runs.items():
        results = _results(directory)
        row = dict(zip(header, _table_row(markdown, label), strict=True))
        assert row["robust, transfer only"] == pct(results["transfer_robust_accuracy"]["shell"])
        assert row["robust, worst case"].startswith(pct(results["robust_accuracy"]["shell"]))
        breaks = Counter(p["broken_by"]["shell"].split("@")[0] for p in results["points"] if p["broken_by"]["shell"])
        top = breaks.most_common(1)
        assert row["most breaks"] == (f"{top[0][0]} ({top[0][1]})" if top else "-")
        skipped = sum(s["target"] == "shell" for s in results["extras"]["skipped"])
        assert row["attacks run / skipped on G"].endswith(f"/ {skipped}")
    assert "threat" not in header  # one threat: said once, above the table
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "data:image/png;base64," in page and "<table>" in page


def test_compare_refuses_runs_under_different_threats_unless_asked(two_runs, tmp_path):
    other = tmp_path / "other-eps"
    shutil.copytree(two_runs["jpeg"], other)
    results = _results(other)
    results["config"]["threat"]["eps"] = 0.05
    (other / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match=r"different threats.*--allow-different-threats"):
        compare([two_runs["mcn"], other], tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # refused before anything is written
    assert main(["compare", str(two_runs["mcn"]), str(other), "--out", str(tmp_path / "cli")]) == 2
    markdown = compare([two_runs["mcn"], other], tmp_path / "allowed", allow_different_threats=True).read_text()
    assert "| threat |" in markdown and "ε = 0.05" in markdown and "not comparable" in markdown


def test_annotations_add_columns_and_user_text_cannot_format_the_table(two_runs, tmp_path):
    notes = tmp_path / "notes.toml"
    notes.write_text('[mcn]\nprotocol = "transfer | CW"\n[jpeg]\nprotocol = "Guo et al. 2018"\n')
    labels = ["mcn", "jpeg"]
    markdown = compare([two_runs["mcn"], two_runs["jpeg"]], tmp_path / "cmp", labels, notes).read_text()
    assert markdown.splitlines()[4].startswith("| run | protocol |")
    assert "transfer \\| CW" in markdown  # a pipe in the user's text does not split the cell
    notes.write_text('[magnet]\nprotocol = "x"\n')
    with pytest.warns(UserWarning, match="not compared are ignored: magnet"):
        compare([two_runs["mcn"], two_runs["jpeg"]], tmp_path / "other", labels, notes)
    notes.write_text('magnet = "x"\n')
    with pytest.raises(ValueError, match="must be tables"):
        compare([two_runs["mcn"], two_runs["jpeg"]], tmp_path / "bad", labels, notes)


@pytest.mark.parametrize("case, match", [
    ("one", "two or more run directories"), ("missing", "results.json does not exist"),
    ("labels", "one per directory"), ("same-label", "share the label")])
def test_compare_rejects_bad_input_with_what_to_pass(two_runs, tmp_path, case, match):
    dirs = {"one": [two_runs["mcn"]], "missing": [two_runs["mcn"], tmp_path / "nothing"]}.get(
        case, [two_runs["mcn"], two_runs["jpeg"]])
    labels = {"labels": ["a"], "same-label": ["a", "a"]}.get(case)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        compare(dirs, tmp_path / "out", labels)


def test_the_ladder_is_the_reports_first_plot_and_records_read_as_text(two_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_runs["mcn"], run)
    markdown = write_report(run).read_text()
    images = [line for line in markdown.splitlines() if line.startswith("![")]
    assert images[0] == f"![{LADDER_TITLE}](plots/ladder.png)"
    assert markdown.index(images[0]) < markdown.index("## Sanity checks")  # in the ladder's own section
    assert "{'" not in markdown and "versions python" in markdown
    ladder_rows = [line for line in markdown.splitlines() if line.startswith("| shell | minmax |")]
    assert ladder_rows and "per-class-search" in ladder_rows[0]  # the capability the attack used


def test_a_plot_with_nothing_to_show_is_a_sentence(two_runs, tmp_path):
    results = _results(two_runs["mcn"])
    for point in results["points"]:
        point["broken_by"] = {"base": None, "shell": None}
        point["perturbation_norm"] = {"base": None, "shell": None}
    plots = write_plots(typed_results(results), tmp_path)  # no store, no examples beside it
    assert list(plots.images) == [LADDER_TITLE]
    assert any("No verified break on either target" in s for s in plots.omitted)
    assert any("No verified break on the shell: no example images" in s for s in plots.omitted)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["ladder.png"]


def test_a_worst_case_escalation_left_moving_is_marked_an_upper_bound(two_runs, tmp_path):
    capped = tmp_path / "capped"
    shutil.copytree(two_runs["jpeg"], capped)
    results = _results(capped)
    results["escalation"] = [{"round": 1, "target": "shell", "indicators": ["a flat loss trace"],
                              "attacks": ["pgd@esc1"], "new_breaks": 0, "robust_accuracy_before": 0.5,
                              "robust_accuracy_after": 0.5, "seconds": 1.0, "stopped": "time cap reached"}]
    (capped / "results.json").write_text(json.dumps(results))
    markdown = compare([two_runs["mcn"], capped], tmp_path / "cmp", labels=["mcn", "capped"]).read_text()
    header = [cell.strip() for cell in markdown.splitlines()[4].strip("|").split("|")]
    capped_row = dict(zip(header, _table_row(markdown, "capped"), strict=True))
    mcn_row = dict(zip(header, _table_row(markdown, "mcn"), strict=True))
    assert capped_row["robust, worst case"].startswith("≤ " + pct(results["robust_accuracy"]["shell"]))
    assert not mcn_row["robust, worst case"].startswith("≤")
    assert not capped_row["base F worst case"].startswith("≤")
    # the run's own report says so in its headline
    from robustness_eval.report import headline
    text = headline(typed_results(results))
    assert f"shell at most {pct(results['robust_accuracy']['shell'])}" in text and "base at most" not in text
    assert "at most" not in headline(typed_results(_results(two_runs["mcn"])))

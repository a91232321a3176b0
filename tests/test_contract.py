"""The contract a newcomer relies on: results.json read through one versioned reader, committed reports redrawn
byte for byte from their files, and every phase of a run named on screen, with its seconds recorded."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from robustness_eval.cli import main
from robustness_eval.progress import PhaseClock
from robustness_eval.records import ResultsRecord, read_record
from robustness_eval.report import write_report
from robustness_eval.results_file import SCHEMA_VERSION, read_results

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(path.parent for path in (ROOT / "reports" / "examples").rglob("results.json"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[str(e.relative_to(ROOT / "reports" / "examples")) for e in EXAMPLES])
def test_every_committed_example_redraws_its_report_byte_for_byte(example, tmp_path):
    copy = tmp_path / example.name
    shutil.copytree(example, copy)
    write_report(copy)
    for name in ("report.md", "report.html"):
        assert (copy / name).read_text() == (example / name).read_text(), f"{example.name}/{name} differs"


def test_the_reader_takes_files_without_a_version_as_version_1_and_refuses_an_unknown_one(tmp_path, capsys):
    example = ROOT / "reports" / "examples" / "digits-default"
    results = json.loads((example / "results.json").read_text())
    results.pop("schema_version", None)
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert read_results(tmp_path / "results.json")["schema_version"] == 1
    run = tmp_path / "future"
    shutil.copytree(example, run)
    results["schema_version"] = SCHEMA_VERSION + 1
    (run / "results.json").write_text(json.dumps(results))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"has schema_version {SCHEMA_VERSION + 1}, which this robustness-eval" in err and err.count("\n") == 1


def test_every_committed_example_reads_through_the_typed_records():
    for example in EXAMPLES:
        record = read_record(example / "results.json")
        assert record.ladder("shell") and record.extras.active_test is not None and record.extras.sanity


@pytest.mark.parametrize(("edit", "said"), [
    (lambda r: r["extras"]["crosscheck"].update(wrong=1), "results.json.extras.crosscheck: unknown key(s) 'wrong'"),
    (lambda r: r["attacks"][0].update(new_breaks="7"), "results.json.attacks[0].new_breaks: expected int, found str"),
    (lambda r: r["points"][3].pop("label"), "results.json.points[3]: missing key 'label'"),
    (lambda r: r["extras"]["sanity"][0].update(status=None), "results.json.extras.sanity[0].status: expected str"),
])
def test_a_results_file_that_does_not_fit_its_records_is_refused_in_one_line(edit, said, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(ROOT / "reports" / "examples" / "digits-default", run)
    results = json.loads((run / "results.json").read_text())
    edit(results)
    (run / "results.json").write_text(json.dumps(results))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    version = results.get("schema_version", 1)
    assert said in err and f"does not fit the results.json of schema version {version}" in err and err.count("\n") == 1


def test_extras_a_user_added_survive_the_typed_records():
    results = json.loads((ROOT / "reports" / "examples" / "digits-default" / "results.json").read_text())
    results["extras"]["my_check"] = {"verdict": "fine", "values": [1, 2]}
    record = ResultsRecord.from_json({**results, "schema_version": 1})
    assert record.extras.other == {"my_check": {"verdict": "fine", "values": [1, 2]}}
    assert record.to_json()["extras"]["my_check"] == results["extras"]["my_check"]


SMALL = ["--n-points", "20", "--attacks", "pgd,noise,lookahead", "--budget", "pgd=8", "--budget", "noise=8",
         "--budget", "lookahead=4", "--escalation-cap", "20", "--inference-runs", "1"]
PHASES = ["loading", "checks and probe", "battery", "escalation", "cross-check", "sanity checks",
          "active test: on-gradient", "active test: lure"]


def test_a_run_names_every_phase_records_its_seconds_and_quiet_silences_it(tmp_path, capsys, private_cache):
    assert main(["run", *SMALL, "--out", str(tmp_path / "loud")]) == 0
    err = capsys.readouterr().err
    for phase in [*PHASES, "report"]:
        assert f"▸ {phase}" in err, phase
    results = json.loads((tmp_path / "loud" / "results.json").read_text())
    assert results["schema_version"] == SCHEMA_VERSION
    assert ResultsRecord.from_json(results).to_json() == results  # every key written is one the records know
    assert set(PHASES) <= set(results["extras"]["phase_seconds"])
    assert "Where the time went" in (tmp_path / "loud" / "report.md").read_text()
    assert main(["run", *SMALL, "--quiet", "--out", str(tmp_path / "quiet")]) == 0
    captured = capsys.readouterr()
    assert "▸" not in captured.err and captured.out == ""


def test_the_clock_beats_while_a_phase_runs_and_is_silent_when_quiet(capsys):
    clock = PhaseClock(quiet=False, interval=0.05)
    with clock.phase("slow work"):
        time.sleep(0.3)
    clock.close()
    err = capsys.readouterr().err
    assert "▸ slow work" in err and "… slow work:" in err and "so far" in err
    assert clock.seconds["slow work"] >= 0.3
    quiet = PhaseClock(quiet=True, interval=0.05)
    with quiet.phase("slow work"):
        time.sleep(0.15)
    quiet.close()
    assert capsys.readouterr().err == ""


def test_escalation_rounds_are_registry_data_doubled_each_round():
    from attacks.registry import ESCALATION, attack_classes
    from robustness_eval.escalation import round_attacks

    assert all(name in attack_classes() for entries in ESCALATION.values() for name, _, _ in entries)
    first, second = (round_attacks("base", frozenset(), number, None) for number in (1, 2))
    assert [attack.name for attack in first] == [f"{name}@esc1" for name, _, _ in ESCALATION["base"]]
    assert [attack.budget * 2 for attack in first] == [attack.budget for attack in second]
    assert [getattr(a, "restarts", 1) * 2 for a in first if "restarts" in vars(a)] == [
        a.restarts for a in second if "restarts" in vars(a)]
    shell = round_attacks("shell", frozenset({"search", "per-class-search", "deterministic"}), 1, None)
    assert {"minmax@esc1", "lookahead@esc1", "square@esc1", "rays@esc1"} <= {a.name for a in shell}
    assert "pgd-e2e@esc1" not in {a.name for a in shell}  # needs `differentiable`

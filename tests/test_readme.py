"""The README is a contract: its two commands are the ones CI runs, every command of its CLI tour parses (the cheap
ones run as written), and its Python API block runs."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from robustness_eval.cli import _parser, main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def _tour() -> list[list[str]]:
    (block,) = _blocks("console")
    return [shlex.split(line.split("#")[0])[1:] for line in block.splitlines() if line.startswith("robustness-eval")]


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 260


def test_the_two_commands_are_the_ones_ci_runs():
    install, tests = _blocks("")[:2]
    assert "pip install torch==2.13.0" in install and 'pip install -e ".[dev,ray]"' in install
    assert install.strip().endswith("robustness-eval run")
    assert tests.strip().endswith("python -m pytest")
    assert "python -m pip install -q torch==2.13.0" in CI and 'python -m pip install -q -e ".[dev,ray]"' in CI
    assert re.search(r"^python -m pytest$", CI, re.M) and re.search(r"^ruff check \.$", CI, re.M)


def test_the_default_run_is_the_embedded_default_the_readme_describes():
    args = _parser().parse_args(["run"])
    assert (args.data, args.model, args.shell, args.eps, args.delta, args.n_points, args.seed) == (None,) * 7
    from robustness_eval.config import DEFAULTS

    assert (DEFAULTS["data"], DEFAULTS["model"], DEFAULTS["shell"], DEFAULTS["eps"], DEFAULTS["n_points"]) == (
        "digits", "adversarial", "mcn", "0.1", 200)


@pytest.mark.parametrize("argv", _tour(), ids=lambda argv: " ".join(argv[:3]))
def test_every_command_of_the_tour_parses(argv):
    _parser().parse_args(argv)


def test_the_cheap_commands_of_the_tour_run_as_written(tmp_path, monkeypatch, capsys):
    for example in ("digits-default", "defenses/digits/mcn", "defenses/digits/jpeg"):
        shutil.copytree(ROOT / "reports" / "examples" / example, tmp_path / "reports" / "examples" / example)
    monkeypatch.chdir(tmp_path)
    cheap = [argv for argv in _tour() if argv[0] in ("report", "compare", "attacks", "check-shell")]
    assert len(cheap) == 4
    for argv in cheap:
        assert main(argv) == 0, argv
    assert (tmp_path / "reports" / "cmp" / "compare.md").exists()
    table = [line.rstrip() for line in capsys.readouterr().out.splitlines() if re.match(r"^\w+ +(pass|fail|n/a)", line)]
    shown = re.search(r"\$ robustness-eval check-shell .*?\n(.*?)```", README, re.S).group(1).splitlines()[1:]
    assert table == [line.rstrip() for line in shown]  # the README's table is what the command prints


def test_the_python_api_block_runs_as_written(tmp_path, monkeypatch, private_cache):
    (block,) = _blocks("python")[1:2]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})  # the README's own example, run as a user would
    assert (tmp_path / "reports" / "api" / "report.md").exists()

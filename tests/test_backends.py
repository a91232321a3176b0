"""Backends: Ray gives the local results; units are order-free; faults lose and duplicate nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import robustness_eval
from robustness_eval.backends import LocalBackend, LocalSession, RayBackend, make_backend
from robustness_eval.cli import main
from robustness_eval.runner import Run, run_battery
from robustness_eval.store import DB_NAME, ResultStore
from robustness_eval.types import Threat
from robustness_eval.units import Context, execute_unit
from shells import MCNShell, VoteShell

ray = pytest.importorskip("ray", reason="the Ray backend's tests need the ray extra: pip install -e '.[ray]'")

RUN = {"n_points": 60, "chunk": 20, "convergence": False, "crosscheck": False, "sanity_checks": False,
       "attacks": "pgd,noise,pgd-path,minmax,square", "budgets": {"pgd": 20, "minmax": 5, "square": 60}}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLI_FLAGS = ["--model", f"{EXAMPLES / 'digits_model.py'}:build", "--data", str(EXAMPLES / "digits-test.npz"),
             "--n-points", "40", "--chunk", "10", "--attacks", "pgd,noise,square", "--budget", "square=100",
             "--no-convergence", "--no-crosscheck", "--no-sanity", "--no-escalation", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def ray_runtime():
    """One local 2-CPU Ray runtime for the module, shut down after it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def mcn(model, delta, norm, bounds):
    return MCNShell(model, delta=delta, norm=norm, bounds=bounds)


def comparable(results: dict) -> dict:
    """results.json less what may differ between backends: timings, the call and the backend itself."""
    results = json.loads(json.dumps(results))
    for key in ("call", "backend"):
        results["config"].pop(key)
    results["extras"].pop("seconds")
    results.pop("store_digest", None)  # the store holds timings
    results["extras"].pop("phase_seconds", None)  # timings
    for rung in results["attacks"]:
        rung.pop("seconds")
    return results


def assert_same_results(got: dict, expected: dict) -> None:
    """Everything equal exactly but the mean-loss traces, equal to float32 rounding: a Ray worker runs torch
    on one thread, whose reductions round the last bits of a mean loss differently."""
    got, expected = comparable(got), comparable(expected)
    traces = [[rung.pop("loss_trace") for rung in results["attacks"]] for results in (got, expected)]
    assert got == expected
    for mine, theirs in zip(*traces, strict=True):
        assert mine == pytest.approx(theirs, rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def local_result(digits, digits_adversarial):
    return robustness_eval.evaluate(digits_adversarial, mcn, digits, Threat("linf", 0.1), **RUN).to_json()


def test_ray_gives_the_same_results_json_as_local(digits, digits_adversarial, local_result):
    result = robustness_eval.evaluate(digits_adversarial, mcn, digits, Threat("linf", 0.1), backend="ray",
                                      workers=2, **RUN).to_json()
    assert result["config"]["backend"] == "ray" and local_result["config"]["backend"] == "local"
    assert_same_results(result, local_result)
    assert 0 < result["robust_accuracy"]["shell"] < 1  # some points break, some do not: a real comparison


def _worker_pids_running_units() -> list[int]:
    """PIDs of Ray worker processes in the middle of a unit (Ray titles them after the running task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::_execute_on_worker"):
                pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_unit_is_retried_and_nothing_is_lost_or_written_twice(
        digits, digits_adversarial, local_result, tmp_path):
    killed = []

    def kill_a_busy_worker():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            busy = _worker_pids_running_units()
            if busy:
                time.sleep(0.3)  # well inside the unit
                if busy[0] in _worker_pids_running_units():
                    os.kill(busy[0], signal.SIGKILL)
                    killed.append(busy[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    result = robustness_eval.evaluate(digits_adversarial, mcn, digits, Threat("linf", 0.1), backend="ray",
                                      workers=2, store_dir=tmp_path, **RUN).to_json()
    killer.join()
    assert killed, "no worker was caught in the middle of a unit"
    assert_same_results(result, local_result)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        per_chunk = db.execute("SELECT COUNT(*), COUNT(DISTINCT phase || attack || chunk) FROM chunks").fetchone()
        rows = db.execute("SELECT COUNT(*), COUNT(DISTINCT phase || target || attack || point) FROM rows").fetchone()
    assert per_chunk[0] == per_chunk[1] and rows[0] == rows[1]


class ReversedSession(LocalSession):
    """Runs an attack's units last-first: a stand-in for any completion order a cluster produces."""

    def run(self, units):
        yield from [(unit, execute_unit(self.context, unit)) for unit in reversed(units)]


class ReversedBackend(LocalBackend):
    @contextmanager
    def session(self, context):
        yield ReversedSession(context)


def test_a_vote_shell_gives_the_same_numbers_whatever_order_its_units_run_in(digits, digits_standard):
    """The vote shell is reseeded per unit, so a unit's answers do not depend on what ran before it."""
    shell = VoteShell(digits_standard, radius=0.1, samples=8, seed=3)
    x, y, threat = digits.x_test[:40], digits.y_test[:40], Threat("linf", 0.1)
    runs = []
    for backend in (LocalBackend(), ReversedBackend()):
        result = run_battery(Run(Context(digits_standard, shell, x, y, threat), seed=1, chunk=10, backend=backend),
                             "pgd,noise,square", budgets={"square": 60}).to_json()
        for rung in result["attacks"]:
            rung.pop("seconds")
        runs.append(result)
    assert runs[0] == runs[1]
    assert any(rung["new_breaks"] for rung in runs[0]["attacks"] if rung["target"] == "shell")


def _run_cli_until_some_chunks(flags: list[str], out: Path, env: dict) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "robustness_eval.cli", "run", *flags, "--out", str(out)],
                               env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if (out / DB_NAME).exists():
            with sqlite3.connect(out / DB_NAME) as db:
                try:
                    if db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] >= 2:
                        return process
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    raise AssertionError(f"the run ended or stalled before it could be killed: {process.communicate()[1]}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, private_cache):
    whole = tmp_path_factory.mktemp("whole")
    assert main(["run", *CLI_FLAGS, "--out", str(whole)]) == 0
    return json.loads((whole / "results.json").read_text())


@pytest.mark.parametrize(("first", "then"), [("ray", "local"), ("local", "ray")])
def test_a_driver_killed_with_sigkill_resumes_on_either_backend_to_the_same_results(
        first, then, uninterrupted, tmp_path, private_cache):
    env = {**os.environ, "ROBUSTNESS_EVAL_CACHE": str(private_cache)}
    on = {"ray": ["--backend", "ray", "--workers", "2"], "local": []}
    out = tmp_path / "killed"
    process = _run_cli_until_some_chunks([*CLI_FLAGS, *on[first]], out, env)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and every process it started
    process.wait(timeout=30)
    store = ResultStore.reader(out)
    finished = store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    store.close()
    assert finished >= 2
    assert main(["run", "--resume", str(out), *on[then]]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["backend"] == then
    assert_same_results(results, uninterrupted)


def test_backend_options_are_checked_before_any_work(digits, digits_adversarial, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'spark'; pass one of local, ray"):
        make_backend("spark")
    with pytest.raises(ValueError, match="apply to backend='ray' only"):
        robustness_eval.evaluate(digits_adversarial, mcn, digits, Threat("linf", 0.1), workers=2, store_dir=tmp_path,
                                 **RUN)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="`workers` must be an integer ≥ 1"):
        RayBackend(workers=0)


def test_a_malformed_or_unreachable_ray_address_is_refused_before_anything_is_written(digits, digits_adversarial,
                                                                                      tmp_path, capsys):
    with pytest.raises(ValueError, match=r"`ray_address` \(--ray-address\) must be 'auto', host:port"):
        robustness_eval.evaluate(digits_adversarial, mcn, digits, Threat("linf", 0.1), backend="ray",
                                 ray_address="notanaddress", store_dir=tmp_path / "api", **RUN)
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.time()
    with pytest.raises(ValueError, match=rf"nothing answered at 127\.0\.0\.1:{port} within"):
        robustness_eval.evaluate(digits_adversarial, mcn, digits, Threat("linf", 0.1), backend="ray",
                                 ray_address=f"127.0.0.1:{port}", store_dir=tmp_path / "api", **RUN)
    assert time.time() - start < 30
    out = tmp_path / "cli"
    assert main(["run", *CLI_FLAGS, "--backend", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", str(out)]) == 2
    assert "nothing answered" in capsys.readouterr().err
    assert not (tmp_path / "api").exists() and not out.exists()

"""The battery on the local backend and on Ray with 1 and 2 workers, and Ray's cost per unit of work.

Every run evaluates the same points with the same battery and seed, so all of them must give the
same per-point verdicts (checked and recorded); only the wall time may differ. The per-unit
overhead is measured on units that do almost nothing (a 1-query noise attack, one point per
unit, one unit per point and target): (Ray's wall time - the local wall time) / units.
"""

from __future__ import annotations

import time

from robustness_eval.backends import LocalBackend, RayBackend
from robustness_eval.runner import Run, run_battery
from robustness_eval.store import ResultStore
from robustness_eval.types import Threat
from robustness_eval.units import Context
from shells import MCNShell

POINTS, CHUNK, ATTACKS, BUDGETS = 100, 25, "pgd,cw,noise,lookahead,bpda,square", {"square": 100, "noise": 20}
OVERHEAD_POINTS = 100


def _verdicts(result) -> list:
    return [(p["broken_by"]["base"], p["broken_by"]["shell"]) for p in result.points]


def _units(store: ResultStore) -> int:
    return store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]


def run() -> dict:
    import ray

    from benchmarks.common import setting

    model, x, y, bounds = setting("digits", POINTS)
    threat = Threat("linf", 0.1, bounds)
    shell = MCNShell(model, delta=0.1, bounds=bounds)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        RayBackend(workers=1).connect()
        ray.get([ray.remote(lambda: None).remote() for _ in range(4)])  # warm the worker pool
        rows, reference = [], None
        for label, backend in (("local (2 torch threads)", LocalBackend()), ("ray, 1 worker", RayBackend(workers=1)),
                               ("ray, 2 workers", RayBackend(workers=2))):
            store = ResultStore(None)
            start = time.perf_counter()
            result = run_battery(Run(Context(model, shell, x, y, threat), store=store, chunk=CHUNK, backend=backend),
                                 ATTACKS, budgets=BUDGETS)
            seconds = time.perf_counter() - start
            reference = reference or _verdicts(result)
            rows.append({"backend": label, "seconds": seconds, "same_verdicts": _verdicts(result) == reference,
                         "robust_accuracy_shell": result.robust_accuracy["shell"], "units": _units(store)})
        overhead = {}
        for label, backend in (("local", LocalBackend()), ("ray", RayBackend(workers=1))):
            store = ResultStore(None)
            start = time.perf_counter()
            run_battery(Run(Context(model, shell, x[:OVERHEAD_POINTS], y[:OVERHEAD_POINTS], threat), store=store,
                            chunk=1, backend=backend), "noise", budgets={"noise": 1})
            overhead[label] = time.perf_counter() - start
            units = _units(store)
    finally:
        ray.shutdown()
    return {"points": POINTS, "chunk": CHUNK, "attacks": ATTACKS, "budgets": BUDGETS, "runs": rows,
            "overhead": {"units": units, "local_seconds": overhead["local"], "ray_seconds": overhead["ray"],
                         "seconds_per_unit": (overhead["ray"] - overhead["local"]) / units}}

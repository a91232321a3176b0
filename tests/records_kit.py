"""Typed results records from the few fields a unit test cares about: the rest get neutral values."""

from __future__ import annotations

from robustness_eval.records import ResultsRecord, typed_results

RUNG = {"name": "attack", "kind": "transfer", "target": "shell", "robust_accuracy_after": 0.0, "new_breaks": 0,
        "attacked": 0, "queries_median": 0.0, "seconds": 0.0, "loss_trace": []}


def results_record(attacks: list[dict] = (), extras: dict | None = None, **fields) -> ResultsRecord:
    """A ResultsRecord whose rungs are `attacks` (each completed from RUNG) and whose extras are `extras`, read
    (and migrated) as a results.json is."""
    share = {"base": 1.0, "shell": 1.0}
    data = {"config": {"threat": {"norm": "linf", "eps": 0.1, "bounds": [0.0, 1.0]},
                       "shell_parameters": {"kind": "mcn", "radius": 0.1}},
            "n_points": 10, "clean_accuracy": share, "robust_accuracy": share, "transfer_robust_accuracy": share,
            "attack_success_rate": share, "transfer_attack_success_rate": share, "retained_accuracy": 1.0,
            "attacks": [{**RUNG, **rung} for rung in attacks], "points": [], "extras": extras or {},
            "schema_version": 2, **fields}
    return typed_results(data)

"""The result of one evaluation and its JSON contract (`results.json`).

Fields (never removed, only added): config, n_points, clean_accuracy {base, shell},
robust_accuracy {base, shell} (worst case over the battery), transfer_robust_accuracy
{base, shell} (transfer attacks only: the paper's protocol), attack_success_rate and
transfer_attack_success_rate {base, shell} (broken / clean-correct), retained_accuracy,
attacks (the ladder), points (per point), escalation (the rounds an indicator started),
store_digest (the digest of the run's results.sqlite when this file was written), schema_version.

Each field and extra is a typed record of `robustness_eval.records`; `records.read_record` is the one reader
(`results_file.read_results`, then the records), and `EvaluationResult.record()` is this result as that record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from robustness_eval.example_file import EXAMPLES_NAME, save_examples
from robustness_eval.records import AttackRecord, PointRecord, ResultsRecord, Statistics, typed_results
from robustness_eval.results_file import SCHEMA_VERSION
from robustness_eval.types import BLACK_BOX_KINDS, AttackKind, breaks_of
from shells.base import capabilities

if TYPE_CHECKING:
    from robustness_eval.units import Context


def describe_shell(shell) -> dict:
    """A shell's public parameters and capabilities, as results.json records them (any module)."""
    describe = getattr(shell, "describe", None)
    described = dict(describe()) if callable(describe) else {}
    base = {"kind": str(getattr(shell, "kind", type(shell).__name__)),
            "class": f"{type(shell).__module__}.{type(shell).__qualname__}",
            "norm": str(getattr(getattr(shell, "norm", None), "value", getattr(shell, "norm", None))),
            "radius": float(getattr(shell, "radius", 0.0) or 0.0),
            "threshold": getattr(shell, "threshold", None),
            "randomized": bool(getattr(shell, "randomized", False))}
    return {**base, **described, "capabilities": sorted(capabilities(shell))}


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def _mean_trace(traces: list[list[float]]) -> list[float]:
    """Element-wise mean of the chunks' loss traces (chunks may stop early)."""
    length = max((len(t) for t in traces), default=0)
    out = []
    for k in range(length):
        values = [t[k] for t in traces if len(t) > k]
        out.append(sum(values) / len(values))
    return out


def _summarise(store, phase: str, battery: list, offered: dict, correct: dict, n: int):
    """The ladder of one phase, and per target the breaking attack and ‖x' − x‖ of each point.

    `offered` maps each target to the capabilities it offers; an attack that does not apply to a
    target has no rung for it."""
    records, broken_by, norms = [], {t: {} for t in offered}, {t: {} for t in offered}
    for attack in battery:
        trace = _mean_trace(store.traces(phase, attack.name))
        for target, caps in offered.items():
            if attack.skip_reason(caps) is not None or attack.only_target not in (None, target):
                continue
            rows = store.rows(phase, target, attack.name)
            for row in rows:
                if row["success"]:
                    broken_by[target][row["point"]] = attack.name
                    norms[target][row["point"]] = row["norm"]
            alive = int(correct[target].sum()) - len(broken_by[target])
            queries = sorted(row["queries"] for row in rows)
            records.append(AttackRecord(
                name=attack.name, kind=attack.kind.value, target=target,
                robust_accuracy_after=_share(alive, n),
                new_breaks=sum(row["success"] for row in rows), attacked=len(rows),
                queries_median=float(torch.tensor(queries, dtype=torch.float, device="cpu").median()) if rows else 0.0,
                seconds=sum(row["seconds"] for row in rows), loss_trace=trace, needs=attack.needs(),
                **_queries_record(attack, rows)))
    return records, broken_by, norms


def _queries_record(attack, rows: list[dict]) -> dict:
    """For a black-box rung, what the success-vs-queries plot needs, so a report redraws it from results.json."""
    if attack.kind not in BLACK_BOX_KINDS:
        return {}
    return {"break_queries": sorted(int(row["queries"]) for row in rows if row["success"]),
            "queries_max": max((int(row["queries"]) for row in rows), default=0)}


@dataclass
class EvaluationResult:
    """Everything one evaluation found; `to_json()` is the results.json contract."""

    config: dict
    n_points: int
    clean_accuracy: dict
    robust_accuracy: dict
    transfer_robust_accuracy: dict
    attack_success_rate: dict
    transfer_attack_success_rate: dict
    retained_accuracy: float
    attacks: list
    points: list
    extras: dict = field(default_factory=dict)
    adversarial: dict = field(default_factory=dict, repr=False)
    examples: dict | None = field(default=None, repr=False)
    escalation: list = field(default_factory=list)
    store_digest: str | None = None  # the run store's digest when results.json was written (None: in memory)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_store(cls, store, config: dict, context: Context, indices: list[int] | None,
                   batteries: dict) -> EvaluationResult:
        """Summarise a run from its store: the ladder, the worst case per point, the views (`context`: the run's
        shell, points, threat and what each target offers attacks)."""
        threat, shell, labels = context.threat, context.shell, context.y
        n = len(labels)
        correct = {t: store.load_clean(t, n) for t in ("base", "shell")}
        kinds = {target: context.offered(target) for target in ("base", "shell")}
        records, broken_by, norms = _summarise(store, "main", batteries["main"], kinds, correct, n)
        points = [PointRecord(index=int(indices[i]) if indices is not None else i, label=int(labels[i]),
                              base_correct=bool(correct["base"][i]), shell_correct=bool(correct["shell"][i]),
                              broken_by={t: broken_by[t].get(i) for t in kinds},
                              perturbation_norm={t: norms[t].get(i) for t in kinds}) for i in range(n)]
        transfer_names = {a.name for a in batteries["main"] if a.kind is AttackKind.TRANSFER}
        clean, robust, transfer, asr, tasr = {}, {}, {}, {}, {}
        for target in kinds:
            right = [p for p in points if getattr(p, f"{target}_correct")]
            unbroken = [p for p in right if p.broken_by[target] is None]
            survives_transfer = [p for p in right if p.broken_by[target] not in transfer_names]
            clean[target] = _share(len(right), n)
            robust[target] = _share(len(unbroken), n)
            transfer[target] = _share(len(survives_transfer), n)
            asr[target] = _share(len(right) - len(unbroken), len(right))
            tasr[target] = _share(len(right) - len(survives_transfer), len(right))
        base_right = [p for p in points if p.base_correct]
        retained = _share(sum(p.shell_correct for p in base_right), len(base_right))
        config = {**config, "threat": {"norm": threat.norm.value, "eps": threat.eps,
                                       "bounds": [threat.bounds.lower, threat.bounds.upper]},
                  "shell_parameters": describe_shell(shell)}
        extras = {"statistics": Statistics.of(points, n).to_json()}
        unsteady = {t: store.unsteady(t) for t in kinds}
        if any(unsteady.values()):
            extras["unsteady"] = {t: points for t, points in unsteady.items() if points}
        adversarial = {t: store.adversarial("main", t, tuple(context.x.shape[1:])) for t in kinds}
        return cls(config, n, clean, robust, transfer, asr, tasr, retained,
                   [r.to_json() for r in records], [p.to_json() for p in points], extras=extras,
                   adversarial=adversarial)

    def record(self) -> ResultsRecord:
        """This result as results.json's typed record (what the report and the checks that read it use)."""
        return typed_results(self.to_json(), "this evaluation's results")

    def ladder(self, target: str) -> list[dict]:
        """The rungs of one target ('base' or 'shell'), in battery order."""
        return [rung for rung in self.attacks if rung["target"] == target]

    def breaks_by_kind(self, target: str) -> dict[AttackKind, int]:
        """New breaks on `target` per attack kind (every kind, zero where none)."""
        rungs = self.record().ladder(target)
        return {kind: breaks_of(rungs, {kind}) for kind in AttackKind}

    def to_json(self) -> dict:
        data = {key: value for key, value in self.__dict__.items() if key not in ("adversarial", "examples")}
        return json.loads(json.dumps(data))

    def save(self, directory: str | Path) -> Path:
        """Write results.json (and examples.npz, the report's example panels) atomically into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.examples:
            save_examples(self.examples, directory / EXAMPLES_NAME)
        path = directory / "results.json"
        partial = path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        partial.replace(path)
        return path

    def to_report(self, directory: str | Path) -> Path:
        """Write results.json, report.md, report.html and plots into `directory`."""
        from robustness_eval.report import write_report

        self.save(directory)
        return write_report(directory, self.to_json())

"""The result of one evaluation and its JSON contract (`results.json`).

Fields (never removed, only added): config, n_points, clean_accuracy {base, shell},
robust_accuracy {base, shell} (worst case over the battery), transfer_robust_accuracy
{base, shell} (transfer attacks only: the paper's protocol), attack_success_rate and
transfer_attack_success_rate {base, shell} (broken / clean-correct), retained_accuracy,
attacks (the ladder), points (per point).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from robustness_eval.types import AttackKind, Threat


@dataclass
class AttackRecord:
    """One rung of the ladder: an attack on one target, on the points still unbroken."""

    name: str
    kind: str
    target: str
    robust_accuracy_after: float
    new_breaks: int
    attacked: int
    queries_median: float
    seconds: float
    loss_trace: list = field(default_factory=list)


@dataclass
class PointRecord:
    """Per point: label, clean correctness and, per target, the breaking attack and ‖x' − x‖."""

    index: int
    label: int
    base_correct: bool
    shell_correct: bool
    broken_by: dict
    perturbation_norm: dict


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


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

    @classmethod
    def from_run(cls, config: dict, threat: Threat, shell, records: list[AttackRecord],
                 points: list[PointRecord], adversarial: dict) -> EvaluationResult:
        n = len(points)
        transfer_names = {r.name for r in records if r.kind == AttackKind.TRANSFER.value}
        clean, robust, transfer, asr, tasr = {}, {}, {}, {}, {}
        for target in ("base", "shell"):
            correct = [p for p in points if getattr(p, f"{target}_correct")]
            unbroken = [p for p in correct if p.broken_by[target] is None]
            survives_transfer = [p for p in correct if p.broken_by[target] not in transfer_names]
            clean[target] = _share(len(correct), n)
            robust[target] = _share(len(unbroken), n)
            transfer[target] = _share(len(survives_transfer), n)
            asr[target] = _share(len(correct) - len(unbroken), len(correct))
            tasr[target] = _share(len(correct) - len(survives_transfer), len(correct))
        base_right = [p for p in points if p.base_correct]
        retained = _share(sum(p.shell_correct for p in base_right), len(base_right))
        config = {**config, "threat": {"norm": threat.norm.value, "eps": threat.eps,
                                       "bounds": [threat.bounds.lower, threat.bounds.upper]},
                  "shell_parameters": shell.describe()}
        return cls(config, n, clean, robust, transfer, asr, tasr, retained,
                   [asdict(r) for r in records], [asdict(p) for p in points],
                   adversarial=adversarial)

    def ladder(self, target: str) -> list[dict]:
        return [a for a in self.attacks if a["target"] == target]

    def to_json(self) -> dict:
        data = {key: value for key, value in self.__dict__.items() if key != "adversarial"}
        return json.loads(json.dumps(data))

    def save(self, directory: str | Path) -> Path:
        """Write results.json (atomically) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "results.json"
        partial = path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        partial.replace(path)
        return path

    def to_report(self, directory: str | Path) -> Path:
        """Write results.json and report.md into `directory`; returns the report's path."""
        from robustness_eval.report import write_report

        self.save(directory)
        return write_report(self.to_json(), directory)

    def adversarial_tensor(self, target: str) -> dict[int, torch.Tensor]:
        return self.adversarial.get(target, {})

"""The typed records of results.json: each check writes its record with `to_json()` and every reader (report,
plots, comparison, the checks that read earlier ones) reads it back with `from_json()`.

`ResultsRecord.from_json(read_results(path))` is a whole results.json; a file that does not fit is refused in one
line naming the key (see `robustness_eval.record`). Fields added by later schema versions are optional, so an
earlier file reads as it is; `migrate` fills in what a reader needs that an earlier version did not record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustness_eval.record import Record, RecordError, json_key
from robustness_eval.results_file import read_results
from robustness_eval.stats import ACTIVE_PASS_SHARE, clopper_pearson, mcnemar_exact

TargetFigures = dict[str, float]  # per target ('base', 'shell')


@dataclass(kw_only=True)
class AttackRecord(Record):
    """One rung of the ladder: an attack on one target, on the points still unbroken."""

    KEEP_NULL = ("break_queries", "queries_max")

    name: str
    kind: str
    target: str
    robust_accuracy_after: float
    new_breaks: int
    attacked: int
    queries_median: float
    seconds: float
    loss_trace: list[float] = field(default_factory=list)
    needs: str | None = None  # the capabilities of the target the attack used (see Attack.needs)
    break_queries: list[int] | None = None  # black-box rungs: the queries each break took, sorted
    queries_max: int | None = None  # black-box rungs: the most queries any attacked point used


@dataclass(kw_only=True)
class PointRecord(Record):
    """Per point: label, clean correctness and, per target, the breaking attack and ‖x' − x‖."""

    index: int
    label: int
    base_correct: bool
    shell_correct: bool
    broken_by: dict[str, str | None]
    perturbation_norm: dict[str, float | None]


@dataclass(kw_only=True)
class EscalationRound(Record):
    """One escalation round on one target (results.json's `escalation`)."""

    round: int
    target: str
    indicators: list[str]
    attacks: list[str]
    new_breaks: int
    robust_accuracy_before: float
    robust_accuracy_after: float
    seconds: float
    stopped: str = ""


@dataclass(kw_only=True)
class McNemar(Record):
    robust_only_base: int
    robust_only_shell: int
    p_value: float
    significant: bool = field(metadata=json_key("significant_at_0.05"))


@dataclass(kw_only=True)
class Statistics(Record):
    """Clopper–Pearson intervals per target and figure, and the paired base-vs-shell McNemar test."""

    intervals: dict[str, dict[str, list[float]]]
    level: float
    mcnemar: McNemar | None = None

    @classmethod
    def of(cls, points: list[PointRecord], n: int) -> Statistics:
        """Intervals for clean and robust accuracy per target, and base-vs-shell robust McNemar."""
        def robust(point: PointRecord, target: str) -> bool:
            return getattr(point, f"{target}_correct") and point.broken_by[target] is None

        intervals = {}
        for target in ("base", "shell"):
            clean = sum(getattr(p, f"{target}_correct") for p in points)
            intervals[target] = {"clean_accuracy": clopper_pearson(clean, n),
                                 "robust_accuracy": clopper_pearson(sum(robust(p, target) for p in points), n)}
        only_base = sum(robust(p, "base") and not robust(p, "shell") for p in points)
        only_shell = sum(robust(p, "shell") and not robust(p, "base") for p in points)
        p_value = mcnemar_exact(only_base, only_shell)
        return cls(intervals=intervals, level=0.95, mcnemar=McNemar(
            robust_only_base=only_base, robust_only_shell=only_shell, p_value=p_value, significant=p_value < 0.05))


@dataclass(kw_only=True)
class SkippedAttack(Record):
    target: str
    attack: str
    reason: str


@dataclass(kw_only=True)
class Convergence(Record):
    """What the doubled-budget round changed (`attacks`, `new_breaks`: the round ran inside the battery; a file
    without them ran it as a separate battery and has `worst_of_both`)."""

    budget_scale: float
    attacks: list[str] | None = None
    robust_accuracy: TargetFigures
    change_pp: TargetFigures
    new_breaks: dict[str, int] | None = None
    worst_of_both: TargetFigures | None = None


@dataclass(kw_only=True)
class RestartCheck(Record):
    """The restart check on one target: its attacks and the robust accuracy they moved."""

    attacks: list[str]
    robust_accuracy_before: float
    robust_accuracy_after: float
    change_pp: float
    new_breaks: int
    round: str | None = None  # 'x2': the check ran inside the doubled-budget round


@dataclass(kw_only=True)
class GradientDiagnostics(Record):
    points: int
    zero_gradient_share: float
    nonfinite_gradient_share: float
    gradient_norm_median: float
    gradient_norm_spread_90_10: float


@dataclass(kw_only=True)
class Crosscheck(Record):
    """Our PGD and Foolbox's on F, standalone: the robust accuracy each leaves."""

    points: int
    steps: int
    restarts: int
    ours: float
    foolbox: float


@dataclass
class SanityVerdict(Record):
    """One sanity check's verdict, the figures behind it, what failing means and what to do."""

    name: str
    status: str  # pass | warn | fail | not run
    figures: str
    meaning: str
    action: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Caveat(Record):
    """How far the shell's robust accuracy may be overstated, from the active test's least-found construction."""

    KEEP_NULL = ("found", "evaluated")

    construction: str
    found: int | None = None
    evaluated: int | None = None
    share_found: float
    share_interval: list[float]
    robust_accuracy: float
    breaks: int
    points: int
    estimate_pp: float
    estimate_interval_pp: list[float]
    bound_pp: float

    @classmethod
    def of(cls, parts: dict[str, ActivePart], robust_accuracy: float, breaks: int, n: int) -> Caveat | None:
        """None when every scored construction is found ≥ 95 %. Otherwise, with f = found / evaluated plants of the
        least-found construction and B the shell's verified breaks: the estimate B·(1 − f)/f breaks the battery
        would have missed if it missed real adversarial examples at the plants' rate, with the interval that f's
        Clopper–Pearson interval gives it, and the bound (1 − f) of all points; both in pp of the n points and
        capped at the robust accuracy they qualify."""
        scored = {name: part for name, part in parts.items() if part.share_found is not None}
        if not scored:
            return None
        name = min(scored, key=lambda k: scored[k].share_found)
        part = scored[name]
        share = part.share_found
        if share >= ACTIVE_PASS_SHARE:
            return None
        found, evaluated = part.found, part.evaluated
        interval = clopper_pearson(found, evaluated) if found is not None and evaluated else [share, share]
        ceiling = 100 * robust_accuracy

        def missed_pp(found_share: float) -> float:
            return ceiling if found_share <= 0 else min(ceiling, 100 * breaks * (1 - found_share) / found_share / n)

        return cls(construction=name, found=found, evaluated=evaluated, share_found=share, share_interval=interval,
                   robust_accuracy=robust_accuracy, breaks=breaks, points=n, estimate_pp=missed_pp(share),
                   estimate_interval_pp=[missed_pp(interval[1]), missed_pp(interval[0])],
                   bound_pp=min(ceiling, 100 * (1 - share)))


@dataclass(kw_only=True)
class ActivePart(Record):
    """The active test on one construction (or, at the top level, on all of them together)."""

    status: str  # pass | fail | not run
    planted: int | None = None
    valid: int | None = None
    evaluated: int | None = None
    found: int | None = None
    share_found: float | None = None
    found_by: dict[str, int] | None = None
    reason: str | None = None


@dataclass(kw_only=True)
class ActiveTest(ActivePart):
    """The active test: the constructions' parts, and the caveat the least-found one puts on the verdict."""

    KEEP_NULL = ("caveat",)

    constructions: dict[str, ActivePart] | None = None
    off_gradient_share_found: float | None = None
    caveat: Caveat | None = None

    def parts(self) -> dict[str, ActivePart]:
        """The constructions; a file from before they were recorded ran the on-gradient one only."""
        if self.constructions:
            return self.constructions
        return {"on-gradient": self} if self.share_found is not None else {}


@dataclass(kw_only=True)
class RepeatedFigures(Record):
    worst_case: float
    majority: float
    mean: float
    intervals: dict[str, list[float]]


@dataclass(kw_only=True)
class RepeatedInference(Record):
    """A randomized target's clean and robust accuracy over `runs` inference runs, and each point's right runs."""

    runs: int
    leads: str
    clean: RepeatedFigures
    robust: RepeatedFigures
    right_clean: list[int]
    right_robust: list[int]
    seconds: float


@dataclass(kw_only=True)
class GroundTruthCounts(Record):
    true_adversarial: int
    label_changing: int


@dataclass(kw_only=True)
class SweepRow(Record):
    eps: float
    delta: float
    clean_accuracy: TargetFigures | None = None
    robust_accuracy: TargetFigures
    transfer_robust_accuracy: TargetFigures


@dataclass(kw_only=True)
class Extras(Record):
    """Everything the checks after the battery found. Open: a key another writer added is kept as it is."""

    OPEN = True

    statistics: Statistics | None = None
    skipped: list[SkippedAttack] | None = None
    convergence: Convergence | None = None
    restart_check: dict[str, RestartCheck] | None = None
    gradient_diagnostics: dict[str, GradientDiagnostics] | None = None
    crosscheck: Crosscheck | None = None
    sanity: list[SanityVerdict] | None = None
    active_test: ActiveTest | None = None
    repeated_inference: dict[str, RepeatedInference] | None = None
    ground_truth: dict[str, GroundTruthCounts] | None = None
    unsteady: dict[str, list[int]] | None = None
    probe: list[str] | None = None
    sweep: list[SweepRow] | None = None
    seconds: float | None = None
    phase_seconds: dict[str, float] | None = None
    other: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ThreatRecord(Record):
    norm: str
    eps: float
    bounds: list[float]


@dataclass(kw_only=True)
class ShellParameters(Record):
    """The shell as results.json records it (`describe_shell`); open: a shell's own `describe()` adds keys."""

    OPEN = True
    KEEP_NULL = ("threshold",)

    kind: str
    class_name: str | None = field(default=None, metadata=json_key("class"))
    norm: str | None = None
    radius: float
    threshold: float | None = None
    randomized: bool | None = None
    capabilities: list[str] | None = None
    other: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class CallRecord(Record):
    """How the run was called: the command line that reruns it (and, from the CLI, its arguments)."""

    OPEN = True

    command: str | None = None
    other: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class RunConfig(Record):
    """The run's configuration as recorded; open: it holds every option and provenance field the run bound."""

    OPEN = True

    threat: ThreatRecord
    shell_parameters: ShellParameters
    dataset: str | None = None
    model: str | None = None
    model_hash: str | None = None
    data_hash: str | None = None
    n_points_used: int | None = None
    seed: int | None = None
    chunk: int | str | None = None  # 'auto' in files from before the chunk was resolved
    split: Any = None
    versions: dict[str, Any] | None = None
    call: CallRecord | None = None
    command: str | None = None
    other: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ResultsRecord(Record):
    """A whole results.json, typed (see `robustness_eval.results` for what each field means)."""

    KEEP_NULL = ("store_digest",)

    config: RunConfig
    n_points: int
    clean_accuracy: TargetFigures
    robust_accuracy: TargetFigures
    transfer_robust_accuracy: TargetFigures
    attack_success_rate: TargetFigures
    transfer_attack_success_rate: TargetFigures
    retained_accuracy: float
    attacks: list[AttackRecord]
    points: list[PointRecord]
    extras: Extras = field(default_factory=Extras)
    escalation: list[EscalationRound] | None = None
    store_digest: str | None = None
    schema_version: int

    def ladder(self, target: str) -> list[AttackRecord]:
        """The rungs of one target ('base' or 'shell'), in battery order."""
        return [rung for rung in self.attacks if rung.target == target]


def migrate(results: ResultsRecord) -> ResultsRecord:
    """What a reader needs that an earlier version did not record: an active test without its caveat (version 1
    files before it) gets the caveat this version computes from the same figures."""
    active = results.extras.active_test
    if active is not None and active.caveat is None and active.parts():
        breaks = round(results.n_points * (results.clean_accuracy["shell"] - results.robust_accuracy["shell"]))
        active.caveat = Caveat.of(active.parts(), results.robust_accuracy["shell"], breaks, results.n_points)
    return results


def typed_results(results: dict, path: str | Path = "results.json") -> ResultsRecord:
    """A results.json's content (as `read_results` gives it) as its typed record, migrated; a value that does not
    fit is refused in one line naming `path`, the key and the version that wrote it."""
    try:
        return migrate(ResultsRecord.from_json(results, "results.json"))
    except RecordError as error:
        raise ValueError(f"{path} does not fit the results.json of schema version "
                         f"{results.get('schema_version', 1)} ({error}): it was edited or written by another "
                         "program; rerun the evaluation") from None


def read_record(path: str | Path) -> ResultsRecord:
    """The one typed reader of a results.json file: `read_results`, then `typed_results`."""
    return typed_results(read_results(path), path)

"""Several finished runs side by side: one table and one plot, in Markdown and HTML, from their results.json.

A comparison is only fair under one threat (norm, ε, input bounds): runs under different threats are
refused unless the caller asks for them. Runs on different points or base models are compared but
said to be so. Annotations (a TOML table per run label, e.g. each defense's published protocol and
what the literature found) add text columns to the table without any figure being typed by hand.
"""

from __future__ import annotations

import tomllib
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from robustness_eval.records import ResultsRecord, RunConfig, read_record
from robustness_eval.render import Section, markdown_literal, to_html, to_markdown, write_text_atomic
from robustness_eval.report import interval, pct, record_text, repeated_figures, still_moving

TRANSFER_KINDS = ("transfer", "baseline")  # what the paper's protocol runs; the rest is the adaptive battery


@dataclass
class RunSummary:
    """The figures of one run that a comparison shows, read from its results.json."""

    label: str
    directory: Path
    results: ResultsRecord
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> RunConfig:
        return self.results.config

    @property
    def threat(self) -> tuple:
        t = self.config.threat
        return t.norm, float(t.eps), tuple(float(b) for b in t.bounds)

    def shell_breaks(self) -> Counter:
        """Verified breaks of the shell by the attack that made each (the ladder's first), an attack's restart
        check, doubled-budget and escalation rounds (`pgd@restarts`, `pgd@x2`, `pgd@esc1`) counted with it."""
        return Counter(p.broken_by["shell"].split("@")[0] for p in self.results.points if p.broken_by["shell"])

    def kind_of(self, attack: str) -> str:
        kinds = {a.name: a.kind for a in self.results.attacks}
        return kinds.get(attack, "?")

    def top_attack(self, adaptive_only: bool = False) -> tuple[str, int] | None:
        breaks = self.shell_breaks()
        if adaptive_only:
            breaks = Counter({a: n for a, n in breaks.items() if self.kind_of(a) not in TRANSFER_KINDS})
        return breaks.most_common(1)[0] if breaks else None

    def active_text(self) -> str:
        """The active test's found share per construction, or why it did not run."""
        active = self.results.extras.active_test
        if active is None:
            return "not run"
        shares = [f"{name} {pct(part.share_found)}" for name, part in active.parts().items()
                  if part.share_found is not None]
        return ", ".join(shares) if shares else f"not run: {active.reason or 'no reason recorded'}"

    def caveat_text(self) -> str:
        active = self.results.extras.active_test
        if active is None or not active.constructions or all(
                part.share_found is None for part in active.constructions.values()):
            return "no active test"
        c = active.caveat
        if c is None:
            return "none (every construction found ≥ 95 %)"
        return (f"{c.construction}: about {c.estimate_pp:.1f} pp (interval {c.estimate_interval_pp[0]:.1f}"
                f"–{c.estimate_interval_pp[1]:.1f}), at most {c.bound_pp:.1f} pp")


def load_run(directory: str | Path, label: str | None = None) -> RunSummary:
    """One run directory's results.json, checked to be one robustness-eval wrote."""
    directory = Path(directory)
    path = directory / "results.json"
    return RunSummary(label or directory.name, directory, read_record(path))


def check_comparable(runs: list[RunSummary], allow_different_threats: bool = False) -> list[str]:
    """Refuse runs under different threats unless allowed; return notes on what else differs."""
    threats = {run.label: run.threat for run in runs}
    if len(set(threats.values())) > 1 and not allow_different_threats:
        listed = "; ".join(f"{label}: {_threat_text(t)}" for label, t in threats.items())
        raise ValueError(f"the runs were made under different threats ({listed}); compare runs under one threat, "
                         "or pass --allow-different-threats (allow_different_threats=True) to compare them anyway")
    notes = []
    if len(set(threats.values())) > 1:
        notes.append("The runs were made under different threats (see the threat column): their robust accuracies "
                     "are not comparable figure by figure.")
    for key, what in (("data_hash", "evaluated points"), ("model_hash", "base models"), ("seed", "seeds")):
        groups: dict[str, list[str]] = {}
        for run in runs:
            groups.setdefault(str(getattr(run.config, key)), []).append(run.label)
        if len(groups) > 1:
            listed = "; ".join(f"{value}: {', '.join(labels)}" for value, labels in groups.items())
            notes.append(f"The runs differ in their {what} ({key} {listed}); figures on different points differ "
                         "by sampling as well.")
    return notes


def _threat_text(threat: tuple) -> str:
    norm, eps, bounds = threat
    return f"{norm} ε = {eps:g}, bounds [{record_text(list(bounds))}]"


def _worst_interval(results: ResultsRecord) -> list[float] | None:
    statistics = results.extras.statistics
    return None if statistics is None else statistics.intervals.get("shell", {}).get("robust_accuracy")


def _attack_text(top: tuple[str, int] | None) -> str:
    return "-" if top is None else f"{top[0]} ({top[1]})"


def summary_section(runs: list[RunSummary], notes: list[str]) -> Section:
    """The comparison table: one row per run, the annotation columns after the label."""
    columns = list(dict.fromkeys(key for run in runs for key in run.annotations))
    several_threats = len({run.threat for run in runs}) > 1
    first = runs[0]
    section = Section("Comparison", [
        f"{len(runs)} runs. Threat: {'see the threat column' if several_threats else _threat_text(first.threat)}; "
        f"data {first.config.dataset or '?'}; base model {first.config.model or '?'}. Robust accuracy is the "
        "worst case over the battery (every break re-verified on its target) with its 95 % Clopper–Pearson interval; "
        "transfer only counts the attacks the paper's protocol runs (transfer from F and noise). Most breaks: the "
        "attack that broke most points first in the ladder (transfer runs first); beyond transfer: the same among "
        "the adaptive attacks. ≤: escalation was still moving the verdict when its time cap stopped it, so the "
        "worst case is an upper bound.", *notes],
        ["run", *columns, *(["threat"] if several_threats else []), "points", "clean (F / G)", "robust, transfer only",
         "robust, worst case", "base F worst case",
         "most breaks", "most breaks beyond transfer", "attacks run / skipped on G"])
    for run in runs:
        r = run.results
        bounds = _worst_interval(r)
        shell_attacks = {a.name.split("@")[0] for a in r.ladder("shell")}
        skipped = sum(1 for s in r.extras.skipped or [] if s.target == "shell")
        section.rows.append([
            run.label, *(run.annotations.get(c, "") for c in columns),
            *([_threat_text(run.threat)] if several_threats else []), str(r.n_points),
            f"{pct(r.clean_accuracy['base'])} / {pct(r.clean_accuracy['shell'])}",
            pct(r.transfer_robust_accuracy["shell"]),
            f"{'≤ ' if still_moving(r) else ''}{pct(r.robust_accuracy['shell'])} {interval(bounds)}".strip(),
            f"{'≤ ' if still_moving(r, 'base') else ''}{pct(r.robust_accuracy['base'])}",
            _attack_text(run.top_attack()), _attack_text(run.top_attack(adaptive_only=True)),
            f"{len(shell_attacks)} / {skipped}"])
    return section


def active_section(runs: list[RunSummary]) -> Section:
    section = Section("Active test and caveat", [
        "The share of planted adversarial examples the battery found, per construction, and how far that lets the "
        "shell's robust accuracy be overstated. The plants sit where only a shell's own search reaches them; a "
        "shell whose output never moves its input that far (a transformation, not a search in a ball) admits no "
        "verified plant, and the test says so."], ["run", "found share per construction", "overstatement caveat"])
    for run in runs:
        section.rows.append([run.label, run.active_text(), run.caveat_text()])
    return section


def repeated_section(runs: list[RunSummary]) -> Section | None:
    """The randomized shells' clean and robust accuracy over repeated inference, three ways; None if none has it."""
    rows = []
    for run in runs:
        record = (run.results.extras.repeated_inference or {}).get("shell")
        if record is not None:
            rows.append([run.label, str(record.runs), repeated_figures(record.clean), repeated_figures(record.robust)])
    if not rows:
        return None
    return Section("Randomized shells over repeated inference", [
        "Each point's clean and final input (its verified break, or x) classified R more times after the battery "
        "(Croce et al. 2022; DiffHammer's N-evaluation is the worst case with N = R): worst case (right in all R "
        "runs) leads, then majority and the mean over runs. A break is verified by a majority of 5 queries, so the "
        "majority figure can sit above the worst case over the battery."],
        ["run", "R", "clean: worst case, majority, mean", "robust: worst case, majority, mean"], rows)


def comparison_plot(runs: list[RunSummary], path: Path) -> Path:
    """Clean, transfer-only and worst-case robust accuracy per run, the worst case with its interval."""
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(runs) + 2.0), layout="constrained")
    rows = list(range(len(runs)))[::-1]
    for row, run in zip(rows, runs, strict=True):
        r = run.results
        bounds = _worst_interval(r)
        worst = r.robust_accuracy["shell"]
        error = [[worst - bounds[0]], [bounds[1] - worst]] if bounds else None
        first = row == rows[0]
        ax.plot(r.clean_accuracy["shell"], row, "o", color="0.6", label="clean" if first else None)
        ax.plot(r.transfer_robust_accuracy["shell"], row, "^", color="tab:orange",
                label="robust, transfer only" if first else None)
        ax.errorbar(worst, row, xerr=error, fmt="s", color="tab:red", capsize=3,
                    label="robust, worst case (95 % interval)" if first else None)
        if still_moving(r):
            ax.annotate("≤", (worst, row), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=9,
                        color="tab:red")
    bases = {run.results.robust_accuracy["base"] for run in runs}
    if len(bases) == 1:
        ax.axvline(bases.pop(), color="tab:blue", linestyle="--", linewidth=1, label="base F, worst case")
    ax.set_yticks(rows, [run.label for run in runs], fontsize=8)
    ax.set_xlabel("accuracy of the shell G")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(-0.6, len(runs) - 0.2)  # room above the top row for its "≤"
    fig.legend(fontsize=7, loc="outside lower center", ncol=2,
               title="≤: an upper bound (escalation stopped by its time cap)" if any(still_moving(run.results)
                                                                                for run in runs) else None,
               title_fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_annotations(path: str | Path | None) -> dict[str, dict[str, str]]:
    """A TOML file with one table per run label, each key a column: `[magnet]` then `protocol = "…"`."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotations file {path} does not exist; pass a TOML file with one table per run")
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"annotations file {path} is not valid TOML ({error})") from None
    bad = [label for label, row in table.items() if not isinstance(row, dict)]
    if bad:
        raise ValueError(f"annotations file {path}: {', '.join(bad)} must be tables ([label] then column = \"text\")")
    return {label: {str(k): str(v) for k, v in row.items()} for label, row in table.items()}


def compare(directories: list[str | Path], out: str | Path, labels: list[str] | None = None,
            annotations: str | Path | dict | None = None, allow_different_threats: bool = False) -> Path:
    """Write compare.md, compare.html and compare.png for several run directories into `out`; returns compare.md."""
    if len(directories) < 2:
        raise ValueError(f"compare needs two or more run directories (got {len(directories)})")
    if labels is not None and len(labels) != len(directories):
        raise ValueError(f"labels: pass one per directory ({len(directories)}), got {len(labels)}")
    seen = Counter(Path(d).resolve() for d in directories)
    for directory, count in seen.items():
        if count > 1:
            warnings.warn(f"{directory} is compared with itself ({count} times): its rows are the same run",
                          stacklevel=2)
    runs = [load_run(d, None if labels is None else labels[i]) for i, d in enumerate(directories)]
    duplicate = [label for label, n in Counter(run.label for run in runs).items() if n > 1]
    if duplicate:
        raise ValueError(f"two runs share the label {duplicate[0]!r}; pass labels that tell them apart")
    notes = check_comparable(runs, allow_different_threats)
    extra = annotations if isinstance(annotations, dict) else read_annotations(annotations)
    unknown = sorted(set(extra) - {run.label for run in runs})
    if unknown:  # a shared annotations file may describe more runs; a misspelt label shows up here
        warnings.warn(f"annotations for runs not compared are ignored: {', '.join(unknown)}", stacklevel=2)
    for run in runs:
        run.annotations = dict(extra.get(run.label, {}))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot = comparison_plot(runs, out / "compare.png")
    parts = [summary_section(runs, notes), active_section(runs),
             *([repeated] if (repeated := repeated_section(runs)) else []),
             Section("Sources", [f"{run.label}: {run.directory}" for run in runs])]
    parts[0].images.append(("clean, transfer-only and worst-case accuracy of each shell", plot))
    write_text_atomic(out / "compare.md", to_markdown([_markdown_literal(part) for part in parts], out))
    write_text_atomic(out / "compare.html", to_html(parts))
    return out / "compare.md"


def _markdown_literal(section: Section) -> Section:
    """The section with every text made a Markdown literal: labels and annotations are the user's text."""
    return replace(section, title=markdown_literal(section.title),
                   paragraphs=[markdown_literal(p) for p in section.paragraphs],
                   header=[markdown_literal(h) for h in section.header],
                   rows=[[markdown_literal(c) for c in row] for row in section.rows],
                   notes=[markdown_literal(n) for n in section.notes])

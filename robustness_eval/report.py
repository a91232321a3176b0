"""Reports people read: report.md, a self-contained report.html, and PNG plots.

Every number comes from results.json (and the per-point store beside it), and the Markdown and
HTML are rendered from the same sections, so the report, the page and the JSON cannot disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

from robustness_eval.plots import LADDER_TITLE, Plots, write_plots
from robustness_eval.records import (
    ActiveTest,
    Extras,
    RepeatedFigures,
    RepeatedInference,
    RestartCheck,
    ResultsRecord,
    typed_results,
)
from robustness_eval.render import Section, literal_values, to_html, to_markdown, write_text_atomic
from robustness_eval.results_file import read_results
from robustness_eval.stats import clopper_pearson
from robustness_eval.store import DB_NAME, ResultStore
from robustness_eval.types import ADAPTIVE_KINDS


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal (the format every table uses)."""
    return "n/a" if value is None else f"{100 * value:.1f} %"


def interval(bounds: list[float] | None) -> str:
    return "" if not bounds else f"[{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]"


def headline(results: ResultsRecord) -> str:
    """One sentence that compares the paper's protocol with the adaptive truth."""
    tasr = results.transfer_attack_success_rate
    robust, transfer = results.robust_accuracy, results.transfer_robust_accuracy
    gap = transfer["shell"] - robust["shell"]
    verdict = (f"the adaptive battery lowers the shell's robust accuracy {100 * gap:.1f} pp below "
               "the transfer-only figure" if gap > 0 else
               "the adaptive attacks find no break that transfer missed")
    gain = robust["shell"] - robust["base"]
    return (f"Transfer from F (the paper's protocol) succeeds on {pct(tasr['base'])} of the points F "
            f"classifies correctly and on {pct(tasr['shell'])} against the shell; {verdict}. "
            f"Worst case over the battery: base {_at_most(results, 'base')}{pct(robust['base'])}, shell "
            f"{_at_most(results, 'shell')}{pct(robust['shell'])} robust accuracy "
            f"({'+' if gain >= 0 else ''}{100 * gain:.1f} pp for the shell)."
            + ("" if not (still_moving(results) or still_moving(results, "base")) else
               " \"At most\": escalation was still moving the verdict when its time cap stopped it.")
            + repeated_headline(results.extras.repeated_inference or {})
            + black_box_only(results)
            + overstatement(results.extras.active_test))


def repeated_figures(figures: RepeatedFigures) -> str:
    """'worst case a, majority b, mean c' from a repeated-inference record's clean or robust figures."""
    return ", ".join(f"{name.replace('_', ' ')} {pct(getattr(figures, name))}"
                     for name in ("worst_case", "majority", "mean"))


def repeated_headline(record: dict[str, RepeatedInference]) -> str:
    """The headline's sentence on the randomized targets' accuracy over R inference runs (the worst case leads)."""
    parts = [f"{'the shell' if target == 'shell' else 'F'}: robust {pct(r.robust.worst_case)} (majority "
             f"{pct(r.robust.majority)}, mean {pct(r.robust.mean)}), clean {pct(r.clean.worst_case)} "
             f"(majority {pct(r.clean.majority)}, mean {pct(r.clean.mean)})"
             for target, r in record.items()]
    if not parts:
        return ""
    runs = next(iter(record.values())).runs
    return (f" Randomized, so each point's clean and final input were classified {runs} more times; the worst case "
            f"over those runs leads (right in all {runs}: an attacker with {runs} tries), majority and mean beside it: "
            + "; ".join(parts) + ".")


def black_box_only(results: ResultsRecord) -> str:
    """A warning when no white-box, shell-aware, BPDA or EOT attack applied to the shell (a rung exists for every
    attack that applied, even one left no point to attack): its verdict then rests on transfer and black-box
    attacks alone."""
    adaptive = [rung for rung in results.ladder("shell") if rung.kind in ADAPTIVE_KINDS]
    if adaptive or results.config.shell_parameters.kind == "none":
        return ""
    return (" No white-box, shell-aware, BPDA or EOT attack applied to this shell (it offers no gradient, search, "
            "draws or surrogate): its verdict rests on transfer and black-box attacks alone.")


def _at_most(results: ResultsRecord, target: str) -> str:
    return "at most " if still_moving(results, target) else ""


def overstatement(active: ActiveTest | None) -> str:
    """The headline's warning when the battery misses planted adversarial examples (see `records.Caveat`)."""
    c = active.caveat if active is not None else None
    if c is None:
        return ""
    low, high = c.share_interval
    plants = f"{c.found} of {c.evaluated} " if c.found is not None else ""
    return (f" The battery found only {plants}({pct(c.share_found)}, 95 % interval [{100 * low:.1f}, "
            f"{100 * high:.1f}]) of the active test's {c.construction} planted adversarial examples: if it "
            f"misses real ones at that rate, the shell's robust accuracy of {pct(c.robust_accuracy)} is "
            f"overstated by about {c.estimate_pp:.1f} pp ({c.breaks} breaks found × missed / found; "
            f"interval [{c.estimate_interval_pp[0]:.1f}, {c.estimate_interval_pp[1]:.1f}]) and by at "
            f"most {c.bound_pp:.1f} pp.")


def _active_section(active: ActiveTest) -> Section:
    if active.share_found is None:
        return Section("Active test", [f"Active test not run: {active.reason or ''}."])
    section = Section("Active test", [
        "Planted adversarial examples (after Zimmermann et al. 2022), one verified plant per point and "
        "construction: on F's gradient path toward its runner-up (on-gradient: the pass bar, ≥ 95 % found), "
        "orthogonal to that gradient with a weak slope F's own gradient swamps, toward another wrong class, "
        "in a random quarter of the coordinates toward a random wrong class (subspace), orthogonal behind a "
        "decoy that makes F's gradient path toward the plant's class confidently right (decoy), and orthogonal "
        "beside a lure, a three times stronger slope toward the same class along another direction that leads "
        f"nowhere (lure: held out, never used to choose the battery). Verdict: {active.status}."
        + overstatement(active)],
        ["construction", "plants verified", "found", "share found", "95 % interval", "found by"])
    for name, part in active.parts().items():
        if part.share_found is None:
            section.rows.append([name, f"{part.valid or 0} of {part.planted or 0}", "-", "-", "-", part.reason or ""])
            continue
        found_by = ", ".join(f"{attack} {n}" for attack, n in (part.found_by or {}).items() if n)
        bounds = clopper_pearson(part.found, part.evaluated) if part.evaluated else None
        section.rows.append([name, f"{part.valid} of {part.planted}", f"{part.found} of {part.evaluated}",
                             pct(part.share_found), interval(bounds), found_by or "-"])
    return section


def model_title(label: str) -> str:
    """A zoo model by its kind; a user's model by its class name (its full path is in Reproduce)."""
    return f"user model {label.rsplit('.', 1)[-1]}" if "." in label else label


def record_text(record, separator: str = ": ") -> str:
    """A record from results.json as text ('source: …; train: …'), not a Python dict or list."""
    if isinstance(record, dict):
        return "; ".join(f"{str(key).replace('_', ' ')}{separator}{record_text(value)}"
                         for key, value in record.items()) or "not recorded"
    if isinstance(record, (list, tuple)):
        return ", ".join(record_text(value) for value in record)
    return f"{record:g}" if isinstance(record, float) else str(record)


def unsteady_text(extras: Extras) -> list[str]:
    return [f"the {target} target answered differently to the same input on {len(points)} candidate(s) that were "
            "misclassified once; they were not counted as breaks, and a shell that is random should declare "
            "`randomized = True`" for target, points in (extras.unsteady or {}).items()]


def sections(results: ResultsRecord, plots: Plots) -> list[Section]:
    """The report's content, independent of the output format."""
    extras = results.extras
    ladder = _ladder_section(results)
    if LADDER_TITLE in plots.images:
        ladder.images.append((LADDER_TITLE, plots.images[LADDER_TITLE]))
    out = [_intro(results), _paper_table(results), ladder, *_check_sections(extras), _sanity_section(extras)]
    for part in (_active_section(extras.active_test) if extras.active_test is not None else None,
                 _ground_truth_section(extras), _escalation_section(results), _skipped_section(extras)):
        if part is not None:
            out.append(part)
    others = [(name, path) for name, path in plots.images.items() if name != LADDER_TITLE]
    if others or plots.omitted:
        out.append(Section("Plots", notes=list(plots.omitted), images=others))
    if extras.phase_seconds:
        out.append(Section("Where the time went", ["Seconds per phase of this run (a resumed run counts only the "
                                                   "work it did; stored phases take no time)."],
                           header=["phase", "seconds"],
                           rows=[[name, f"{seconds:.1f}"] for name, seconds in extras.phase_seconds.items()]))
    out.append(_reproduce(results))
    return out


def _or(value, default):
    """A recorded configuration value, or what the report shows where the run did not record it."""
    return default if value is None else value


def _intro(results: ResultsRecord) -> Section:
    cfg = results.config
    threat, shell = cfg.threat, cfg.shell_parameters
    norm = shell.norm if shell.norm not in (None, "None") else threat.norm  # a shell with no norm
    intro = Section(
        f"Robustness report: {_or(cfg.dataset, 'data')} / {model_title(_or(cfg.model, 'model'))} / shell "
        f"{shell.kind}",
        [f"Threat: {threat.norm} ε = {threat.eps:g}, bounds [{record_text(threat.bounds)}]; shell "
         f"{shell.kind} (moves its input by at most {shell.radius:g} in {norm}"
         + (f", p = {shell.threshold:g}" if shell.threshold is not None else "")
         + f"); {results.n_points} points; seed {_or(cfg.seed, 0)}. "
         f"Data split: {record_text(_or(cfg.split, {}))}.", headline(results)])
    warned = [*(results.extras.probe or []), *unsteady_text(results.extras)]
    if warned:
        intro.paragraphs.append("Warnings: " + " ".join(w.rstrip(".") + "." for w in warned))
    return intro


def _paper_table(results: ResultsRecord) -> Section:
    stats = results.extras.statistics
    ci = stats.intervals if stats is not None else {}
    table = Section("The paper's view beside the truth", header=["", "base F", "shell G"])
    for label, key in [("clean accuracy", "clean_accuracy"),
                       ("attack success, transfer only (paper's Table 1)", "transfer_attack_success_rate"),
                       ("robust accuracy, transfer only", "transfer_robust_accuracy"),
                       ("attack success, worst case over the battery", "attack_success_rate"),
                       ("robust accuracy, worst case over the battery", "robust_accuracy")]:
        figures = getattr(results, key)
        table.rows.append([label, pct(figures["base"]), pct(figures["shell"])])
    repeated = results.extras.repeated_inference or {}
    for key in ("clean", "robust"):
        if repeated:
            runs = next(iter(repeated.values())).runs
            table.rows.append([f"{key} accuracy over {runs} inference runs: worst case, majority, mean",
                               *(repeated_figures(getattr(repeated[t], key)) if t in repeated else "deterministic"
                                 for t in ("base", "shell"))])
    for key in ("clean_accuracy", "robust_accuracy"):
        if ci:
            table.rows.append([f"95 % Clopper–Pearson interval, {key.replace('_', ' ')}",
                               interval(ci["base"][key]), interval(ci["shell"][key])])
    table.notes.append(f"Retained accuracy (points F gets right that the shell also gets right): "
                            f"{pct(results.retained_accuracy)}.")
    if stats is not None and stats.mcnemar is not None:
        m = stats.mcnemar
        table.notes.append(
            f"Shell vs base, worst case, paired on the same points (exact McNemar): robust only on "
            f"the base {m.robust_only_base}, only on the shell {m.robust_only_shell}, p = "
            f"{m.p_value:.3g}: the difference is "
            + ("distinguishable from noise at the 5 % level." if m.significant
               else "not distinguishable from noise at the 5 % level."))
    return table


def _ladder_section(results: ResultsRecord) -> Section:
    ladder = Section("The ladder", ["Each attack runs only on the points still unbroken on its "
                                    "target; robust accuracy is the worst case so far. An attack runs on a target "
                                    "when the target offers the capabilities it needs (the attacks skipped, and why, "
                                    "are listed further down)."],
                     ["target", "attack", "kind", "attacked", "new breaks", "robust accuracy after",
                      "queries (median)", "seconds", "needs"])
    for a in results.attacks:
        ladder.rows.append([a.target, a.name, a.kind, str(a.attacked), str(a.new_breaks),
                            pct(a.robust_accuracy_after), f"{a.queries_median:g}", f"{a.seconds:.1f}",
                            _or(a.needs, "not recorded")])
    return ladder


def _check_sections(extras: Extras) -> list[Section]:
    """The doubled budgets, the restart check, the second opinion and the sweep, where the run has them."""
    out = []
    if extras.convergence is not None:
        c = extras.convergence
        change = (f"base {pct(c.robust_accuracy['base'])} ({c.change_pp['base']:+.1f} pp), shell "
                  f"{pct(c.robust_accuracy['shell'])} ({c.change_pp['shell']:+.1f} pp)")
        if c.attacks is not None:  # the doubled round runs after the battery, on what it left, and counts
            text = (f"Every attack of the battery ran again with its budget × {c.budget_scale:g} on the points "
                    f"still unbroken (the rungs named @x2); its breaks are verified and count in the worst case. "
                    f"Robust accuracy after it: {change}.")
        else:  # a results.json from before: the doubled battery was a separate run
            both = c.worst_of_both or c.robust_accuracy
            text = (f"Rerun of the whole battery with every budget × {c.budget_scale:g}: robust accuracy "
                    f"{change}; worst case of both runs: base {pct(both['base'])}, shell {pct(both['shell'])}.")
        out.append(Section("Convergence: every budget doubled", [text]))
    if extras.restart_check is not None:
        out.append(_restart_section(extras.restart_check))
    if extras.crosscheck is not None:
        k = extras.crosscheck
        out.append(Section("Second opinion on the base model", [
            f"Standalone on the same {k.points} points, {k.steps} steps × {k.restarts} "
            f"restarts: our PGD leaves {pct(k.ours)} robust, Foolbox's PGD {pct(k.foolbox)} "
            f"(difference {100 * abs(k.ours - k.foolbox):.1f} pp)."]))
    if extras.sweep is not None:
        sweep = Section("Sweep", header=["ε", "δ", "base robust", "shell robust (transfer only)",
                                         "shell robust (worst case)"])
        for row in extras.sweep:
            sweep.rows.append([f"{row.eps:g}", f"{row.delta:g}", pct(row.robust_accuracy["base"]),
                               pct(row.transfer_robust_accuracy["shell"]), pct(row.robust_accuracy["shell"])])
        out.append(sweep)
    return out


def _restart_section(check: dict[str, RestartCheck]) -> Section:
    lines = []
    for target, r in check.items():
        if not r.attacks:
            lines.append(f"{target}: no attack with restarts applies.")
            continue
        lines.append(f"{target}: {', '.join(r.attacks)} broke {r.new_breaks} more point(s), robust accuracy "
                     f"{pct(r.robust_accuracy_before)} → {pct(r.robust_accuracy_after)} ({r.change_pp:+.1f} pp).")
    within = any(r.round == "x2" for r in check.values())
    how = ("In the doubled-budget round, every attack with two or more restarts ran" if within else
           "Every attack with two or more restarts ran again")
    return Section("Restart check: as many new restarts again", [
        f"{how} on the points still unbroken, with as many new restarts continuing its start schedule (ODS and "
        "uniform starts in turn), so the battery and the check together ran twice the restarts and repeated "
        "none; its breaks are verified and count in the worst case. A change of 0.5 pp or more starts "
        "escalation on that target.", *lines])


def _sanity_section(extras: Extras) -> Section:
    sanity = extras.sanity
    sanity_section = Section("Sanity checks")
    if sanity:
        sanity_section.header = ["check", "verdict", "figures", "if it fails"]
        for v in sanity:
            sanity_section.rows.append([v.name, v.status, v.figures, v.meaning])
        counts = {s: sum(v.status == s for v in sanity) for s in ("pass", "warn", "fail", "not run")}
        sanity_section.paragraphs.append(", ".join(f"{k}: {n}" for k, n in counts.items()) + ".")
    else:
        sanity_section.paragraphs.append("No sanity checks were run for this report.")
    return sanity_section


def _ground_truth_section(extras: Extras) -> Section | None:
    truth = extras.ground_truth
    if truth:
        gt = Section("Ground truth", ["On synthetic data the true label of every point is known: each verified "
                                      "break is a true adversarial example (true label unchanged) or a "
                                      "label-changing perturbation."], ["target", "true adversarial", "label-changing"])
        for target, counts in truth.items():
            gt.rows.append([target, str(counts.true_adversarial), str(counts.label_changing)])
        return gt
    return None


def _escalation_section(results: ResultsRecord) -> Section | None:
    rounds = results.escalation or []
    diagnostics = results.extras.gradient_diagnostics
    if rounds or diagnostics:
        esc = Section("Escalation", ["An indicator that the attacks failed for the wrong reason (masked or "
                                     "non-finite gradients, flat or still-rising loss traces, black-box attacks "
                                     "beating white-box ones, an unbounded attack below 100 %, doubled budgets "
                                     "moving the verdict, a ladder still falling steeply at its last adaptive "
                                     "attack) starts rounds of stronger attacks on that target's "
                                     "unbroken points, doubling until a round moves robust accuracy by less than "
                                     "0.5 pp. " + ("No indicator fired: nothing escalated." if not rounds else "")],
                      ["target", "round", "indicators", "attacks", "new breaks", "robust accuracy", "seconds"]
                      if rounds else [])
        for r in rounds:
            moved = f"{pct(r.robust_accuracy_before)} → {pct(r.robust_accuracy_after)}"
            esc.rows.append([r.target, str(r.round), "; ".join(r.indicators), ", ".join(r.attacks),
                             str(r.new_breaks), moved, f"{r.seconds:.1f}"])
        for r in rounds:
            if r.stopped:
                esc.notes.append(f"Escalation on the {r.target} stopped after round {r.round}: {r.stopped}"
                                 + (" (the last round still moved the verdict: the figure is an upper bound)."
                                    if stopped_by_time_cap(r.stopped) else "."))
        for target, d in (diagnostics or {}).items():
            esc.notes.append(f"Gradients of F's loss at the {target} target's decision points: zero on "
                             f"{d.zero_gradient_share:.0%}, non-finite on {d.nonfinite_gradient_share:.0%} of "
                             f"{d.points} points; norm median {d.gradient_norm_median:.3g}, 90/10 spread "
                             f"{d.gradient_norm_spread_90_10:.3g}.")
        return esc
    return None


def _skipped_section(extras: Extras) -> Section | None:
    skipped = extras.skipped or []
    if skipped:
        skip = Section("Attacks skipped", ["Attacks are matched to a target by what it offers (its capabilities), "
                                           "never by its name; these did not apply."],
                       ["target", "attack", "why"])
        for row in skipped:
            skip.rows.append([row.target, row.attack, row.reason])
        return skip
    return None


def _reproduce(results: ResultsRecord) -> Section:
    cfg, shell = results.config, results.config.shell_parameters
    return Section("Reproduce", [
        f"Model {_or(cfg.model, 'n/a')} (hash {_or(cfg.model_hash, 'n/a')}); points: {_or(cfg.dataset, 'n/a')} "
        f"(hash {_or(cfg.data_hash, 'n/a')}, {_or(cfg.n_points_used, results.n_points)} points); shell "
        f"{_or(shell.class_name, shell.kind)} with capabilities {', '.join(shell.capabilities or []) or 'none'}; "
        f"seed {_or(cfg.seed, 0)}; chunk {_or(cfg.chunk, 'n/a')}; versions "
        f"{record_text(_or(cfg.versions, {}), ' ')}."],
        code=_command(results))


def _command(results: ResultsRecord) -> str:
    """The command line that reruns the evaluation, as recorded (the Python API records its call)."""
    call = results.config.call
    if call is not None and call.command is not None:
        return call.command
    return _or(results.config.command, "(Python API)")


def stopped_by_time_cap(stopped: str) -> bool:
    """Whether an escalation round's stop reason (`escalation.stop_reason`) is its time cap, reached while the
    verdict still moved: the figure it leaves is an upper bound."""
    return stopped.startswith("time cap")


def still_moving(results: ResultsRecord, target: str = "shell") -> bool:
    """Whether escalation on `target` ended at its time cap with the verdict still moving (an upper bound)."""
    return any(r.target == target and stopped_by_time_cap(r.stopped) for r in results.escalation or [])


def check_against_store(directory: Path, results: ResultsRecord) -> None:
    """A run directory's store, if it has one, is verified against its own digest, and results.json must have
    been written from that store as it is now (its `store_digest`); either failing is a ValueError."""
    if not (directory / DB_NAME).is_file():
        return
    store = ResultStore.reader(directory)  # verifies every table
    try:
        now = store.digest()
    finally:
        store.close()
    recorded = results.store_digest
    if recorded is not None and recorded != now:
        raise ValueError(f"{directory / 'results.json'} was not written from {directory / DB_NAME} as it is now "
                         f"(store digest {recorded[:12]}…, the store's {now[:12]}…); resume the run to rewrite it: "
                         f"robustness-eval run --resume {directory}")


def write_report(directory: str | Path, results: dict | None = None) -> Path:
    """Write report.md, report.html and plots/ for a run directory from its results.json (or from `results`, the
    JSON a run just wrote there), read through the typed records; returns report.md's path."""
    directory = Path(directory)
    if results is None:
        path = directory / "results.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; run `robustness-eval run --out {directory}` first")
        raw = read_results(path)
    else:
        raw = results
    record = typed_results(raw, directory / "results.json")
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"{directory} is not writable; copy the run elsewhere to redraw its report")
    check_against_store(directory, record)
    plots = write_plots(record, directory)
    markdown = sections(typed_results(literal_values(raw), directory / "results.json"), plots)
    for part in markdown:
        if part.code is not None:
            part.code = _command(record)  # a code block shows its text as it is
    write_text_atomic(directory / "report.md", to_markdown(markdown, directory))
    write_text_atomic(directory / "report.html", to_html(sections(record, plots)))
    return directory / "report.md"

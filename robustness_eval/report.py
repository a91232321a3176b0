"""The Markdown report: the paper's transfer-only view beside the worst case, and the ladder.

Every number is read from the results.json contract, so the report and the JSON cannot disagree.
"""

from __future__ import annotations

from pathlib import Path


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal (the format every table uses)."""
    return "n/a" if value is None else f"{100 * value:.1f} %"


def headline(results: dict) -> str:
    """One sentence that compares the paper's protocol with the adaptive truth."""
    tasr = results["transfer_attack_success_rate"]
    robust, transfer = results["robust_accuracy"], results["transfer_robust_accuracy"]
    gap = transfer["shell"] - robust["shell"]
    verdict = (f"the adaptive battery lowers the shell's robust accuracy by a further "
               f"{100 * gap:.1f} pp below the transfer-only figure" if gap > 0 else
               "the adaptive attacks find no break that transfer missed")
    gain = robust["shell"] - robust["base"]
    return (f"Transfer from F (the paper's protocol) succeeds on {pct(tasr['base'])} of the points F "
            f"classifies correctly and on {pct(tasr['shell'])} against the shell; {verdict}. "
            f"Worst case over the battery: base {pct(robust['base'])}, shell {pct(robust['shell'])} "
            f"robust accuracy ({'+' if gain >= 0 else ''}{100 * gain:.1f} pp for the shell).")


def markdown(results: dict) -> str:
    """The report as Markdown text."""
    cfg = results["config"]
    threat = cfg["threat"]
    shell = cfg["shell_parameters"]
    lines = [
        f"# Robustness report: {cfg.get('dataset', 'data')} / {cfg.get('model', 'model')} / "
        f"shell {shell['kind']}",
        "",
        f"Threat: {threat['norm']} ε = {threat['eps']:g}, bounds {threat['bounds']}; "
        f"shell {shell['kind']} (radius {shell['radius']:g}"
        + (f", p = {shell['threshold']:g}" if shell.get("threshold") is not None else "")
        + f"); {results['n_points']} points; seed {cfg.get('seed', 0)}.",
        "",
        headline(results),
        "",
        "## The paper's view beside the truth",
        "",
        "| | base F | shell G |",
        "|---|---|---|",
    ]
    rows = [
        ("clean accuracy", "clean_accuracy"),
        ("attack success, transfer only (paper's Table 1)", "transfer_attack_success_rate"),
        ("robust accuracy, transfer only", "transfer_robust_accuracy"),
        ("attack success, worst case over the battery", "attack_success_rate"),
        ("robust accuracy, worst case over the battery", "robust_accuracy"),
    ]
    for label, key in rows:
        lines.append(f"| {label} | {pct(results[key]['base'])} | {pct(results[key]['shell'])} |")
    lines += ["", f"Retained accuracy (points F gets right that the shell also gets right): "
              f"{pct(results['retained_accuracy'])}.", "", "## The ladder", "",
              "Each attack runs only on the points still unbroken on its target; robust accuracy "
              "is the worst case so far.", "",
              "| target | attack | kind | attacked | new breaks | robust accuracy after | "
              "queries (median) | seconds |",
              "|---|---|---|---|---|---|---|---|"]
    for a in results["attacks"]:
        lines.append(f"| {a['target']} | {a['name']} | {a['kind']} | {a['attacked']} | "
                     f"{a['new_breaks']} | {pct(a['robust_accuracy_after'])} | "
                     f"{a['queries_median']:g} | {a['seconds']:.1f} |")
    check = results.get("extras", {}).get("crosscheck")
    if check:
        lines += ["", "## Second opinion on the base model", "",
                  f"Standalone on the same {check['points']} points, {check['steps']} steps × "
                  f"{check['restarts']} restarts: our PGD leaves {pct(check['ours'])} robust, "
                  f"Foolbox's PGD {pct(check['foolbox'])} "
                  f"(difference {100 * abs(check['ours'] - check['foolbox']):.1f} pp)."]
    lines += ["", "## Reproduce", "", f"```\n{cfg.get('command', '(Python API)')}\n```", "",
              f"Model hash {cfg.get('model_hash', 'n/a')}; versions {cfg.get('versions', {})}; "
              f"data split {cfg.get('split', {})}.", ""]
    return "\n".join(lines)


def write_report(results: dict, directory: str | Path) -> Path:
    """Write report.md into `directory` (atomically) and return its path."""
    path = Path(directory) / "report.md"
    partial = path.with_suffix(".md.tmp")
    partial.write_text(markdown(results))
    partial.replace(path)
    return path

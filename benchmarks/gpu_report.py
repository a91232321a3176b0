"""The GPU section of DEVICES.md, rewritten from a `python -m benchmarks gpu` record between two markers."""

from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- gpu section: written by `python -m benchmarks gpu`; edits inside are overwritten -->"
END = "<!-- end of gpu section -->"

PRODUCES = [
    "**verdicts**: the default digits evaluation on the GPU and on the CPU (same points, seed, chunk 50), "
    "every per-point verdict compared; any difference listed with the point, the target and the attacks;",
    "**throughput**: MCN and NCN (bisection) on a CIFAR-shaped ResNet-18 with random weights, fp32 and bfloat16 "
    "search, at 50, 500 and 5,000 points per call, against the same number of fp32 forward+backward passes "
    "(the limit), with peak GPU memory;",
    "**paper shape**: the fast battery through MCN on that ResNet-18 (ε = δ = 8/255, labels its own "
    "predictions), fp32 and bf16, points/s and the time 1,000 points would take (goal: under 15 minutes);",
    "**battery**: the fast battery on the digits and MNIST zoo models with chunks of 50, 500 and 2,000, and on "
    "Ray with one GPU per unit.",
]


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _num(value, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _verdict_lines(part: dict) -> list[str]:
    seconds = ", ".join(f"{where} {s:.0f} s" for where, s in part["seconds"].items())
    robust = "; ".join(f"{where}: base {_pct(r['base'])}, shell {_pct(r['shell'])}"
                       for where, r in part["robust_accuracy"].items())
    lines = [f"Verdicts on {part['points']} digits points ({seconds}); robust accuracy {robust}. "
             f"Per-point verdicts {'agree' if part['agree'] else 'differ'}."]
    lines += [f"- difference: {d}" for d in part["differences"]]
    lines += [f"- note: {n}" for n in part["notes"]]
    return [*lines, ""]


def _throughput_lines(part: dict) -> list[str]:
    lines = [f"Throughput, {part['model']}, δ = 8/255; limit: {part['limit']}. NCN leaves points already "
             "p-confident alone and its bisection can stop early, so its fraction can pass 100 %: read that as "
             "'at the limit'.", "",
             "| shell | search | points | seconds | points/s | fraction of limit | peak GiB |",
             "|---|---|---|---|---|---|---|"]
    for r in part["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['shell']} | {r['search_dtype']} | {r['points']} | skipped: {r['skipped']} | | | |")
        else:
            lines.append(f"| {r['shell']} | {r['search_dtype']} | {r['points']} | {r['seconds']:.2f} | "
                         f"{r['points_per_second']:.1f} | {_pct(r['fraction_of_limit'])} | {_num(r['peak_gib'], 2)} |")
    return [*lines, ""]


def _paper_lines(part: dict) -> list[str]:
    lines = [f"Paper shape (battery `{part['attacks']}`, MCN ε = δ = 8/255, random ResNet-18):", "",
             "| search | points | seconds | points/s | 1,000 points would take | vs the 15-minute goal | "
             "shell robust |", "|---|---|---|---|---|---|---|"]
    for r in part["runs"]:
        ratio = r["seconds_for_1000"] / r["goal_seconds_for_1000"]
        lines.append(f"| {r['search_dtype']} | {r['points']} | {r['seconds']:.0f} | {r['points_per_second']:.2f} | "
                     f"{r['seconds_for_1000'] / 60:.1f} min | {ratio:.2f}× the goal | "
                     f"{_pct(r['robust_accuracy']['shell'])} |")
    return [*lines, ""]


def _battery_lines(part: dict) -> list[str]:
    lines = [f"Battery `{part['attacks']}` on the zoo models (no checks, no escalation):", "",
             "| data | points | chunk | backend | seconds | robust base / shell |", "|---|---|---|---|---|---|"]
    for r in part["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['data']} | {r.get('points', '—')} | {r.get('chunk', '—')} | {r.get('backend', '—')} | "
                         f"skipped: {r['skipped']} | |")
        else:
            robust = r["robust_accuracy"]
            lines.append(f"| {r['data']} | {r['points']} | {r['chunk']} | {r['backend']} | {r['seconds']:.1f} | "
                         f"{_pct(robust['base'])} / {_pct(robust['shell'])} |")
    return [*lines, ""]


RENDER = {"verdicts": _verdict_lines, "throughput": _throughput_lines, "paper_shape": _paper_lines,
          "battery": _battery_lines}


def section(record: dict) -> str:
    """Markdown for the GPU section: what the command produces, on what it last ran, and its figures."""
    machine = record["machine"]
    lines = [BEGIN, "## GPU figures (`python -m benchmarks gpu`)", "",
             "One command, under 8 minutes on one GPU (`--limit`, default 450 s, stops it cleanly and keeps what "
             "was measured), writes `results/gpu.json` and this section. It produces:", ""]
    lines += [f"{i}. {text}" for i, text in enumerate(PRODUCES, 1)] + [""]
    if machine["cpu_figures"]:
        lines += ["**No GPU has run this command yet, so there are no GPU figures.** What follows comes from "
                  f"`--device cpu{' --quick' if record['quick'] else ''}` on a {machine['cores']}-core CPU "
                  "(tiny sizes, to keep the code from rotting): CPU figures, not ones to quote.", ""]
    else:
        lines += [f"Measured on {machine['gpu']} ({machine['cores']} CPU cores), torch {machine['torch']}"
                  f"{', quick sizes' if record['quick'] else ''}.", ""]
    if record.get("stopped_at_limit"):
        lines += [f"Stopped at the {record['limit_seconds']:.0f} s limit in part `{record['stopped_at_limit']}`.", ""]
    for name, part in record["parts"].items():
        lines += [f"- {name}: {part['skipped']}", ""] if "skipped" in part else RENDER[name](part)
    return "\n".join([*lines, END])


def write_devices_section(path: Path, record: dict) -> None:
    """Replace the GPU section of `path` (appending it if absent; creating the file if need be)."""
    text = path.read_text() if path.exists() else "# Devices and precision\n"
    new = section(record)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + new + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    path.write_text(text)

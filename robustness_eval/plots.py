"""PNG plots for a report: the ladder, sweeps, success vs queries, perturbation norms, an example grid.

A plot with nothing to show (no breaks, no stored examples) is not drawn; the report says why instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from robustness_eval.example_file import EXAMPLES_NAME, load_examples
from robustness_eval.records import ResultsRecord, SweepRow
from robustness_eval.store import DB_NAME, ResultStore
from robustness_eval.types import BLACK_BOX_KINDS

LADDER_TITLE = "the ladder: robust accuracy after each attack"
PLOT_FILES = ("ladder.png", "sweep-eps.png", "sweep-delta.png", "success-vs-queries.png", "perturbation-norms.png",
              "examples.png")  # every file write_plots may write
# plots drawn from the per-point store and examples.npz: kept as drawn when that file is not beside a redrawn report
DRAWN_FROM_FILES = ("success-vs-queries.png", "examples.png")


@dataclass
class Plots:
    """The plots drawn (title → PNG path, the ladder first) and a sentence for each one left out."""

    images: dict[str, Path] = field(default_factory=dict)
    omitted: list[str] = field(default_factory=list)


def write_plots(results: ResultsRecord, directory: Path) -> Plots:
    """Every plot the results support, written under directory/plots."""
    folder = directory / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    for name in PLOT_FILES:  # a redrawn report keeps no plot its results no longer support; nothing else is touched
        if name not in DRAWN_FROM_FILES:  # those two decide themselves: their data may not be beside the report
            (folder / name).unlink(missing_ok=True)
    plots = Plots()
    if results.attacks:
        plots.images[LADDER_TITLE] = _ladder_plot(results, folder / "ladder.png")
    sweep = results.extras.sweep or []
    for axis, other, title in (("eps", "delta", "robust accuracy vs ε"), ("delta", "eps", "robust accuracy vs δ")):
        values = sorted({getattr(row, axis) for row in sweep})
        if len(values) > 1:
            plots.images[title] = _sweep_plot(sweep, axis, other, folder / f"sweep-{axis}.png")
    _add(plots, "attack success vs queries (score- and decision-based, shell)",
         _queries_plot(results, directory, folder / "success-vs-queries.png"))
    _add(plots, "distribution of perturbation norms of verified breaks",
         _norms_plot(results, folder / "perturbation-norms.png"))
    _add(plots, "examples: x, x', the shell's search points z*(x) and z*(x')",
         _example_grid(results, directory, folder / "examples.png"))
    return plots


def _add(plots: Plots, title: str, drawn: Path | str) -> None:
    """A drawn plot goes in by its title; a plot with nothing to show leaves its sentence."""
    if isinstance(drawn, Path):
        plots.images[title] = drawn
    else:
        plots.omitted.append(drawn)


def _ladder_plot(results: ResultsRecord, path: Path) -> Path:
    """Robust accuracy after each attack in the battery's order, per target, from clean accuracy down;
    the transfer-only figure and the worst case (which also counts convergence and escalation) marked."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    names = list(dict.fromkeys(a.name for a in results.attacks))  # the battery's order
    for target, marker in (("base", "o"), ("shell", "s")):
        steps = results.ladder(target)
        if not steps:
            continue
        positions = [0, *(1 + names.index(a.name) for a in steps)]
        values = [results.clean_accuracy[target], *(a.robust_accuracy_after for a in steps)]
        line, = ax.step(positions, values, where="post", marker=marker, label=f"{target}, after each attack")
        ax.axhline(results.transfer_robust_accuracy[target], color=line.get_color(), linestyle=":",
                   linewidth=1, label=f"{target}, transfer only")
        ax.axhline(results.robust_accuracy[target], color=line.get_color(), linestyle="--",
                   linewidth=1, label=f"{target}, worst case")
    ax.set_xticks(range(len(names) + 1), ["clean", *names], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(max(0.0, ax.get_ylim()[0] - 0.05), min(1.02, ax.get_ylim()[1] + 0.02))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sweep_plot(sweep: list[SweepRow], axis: str, other: str, path: Path) -> Path:
    fixed = getattr(sweep[0], other)
    rows = sorted((r for r in sweep if getattr(r, other) == fixed), key=lambda r: getattr(r, axis))
    xs = [getattr(r, axis) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(xs, [r.robust_accuracy["base"] for r in rows], "o-", label="base F, worst case")
    ax.plot(xs, [r.transfer_robust_accuracy["shell"] for r in rows], "s--", label="shell, transfer only")
    ax.plot(xs, [r.robust_accuracy["shell"] for r in rows], "s-", label="shell, worst case")
    ax.set_xlabel("ε" if axis == "eps" else "shell radius δ")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{'δ' if axis == 'eps' else 'ε'} = {fixed:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _queries_plot(results: ResultsRecord, directory: Path, path: Path) -> Path | str:
    shell = results.ladder("shell")
    names = [a.name for a in shell if a.kind in BLACK_BOX_KINDS and a.attacked]
    if not names or not any(a.new_breaks for a in shell if a.name in names):
        path.unlink(missing_ok=True)
        if not names:
            return "No score- or decision-based attack ran on the shell: no plot of success against queries."
        # each attack runs on the points still unbroken, so its rows' breaks are its rung's new breaks
        return (f"The score- and decision-based attacks on the shell ({', '.join(names)}) broke no point: no plot "
                "of success against queries.")
    rungs = {a.name: a for a in shell if a.name in names}
    if all(rungs[name].break_queries is not None for name in names):  # recorded in results.json
        curves = {name: (rungs[name].break_queries, rungs[name].queries_max, rungs[name].attacked)
                  for name in names if rungs[name].break_queries}
    elif (directory / DB_NAME).exists():  # a results.json from before the rungs recorded them
        curves = _store_curves(directory, names)
    else:  # the plot drawn when the store was there, if it was
        return path if path.exists() else ("The per-point store is not beside this report: no plot of success "
                                           "against queries.")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, (hits, budget, attacked) in curves.items():
        xs = [0, *hits, budget]
        ys = [0, *[(i + 1) / attacked for i in range(len(hits))], len(hits) / attacked]
        ax.step(xs, ys, where="post", label=name)
    ax.set_xlabel("oracle queries")
    ax.set_ylabel("share of attacked points broken")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _store_curves(directory: Path, names: list[str]) -> dict[str, tuple[list[int], int, int]]:
    """Per attack that broke something: its breaks' queries (sorted), the most queries used, the points attacked."""
    store = ResultStore.reader(directory)
    try:
        rows = {name: store.rows("main", "shell", name) for name in names}
    finally:
        store.close()
    return {name: (sorted(r["queries"] for r in found if r["success"]), max(r["queries"] for r in found), len(found))
            for name, found in rows.items() if any(r["success"] for r in found)}


def _norms_plot(results: ResultsRecord, path: Path) -> Path | str:
    series = {t: [p.perturbation_norm[t] for p in results.points if p.perturbation_norm[t] is not None]
              for t in ("base", "shell")}
    if not any(series.values()):
        return "No verified break on either target: no plot of perturbation norms."
    fig, ax = plt.subplots(figsize=(5, 3.4))
    eps = results.config.threat.eps
    for target, values in series.items():
        if values:
            ax.hist(values, bins=20, range=(0, eps * 1.05), alpha=0.6, label=f"{target} ({len(values)})")
    ax.set_xlabel(f"‖x' − x‖ ({results.config.threat.norm})")
    ax.set_ylabel("points")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int] | None:
    if len(shape) == 3 and shape[0] in (1, 3):
        return shape[1], shape[2]
    size = math.prod(shape)
    side = math.isqrt(size)
    return (side, side) if side * side == size and side >= 8 else None


def _example_grid(results: ResultsRecord, directory: Path, path: Path) -> Path | str:
    examples = load_examples(directory / EXAMPLES_NAME)
    if examples is None:
        if not any(p.perturbation_norm["shell"] is not None for p in results.points):
            path.unlink(missing_ok=True)
            return "No verified break on the shell: no example images."
        return path if path.exists() else f"No {EXAMPLES_NAME} beside this report: no example images."
    hw = _image_shape(tuple(next(iter(examples["panels"].values()))["images"].shape[1:]))
    if hw is None:
        path.unlink(missing_ok=True)
        return "The inputs are not images (no square or C×H×W shape): no example images."
    chosen, y = examples["index"], examples["label"]
    panels = [(torch.from_numpy(p["images"]), name, p["predicted"], p["confidence"])
              for name, p in examples["panels"].items()]
    fig, axes = plt.subplots(len(chosen), len(panels), figsize=(1.6 * len(panels), 1.7 * len(chosen)),
                             squeeze=False)
    for row in range(len(chosen)):
        for col, (images, name, predicted, confidence) in enumerate(panels):
            ax = axes[row][col]
            picture = images[row]
            if picture.dim() == 3 and picture.shape[0] == 3:
                ax.imshow(picture.permute(1, 2, 0).clamp(0, 1).numpy())
            else:
                ax.imshow(picture.reshape(hw).numpy(), cmap="gray", vmin=0, vmax=1)
            label = int(predicted[row])
            ax.set_title(f"{name}: {label} ({float(confidence[row]):.2f})" + (" ✓" if label == int(y[row]) else ""),
                         fontsize=7)
            ax.axis("off")
    fig.suptitle("true label ✓; G's label (confidence) for x, x'; F's for z*", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

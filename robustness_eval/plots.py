"""PNG plots for a report: sweeps, success vs queries, perturbation norms, an example grid."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from robustness_eval.example_file import EXAMPLES_NAME, load_examples
from robustness_eval.store import DB_NAME, ResultStore
from robustness_eval.types import BLACK_BOX_KINDS


def write_plots(results: dict, directory: Path) -> dict[str, Path]:
    """Every plot the results support, written under directory/plots; name → path."""
    folder = directory / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    sweep = results.get("extras", {}).get("sweep", [])
    for axis, other, title in (("eps", "delta", "robust accuracy vs ε"), ("delta", "eps", "robust accuracy vs δ")):
        values = sorted({row[axis] for row in sweep})
        if len(values) > 1:
            made[title] = _sweep_plot(sweep, axis, other, folder / f"sweep-{axis}.png")
    if (directory / DB_NAME).exists():
        path = _queries_plot(results, directory, folder / "success-vs-queries.png")
        if path:
            made["attack success vs queries (score- and decision-based, shell)"] = path
    path = _norms_plot(results, folder / "perturbation-norms.png")
    if path:
        made["distribution of perturbation norms of verified breaks"] = path
    path = _example_grid(results, directory, folder / "examples.png")
    if path:
        made["examples: x, x', the shell's search points z*(x) and z*(x')"] = path
    return made


def _sweep_plot(sweep: list[dict], axis: str, other: str, path: Path) -> Path:
    fixed = sweep[0][other]
    rows = sorted((r for r in sweep if r[other] == fixed), key=lambda r: r[axis])
    xs = [r[axis] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(xs, [r["robust_accuracy"]["base"] for r in rows], "o-", label="base F, worst case")
    ax.plot(xs, [r["transfer_robust_accuracy"]["shell"] for r in rows], "s--", label="shell, transfer only")
    ax.plot(xs, [r["robust_accuracy"]["shell"] for r in rows], "s-", label="shell, worst case")
    ax.set_xlabel("ε" if axis == "eps" else "shell radius δ")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{'δ' if axis == 'eps' else 'ε'} = {fixed:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _queries_plot(results: dict, directory: Path, path: Path) -> Path | None:
    names = [a["name"] for a in results["attacks"]
             if a["target"] == "shell" and a["kind"] in BLACK_BOX_KINDS and a["attacked"]]
    if not names:
        return None
    store = ResultStore.reader(directory)
    try:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for name in names:
            rows = store.rows("main", "shell", name)
            hits = sorted(r["queries"] for r in rows if r["success"])
            budget = max(r["queries"] for r in rows)
            xs = [0, *hits, budget]
            ys = [0, *[(i + 1) / len(rows) for i in range(len(hits))], len(hits) / len(rows)]
            ax.step(xs, ys, where="post", label=name)
    finally:
        store.close()
    ax.set_xlabel("oracle queries")
    ax.set_ylabel("share of attacked points broken")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _norms_plot(results: dict, path: Path) -> Path | None:
    series = {t: [p["perturbation_norm"][t] for p in results["points"] if p["perturbation_norm"][t] is not None]
              for t in ("base", "shell")}
    if not any(series.values()):
        return None
    fig, ax = plt.subplots(figsize=(5, 3.4))
    eps = results["config"]["threat"]["eps"]
    for target, values in series.items():
        if values:
            ax.hist(values, bins=20, range=(0, eps * 1.05), alpha=0.6, label=f"{target} ({len(values)})")
    ax.set_xlabel(f"‖x' − x‖ ({results['config']['threat']['norm']})")
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


def _example_grid(results: dict, directory: Path, path: Path) -> Path | None:
    examples = load_examples(directory / EXAMPLES_NAME)
    if examples is None:
        return None
    hw = _image_shape(tuple(next(iter(examples["panels"].values()))["images"].shape[1:]))
    if hw is None:
        return None
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

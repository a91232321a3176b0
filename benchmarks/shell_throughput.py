"""Shell throughput: batched MCN/NCN against a naive per-point, per-class loop and the machine's limit.

The limit is measured in the same run: the time of (steps + 1) batched forward+backward passes
of the same model at the same total batch (points × classes × restarts), with nothing else; the
shell's achieved fraction is limit time / shell time. The naive loop runs the same steps on one
row at a time and must give the same search points (checked).
"""

from __future__ import annotations

import torch

from benchmarks.common import setting, timed
from robustness_eval.norms import ascent_direction, project
from shells import MCNShell, NCNShell
from shells.mcn import log_odds


def naive_mcn(shell: MCNShell, x: torch.Tensor, radii: list[float] | None = None) -> torch.Tensor:
    """The same search, one point, class and restart at a time in Python loops.

    `radii` gives each point its own radius (NCN's bisection); default: the shell's δ.
    """
    model, steps = shell.base_model, shell.steps
    shape = tuple(x.shape[1:])
    pattern = shell.restart_pattern(shape, x)
    out = []
    for i in range(x.shape[0]):
        center = x[i : i + 1]
        radius = shell.radius if radii is None else radii[i]
        classes = model(center).shape[1]
        best_score, best_z = None, None
        for t in range(classes):
            target = torch.tensor([t])
            for r in range(shell.restarts):
                z = project(center + pattern[r : r + 1] * radius, center, radius, shell.norm, shell.bounds)
                candidates = [(center, float(log_odds(model(center).detach(), target)))]
                for k in range(steps + 1):
                    z.requires_grad_(True)
                    logits = model(z)
                    candidates.append((z.detach(), float(log_odds(logits.detach(), target))))
                    if k == steps:
                        break
                    (grad,) = torch.autograd.grad(shell.objective_of(logits, target).sum(), z)
                    z = project(z.detach() + 2.5 * radius / steps * ascent_direction(grad, shell.norm),
                                center, radius, shell.norm, shell.bounds)
                for point, score in candidates:
                    if best_score is None or score > best_score:
                        best_score, best_z = score, point
        out.append(best_z)
    return torch.cat(out)


def naive_ncn(shell: NCNShell, x: torch.Tensor) -> torch.Tensor:
    """NCN by bisection on the radius, one point at a time, over the naive MCN loop."""
    model, p = shell.base_model, shell.threshold
    mcn = shell.mcn

    def confidence(z: torch.Tensor) -> float:
        with torch.no_grad():
            return float(torch.softmax(model(z), 1).amax())

    out = []
    for i in range(x.shape[0]):
        point = x[i : i + 1]
        if confidence(point) >= p:
            out.append(point)
            continue
        lo, hi = 0.0, shell.radius
        z_hi = naive_mcn(mcn, point, [hi])
        if confidence(z_hi) >= p:  # otherwise nothing inside the radius limit reaches p
            for _ in range(shell.rounds):
                mid = (lo + hi) / 2
                z_mid = naive_mcn(mcn, point, [mid])
                if confidence(z_mid) >= p:
                    hi, z_hi = mid, z_mid
                else:
                    lo = mid
        out.append(z_hi)
    return torch.cat(out)


def fixed_point_share(shell: MCNShell, x: torch.Tensor) -> list[float]:
    """Per inner step, the share of (point, class) rows that the step left where they were.

    Such a row is at a fixed point of the projected ascent: every later step repeats, so an
    exact early exit could skip it. The mean share over steps bounds what that exit saves.
    """
    model = shell.base_model
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    center = x.repeat_interleave(classes, 0)
    target = torch.arange(classes).repeat(x.shape[0])
    z, shares = center.clone(), []
    for _ in range(shell.steps):
        z.requires_grad_(True)
        (grad,) = torch.autograd.grad(shell.objective_of(model(z), target).sum(), z)
        moved = project(z.detach() + 2.5 * shell.radius / shell.steps * ascent_direction(grad, shell.norm),
                        center, shell.radius, shell.norm, shell.bounds)
        shares.append(float((moved == z.detach()).flatten(1).all(1).float().mean()))
        z = moved
    return shares


def limit_seconds(model, rows: int, shape: tuple[int, ...], passes: int) -> float:
    """Time of `passes` plain forward+backward passes of `model` on `rows` rows."""
    z = torch.rand(rows, *shape)

    def run():
        for _ in range(passes):
            w = z.clone().requires_grad_(True)
            torch.autograd.grad(model(w)[:, 0].sum(), w)

    return timed(run, repeats=2)[1]


def matmul_gflops(size: int = 1024) -> float:
    a, b = torch.rand(size, size), torch.rand(size, size)
    _, seconds = timed(lambda: a @ b, repeats=5)
    return 2 * size**3 / seconds / 1e9


def run(points: dict[str, int] | None = None, naive_points: int = 10) -> dict:
    points = points or {"digits": 200, "mnist": 40}
    rows = []
    for name, n in points.items():
        model, x, _, bounds = setting(name, n)
        for kind in ("mcn", "ncn"):
            if kind == "mcn":
                shell = MCNShell(model, 0.1 if name == "digits" else 0.3, "linf", bounds, steps=20)
                passes = shell.steps + 1
                shares = fixed_point_share(shell, x)
            else:
                shell = NCNShell(model, 0.9, "linf", bounds, max_radius=0.3, steps=20, rounds=6)
                passes = (shell.steps + 1) * (shell.rounds + 1)
            _, seconds = timed(lambda s=shell, z=x: s.search(z), repeats=2)
            with torch.no_grad():
                probs = torch.softmax(model(x), 1)
            classes = probs.shape[1]
            # NCN returns points already p-confident untouched: only the others cost a search
            searched = n if kind == "mcn" else int((probs.amax(1) < shell.threshold).sum())
            limit = limit_seconds(model, max(searched, 1) * classes, tuple(x.shape[1:]), passes)
            row = {"data": name, "shell": kind, "points": n, "points_searched": searched,
                   "points_per_second": n / seconds,
                   "limit_seconds": limit, "shell_seconds": seconds, "fraction_of_limit": limit / seconds}
            few = x[:naive_points] if kind == "mcn" else x[probs.amax(1) < shell.threshold][:naive_points]
            if len(few):
                naive_search = naive_mcn if kind == "mcn" else naive_ncn
                naive, naive_seconds = timed(lambda s=shell, f=few, fn=naive_search: fn(s, f))
                batched = shell.search(few)
                row["naive_points"] = len(few)
                row["naive_points_per_second"] = len(few) / naive_seconds
                # both rates over searched points (NCN leaves p-confident points alone, for free)
                row["speedup_vs_naive"] = searched / seconds / row["naive_points_per_second"]
                row["naive_equal"] = bool(torch.allclose(naive, batched, atol=1e-4))
            if kind == "mcn":
                row["fixed_rows_by_step"] = shares
                row["early_exit_saving_bound"] = sum(shares) / len(shares)
            rows.append(row)
    return {"matmul_gflops": matmul_gflops(), "rows": rows}

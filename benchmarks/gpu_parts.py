"""The measurements of `python -m benchmarks gpu` (see benchmarks/gpu.py), one function per part."""

from __future__ import annotations

import copy
import importlib.util
import time

import torch
from torch import nn

from robustness_eval.types import Bounds, Threat
from shells import MCNShell, NCNShell

CIFAR_EPS = 8 / 255
CHECKS_OFF = {"convergence": False, "crosscheck": False, "sanity_checks": False, "escalation": False}
EPS = {"digits": 0.1, "mnist": 0.3}  # the committed examples' ε (and δ)
ROW_CAP_SECONDS = 90.0  # a throughput row predicted to take longer (from the size before it) is skipped


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """The CIFAR form of ResNet-18 (3×3 stem, no max-pool; 11.2 M parameters at width 64), for throughput
    only; `--quick` narrows it (width 8) so the same code runs on a CPU in seconds."""

    def __init__(self, classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, inputs = [], width
        for factor, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            layers += [BasicBlock(inputs, width * factor, stride), BasicBlock(width * factor, width * factor, 1)]
            inputs = width * factor
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(inputs, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)).mean((2, 3)))


def resnet18(device: torch.device, width: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ResNet18(width=width).to(device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _mcn_factory(sizes: dict, search_dtype: str = "float32"):
    """MCN as the evaluations here build it: the default 20 inner steps (2 under --quick)."""
    def build(model, delta, norm, bounds):
        return MCNShell(model, delta=delta, norm=norm, bounds=bounds, steps=sizes["shell_steps"],
                        search_dtype=search_dtype)
    return build


def _verdict(point: dict) -> dict:
    return {"base_correct": point["base_correct"], "shell_correct": point["shell_correct"],
            "broken_by": dict(point["broken_by"])}


def verdicts(device: torch.device, sizes: dict) -> dict:
    """The default digits evaluation on `device` and on the CPU (same points, seed and chunk), compared per point."""
    import robustness_eval
    from robustness_eval.data import load_digits
    from robustness_eval.zoo import load_model

    data = load_digits()
    model = load_model(data, "adversarial")
    options = {"n_points": sizes["verdict_points"], "seed": 0, "chunk": 50}
    if sizes["quick_attacks"]:
        options.update(attacks=sizes["quick_attacks"], budgets=sizes["budgets"], **CHECKS_OFF)
    notes = []
    if importlib.util.find_spec("foolbox") is None:
        options["crosscheck"] = False
        notes.append("foolbox is not installed here, so the Foolbox cross-check was left out on both devices")
    runs = {}
    for where in dict.fromkeys([str(device), "cpu"]):
        start = time.perf_counter()
        result = robustness_eval.evaluate(copy.deepcopy(model), _mcn_factory(sizes), data,
                                          Threat("linf", 0.1, data.bounds), device=where, **options)
        runs[where] = {"seconds": time.perf_counter() - start, "robust_accuracy": result.robust_accuracy,
                       "points": [_verdict(p) for p in result.points], "indices": [p["index"] for p in result.points]}
    first, cpu = runs[str(device)], runs["cpu"]
    differences = [{"point": index, "target": target, "on_device": mine["broken_by"].get(target),
                    "on_cpu": theirs["broken_by"].get(target)}
                   for index, mine, theirs in zip(first["indices"], first["points"], cpu["points"], strict=True)
                   for target in ("base", "shell") if mine["broken_by"].get(target) != theirs["broken_by"].get(target)]
    differences += [{"point": index, "clean": {"on_device": mine, "on_cpu": theirs}}
                    for index, mine, theirs in zip(first["indices"], first["points"], cpu["points"], strict=True)
                    if mine["base_correct"] != theirs["base_correct"]
                    or mine["shell_correct"] != theirs["shell_correct"]]
    return {"points": len(first["points"]), "options": {k: v for k, v in options.items() if k != "n_points"},
            "seconds": {where: r["seconds"] for where, r in runs.items()},
            "robust_accuracy": {where: r["robust_accuracy"] for where, r in runs.items()},
            "agree": not differences, "differences": differences, "notes": notes}


def _timed_search(shell: nn.Module, x: torch.Tensor, device: torch.device) -> tuple[float, float | None]:
    shell(x[:2])  # warm-up: kernels chosen, allocator primed
    _sync(device)
    _peak_reset(device)
    start = time.perf_counter()
    shell(x)
    _sync(device)
    return time.perf_counter() - start, _peak_gib(device)


def _limit_seconds(model: nn.Module, rows: int, chunk_rows: int, passes: int, device: torch.device) -> float:
    """`passes` plain fp32 forward+backward passes over `rows` rows of CIFAR shape, in the shell's row chunks."""
    batch = min(rows, chunk_rows)
    z = torch.rand(batch, 3, 32, 32, device=device)

    def one_pass() -> None:
        w = z.clone().requires_grad_(True)
        torch.autograd.grad(model(w)[:, 0].sum(), w)

    one_pass()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(passes):
        one_pass()
    _sync(device)
    return (time.perf_counter() - start) * rows / batch


def _shell(kind: str, model: nn.Module, dtype: str, sizes: dict) -> tuple[nn.Module, int]:
    """(the shell, forward+backward passes per row it makes)."""
    bounds = Bounds(0.0, 1.0)
    if kind == "mcn":
        return MCNShell(model, CIFAR_EPS, bounds=bounds, steps=sizes["mcn_steps"], search_dtype=dtype), \
            sizes["mcn_steps"] + 1
    shell = NCNShell(model, p=0.9, bounds=bounds, max_radius=2 * CIFAR_EPS, steps=sizes["mcn_steps"],
                     rounds=sizes["ncn_rounds"], search_dtype=dtype)
    return shell, (sizes["mcn_steps"] + 1) * (sizes["ncn_rounds"] + 1)


def throughput(device: torch.device, sizes: dict) -> dict:
    """MCN and NCN on the random ResNet-18, fp32 and bf16, at each size, against the fwd+bwd limit."""
    model = resnet18(device, sizes["resnet_width"])
    generator = torch.Generator().manual_seed(0)
    pool = torch.rand(max(sizes["sizes"]), 3, 32, 32, generator=generator).to(device)
    rows, limits = [], {}
    for kind in ("mcn", "ncn"):
        for dtype in ("float32", "bfloat16"):
            previous = None
            for n in sizes["sizes"]:
                shell, passes = _shell(kind, model, dtype, sizes)
                row = {"shell": kind, "search_dtype": dtype, "points": n}
                predicted = None if previous is None else previous[1] * n / previous[0]
                if predicted is not None and predicted > ROW_CAP_SECONDS:
                    rows.append({**row, "skipped": f"predicted {predicted:.0f} s from {previous[0]} points"})
                    continue
                try:
                    seconds, peak = _timed_search(shell, pool[:n], device)
                except torch.OutOfMemoryError as error:
                    rows.append({**row, "skipped": f"out of memory: {str(error).splitlines()[0]}"})
                    torch.cuda.empty_cache()
                    continue
                key = (n, passes)
                if key not in limits:
                    limits[key] = _limit_seconds(model, n * 10, shell.chunk_rows if kind == "mcn"
                                                 else shell.mcn.chunk_rows, passes, device)
                rows.append({**row, "seconds": seconds, "points_per_second": n / seconds, "peak_gib": peak,
                             "limit_seconds": limits[key], "fraction_of_limit": limits[key] / seconds})
                previous = (n, seconds)
    return {"model": f"ResNet-18 (CIFAR form, width {sizes['resnet_width']}, random weights)", "delta": CIFAR_EPS,
            "rows": rows,
            "limit": "the same number of fp32 forward+backward passes on points × 10 classes rows, in the "
                     "shell's row chunks"}


def paper_shape(device: torch.device, sizes: dict) -> dict:
    """The fast battery through MCN on the random ResNet-18, ε = δ = 8/255, labels its own predictions."""
    import robustness_eval

    n = sizes["paper_points"]
    runs = []
    for dtype in ("float32", "bfloat16"):
        model = resnet18(device, sizes["resnet_width"])
        x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            y = model(x.to(device)).argmax(1).cpu()
        start = time.perf_counter()
        threat = Threat("linf", CIFAR_EPS, Bounds(0, 1))
        result = robustness_eval.evaluate(model, _mcn_factory(sizes, dtype), (x, y), threat,
                                          attacks=sizes["attacks"], budgets=sizes["budgets"], n_points=n,
                                          device=str(device), **CHECKS_OFF)
        seconds = time.perf_counter() - start
        runs.append({"search_dtype": dtype, "points": n, "seconds": seconds, "points_per_second": n / seconds,
                     "seconds_for_1000": 1000 * seconds / n, "goal_seconds_for_1000": 900,
                     "robust_accuracy": result.robust_accuracy})
    return {"attacks": sizes["attacks"], "runs": runs}


def _battery_run(model, data, points: int, device: torch.device, sizes: dict, **options) -> dict:
    import robustness_eval

    start = time.perf_counter()
    threat = Threat("linf", EPS[data.name], data.bounds)
    result = robustness_eval.evaluate(model, _mcn_factory(sizes), data, threat, attacks=sizes["attacks"],
                                      budgets=sizes["budgets"], n_points=points, device=str(device), **CHECKS_OFF,
                                      **options)
    return {"seconds": time.perf_counter() - start, "robust_accuracy": result.robust_accuracy}


def battery_timings(device: torch.device, sizes: dict, mnist_dir: str | None) -> dict:
    """The battery on the zoo models at each chunk size, then on Ray with one GPU per unit."""
    from robustness_eval.data import load_dataset
    from robustness_eval.zoo import load_model

    rows = []
    for name, points in sizes["battery_points"].items():
        try:
            data = load_dataset(name, mnist_dir if name == "mnist" else None)
        except (OSError, ValueError) as error:
            rows.append({"data": name, "skipped": f"no data: {error}"})
            continue
        model = load_model(data, "adversarial")
        points = min(points, len(data.y_test))
        for chunk in sizes["chunks"]:
            if chunk > points and any(r.get("chunk", 0) >= points for r in rows if r["data"] == name):
                continue  # one chunk holds every point already
            rows.append({"data": name, "points": points, "chunk": chunk, "backend": "local",
                         **_battery_run(copy.deepcopy(model), data, points, device, sizes, chunk=chunk)})
        rows.append(_ray_row(name, copy.deepcopy(model), data, points, device, sizes))
    return {"attacks": sizes["attacks"], "rows": rows}


def _ray_row(name: str, model, data, points: int, device: torch.device, sizes: dict) -> dict:
    row = {"data": name, "points": points, "chunk": min(sizes["chunks"][-1], points), "backend": "ray"}
    if not sizes["ray"]:
        return {**row, "skipped": "left out of --quick (starting Ray takes longer than the rest; "
                                  "tests/test_backends.py runs the Ray backend)"}
    if importlib.util.find_spec("ray") is None:
        return {**row, "skipped": "ray is not installed here"}
    import ray

    started = not ray.is_initialized()
    try:
        return {**row, **_battery_run(model, data, points, device, sizes, chunk=row["chunk"], backend="ray",
                                      workers=1 if device.type == "cpu" else None)}
    finally:
        if started and ray.is_initialized():
            ray.shutdown()

"""`python -m benchmarks gpu`: the GPU figures in one prepared command, for the first lent GPU machine.

Four parts, most telling first, each recorded as soon as it is measured:

1. verdicts: the default evaluation of digits on `--device` and on the CPU, same points and seed;
   every per-point verdict (clean correctness, the attack that broke the point) compared, and any
   difference listed with the point, the target and the attacks;
2. throughput: MCN and NCN (bisection) on a CIFAR-shaped ResNet-18 with random weights, fp32 and
   with the bfloat16 search, at 50, 500 and 5,000 points per call, against the same number of plain
   forward+backward passes on the same rows (the limit), with peak device memory;
3. paper shape: the fast battery through MCN on that ResNet-18 (ε = δ = 8/255, labels its own
   predictions so every point is attacked), fp32 and bf16, points/s and the time 1,000 would take;
4. battery: the fast battery on the digits and MNIST zoo models with chunks of 50, 500 and 2,000,
   and on Ray with one GPU per unit.

`--limit` (seconds, default 450) bounds the whole command: at the limit the part in progress is
stopped and what was measured is written. `--quick` shrinks every size so the same code runs on
a CPU in seconds (CI runs `--device cpu --quick --out <tmp>`). It writes `results/gpu.json` and
the GPU section of `DEVICES.md` under `--out` (default: this folder); figures from a CPU are
marked as such. What a lent machine lacks (nevergrad, foolbox, the MNIST files) travels as
`benchmarks/gpu_carry.sh` prepares it; a part whose dependency is missing says so and is skipped.
`--render gpu.json` rewrites the DEVICES.md section from a record brought back from such a machine.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.gpu_parts import battery_timings, paper_shape, throughput, verdicts
from benchmarks.gpu_report import write_devices_section

SIZES = {
    "full": {"verdict_points": 100, "sizes": (50, 500, 5000), "mcn_steps": 20, "ncn_rounds": 8, "resnet_width": 64,
             "paper_points": 200, "battery_points": {"digits": 360, "mnist": 2000}, "chunks": (50, 500, 2000),
             "attacks": "fast", "quick_attacks": None, "budgets": None, "shell_steps": 20, "ray": True},
    "quick": {"verdict_points": 6, "sizes": (2,), "mcn_steps": 2, "ncn_rounds": 1, "resnet_width": 8,
              "paper_points": 2, "battery_points": {"digits": 12}, "chunks": (4, 12),
              "attacks": "pgd,noise", "quick_attacks": "pgd,noise", "budgets": {"pgd": 5, "noise": 2},
              "shell_steps": 2, "ray": False},
}


class TimeLimit(BaseException):
    """The command's own time limit was reached (a BaseException, so no `except Exception` on the way swallows it)."""


@contextmanager
def time_limit(seconds: float):
    """Raise `TimeLimit` in the main thread once `seconds` have passed (SIGALRM), then restore the handler."""
    def expire(signum, frame):
        raise TimeLimit()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _machine(device: torch.device) -> dict:
    import os
    import platform

    return {"device": str(device), "cpu_figures": device.type == "cpu", "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "bf16_supported": bool(device.type == "cuda" and torch.cuda.is_bf16_supported())}


def _write(out: Path, record: dict) -> None:
    (out / "results").mkdir(parents=True, exist_ok=True)
    path = out / "results" / "gpu.json"
    path.with_suffix(".json.tmp").write_text(json.dumps(record, indent=2) + "\n")
    path.with_suffix(".json.tmp").replace(path)
    write_devices_section(out / "DEVICES.md", record)


def run(device: str = "cuda", quick: bool = False, out: Path | None = None, limit: float = 450.0,
        mnist_dir: str | None = None) -> dict:
    """Measure every part in order until done or `limit` seconds have passed; write after each part."""
    out = Path(__file__).parent if out is None else Path(out)
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: CUDA is not available here; pass --device cpu (with --quick in CI)")
    sizes = SIZES["quick" if quick else "full"]
    record = {"machine": _machine(resolved), "quick": quick, "limit_seconds": limit, "sizes": _jsonable(sizes),
              "parts": {}, "stopped_at_limit": None}
    start = time.perf_counter()
    parts = [("verdicts", lambda: verdicts(resolved, sizes)),
             ("throughput", lambda: throughput(resolved, sizes)),
             ("paper_shape", lambda: paper_shape(resolved, sizes)),
             ("battery", lambda: battery_timings(resolved, sizes, mnist_dir))]
    for name, part in parts:
        left = limit - (time.perf_counter() - start)
        if left <= 0:
            record["stopped_at_limit"] = record["stopped_at_limit"] or name
            record["parts"][name] = {"skipped": "the time limit was reached before this part"}
        else:
            try:
                with time_limit(left):
                    record["parts"][name] = part()
            except TimeLimit:
                record["stopped_at_limit"] = name
                record["parts"][name] = {"skipped": f"stopped at the {limit:.0f} s limit while measuring it"}
        record["seconds"] = time.perf_counter() - start
        _write(out, record)
        print(f"{name}: done at {record['seconds']:.0f} s", flush=True)
    return record


def _jsonable(sizes: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the same code in seconds (CI)")
    parser.add_argument("--out", type=Path, default=None, help="folder for results/gpu.json and DEVICES.md")
    parser.add_argument("--limit", type=float, default=450.0, help="seconds for the whole command (default 450)")
    parser.add_argument("--mnist-dir", default=None, help="MNIST IDX folder (default: the bundled test set)")
    parser.add_argument("--render", type=Path, default=None, metavar="GPU_JSON",
                        help="measure nothing: rewrite the DEVICES.md section under --out from this gpu.json "
                             "(e.g. one brought back from a lent machine)")
    args = parser.parse_args(argv)
    if args.render is not None:
        write_devices_section((args.out or Path(__file__).parent) / "DEVICES.md", json.loads(args.render.read_text()))
        return 0
    if not (args.limit > 0 and math.isfinite(args.limit)):
        parser.error(f"--limit must be a positive number of seconds, got {args.limit}")
    record = run(args.device, args.quick, args.out, args.limit, args.mnist_dir)
    print(json.dumps({"stopped_at_limit": record["stopped_at_limit"], "seconds": round(record["seconds"], 1)}))
    return 0

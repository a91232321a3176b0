"""`python -m benchmarks`: run every suite, print tables, write results/<suite>.json and RESULTS.md.

`python -m benchmarks gpu [--device cpu --quick ...]` is the GPU command instead (benchmarks/gpu.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks import backends, blackbox_shells, hard_label, peers, search_shells, shell_throughput
from benchmarks.common import machine
from benchmarks.report import write_results

SUITES = {"shell_throughput": shell_throughput.run, "peers": peers.run, "blackbox_shells": blackbox_shells.run,
          "backends": backends.run, "search_shells": search_shells.run, "hard_label": hard_label.run}


def main(names: list[str]) -> int:
    if names[:1] == ["gpu"]:
        from benchmarks import gpu

        return gpu.main(names[1:])
    here = Path(__file__).parent
    (here / "results").mkdir(exist_ok=True)
    chosen = names or list(SUITES)
    unknown = [n for n in chosen if n not in SUITES]
    if unknown:
        print(f"unknown suite(s) {unknown}; choose from {list(SUITES)}", file=sys.stderr)
        return 2
    for name in chosen:
        start = time.perf_counter()
        result = {"machine": machine(), **SUITES[name](), "seconds": time.perf_counter() - start}
        (here / "results" / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"{name}: {result['seconds']:.0f}s")
    write_results(here)
    print((here / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

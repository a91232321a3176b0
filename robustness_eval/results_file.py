"""Reading a results.json: the one reader, for reports and comparisons.

It refuses a file that is not one robustness-eval wrote, or that another version of the suite wrote
(a `schema_version` this one does not know), in one line, and reads older files as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA_VERSION = 2  # 1: files written before the version was recorded (read as they are); 2: adds store_digest,
# extras.phase_seconds and the black-box rungs' break_queries
REQUIRED_KEYS = ("config", "n_points", "clean_accuracy", "robust_accuracy", "transfer_robust_accuracy",
                 "attack_success_rate", "transfer_attack_success_rate", "retained_accuracy", "attacks", "points")


def read_results(path: str | Path) -> dict:
    """A results.json as a dict with its `schema_version` (1 for a file from before it was recorded, read as it
    is: every later field is optional to its readers); refused in one line if robustness-eval did not write it or
    a version of the suite this one does not know did."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a directory written by `robustness-eval run`")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); rerun the evaluation") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(results, dict) or key not in results]
    if missing:
        raise ValueError(f"{path} is not a results.json written by robustness-eval (missing: {', '.join(missing)}); "
                         "rerun the evaluation")
    version = results.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {version!r}, which this robustness-eval (reading versions 1 to "
                         f"{SCHEMA_VERSION}) does not know: it was written by another version of the suite; read it "
                         "with that version, or rerun the evaluation with this one")
    return {**results, "schema_version": version}

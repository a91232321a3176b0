"""robustness_eval: honest adversarial-robustness evaluation of model shells.

`evaluate` and `Threat` are the entry points; they are imported lazily so that `shells` and
`attacks`, which build on the core modules here, never import the runner.
"""

from __future__ import annotations

__all__ = ["Norm", "Threat", "compare", "evaluate"]


def __getattr__(name: str):
    if name == "evaluate":
        from robustness_eval.api import evaluate

        return evaluate
    if name == "compare":
        from robustness_eval.comparison import compare

        return compare
    if name in ("Threat", "Norm"):
        from robustness_eval import types

        return getattr(types, name)
    raise AttributeError(f"module 'robustness_eval' has no attribute {name!r}")

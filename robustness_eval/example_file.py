"""The report's example panels on disk: x, x' and the search points, as one .npz beside results.json.

Its own module, so that the plots read it without importing the results (and through them the
runner): the report sits above both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EXAMPLES_NAME = "examples.npz"


def save_examples(examples: dict, path: Path) -> None:
    """The example panels as one .npz: images per panel, and their labels as JSON."""
    arrays = {f"images_{i}": panel["images"] for i, panel in enumerate(examples["panels"].values())}
    meta = {"index": examples["index"], "label": examples["label"],
            "panels": [{"name": name, "predicted": panel["predicted"], "confidence": panel["confidence"]}
                       for name, panel in examples["panels"].items()]}
    partial = path.with_suffix(".tmp.npz")
    np.savez_compressed(partial, meta=np.array(json.dumps(meta)), **arrays)
    partial.replace(path)


def load_examples(path: Path) -> dict | None:
    """The panels `save_examples` wrote, or None when there are none."""
    if not path.exists():
        return None
    with np.load(path) as saved:
        meta = json.loads(str(saved["meta"]))
        panels = {panel["name"]: {"images": saved[f"images_{i}"], "predicted": panel["predicted"],
                                  "confidence": panel["confidence"]} for i, panel in enumerate(meta["panels"])}
    return {"index": meta["index"], "label": meta["label"], "panels": panels}

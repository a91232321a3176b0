"""The run directory before any work: can it be one, is it free, does its store hold this configuration."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from robustness_eval.provenance import VOLATILE
from robustness_eval.store import DB_NAME, ResultStore, compare_configs

RESULTS_NAME = "results.json"


def stored_chunk(directory: Path | None) -> int | None:
    """The chunk size of the run already in `directory` (a resume keeps it), if any."""
    if directory is None or not (directory / DB_NAME).exists():
        return None
    store = ResultStore.reader(directory)
    try:
        return (store.config() or {}).get("chunk")
    finally:
        store.close()


def check_store_dir(store_dir) -> Path | None:
    """The run directory, if it can be one: not a file, writable where it will be created."""
    if store_dir is None:
        return None
    if not isinstance(store_dir, str | Path):
        raise TypeError(f"`store_dir` must be a path or None (got {type(store_dir).__name__})")
    path = Path(store_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output directory {path} exists and is not a directory; choose another")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"output directory {path} cannot be created: {existing} is a file; choose another")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output directory {path} cannot be written ({existing} is not writable); choose another")
    try:  # permissions are not the whole story (a read-only or virtual file system): try it
        os.rmdir(tempfile.mkdtemp(prefix=".robustness-eval-probe-", dir=existing))
    except OSError as error:
        raise ValueError(f"output directory {path} cannot be created under {existing} ({error.strerror}); "
                         "choose another") from None
    return path


def check_stored_config(directory: Path | None, config: dict) -> None:
    """Refuse, before any work, a run directory that is not free for this configuration: a store or a
    results.json of another configuration, or a non-empty directory that holds no run (a user's files, which
    the suite would overwrite)."""
    if directory is None or not directory.is_dir():
        return
    entries = sorted(entry.name for entry in directory.iterdir())
    if (directory / DB_NAME).exists():
        store = ResultStore.reader(directory)  # verifies the store against its digest
        try:
            stored = store.config()
        finally:
            store.close()
        if stored is None:
            raise ValueError(f"{directory / DB_NAME} holds no run configuration (an empty or foreign store); "
                             "remove it or choose another directory")
        compare_configs(stored, config, directory, VOLATILE)
    elif RESULTS_NAME in entries:
        compare_configs(_results_config(directory / RESULTS_NAME), config, directory, VOLATILE)
    elif entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise ValueError(f"output directory {directory} is not empty and holds no run ({shown}); a run writes "
                         "results.json, report.md, report.html and plots/ there and never overwrites files it did "
                         "not write: choose a new or empty directory")


def _results_config(path: Path) -> dict:
    """The configuration recorded in a run directory's results.json (a run without its store, as the committed
    examples are)."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a results.json written by robustness-eval ({error}); choose another "
                         "output directory") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
        raise ValueError(f"{path} is not a results.json written by robustness-eval (no config); choose another "
                         "output directory")
    return stored["config"]

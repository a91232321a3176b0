"""The run directory before any work: can it be one, is it free, does its store hold this configuration."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from robustness_eval.provenance import VOLATILE
from robustness_eval.results_file import read_results
from robustness_eval.store import DB_NAME, ResultStore, compare_configs

RESULTS_NAME = "results.json"


def stored_config(directory: Path | None) -> dict | None:
    """The configuration of the run already in `directory`'s store (verified against its digest), if any: read once
    before any work, for the chunk a resume keeps and the configuration check."""
    if directory is None or not (directory / DB_NAME).exists():
        return None
    store = ResultStore.reader(directory)
    try:
        stored = store.config()
    finally:
        store.close()
    if stored is None:
        raise ValueError(f"{directory / DB_NAME} holds no run configuration (an empty or foreign store); "
                         "remove it or choose another directory")
    return stored


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


def check_stored_config(directory: Path | None, config: dict, stored: dict | None) -> None:
    """Refuse, before any work, a run directory that is not free for this configuration: a store (`stored`, its
    configuration) or a results.json of another configuration, or a non-empty directory that holds no run (a
    user's files, which the suite would overwrite)."""
    if directory is None or not directory.is_dir():
        return
    entries = sorted(entry.name for entry in directory.iterdir())
    if stored is not None:
        compare_configs(stored, config, directory, VOLATILE)
    elif RESULTS_NAME in entries:  # a run without its store, as the committed examples are
        compare_configs(read_results(directory / RESULTS_NAME)["config"], config, directory, VOLATILE)
    elif entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise ValueError(f"output directory {directory} is not empty and holds no run ({shown}); a run writes "
                         "results.json, report.md, report.html and plots/ there and never overwrites files it did "
                         "not write: choose a new or empty directory")

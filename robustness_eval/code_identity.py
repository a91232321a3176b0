"""Which code made the numbers: the suite's own version and source digest, and the user's files behind a run.

A run directory binds this record (results.json's `config.code`), so a resume with other code, the user's
model or shell file edited, or the suite updated, is refused instead of mixing two versions' rows; Ray
workers report the same record before they run a unit.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
import sysconfig
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from torch import nn

OWN_PACKAGES = ("robustness_eval", "shells", "attacks")


class CodeMismatchError(RuntimeError):
    """Raised on a Ray worker whose suite code is not the driver's."""


@functools.cache
def suite_identity() -> str:
    """The suite's version and a digest of its own source files ("0.1.0+3f2a…"), computed once per process."""
    try:
        version = metadata.version("robustness_eval")
    except metadata.PackageNotFoundError:
        version = "unknown"
    digest = hashlib.sha256()
    for package in OWN_PACKAGES:
        root = Path(sys.modules[package].__file__).parent if package in sys.modules else None
        if root is None:
            root = Path(__import__(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{version}+{digest.hexdigest()[:16]}"


def is_user_module(module) -> bool:
    """A module of the user's own (not the suite's, not installed, not the standard library)."""
    name, path = module.__name__, getattr(module, "__file__", None)
    if name == "__main__" or path is None or name.split(".")[0] in OWN_PACKAGES:
        return False
    installed = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    resolved = Path(path).resolve()
    return not any(resolved.is_relative_to(Path(root).resolve()) for root in installed)


def _modules_of(item) -> list:
    """The Python modules whose code `item` runs: every submodule's class for an nn.Module, the function's own
    module for a factory (functools.partial unwrapped)."""
    while isinstance(item, functools.partial):
        item = item.func
    if isinstance(item, nn.Module):
        return [sys.modules.get(type(part).__module__) for part in item.modules()]
    return [inspect.getmodule(item)] if callable(item) else []


def code_record(items: Iterable) -> dict:
    """The suite's identity and, per user module behind `items` (models, shells, factories), its file and the
    SHA-256 of its source."""
    files = {}
    for module in (m for item in items if item is not None for m in _modules_of(item)):
        if module is None or module.__name__ in files or not is_user_module(module):
            continue
        path = Path(module.__file__)
        files[module.__name__] = {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}
    return {"suite": suite_identity(), "files": dict(sorted(files.items()))}


def check_worker_identity(expected: str) -> None:
    """On a worker: refuse to run units when its suite code is not the driver's."""
    found = suite_identity()
    if found != expected:
        raise CodeMismatchError(f"a Ray worker runs robustness_eval {found}, the driver {expected}: install the "
                                "same version of the suite on every node (or start the cluster from this install)")

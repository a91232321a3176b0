"""Shells by name: the built-in factories and those third-party packages register.

A shell factory is called as `factory(model, **options)` with the shell options `delta`, `p`,
`norm`, `bounds`, `seed` and `search_dtype`; `call_factory` passes only the keywords the factory accepts (all of
them if it takes `**options`), so a factory may ignore options it does not use. A package adds
shells under the entry-point group `robustness_eval.shells` (name = factory), and they are
listed and built exactly like the built-in ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import entry_points

from torch import nn

from robustness_eval.types import Bounds, Norm
from shells.base import SHELL_OPTIONS, IdentityShell, Shell
from shells.mcn import MCNShell
from shells.ncn import NCNShell
from shells.vote import VoteShell

ENTRY_POINT_GROUP = "robustness_eval.shells"


def mcn(model: nn.Module, delta: float, norm: Norm | str = "linf", bounds: Bounds = Bounds(),
        seed: int = 0, search_dtype: str = "float32") -> MCNShell:
    """MCN_δ: the most confident neighbour within δ."""
    return MCNShell(model, delta, norm, bounds, seed=seed, search_dtype=search_dtype)


def ncn(model: nn.Module, delta: float, p: float = 0.9, norm: Norm | str = "linf",
        bounds: Bounds = Bounds(), seed: int = 0, search_dtype: str = "float32") -> NCNShell:
    """NCN_p: the nearest p-confident neighbour, searched within radius δ."""
    return NCNShell(model, p, norm, bounds, max_radius=delta, seed=seed, search_dtype=search_dtype)


def vote(model: nn.Module, delta: float, norm: Norm | str = "linf", bounds: Bounds = Bounds(),
         seed: int = 0) -> VoteShell:
    """A weighted majority vote over random neighbours within δ."""
    return VoteShell(model, delta, norm, bounds, seed=seed)


def identity(model: nn.Module, norm: Norm | str = "linf", bounds: Bounds = Bounds()) -> IdentityShell:
    """No shell: the base model itself."""
    return IdentityShell(model, norm, bounds)


BUILT_IN: dict[str, Callable[..., Shell]] = {"mcn": mcn, "ncn": ncn, "vote": vote, "none": identity}


def shell_factories() -> dict[str, Callable[..., nn.Module]]:
    """Every named shell factory: the built-in ones, then those registered by installed packages."""
    found = dict(BUILT_IN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point.load())
    return found


def accepted_options(factory: Callable, options: dict) -> dict:
    """The subset of `options` that `factory` takes as keywords (all of them if it takes **options)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: pass everything
        return dict(options)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(options)
    names = {p.name for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                       inspect.Parameter.KEYWORD_ONLY)}
    return {k: v for k, v in options.items() if k in names}


def call_factory(factory: Callable, model: nn.Module, options: dict) -> nn.Module:
    """`factory(model, **options)` with only the options it accepts."""
    unknown = sorted(set(options) - set(SHELL_OPTIONS))
    if unknown:
        raise ValueError(f"unknown shell option(s) {', '.join(unknown)}; shell options are: "
                         f"{', '.join(SHELL_OPTIONS)}")
    return factory(model, **accepted_options(factory, options))


def build_shell(kind: str, model: nn.Module, norm: Norm | str, bounds: Bounds, delta: float,
                p: float = 0.9, seed: int = 0, **options) -> nn.Module:
    """The registered shell `kind` around `model` with the given options."""
    factories = shell_factories()
    if kind not in factories:
        raise ValueError(f"unknown shell {kind!r}; choose one of: {', '.join(factories)}, "
                         "or pass module:factory / path/to/file.py:factory")
    return call_factory(factories[kind], model,
                        {"delta": delta, "p": p, "norm": norm, "bounds": bounds, "seed": seed, **options})

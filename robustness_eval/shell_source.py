"""The shell under evaluation and how to build it again: around the planted model, at δ = 0, at another δ."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from robustness_eval.data import Dataset
from robustness_eval.types import Threat, check_nonnegative, check_probability
from shells.base import can_rebuild
from shells.registry import accepted_options, call_factory, takes_dataset


@dataclass
class ShellSource:
    """The shell under evaluation, and how to build the same shell around another model or δ."""

    shell: nn.Module
    factory: Callable | None
    options: dict
    randomized: bool = False  # found random by the probe though it does not say so: so are its rebuilds

    def takes(self, option: str) -> bool:
        if self.factory is not None:
            return option in accepted_options(self.factory, {option: None})
        arguments = getattr(self.shell, "shell_arguments", None)
        if isinstance(arguments, dict) and can_rebuild(self.shell):  # a `Shell`: the options its arguments take
            return getattr(self.shell, "option_parameters", {}).get(option, option) in arguments
        return can_rebuild(self.shell)

    def rebuild(self, model: nn.Module, **changes) -> nn.Module | None:
        """The shell around `model` with `changes` (delta, ...); None when it cannot be rebuilt."""
        if self.factory is not None:
            built = call_factory(self.factory, model, {**self.options, **changes})
        else:
            built = self.shell.rebuild(model, **changes) if can_rebuild(self.shell) else None
        if built is not None and self.randomized:
            built.randomized = True
        return built


def shell_source(shell, model: nn.Module, threat: Threat, seed: int, options: dict | None) -> ShellSource:
    """The shell as given (an instance), or built by its factory with the suite's options (delta = ε, p = 0.9,
    the threat's norm and bounds, the run seed) overridden by `options`."""
    if isinstance(shell, nn.Module):
        if options:
            raise ValueError("`shell_options` apply only when `shell` is a factory; the shell instance "
                             "already has its parameters")
        return ShellSource(shell, None, {})
    if not callable(shell):
        raise TypeError(f"`shell` must be a shell module or a factory(model, **options) (got {type(shell).__name__})")
    merged = {"delta": threat.eps, "p": 0.9, "norm": threat.norm, "bounds": threat.bounds, "seed": seed,
              **(options or {})}
    check_nonnegative(merged["delta"], "shell_options['delta']")
    check_probability(merged["p"], "shell_options['p']")
    try:
        built = call_factory(shell, model, merged)
    except (Exception, SystemExit) as error:
        raise ValueError(f"the shell factory raised {type(error).__name__}: {error}") from error
    if not isinstance(built, nn.Module):
        raise TypeError(f"the shell factory must return a torch.nn.Module shell (it returned {type(built).__name__})")
    return ShellSource(built, shell, merged)


def bind_dataset(shell, data):
    """A factory that names a `dataset` parameter (a defense whose generative part is trained on the data, e.g.
    MagNet's autoencoder) gets the run's `Dataset` bound to it; anything else is returned as it is."""
    if isinstance(shell, nn.Module) or not callable(shell) or not isinstance(data, Dataset) or not takes_dataset(shell):
        return shell
    return functools.partial(shell, dataset=data)

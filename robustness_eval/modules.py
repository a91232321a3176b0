"""Small helpers for the user's torch modules, whatever produced them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn


def eval_mode(module: nn.Module) -> nn.Module:
    """`module.eval()`, except for modules that cannot switch mode (a `torch.export` program's module is
    fixed at export time and refuses `.eval()`); returns the module."""
    try:
        module.eval()
    except NotImplementedError:
        pass
    return module


@contextmanager
def borrowed(modules: Iterable[nn.Module | None], mark_randomized: nn.Module | None = None) -> Iterator[None]:
    """Use the caller's modules and give them back as they were: on exit every submodule's training flag and each
    module's own `randomized` attribute are restored, whatever the suite changed inside. `mark_randomized` is
    declared randomized for the duration (a shell the probe found random but that does not say so)."""
    given = [m for m in modules if isinstance(m, nn.Module)]
    modes = [(part, part.training) for module in given for part in module.modules()]
    flags = [(module, "randomized" in vars(module), vars(module).get("randomized")) for module in given]
    if mark_randomized is not None and mark_randomized not in given:
        flags.append((mark_randomized, "randomized" in vars(mark_randomized), vars(mark_randomized).get("randomized")))
    try:
        if mark_randomized is not None:
            mark_randomized.randomized = True
        yield
    finally:
        for part, training in modes:
            part.training = training  # each module's own flag, exactly (train() would recurse)
        for module, had, value in flags:
            if had:
                module.randomized = value
            else:
                vars(module).pop("randomized", None)

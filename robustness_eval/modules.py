"""Small helpers for the user's torch modules, whatever produced them."""

from __future__ import annotations

from torch import nn


def eval_mode(module: nn.Module) -> nn.Module:
    """`module.eval()`, except for modules that cannot switch mode (a `torch.export` program's module is
    fixed at export time and refuses `.eval()`); returns the module."""
    try:
        module.eval()
    except NotImplementedError:
        pass
    return module

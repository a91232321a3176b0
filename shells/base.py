"""The shell protocol: a module whose forward returns class probabilities of G[F](x).

A shell wraps a base classifier F (a module mapping inputs in `bounds` to logits). What a shell
offers is declared as *capabilities*, and attacks are matched to shells by them, never by name:

- ``search``: a deterministic factor shell G = F ∘ H exposes `search(x)`, the point z* = H(x);
- ``per-class-search``: `per_class_search(x)` gives the per-class candidates z_t and their
  confidences as log-odds (MCN; min-max and look-ahead use it);
- ``ball-ascent``: the per-class search is projected ascent on F(z)_t inside the `radius` ball
  (an unrolled copy of it is a faithful BPDA surrogate);
- ``sampling``: a randomized shell exposes `sample_points(x)`, one query's random neighbours;
- ``deterministic``: the same input always gets the same answer.

`capabilities(shell)` derives them from what the shell implements; a shell may declare its own
set in the class attribute `capabilities`. `rebuild(model, **options)` builds the same shell
around another model (the active test and the δ → 0 ablation need it).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from robustness_eval.modules import eval_mode
from robustness_eval.types import Bounds, Norm

CAPABILITIES = ("search", "per-class-search", "ball-ascent", "sampling", "deterministic")
SHELL_OPTIONS = ("delta", "p", "norm", "bounds", "seed", "search_dtype")


class Shell(nn.Module):
    """Base class: subclasses implement `search` (deterministic factor shells) or `forward`."""

    kind: ClassVar[str] = "abstract"
    randomized: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str] | None] = None  # None: derived by `capabilities(shell)`

    def __init__(self, model: nn.Module, norm: Norm | str = Norm.LINF,
                 bounds: Bounds = Bounds()) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError("`model` must be a torch.nn.Module returning logits "
                            f"(got {type(model).__name__})")
        self.base_model = eval_mode(model)
        self.norm = Norm.parse(norm)
        self.bounds = bounds

    radius: float = 0.0
    threshold: float | None = None

    def search(self, x: torch.Tensor) -> torch.Tensor:
        """The point z* that the shell classifies (x itself for the identity shell)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities G(x) = softmax(F(search(x))); no graph back to x."""
        z = self.search(x)
        with torch.no_grad():
            return torch.softmax(self.base_model(z), dim=1)

    def rebuild(self, model: nn.Module, **options) -> Shell:
        """The same shell around `model`; `options` (delta, p, norm, bounds, seed) override."""
        raise NotImplementedError(f"{type(self).__name__} cannot rebuild itself around another model; "
                                  "pass a factory(model, **options) instead of an instance")

    def describe(self) -> dict:
        """The shell's public parameters, as they appear in a run's config."""
        return {"kind": self.kind, "norm": self.norm.value, "radius": self.radius,
                "threshold": self.threshold, "randomized": self.randomized}


def capabilities(shell: nn.Module) -> frozenset[str]:
    """What `shell` offers to attacks (see the module docstring): declared, or derived from its methods."""
    declared = getattr(shell, "capabilities", None)
    if declared is not None:
        return frozenset(declared)
    offered = set()
    randomized = bool(getattr(shell, "randomized", False))
    search = getattr(type(shell), "search", None)
    if callable(search) and search is not Shell.search and not randomized:
        offered.add("search")
    if callable(getattr(shell, "per_class_search", None)):
        offered.add("per-class-search")
    if randomized and callable(getattr(shell, "sample_points", None)):
        offered.add("sampling")
    if not randomized:
        offered.add("deterministic")
    return frozenset(offered)


def can_rebuild(shell: nn.Module) -> bool:
    """Whether `shell` overrides `rebuild`, so the suite can build it around another model."""
    method = getattr(type(shell), "rebuild", None)
    return callable(method) and method is not Shell.rebuild


class IdentityShell(Shell):
    """The base model itself (δ = 0), so every report shows base and shell side by side."""

    kind = "none"
    capabilities = frozenset({"deterministic"})  # its trivial search offers attacks nothing

    def search(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().clone()

    def rebuild(self, model: nn.Module, **options) -> IdentityShell:
        return IdentityShell(model, options.get("norm", self.norm), options.get("bounds", self.bounds))

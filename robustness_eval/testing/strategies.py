"""Hypothesis strategies for property-testing shells: inputs in bounds, small base models, parameters.

A `Case` bundles one drawn base model (a small random MLP, seeded), a batch of inputs inside the
bounds (random values, exact bound values, and mixtures), and the bounds themselves. Shapes
cover flat vectors (digits- and synthetic-like) and a one-channel image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn

from robustness_eval.types import Bounds

SHAPES = [(4,), (8,), (1, 4, 4)]


class TinyMLP(nn.Module):
    """A random two-layer classifier; logits are scaled so that confidences vary widely."""

    def __init__(self, in_features: int, classes: int, seed: int, scale: float) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(in_features, 16, generator=g) * scale)
        self.w2 = nn.Parameter(torch.randn(16, classes, generator=g) * scale)
        self.b = nn.Parameter(torch.randn(classes, generator=g) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x.flatten(1) @ self.w1) @ self.w2 + self.b


@dataclass
class Case:
    """One drawn situation: a base model, a batch of inputs and the bounds they live in."""

    model: nn.Module
    x: torch.Tensor
    bounds: Bounds
    classes: int
    seed: int

    def __repr__(self) -> str:
        return (f"Case(seed={self.seed}, classes={self.classes}, shape={tuple(self.x.shape)}, "
                f"x={self.x.flatten(1).tolist()})")


def base_models(in_features: int, classes: st.SearchStrategy[int] | None = None) -> st.SearchStrategy:
    """Small random MLPs (seeded, so a failing case can be rebuilt from its repr)."""
    return st.builds(lambda c, s, k: (TinyMLP(in_features, c, s, k), c, s),
                     classes or st.integers(2, 5), st.integers(0, 2**16), st.sampled_from([0.5, 2.0, 6.0]))


def inputs(shape: tuple[int, ...], batch: st.SearchStrategy[int], bounds: Bounds) -> st.SearchStrategy:
    """Batches inside `bounds`: random values, the bounds themselves, and mixtures."""
    size = int(torch.tensor(shape).prod())
    value = st.one_of(st.floats(bounds.lower, bounds.upper, allow_nan=False, width=32),
                      st.sampled_from([bounds.lower, bounds.upper]))
    return batch.flatmap(lambda n: st.lists(st.lists(value, min_size=size, max_size=size),
                                            min_size=n, max_size=n)).map(
        lambda rows: torch.tensor(rows, dtype=torch.float32).reshape(len(rows), *shape))


@st.composite
def cases(draw, shapes: list[tuple[int, ...]] | None = None, max_batch: int = 4) -> Case:
    """A base model and a batch of inputs in [0, 1] for one of the supported shapes."""
    shape = draw(st.sampled_from(shapes or SHAPES))
    bounds = Bounds(0.0, 1.0)
    model, classes, seed = draw(base_models(int(torch.tensor(shape).prod())))
    x = draw(inputs(shape, st.integers(1, max_batch), bounds))
    return Case(model.eval(), x, bounds, classes, seed)


def shell_parameters() -> st.SearchStrategy[dict]:
    """Parameters of the suite's shells: norm, radius δ, NCN threshold p."""
    return st.fixed_dictionaries({"norm": st.sampled_from(["linf", "l2"]),
                                  "delta": st.sampled_from([0.0, 0.05, 0.2, 0.5]),
                                  "p": st.sampled_from([0.6, 0.9])})

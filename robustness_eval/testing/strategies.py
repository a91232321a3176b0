"""Hypothesis strategies for property-testing shells: inputs in bounds, small base models, parameters.

A `Case` bundles one drawn base model (a small random MLP, seeded), a batch of inputs inside the
bounds, and the bounds themselves. Inputs are drawn value by value for small shapes (random
values, exact bound values, mixtures) and from a seed for the data sets' real shapes (digits 64,
synthetic 20, MNIST 1×28×28, CIFAR-10 3×32×32); either may then be pushed adversarially toward
the base model's decision boundary, where a shell's search matters most.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn

from robustness_eval.types import Bounds

SHAPES = [(4,), (8,), (1, 4, 4)]
DATASET_SHAPES = [(64,), (20,), (1, 28, 28), (3, 32, 32)]


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
    recipe: str = "values"
    scale: float = 1.0

    def __repr__(self) -> str:
        flat = self.x.flatten(1)
        values = flat.tolist() if flat.shape[1] <= 16 else f"<{flat.shape[1]} values from {self.recipe}>"
        return (f"Case(seed={self.seed}, classes={self.classes}, scale={self.scale:g}, shape={tuple(self.x.shape)}, "
                f"x={values})")


def base_models(in_features: int, classes: st.SearchStrategy[int] | None = None) -> st.SearchStrategy:
    """Small random MLPs (seeded, so a failing case can be rebuilt from its repr)."""
    return st.builds(lambda c, s, k: (TinyMLP(in_features, c, s, k), c, s, k),
                     classes or st.integers(2, 5), st.integers(0, 2**16), st.sampled_from([0.5, 2.0, 6.0]))


def inputs(shape: tuple[int, ...], batch: st.SearchStrategy[int], bounds: Bounds) -> st.SearchStrategy:
    """Batches inside `bounds`: random values, the bounds themselves, and mixtures."""
    size = int(torch.tensor(shape).prod())
    value = st.one_of(st.floats(bounds.lower, bounds.upper, allow_nan=False, width=32),
                      st.sampled_from([bounds.lower, bounds.upper]))
    return batch.flatmap(lambda n: st.lists(st.lists(value, min_size=size, max_size=size),
                                            min_size=n, max_size=n)).map(
        lambda rows: torch.tensor(rows, dtype=torch.float32).reshape(len(rows), *shape))


def seeded_batch(shape: tuple[int, ...], n: int, seed: int, mode: str, bounds: Bounds) -> torch.Tensor:
    """A batch of a large shape from a seed: uniform, all at a bound, or a binary mix of both bounds."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, *shape, generator=g)
    if mode == "lower":
        u = torch.zeros_like(u)
    elif mode == "upper":
        u = torch.ones_like(u)
    elif mode == "binary":
        u = (u > 0.5).float()
    return bounds.lower + u * bounds.width


def toward_boundary(model: nn.Module, x: torch.Tensor, bounds: Bounds, steps: int = 5,
                    size: float = 0.05) -> torch.Tensor:
    """Push each input a few sign steps toward its runner-up class: adversarially chosen inputs."""
    z = x.clone()
    for _ in range(steps):
        z.requires_grad_(True)
        logits = model(z)
        top2 = logits.topk(2, dim=1).indices
        gap = logits.gather(1, top2[:, 1:]) - logits.gather(1, top2[:, :1])
        (grad,) = torch.autograd.grad(gap.sum(), z)
        z = (z.detach() + size * grad.sign()).clamp(bounds.lower, bounds.upper)
    return z.detach()


@st.composite
def cases(draw, shapes: list[tuple[int, ...]] | None = None, max_batch: int = 4,
          bounds: Bounds = Bounds(0.0, 1.0)) -> Case:
    """A base model and a batch of inputs in `bounds`: small shapes value by value, the data sets'
    shapes from a seed, sometimes pushed toward the decision boundary."""
    shape = draw(st.sampled_from(shapes or [*SHAPES, *DATASET_SHAPES]))
    model, classes, seed, scale = draw(base_models(int(torch.tensor(shape).prod())))
    batch = st.integers(1, max_batch)
    if shape in SHAPES:
        x, recipe = draw(inputs(shape, batch, bounds)), "values"
    else:
        n, data_seed = draw(batch), draw(st.integers(0, 2**16))
        mode = draw(st.sampled_from(["uniform", "lower", "upper", "binary"]))
        x = seeded_batch(shape, n, data_seed, mode, bounds)
        recipe = f"seeded_batch(shape={shape}, n={n}, seed={data_seed}, mode={mode!r})"
    if draw(st.booleans()):
        x = toward_boundary(model.eval(), x, bounds)
        recipe += ", then toward_boundary(model, x)"
    return Case(model.eval(), x, bounds, classes, seed, recipe, scale)


def shell_parameters() -> st.SearchStrategy[dict]:
    """Parameters of the suite's shells: norm, radius δ, NCN threshold p."""
    return st.fixed_dictionaries({"norm": st.sampled_from(["linf", "l2"]),
                                  "delta": st.sampled_from([0.0, 0.05, 0.2, 0.5]),
                                  "p": st.sampled_from([0.6, 0.9])})

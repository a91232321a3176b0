"""A user's own base model, as `--model examples/digits_model.py:build` loads it.

A small MLP (64 → 128 → 10, unlike the zoo's) trained on scikit-learn's digits with plain
cross-entropy, deterministically from a seed, in about a second on 2 cores. The suite never sees
how it was made: it only calls `build()` and gets an `nn.Module` returning logits for inputs in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


class DigitsNet(nn.Module):
    """Flatten → 128 ReLU units → 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def build(seed: int = 0, epochs: int = 30) -> DigitsNet:
    """Train DigitsNet on the digits training split (the same split the suite's `digits` data uses)."""
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    x_train, _, y_train, _ = train_test_split(x, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target)
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.int64))
    torch.manual_seed(seed)
    model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(y_train), generator=order).split(64):
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()

"""Shared fixtures: a private model cache, the digits data, and small closed-form models."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from attacks.base import AttackOutput
from attacks.pgd import PGD

# a third-party package as importlib.metadata sees an installed one: it registers an attack and a shell by entry
# point, so every test that walks the registries walks those too
sys.path.insert(0, str(Path(__file__).parent / "plugin"))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Train zoo models into a per-session cache so tests never depend on the user's."""
    import os

    path = tmp_path_factory.mktemp("zoo-cache")
    old = os.environ.get("ROBUSTNESS_EVAL_CACHE")
    os.environ["ROBUSTNESS_EVAL_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ROBUSTNESS_EVAL_CACHE", None)
    else:
        os.environ["ROBUSTNESS_EVAL_CACHE"] = old


@pytest.fixture(scope="session")
def digits():
    from robustness_eval.data import load_digits

    return load_digits()


@pytest.fixture(scope="session")
def digits_standard(digits, private_cache):
    from robustness_eval.zoo import load_model

    return load_model(digits, "standard")


@pytest.fixture(scope="session")
def digits_adversarial(digits, private_cache):
    from robustness_eval.zoo import load_model

    return load_model(digits, "adversarial")


class TwoClassLogistic(nn.Module):
    """logits = [0, w·x + b]: F(x)_1 = σ(w·x + b), so MCN and NCN have closed forms."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.linear = nn.Linear(len(w), 1)
        with torch.no_grad():
            self.linear.weight.copy_(w[None])
            self.linear.bias.fill_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.linear(x.flatten(1))
        return torch.cat([torch.zeros_like(s), s], dim=1)


@pytest.fixture
def logistic():
    w = torch.tensor([0.8, -1.5, 0.3, 2.0, -0.6])
    return TwoClassLogistic(w, 0.2), w, 0.2


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


class PatientPGD(PGD):
    """PGD that proposes nothing (x itself) unless it is given at least 2 iterations: only the doubled round of a
    battery built with budget 1 can break anything with it."""

    name = "patient-pgd"

    def _run(self, view, x, y, threat, budget, generator):
        if budget < 2:
            return AttackOutput(x.clone(), torch.zeros(len(y), dtype=torch.long))
        return super()._run(view, x, y, threat, budget, generator)

"""The query-counting oracle: exact counts per point and a hard budget."""

from __future__ import annotations

import pytest
import torch

from robustness_eval.views import BudgetExceededError, ShellOracle
from shells import IdentityShell


def test_oracle_counts_rows_per_point_and_refuses_past_budget(digits_standard):
    oracle = ShellOracle(IdentityShell(digits_standard), num_points=3, budget=5)
    x = torch.rand(4, 64)
    oracle(x, torch.tensor([0, 0, 1, 2]))
    oracle(x[:3], torch.tensor([0, 0, 0]))
    assert oracle.queries.tolist() == [5, 1, 1]
    assert oracle.remaining().tolist() == [0, 4, 4]
    with pytest.raises(BudgetExceededError, match="point 0 would use 6 queries, over its budget of 5"):
        oracle(x[:1], torch.tensor([0]))
    assert oracle.queries.tolist() == [5, 1, 1]  # a refused query costs nothing and returns nothing


def test_oracle_returns_the_shell_probabilities(digits_standard):
    shell = IdentityShell(digits_standard)
    oracle = ShellOracle(shell, num_points=2, budget=None)
    x = torch.rand(2, 64)
    assert torch.equal(oracle(x, torch.tensor([0, 1])), shell(x))
    assert torch.equal(oracle.labels(x, torch.tensor([0, 1])), shell(x).argmax(1))
    assert oracle.queries.tolist() == [2, 2]

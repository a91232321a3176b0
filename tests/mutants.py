"""Deliberately broken shells: each violates one promise a real shell keeps."""

from __future__ import annotations

import torch

from robustness_eval.norms import project
from robustness_eval.testing import factories
from shells import MagNetShell, MCNShell, NCNShell
from shells.base import Shell


class SearchesOutsideBall(MCNShell):
    """Ascends in a ball twice as large as the radius it declares."""

    def per_class_search(self, x, delta=None):
        return super().per_class_search(x, 2 * self.radius if delta is None else 2 * delta)


class NoFallbackToX(MCNShell):
    """Classifies a fixed corner of the ball instead of searching, so x is never a candidate."""

    def search(self, x):
        return project(x + self.radius, x, self.radius, self.norm, self.bounds)


class BatchNormalised(MCNShell):
    """Normalises each input by statistics of the whole batch before classifying."""

    def forward(self, x):
        centred = (x - x.mean(dim=0, keepdim=True)).clamp(self.bounds.lower, self.bounds.upper)
        return torch.softmax(self.base_model(centred), dim=1)


class EditsInPlace(MCNShell):
    """Clips its input in place to a narrower box."""

    def forward(self, x):
        x.clamp_(0.1, 0.9)
        return super().forward(x)


class WrongThreshold(NCNShell):
    """Searches for confidence p − 0.25 while declaring p."""

    def __init__(self, model, p=0.8, **kwargs):
        super().__init__(model, p, **kwargs)
        self._declared = p

    def search(self, x):
        self.threshold = self._declared - 0.25
        try:
            z = super().search(x)
            self.last_infeasible = torch.zeros_like(self.last_infeasible)
            return z
        finally:
            self.threshold = self._declared


class IndexTieBreak(Shell):
    """Adds a bias that grows with the class index: the output depends on the class order."""

    kind = "mcn"

    def search(self, x):
        return x.detach().clone()

    def forward(self, x):
        probs = torch.softmax(self.base_model(x), dim=1) + 0.05 * torch.arange(
            self.base_model(x[:1]).shape[1])
        return probs / probs.sum(1, keepdim=True)


class LogProbabilities(Shell):
    """Returns log-probabilities instead of probabilities."""

    kind = "none"

    def search(self, x):
        return x.detach().clone()

    def forward(self, x):
        return torch.log_softmax(self.base_model(x), dim=1)


def searches_outside_ball(model):
    return SearchesOutsideBall(model, 0.2, "linf", steps=5)


def no_fallback_to_x(model):
    return NoFallbackToX(model, 0.3, "linf", steps=5)


def batch_normalised(model):
    return BatchNormalised(model, 0.1, "linf", steps=5)


def edits_in_place(model):
    return EditsInPlace(model, 0.1, "linf", steps=5)


def wrong_threshold(model):
    return WrongThreshold(model, 0.8, norm="linf", max_radius=0.3, steps=5, rounds=4)


def index_tie_break(model):
    return IndexTieBreak(model)


def log_probabilities(model):
    return LogProbabilities(model)


class FalselyDifferentiable(MagNetShell):
    """Declares `differentiable` but returns probabilities without a graph (the base class's forward)."""

    def forward(self, x):
        with torch.no_grad():
            return torch.softmax(self.base_model(self.reform(x)), dim=1)


def falsely_differentiable(model):
    return FalselyDifferentiable(model, factories.magnet(model).autoencoder)


MUTANTS = ["searches_outside_ball", "no_fallback_to_x", "batch_normalised", "edits_in_place",
           "wrong_threshold", "index_tie_break", "log_probabilities", "falsely_differentiable"]

"""Search-only shells: the default battery against a patient standalone reference, on the same points.

A shell that offers only `search` (a purifier: the examples' bit-depth squeeze shell, and the PCA
projection shell) gets no per-class search, so min-max and look-ahead's per-class view do not
apply; what reaches it is transfer from F, F's path checked on the shell, BPDA, EOT and the black-box
attacks. The reference is written here, outside the battery, with none of its code: plain PGD on F
(`steps` iterations, `restarts` uniform starts, cross-entropy and CW margin losses, each restart's
highest-loss iterate handed to the shell) plus BPDA through the shell's search (straight-through,
margin loss, the same steps and restarts, every iterate's own shell decision read off the forward
pass). Every break of either is verified on the shell (in the ball, in the bounds, misclassified).
The default battery is the whole `evaluate()` with its defaults (convergence, restart check,
escalation): its worst case should be at most the reference's plus 0.5 pp.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from robustness_eval.data import load_digits
from robustness_eval.types import Threat
from robustness_eval.verify import verify
from robustness_eval.zoo import load_model


def _pgd(loss_of, x: torch.Tensor, y: torch.Tensor, threat: Threat, steps: int, generator: torch.Generator,
         decided=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain L∞ PGD from a uniform start: (the highest-loss iterate, per point; whether `decided` erred anywhere)."""
    eps, low, high = threat.eps, threat.bounds.lower, threat.bounds.upper
    z = (x + (torch.rand(x.shape, generator=generator) * 2 - 1) * eps).clamp(low, high)
    best, best_loss = z.clone(), torch.full((len(y),), float("-inf"))
    fooled_at = x.clone()
    fooled = torch.zeros(len(y), dtype=torch.bool)
    for _ in range(steps + 1):
        z = z.detach().requires_grad_(True)
        loss, wrong = loss_of(z)
        (grad,) = torch.autograd.grad(loss.sum(), z)
        with torch.no_grad():
            higher = loss > best_loss
            best[higher], best_loss[higher] = z[higher], loss[higher]
            if wrong is not None:
                new = wrong & ~fooled
                fooled_at[new], fooled[new] = z[new], True
            z = torch.minimum(torch.maximum(z + 2.5 * eps / steps * grad.sign(), x - eps), x + eps).clamp(low, high)
    return (fooled_at if decided else best), fooled


def reference_robust(model: nn.Module, shell: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat,
                     steps: int = 100, restarts: int = 5, seed: int = 0) -> dict:
    """Robust accuracy of `shell` under the reference (see the module docstring), each part's breaks counted."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        correct = shell(x).argmax(1) == y
    broken = {"pgd-ce": torch.zeros(len(y), dtype=torch.bool), "pgd-margin": torch.zeros(len(y), dtype=torch.bool),
              "bpda": torch.zeros(len(y), dtype=torch.bool)}

    def margin(logits: torch.Tensor) -> torch.Tensor:
        own = logits.gather(1, y[:, None]).squeeze(1)
        return logits.scatter(1, y[:, None], float("-inf")).amax(1) - own

    losses = {"pgd-ce": lambda z: (nn.functional.cross_entropy(model(z), y, reduction="none"), None),
              "pgd-margin": lambda z: (margin(model(z)), None)}

    def through_shell(z: torch.Tensor):
        logits = model(z + (shell.search(z) - z).detach())  # forward F(H(z)), backward the identity
        return margin(logits), logits.detach().argmax(1) != y

    for _ in range(restarts):
        for name, loss_of in losses.items():
            candidate, _ = _pgd(loss_of, x, y, threat, steps, generator)
            broken[name] |= verify(shell, x, candidate, y, threat).success
        candidate, _ = _pgd(through_shell, x, y, threat, steps, generator, decided=True)
        broken["bpda"] |= verify(shell, x, candidate, y, threat).success
    any_break = broken["pgd-ce"] | broken["pgd-margin"] | broken["bpda"]
    return {"robust_accuracy": float((correct & ~any_break).float().mean()),
            "breaks": {name: int((mask & correct).sum()) for name, mask in broken.items()}}


def _shells():
    from examples.pca_shell import build as pca
    from examples.squeeze_shell import build as squeeze

    return {"squeeze (bit depth, 4 levels)": squeeze, "pca projection (12 components)": pca}


def run(points: int = 200, eps: float = 0.1) -> dict:
    import robustness_eval

    data = load_digits()
    model = load_model(data, "adversarial")
    x, y = data.x_test[:points], data.y_test[:points]
    threat = Threat("linf", eps, data.bounds)
    rows = []
    for label, factory in _shells().items():
        shell = factory(model, delta=eps, bounds=data.bounds)
        start = time.perf_counter()
        reference = reference_robust(model, shell, x, y, threat)
        reference_seconds = time.perf_counter() - start
        start = time.perf_counter()
        result = robustness_eval.evaluate(model, factory, data, threat, n_points=points)
        rows.append({"shell": label, "points": points, "reference": reference,
                     "reference_seconds": reference_seconds, "battery_robust_accuracy": result.robust_accuracy["shell"],
                     "battery_transfer_robust_accuracy": result.transfer_robust_accuracy["shell"],
                     "battery_seconds": time.perf_counter() - start,
                     "gap_pp": round(100 * (result.robust_accuracy["shell"] - reference["robust_accuracy"]), 2)})
        print(f"{label}: battery {result.robust_accuracy['shell']:.1%}, reference {reference['robust_accuracy']:.1%}",
              flush=True)
    return {"search_shells": rows}

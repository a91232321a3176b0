"""A second opinion on the base model: our PGD and Foolbox's, standalone, same steps and restarts."""

from __future__ import annotations

import torch

from attacks.foolbox_pgd import FoolboxPGD
from attacks.pgd import PGD
from robustness_eval.records import Crosscheck
from robustness_eval.runner import Run
from robustness_eval.verify import verify
from robustness_eval.views import BaseModelView


def pgd_crosscheck(run: Run, steps: int = 40, restarts: int = 2) -> Crosscheck:
    """Robust accuracy of F under our PGD and under Foolbox's, each verified, on all n points of `run`."""
    model, x, y, threat, seed = run.context.model, run.context.x, run.context.y, run.context.threat, run.seed
    view = BaseModelView(model, threat.bounds)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    shares = {}
    ours = PGD(steps, restarts, mixed=False, deep=False)  # Madry's uniform starts and first success, as Foolbox
    for key, attack in (("ours", ours), ("foolbox", FoolboxPGD(steps, restarts))):
        out = attack(view, x, y, threat, seed=seed)
        broken = verify(model, x, out.x_adv, y, threat).success
        shares[key] = float((correct & ~broken).sum()) / len(y)
    return Crosscheck(points=len(y), steps=steps, restarts=restarts, **shares)

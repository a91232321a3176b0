"""Our attacks against peer libraries at equal budgets, on the same base model and points.

Peers (optional, `pip install -e ".[bench]"`): Foolbox 3 (LinfPGD, HopSkipJump), torchattacks
(PGD, SPSA, Square), ART (SquareAttack). Every candidate, ours or a peer's, is verified by the
suite on the same model; queries of peers are counted by wrapping the model.
"""

from __future__ import annotations

import numpy as np
import torch

from attacks.registry import ATTACKS
from benchmarks.common import CountingModule, setting, timed
from robustness_eval.types import Threat
from robustness_eval.verify import verify
from robustness_eval.views import BaseModelView, ShellOracle
from shells import IdentityShell


def _row(suite: str, who: str, model, x, y, threat, x_adv, seconds, queries=None) -> dict:
    ok = verify(model, x, x_adv.detach(), y, threat).success
    return {"suite": suite, "attack": who, "success_rate": float(ok.float().mean()), "seconds": seconds,
            "median_queries_to_success": float(queries[ok].float().median()) if queries is not None and ok.any()
            else None}


def run(points: int = 200, eps: float = 0.1) -> dict:
    import foolbox as fb

    model, x, y, bounds = setting("digits", points)
    keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    threat = Threat("linf", eps, bounds)
    rows = []
    steps = 40
    out, s = timed(lambda: ATTACKS["pgd"](budget=steps, restarts=1)(BaseModelView(model, bounds), x, y, threat))
    rows.append(_row("PGD, 40 steps", "ours", model, x, y, threat, out.x_adv, s))
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    fb_pgd = fb.attacks.LinfPGD(steps=steps, rel_stepsize=2.5 / steps)
    (_, adv, _), s = timed(lambda: fb_pgd(fmodel, x, y, epsilons=eps))
    rows.append(_row("PGD, 40 steps", "foolbox LinfPGD", model, x, y, threat, adv, s))
    try:
        import torchattacks
    except ImportError:
        torchattacks = None
    if torchattacks is not None:
        adv, s = timed(lambda: torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps)(x, y))
        rows.append(_row("PGD, 40 steps", "torchattacks PGD", model, x, y, threat, adv, s))

    # score-based, through a counted oracle (ours) or a counting wrapper (peers)
    identity = IdentityShell(model)
    iterations, samples = 5, 128
    spsa = ATTACKS["spsa"](budget=iterations * (samples + 1), samples=samples, lr=0.01)
    oracle = ShellOracle(identity, len(y), spsa.budget)
    out, s = timed(lambda: spsa(oracle, x, y, threat))
    rows.append(_row(f"SPSA, {iterations} iterations × {samples} samples", "ours", model, x, y, threat,
                     out.x_adv, s, oracle.queries))
    if torchattacks is not None:
        counter = CountingModule(model)
        adv, s = timed(lambda: torchattacks.SPSA(counter, eps=eps, delta=0.01, lr=0.01, nb_iter=iterations,
                                                 nb_sample=samples)(x, y))
        rows.append(_row(f"SPSA, {iterations} iterations × {samples} samples", "torchattacks SPSA", model, x, y,
                         threat, adv, s))
    budget = 300
    square = ATTACKS["square"](budget=budget)
    oracle = ShellOracle(identity, len(y), budget)
    out, s = timed(lambda: square(oracle, x, y, threat))
    rows.append(_row(f"Square, {budget} queries", "ours", model, x, y, threat, out.x_adv, s, oracle.queries))
    if torchattacks is not None:
        adv, s = timed(lambda: torchattacks.Square(model, eps=eps, n_queries=budget, p_init=0.05)(x, y))
        rows.append(_row(f"Square, {budget} queries", "torchattacks Square", model, x, y, threat, adv, s))
    try:
        from art.attacks.evasion import SquareAttack
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        SquareAttack = None  # noqa: N806
    if SquareAttack is not None:
        classifier = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                       nb_classes=10, clip_values=(0.0, 1.0))
        art_attack = SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=budget, p_init=0.05, verbose=False)
        adv, s = timed(lambda: art_attack.generate(x.numpy(), y=y.numpy()))
        rows.append(_row(f"Square, {budget} queries", "ART SquareAttack", model, x, y, threat,
                         torch.from_numpy(adv), s))
    budget = 1000
    hsj = ATTACKS["hsj"](budget=budget)
    oracle = ShellOracle(identity, len(y), budget)
    out, s = timed(lambda: hsj(oracle, x, y, threat))
    rows.append(_row(f"HopSkipJump, {budget} queries", "ours (through the oracle)", model, x, y, threat,
                     out.x_adv, s, oracle.queries))
    direct = fb.attacks.HopSkipJumpAttack(steps=budget // 60, initial_gradient_eval_steps=25,
                                          max_gradient_eval_steps=50, constraint="linf")
    (_, adv, _), s = timed(lambda: direct(fmodel, x, fb.criteria.Misclassification(y), epsilons=eps))
    rows.append(_row(f"HopSkipJump, {budget} queries", "foolbox HopSkipJump directly", model, x, y, threat, adv, s))
    return {"points": len(y), "eps": eps, "rows": rows}

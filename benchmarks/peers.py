"""Our attacks against peer libraries at equal budgets, on the same base model and points.

Peers (optional, `pip install -e ".[bench]"`): Foolbox 3 (LinfPGD, HopSkipJump), torchattacks
(PGD, SPSA, Square), ART (SquareAttack). Every candidate, ours or a peer's, is verified by the
suite on the same model; queries of peers are counted by wrapping the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attacks.registry import ATTACKS
from benchmarks.common import CountingModule, setting, timed
from robustness_eval.types import Threat
from robustness_eval.verify import verify
from robustness_eval.views import BaseModelView, ShellOracle
from shells import IdentityShell


@dataclass
class Problem:
    """The base model, its clean-correct points and the threat every attack in the comparison runs under."""

    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    threat: Threat


def _row(problem: Problem, suite: str, who: str, x_adv: torch.Tensor, seconds: float,
         queries: torch.Tensor | None = None) -> dict:
    ok = verify(problem.model, problem.x, x_adv.detach(), problem.y, problem.threat).success
    return {"suite": suite, "attack": who, "success_rate": float(ok.float().mean()), "seconds": seconds,
            "median_queries_to_success": float(queries[ok].float().median()) if queries is not None and ok.any()
            else None}


def _optional_torchattacks():
    try:
        import torchattacks
    except ImportError:
        return None
    return torchattacks


def run(points: int = 200, eps: float = 0.1) -> dict:
    import foolbox as fb

    model, x, y, bounds = setting("digits", points)
    keep = model(x).argmax(1) == y
    problem = Problem(model, x[keep], y[keep], Threat("linf", eps, bounds))
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    torchattacks = _optional_torchattacks()
    rows = [*_pgd_rows(problem, fmodel, torchattacks), *_spsa_rows(problem, torchattacks),
            *_square_rows(problem, torchattacks), *_hsj_rows(problem, fmodel)]
    return {"points": len(problem.y), "eps": eps, "rows": rows}


def _pgd_rows(problem: Problem, fmodel, torchattacks) -> list[dict]:
    import foolbox as fb

    model, x, y, threat, eps, steps = problem.model, problem.x, problem.y, problem.threat, problem.threat.eps, 40
    suite = f"PGD, {steps} steps"
    out, s = timed(lambda: ATTACKS["pgd"](budget=steps, restarts=1)(BaseModelView(model, threat.bounds), x, y,
                                                                    threat))
    rows = [_row(problem, suite, "ours", out.x_adv, s)]
    fb_pgd = fb.attacks.LinfPGD(steps=steps, rel_stepsize=2.5 / steps)
    (_, adv, _), s = timed(lambda: fb_pgd(fmodel, x, y, epsilons=eps))
    rows.append(_row(problem, suite, "foolbox LinfPGD", adv, s))
    if torchattacks is not None:
        adv, s = timed(lambda: torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps)(x, y))
        rows.append(_row(problem, suite, "torchattacks PGD", adv, s))
    return rows


def _spsa_rows(problem: Problem, torchattacks) -> list[dict]:
    """Score-based, through a counted oracle (ours) or a counting wrapper (peers)."""
    x, y, threat, iterations, samples = problem.x, problem.y, problem.threat, 5, 128
    suite = f"SPSA, {iterations} iterations × {samples} samples"
    spsa = ATTACKS["spsa"](budget=iterations * (samples + 1), samples=samples, lr=0.01)
    oracle = ShellOracle(IdentityShell(problem.model), len(y), spsa.budget)
    out, s = timed(lambda: spsa(oracle, x, y, threat))
    rows = [_row(problem, suite, "ours", out.x_adv, s, oracle.queries)]
    if torchattacks is not None:
        counter = CountingModule(problem.model)
        adv, s = timed(lambda: torchattacks.SPSA(counter, eps=threat.eps, delta=0.01, lr=0.01, nb_iter=iterations,
                                                 nb_sample=samples)(x, y))
        rows.append(_row(problem, suite, "torchattacks SPSA", adv, s))
    return rows


def _square_rows(problem: Problem, torchattacks) -> list[dict]:
    model, x, y, threat, budget = problem.model, problem.x, problem.y, problem.threat, 300
    suite = f"Square, {budget} queries"
    square = ATTACKS["square"](budget=budget)
    oracle = ShellOracle(IdentityShell(model), len(y), budget)
    out, s = timed(lambda: square(oracle, x, y, threat))
    rows = [_row(problem, suite, "ours", out.x_adv, s, oracle.queries)]
    if torchattacks is not None:
        adv, s = timed(lambda: torchattacks.Square(model, eps=threat.eps, n_queries=budget, p_init=0.05)(x, y))
        rows.append(_row(problem, suite, "torchattacks Square", adv, s))
    try:
        from art.attacks.evasion import SquareAttack
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return rows
    classifier = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=10, clip_values=(0.0, 1.0))
    art_attack = SquareAttack(classifier, norm=np.inf, eps=threat.eps, max_iter=budget, p_init=0.05, verbose=False)
    adv, s = timed(lambda: art_attack.generate(x.numpy(), y=y.numpy()))
    rows.append(_row(problem, suite, "ART SquareAttack", torch.from_numpy(adv), s))
    return rows


def _hsj_rows(problem: Problem, fmodel) -> list[dict]:
    import foolbox as fb

    x, y, threat, budget = problem.x, problem.y, problem.threat, 1000
    suite = f"HopSkipJump, {budget} queries"
    hsj = ATTACKS["hsj"](budget=budget)
    oracle = ShellOracle(IdentityShell(problem.model), len(y), budget)
    out, s = timed(lambda: hsj(oracle, x, y, threat))
    rows = [_row(problem, suite, "ours (through the oracle)", out.x_adv, s, oracle.queries)]
    direct = fb.attacks.HopSkipJumpAttack(steps=budget // 60, initial_gradient_eval_steps=25,
                                          max_gradient_eval_steps=50, constraint="linf")
    (_, adv, _), s = timed(lambda: direct(fmodel, x, fb.criteria.Misclassification(y), epsilons=threat.eps))
    rows.append(_row(problem, suite, "foolbox HopSkipJump directly", adv, s))
    return rows

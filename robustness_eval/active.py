"""The active test (after Zimmermann et al. 2022): plant adversarial examples, then see if the battery finds them.

For each evaluation point x with label y, a modified base model F' adds a boost to the logit of a
wrong class w (and subtracts it from y) in a slab beyond the ε-ball along a direction u, with
s(z) = ⟨z − x, u⟩ / (‖u‖₁·ε), inside the L∞ ball of radius ε + δ around x. Coordinates u would
push out of the bounds are 0. Six constructions:

- on-gradient: u = sign ∇_x(l_w − l_y)(x), w = F's runner-up; the boost ramps over s ∈ [1.2, 1.5].
  The shell's search from x (radius δ ≤ ε) never reaches s > 1, so G'(x) = G(x); from x' = x + ε·u
  it reaches s = 1 + δ/ε ≥ 1.5. This shows the battery is not broken (the pass bar: ≥ 95 % found).
- orthogonal: u = sign of a seeded Gaussian with its component along that gradient removed; the
  boost ramps over s ∈ [1.0, 1.5], and a weak slope (per coordinate, 10 % of F's mean |∂margin/∂x|)
  leads toward it, so F's own gradient swamps the signal inside the ε-ball: the shell's
  δ-search from near x + ε·u finds the plant, an attack that follows F's gradient mostly does not.
- other-class: on F's gradient path, but toward a wrong class drawn at random other than the
  runner-up, where untargeted attacks do not aim.
- subspace: u has random signs on a random quarter of the usable coordinates and is 0 elsewhere (a
  plant in a low-dimensional coordinate subspace), toward a wrong class drawn at random (the
  runner-up included), with the orthogonal construction's ramp and weak slope on those coordinates
  only. It was the held-out construction of the previous battery work (measured once, at its end).
- decoy (the held-out construction of the battery work of 2026-12-04, measured once at that round's
  end: 34 of 57 on digits, 56 of 57 after the next round, docs/DESIGN.md; it now counts as seen): the
  orthogonal construction's plant, toward a wrong class w drawn at random (the runner-up included),
  behind a confident decoy on F's gradient path toward w: along d = sign ∇_x(l_w − l_y)(x), the
  true class's logit gains (and w's loses) a boost ramping from 0 at s_d = 0.5 to `DECOY_BOOST` at
  s_d = 1. The path every gradient attack toward w takes first is confidently right, so an
  evaluation that follows F's gradient sees a robust point; the plant lies off that path.
- lure (held out: designed and committed before the battery work that followed the decoy, never used to tune
  it, measured once at that round's end: 57 of 58 on digits, 59 of 59 on MNIST; the previous battery
  found 56 of 58 and 59 of 59, docs/DESIGN.md): the orthogonal construction's plant toward a wrong class w
  drawn at random (the runner-up included), beside a lure: along a second direction v, orthogonal to
  F's margin gradient and to the plant's Gaussian, w rises (and y falls) with `LURE_SHARE` times the
  plant's slope and no boost. Where the decoy blocks the gradient path, the lure misleads: the weak
  signal toward the plant is drowned by a stronger one toward a dead end.

Each plant is verified (G'(x) right, G'(x') wrong) before it counts. The attacks are those whose
breaks the verdict counts: the battery, its doubled-budget round or, without one, the restart check,
as the run has them (escalation, which only adds attacks where an indicator fires, is left out for time: the
found share is then a lower bound for the whole run). The found shares are reported per construction;
a battery that misses on-gradient plants has failed, and the share of off-gradient plants it misses
bounds how far its robust accuracy may be overstated. L∞ threats only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustness_eval.ascent import input_gradient
from robustness_eval.progress import PhaseClock
from robustness_eval.records import ActivePart, ActiveTest
from robustness_eval.restart_check import restart_check
from robustness_eval.runner import Run, attacks_run, resolve_battery, run_battery
from robustness_eval.stats import ACTIVE_PASS_SHARE
from robustness_eval.types import Norm, Threat
from robustness_eval.units import Context
from robustness_eval.verify import verify
from shells.base import Shell

CONSTRUCTIONS = ("on-gradient", "orthogonal", "other-class", "subspace", "decoy", "lure")
PLANTS = {"on-gradient": 120, "orthogonal": 60, "other-class": 60, "subspace": 60,
          "decoy": 60, "lure": 60}  # points per construction (at most)
HELD_OUT = ("lure",)  # constructions the battery was never tuned on
RANDOM_CLASS = ("other-class", "subspace", "decoy", "lure")  # constructions whose wrong class is drawn at random
RAMPED = ("orthogonal", "subspace", "decoy", "lure")  # constructions with the off-gradient ramp and weak slope
DECOY_BOOST = 10.0  # the decoy's lift of the true class, a quarter of the plant's boost
LURE_SHARE = 3.0  # the lure's slope as a multiple of the plant's
SUBSPACE_SHARE = 0.25  # the share of coordinates a subspace plant uses
OFF_GRADIENT = CONSTRUCTIONS[1:]
PASS_SHARE = ACTIVE_PASS_SHARE
SLOPE_SHARE = 0.1  # the off-gradient slope's per-coordinate size, as a share of F's mean |∂margin/∂x|


@dataclass
class Plant:
    """One planted region per anchor point: where it starts (anchors, directions, the labels it flips to
    `wrong`), how far it reaches (eps, reach), and its ramp (boost, onset, width, an optional weak slope)."""

    anchors: torch.Tensor
    directions: torch.Tensor
    labels: torch.Tensor
    wrong: torch.Tensor
    eps: float
    reach: float
    boost: float = 40.0
    onset: float = 1.2
    width: float = 0.3
    slope: torch.Tensor | None = None


class PlantedModel(nn.Module):
    """F plus one planted confident wrong region per anchor point (see module docstring).

    Per anchor: the boost ramps from 0 at s = `onset` to `boost` at s = onset + `width`, and an
    optional weak slope adds `slope`·max(s, 0) to the wrong logit (and takes it from the right one).
    """

    def __init__(self, model: nn.Module, plant: Plant) -> None:
        super().__init__()
        self.model, self.eps, self.reach, self.boost = model, plant.eps, plant.reach, plant.boost
        self.onset, self.width = plant.onset, plant.width
        self.register_buffer("anchors", plant.anchors.flatten(1))
        self.register_buffer("directions", plant.directions.flatten(1))
        self.register_buffer("labels", plant.labels)
        self.register_buffer("wrong", plant.wrong)
        self.register_buffer("slope", torch.zeros(len(plant.labels), device=plant.anchors.device)
                             if plant.slope is None else plant.slope)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.model(z)
        flat = z.flatten(1)
        active = self.directions.abs().sum(1).clamp_min(1.0)  # coordinates along u
        along = flat @ self.directions.T - (self.anchors * self.directions).sum(1)[None]  # ⟨z − anchor, u⟩
        s = along / (active[None] * self.eps)
        with torch.no_grad():  # L∞ distance to every anchor without a rows × anchors × d tensor
            near = torch.cdist(flat.detach(), self.anchors, p=float("inf")) <= self.reach + 1e-6
        lift = (self.boost * ((s - self.onset) / self.width).clamp(0, 1) + self.slope[None] * s.clamp_min(0)) * near
        strength, which = lift.max(dim=1)
        shift = torch.zeros_like(logits)
        rows = torch.arange(len(z), device=z.device)
        shift[rows, self.wrong[which]] += strength
        shift[rows, self.labels[which]] -= strength
        return logits + shift


def _margin_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    logits = model(x)
    return input_gradient(logits.gather(1, wrong[:, None]) - logits.gather(1, y[:, None]), x)


def plant(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat, delta: float,
          construction: str = "on-gradient", seed: int = 0) -> PlantedModel:
    """F' with a plant for every point, of one construction (see the module docstring)."""
    if construction not in CONSTRUCTIONS:
        raise ValueError(f"unknown plant construction {construction!r}; pass one of {', '.join(CONSTRUCTIONS)}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        logits = model(x)
    wrong = logits.scatter(1, y[:, None], float("-inf")).argmax(1)
    if construction in RANDOM_CLASS:  # a wrong class drawn per point (other-class: not the runner-up)
        draw = torch.rand(logits.shape, generator=generator, device="cpu").to(logits.device)
        draw.scatter_(1, y[:, None], -1.0)
        if construction == "other-class":
            draw.scatter_(1, wrong[:, None], -1.0)
        wrong = draw.argmax(1)
    grad = _margin_gradient(model, x, y, wrong)
    slope = None
    if construction in ("orthogonal", "decoy", "lure"):  # a seeded Gaussian, its gradient component removed
        g = grad.flatten(1)
        r = _orthogonal(torch.randn(g.shape, generator=generator, device="cpu").to(g), g)
        direction = r.sign().view_as(x)
    elif construction == "subspace":  # random signs on a random quarter of the coordinates, 0 elsewhere
        signs = torch.randint(0, 2, grad.shape, generator=generator, device="cpu").to(grad) * 2 - 1
        keep = torch.rand(grad.shape, generator=generator, device="cpu").to(grad) < SUBSPACE_SHARE
        direction = signs * keep
    else:
        direction = grad.sign()
    room = threat.eps + delta
    direction = _usable(direction, x, room, threat)
    if construction in RAMPED:
        used = direction.flatten(1).abs().sum(1).clamp_min(1.0)
        slope = SLOPE_SHARE * grad.flatten(1).abs().mean(1) * used * threat.eps
    onset = 1.0 if construction in RAMPED else 1.2
    width = 0.5 if construction in RAMPED else 0.3
    if construction == "decoy":  # F's gradient path toward w made confidently right: y lifted, w lowered
        path = _usable(grad.sign(), x, room, threat)
        model = PlantedModel(model, Plant(x.detach(), path, wrong, y, threat.eps, room, boost=DECOY_BOOST,
                                          onset=0.5, width=0.5)).eval()
    if construction == "lure":  # a stronger slope toward w along v ⟂ (gradient, plant), with no region behind it
        v = _orthogonal(_orthogonal(torch.randn(g.shape, generator=generator, device="cpu").to(g), g), r)
        lure = _usable(v.sign().view_as(x), x, room, threat)
        lure_used = lure.flatten(1).abs().sum(1).clamp_min(1.0)
        model = PlantedModel(model, Plant(x.detach(), lure, y, wrong, threat.eps, room, boost=0.0,
                                          slope=LURE_SHARE * slope / used * lure_used)).eval()
    return PlantedModel(model, Plant(x.detach(), direction, y, wrong, threat.eps, room, onset=onset,
                                     width=width, slope=slope)).eval()


def _orthogonal(r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Each row of `r` with its component along the same row of `g` removed."""
    return r - (r * g).sum(1, keepdim=True) / (g * g).sum(1, keepdim=True).clamp_min(1e-30) * g


def _usable(direction: torch.Tensor, x: torch.Tensor, room: float, threat: Threat) -> torch.Tensor:
    """`direction` with 0 on the coordinates it would push out of the bounds within `room` of x."""
    moved = x.detach() + room * direction
    return direction.masked_fill((moved > threat.bounds.upper) | (moved < threat.bounds.lower), 0.0)


def active_test(run: Run, make_shell, delta: float, attacks="fast", plants: dict[str, int] | None = None,
                convergence: bool = True, restarts: bool = True, clock: PhaseClock | None = None) -> ActiveTest:
    """Plant (one run per construction, on the first `plants[construction]` points of `run`), verify the plants,
    run the battery on each planted target (`make_shell(planted)`, with `run`'s seed and backend), then, as the
    evaluation does, its doubled-budget round (`convergence`) and the restart check (`restarts`); report the
    share found per construction. Passes when the on-gradient plants are found ≥ 95 %; the off-gradient share
    says how much the battery can miss."""
    threat = run.context.threat
    if threat.norm is not Norm.LINF:
        return ActiveTest(status="not run", reason="the active test plants L∞ regions only")
    plants = PLANTS if plants is None else plants
    unknown = sorted(set(plants) - set(CONSTRUCTIONS))
    if unknown:
        raise ValueError(f"unknown plant construction(s) {unknown}; pass some of {', '.join(CONSTRUCTIONS)}")
    rounds, clock = {"convergence": convergence, "restarts": restarts}, clock or PhaseClock()
    by_construction = {}
    for position, (name, count) in enumerate(plants.items()):
        with clock.phase(f"active test: {name}", f"construction {position + 1} of {len(plants)}, {count} plants"):
            by_construction[name] = _one_construction(run, count, make_shell, delta, attacks, name, rounds)
    on_gradient = by_construction.get("on-gradient", ActivePart(status="not run", reason="not planted"))
    off = [c for name, c in by_construction.items() if name in OFF_GRADIENT and c.share_found is not None]
    off_share = sum(c.found for c in off) / sum(c.evaluated for c in off) if off else None
    return ActiveTest(**vars(on_gradient), constructions=by_construction, off_gradient_share_found=off_share)


def _one_construction(run: Run, count: int, make_shell, delta: float, attacks, construction: str,
                      rounds: dict) -> ActivePart:
    model, threat, seed = run.context.model, run.context.threat, run.seed
    x, y = run.context.x[:count], run.context.y[:count]
    planted = plant(model, x, y, threat, delta, construction, seed)
    shell: Shell = make_shell(planted)
    x_planted = (x + threat.eps * planted.directions.view_as(x)).clamp(threat.bounds.lower, threat.bounds.upper)
    clean_ok = verify(shell, x, x, y, threat).misclassified.logical_not()
    plant_ok = verify(shell, x, x_planted, y, threat).success
    valid = clean_ok & plant_ok
    idx = valid.nonzero().squeeze(1)
    if len(idx) == 0:
        return ActivePart(status="not run", reason="no plant could be verified", planted=len(y), valid=0)
    # only the shell is scored, so F' is not attacked (a transfer attack is still crafted on it)
    planted_run = Run(Context(planted, shell, x[idx], y[idx], threat), seed, backend=run.backend, targets=("shell",))
    result = run_battery(planted_run, attacks, convergence=rounds["convergence"])
    if rounds["restarts"] and not rounds["convergence"]:  # with it, the doubled round continued the restarts
        battery = resolve_battery(attacks)
        result, _ = restart_check(result, planted_run, battery, attacks_run(battery, False))
    found = sum(1 for p in result.points if p["shell_correct"] and p["broken_by"]["shell"] is not None)
    evaluated = sum(1 for p in result.points if p["shell_correct"])
    if not evaluated:  # a randomized shell can misclassify on the battery's draw a point it verified correct
        return ActivePart(status="not run", planted=len(y), valid=int(valid.sum()), evaluated=0,
                          reason="the shell misclassified every verified plant's clean point when the battery ran")
    share = found / evaluated
    return ActivePart(status="pass" if share >= PASS_SHARE else "fail", planted=len(y), valid=int(valid.sum()),
                      evaluated=evaluated, found=found, share_found=share,
                      found_by={a["name"]: a["new_breaks"] for a in result.ladder("shell")})

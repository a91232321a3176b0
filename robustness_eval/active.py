"""The active test (after Zimmermann et al. 2022): plant adversarial examples, then see if the battery finds them.

For each evaluation point x with label y, a modified base model F' adds β to the logit of a wrong
class w (and subtracts it from y) in a slab beyond the ε-ball, along u = sign ∇_x(l_w − l_y)(x)
(coordinates the gradient would push out of the bounds set to 0, so the plant lies where an
attack that follows the shell's structure and F's gradient can reach it):
with s(z) = ⟨z − x, u⟩ / (‖u‖₁·ε), the boost is β·clamp((s − 1.2)/0.3, 0, 1) inside the L∞ ball of
radius ε + δ around x. The shell's search from x (radius δ ≤ ε) never reaches s > 1, so G'(x) =
G(x); from x' = x + ε·u it reaches s = 1 + δ/ε ≥ 1.5, where F' is confidently wrong, so G'(x') is
wrong: an adversarial example inside the ε-ball exists by construction. Each plant is verified
(G'(x) right, G'(x') wrong) before it counts. A battery that misses verified plants has failed.
L∞ threats only.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness_eval.ascent import input_gradient
from robustness_eval.runner import run_battery
from robustness_eval.types import Norm, Threat
from robustness_eval.verify import verify
from shells.base import Shell


class PlantedModel(nn.Module):
    """F plus one planted confident wrong region per anchor point (see module docstring)."""

    def __init__(self, model: nn.Module, anchors: torch.Tensor, directions: torch.Tensor,
                 labels: torch.Tensor, wrong: torch.Tensor, eps: float, reach: float, boost: float = 40.0) -> None:
        super().__init__()
        self.model, self.eps, self.reach, self.boost = model, eps, reach, boost
        self.register_buffer("anchors", anchors.flatten(1))
        self.register_buffer("directions", directions.flatten(1))
        self.register_buffer("labels", labels)
        self.register_buffer("wrong", wrong)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.model(z)
        flat = z.flatten(1)
        offset = flat[:, None, :] - self.anchors[None]  # rows × anchors × d
        active = self.directions.abs().sum(1).clamp_min(1.0)  # coordinates along u
        s = (offset * self.directions[None]).sum(2) / (active[None] * self.eps)
        near = offset.abs().amax(2) <= self.reach + 1e-6
        bump = ((s - 1.2) / 0.3).clamp(0, 1) * near
        strength, which = bump.max(dim=1)
        shift = torch.zeros_like(logits)
        rows = torch.arange(len(z), device=z.device)
        shift[rows, self.wrong[which]] += self.boost * strength
        shift[rows, self.labels[which]] -= self.boost * strength
        return logits + shift


def plant(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat, delta: float) -> PlantedModel:
    """F' with a plant for every point, aimed along the base model's own gradient toward its runner-up."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    wrong = logits.detach().scatter(1, y[:, None], float("-inf")).argmax(1)
    margin = logits.gather(1, wrong[:, None]) - logits.gather(1, y[:, None])
    grad = input_gradient(margin, x)
    direction = grad.sign()
    # coordinates the gradient would push out of the bounds take no part in the plant
    room = threat.eps + delta
    moved = x.detach() + room * direction
    direction[(moved > threat.bounds.upper) | (moved < threat.bounds.lower)] = 0.0
    return PlantedModel(model, x.detach(), direction, y, wrong, threat.eps, threat.eps + delta).eval()


def active_test(model: nn.Module, make_shell, x: torch.Tensor, y: torch.Tensor, threat: Threat,
                delta: float, attacks="fast", seed: int = 0, backend=None) -> dict:
    """Plant, verify the plants, run the battery on the planted target; report the share found."""
    if threat.norm is not Norm.LINF:
        return {"status": "not run", "reason": "the active test plants L∞ regions only"}
    planted = plant(model, x, y, threat, delta)
    shell: Shell = make_shell(planted)
    x_planted = (x + threat.eps * planted.directions.view_as(x)).clamp(threat.bounds.lower, threat.bounds.upper)
    clean_ok = verify(shell, x, x, y, threat).misclassified.logical_not()
    plant_ok = verify(shell, x, x_planted, y, threat).success
    valid = clean_ok & plant_ok
    idx = valid.nonzero().squeeze(1)
    if len(idx) == 0:
        return {"status": "not run", "reason": "no plant could be verified", "planted": len(y), "valid": 0}
    result = run_battery(planted, shell, x[idx], y[idx], threat, attacks, seed=seed, backend=backend)
    found = sum(1 for p in result.points if p["shell_correct"] and p["broken_by"]["shell"] is not None)
    evaluated = sum(1 for p in result.points if p["shell_correct"])
    share = found / evaluated if evaluated else 0.0
    return {"status": "pass" if share >= 0.95 else "fail", "planted": len(y), "valid": int(valid.sum()),
            "evaluated": evaluated, "found": found, "share_found": share,
            "found_by": {a["name"]: a["new_breaks"] for a in result.ladder("shell")}}

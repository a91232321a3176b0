"""The one call shape every attack has (after Foolbox 3's template).

`Attack.__call__(view, x, y, threat, budget=None, seed=0)` validates the threat, runs the
subclass's `_run` (which only *proposes* candidates), projects the candidates into the ε-ball
and the bounds, and returns an `AttackOutput`. Whether a candidate counts is decided by
`robustness_eval.verify` on the real target, never by the attack.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from robustness_eval.norms import project
from robustness_eval.types import AttackKind, Threat, check_positive_int

VIEWS = ("base", "oracle", "shell-aware", "end-to-end", "surrogate", "fixed")


@contextlib.contextmanager
def global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """Seed torch's global generator from `generator` for a library that draws from it (Foolbox),
    and restore the caller's state afterwards, so runs stay deterministic and side-effect free."""
    state = torch.random.get_rng_state()
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device="cpu")))
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


@dataclass
class AttackOutput:
    """Per point: the proposed candidate and the queries used (whether it counts is `verify`'s call)."""

    x_adv: torch.Tensor
    queries: torch.Tensor
    trace: dict = field(default_factory=dict)


class Attack:
    """Base class. Subclasses set `name`, `kind`, `view`, `description` and implement `_run`.

    `view` names the target view the attack receives: 'base' (white-box F), 'oracle' (the
    shell through a query-counting oracle), 'shell-aware' (F plus the shell's parameters and
    per-class search), 'end-to-end' (a differentiable shell's own log-probabilities, gradient
    kept), 'surrogate' (the same view of the shell's attack-time surrogate) or 'fixed' (a randomized shell, or
    its surrogate, with its randomness fixed by one seed). `budget` means what the subclass's docstring says
    (iterations for gradient attacks, oracle queries per point for black-box ones). `requires` names the shell
    capabilities (`shells.base.CAPABILITIES`) the attack needs; the runner skips it, with the
    reason, on a target that does not offer them.
    """

    name: ClassVar[str] = "attack"
    kind: ClassVar[AttackKind] = AttackKind.TRANSFER
    view: ClassVar[str] = "base"
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.view not in VIEWS:
            raise TypeError(f"{cls.__name__}.view must be one of {', '.join(VIEWS)} (got {cls.view!r})")

    def __init__(self, budget: int = 100) -> None:
        self.budget = check_positive_int(budget, "budget")
        self.only_target: str | None = None  # set by escalation: run on this target only

    def renamed(self, name: str, only_target: str | None = None) -> Attack:
        """This attack under another name (its rows, seeds and rung are its own), optionally for one target."""
        self.name, self.only_target = name, only_target
        return self

    def rebuilt(self, **changes) -> Attack:
        """A new instance of this attack with the same constructor arguments, `changes` applied (its name
        and target restriction carried over): presets and checks build instances, never mutate them."""
        parameters = inspect.signature(type(self).__init__).parameters
        settings = {name: value for name, value in vars(self).items() if name in parameters}
        unknown = sorted(set(changes) - set(parameters))
        if unknown:
            raise TypeError(f"{type(self).__name__} takes no argument {', '.join(unknown)}")
        attack = type(self)(**{**settings, **changes})
        if "name" in vars(self):
            attack.name = self.name
        attack.only_target = self.only_target
        return attack

    @classmethod
    def needs(cls) -> str:
        """The capabilities the attack needs from its target, as text ("nothing": it runs on any target)."""
        return ", ".join(sorted(cls.requires)) or "nothing"

    def skip_reason(self, offered: frozenset[str]) -> str | None:
        """None if the attack applies to a target offering `offered`; otherwise why it is skipped."""
        missing = sorted(self.requires - offered)
        if not missing:
            return None
        return f"needs {', '.join(missing)}; the target offers {', '.join(sorted(offered)) or 'nothing'}"

    def __call__(self, view, x: torch.Tensor, y: torch.Tensor, threat: Threat,
                 budget: int | None = None, seed: int = 0) -> AttackOutput:
        if not isinstance(threat, Threat):
            raise TypeError(f"`threat` must be a robustness_eval.Threat (got {type(threat).__name__})")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"`x` and `y` need the same number of points ({x.shape[0]} vs {y.shape[0]})")
        budget = self.budget if budget is None else check_positive_int(budget, "budget")
        x = x.detach()
        if x.shape[0] == 0 or threat.eps == 0:
            return AttackOutput(x.clone(), torch.zeros(x.shape[0], dtype=torch.long, device=x.device))
        generator = torch.Generator(device="cpu").manual_seed(seed)
        out = self._run(view, x, y, threat, budget, generator)
        out.x_adv = project(out.x_adv.detach(), x, threat.eps, threat.norm, threat.bounds)
        return out

    def _run(self, view, x: torch.Tensor, y: torch.Tensor, threat: Threat, budget: int,
             generator: torch.Generator) -> AttackOutput:
        raise NotImplementedError


def check_targets(targets: int) -> int:
    """The number of target classes an attack aims at (0: untargeted); a ValueError for anything but an int ≥ 0."""
    if isinstance(targets, bool) or not isinstance(targets, int) or targets < 0:
        raise ValueError(f"`targets` must be an integer ≥ 0 (got {targets!r})")
    return targets


class RestartingAttack(Attack):
    """An attack with restarts drawn from a start schedule (`first_restart`: where in the schedule it begins, so a
    later round continues it): the arguments and checks every scheduled attack shares."""

    def __init__(self, budget: int = 100, restarts: int = 1, first_restart: int = 0) -> None:
        super().__init__(budget)
        self.first_restart = first_restart
        self.restarts = check_positive_int(restarts, "restarts")


class TargetableAttack(RestartingAttack):
    """A scheduled attack that can aim at target classes as well (`targets`: how many; 0 untargeted): the gradient
    attacks' shared arguments."""

    def __init__(self, budget: int = 100, restarts: int = 1, targets: int = 0, first_restart: int = 0) -> None:
        super().__init__(budget, restarts, first_restart)
        self.targets = check_targets(targets)


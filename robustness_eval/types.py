"""Core value types shared by shells, attacks and the runner.

Everything here is plain data plus validation at the boundary: a `Threat` says what an
adversary may do (norm, ε, input bounds), an `AttackKind` says what an attack knows.
"""

from __future__ import annotations

import enum
import numbers
from dataclasses import dataclass


def real_number(value, argument: str) -> float:
    """`value` as a float if it is a real number (int, float, NumPy scalar); a TypeError naming `argument` for a
    bool, a string or anything else."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{argument}` must be a real number, e.g. 0.1 (got {value!r} of type {type(value).__name__})")
    return float(value)



class Norm(enum.StrEnum):
    """The distance an ε-ball or δ-ball is measured in. Accepts 'linf' / 'l2' strings."""

    LINF = "linf"
    L2 = "l2"

    @classmethod
    def parse(cls, value: Norm | str, argument: str = "norm") -> Norm:
        if isinstance(value, Norm):
            return value
        text = str(value).strip().lower().replace("∞", "inf")
        aliases = {"linf": cls.LINF, "inf": cls.LINF, "l_inf": cls.LINF, "l2": cls.L2, "2": cls.L2}
        if text not in aliases:
            raise ValueError(f"unknown {argument} {value!r}; choose one of: linf, l2")
        return aliases[text]


class AttackKind(enum.StrEnum):
    """What an attack knows about the target; the values are the strings in results.json."""

    BASELINE = "baseline"
    TRANSFER = "transfer"
    SHELL_AWARE = "shell-aware"
    WHITE_BOX = "white-box"  # end to end through a differentiable shell
    BPDA = "bpda"
    EOT = "eot"
    SCORE_BASED = "score-based"
    DECISION_BASED = "decision-based"


# the groups of kinds every indicator and plot reads (members compare equal to results.json's strings)
GRADIENT_KINDS = frozenset({AttackKind.TRANSFER, AttackKind.SHELL_AWARE, AttackKind.WHITE_BOX, AttackKind.BPDA,
                            AttackKind.EOT})
ADAPTIVE_KINDS = frozenset({AttackKind.SHELL_AWARE, AttackKind.WHITE_BOX, AttackKind.BPDA, AttackKind.EOT})
BLACK_BOX_KINDS = frozenset({AttackKind.SCORE_BASED, AttackKind.DECISION_BASED})


def breaks_of(rungs: list, kinds: frozenset[AttackKind] | set) -> int:
    """New breaks of the rungs (`records.AttackRecord`) whose attack kind is in `kinds`."""
    return sum(rung.new_breaks for rung in rungs if rung.kind in kinds)


@dataclass(frozen=True)
class Bounds:
    """The box every valid input lies in (e.g. [0, 1] for images)."""

    lower: float = 0.0
    upper: float = 1.0

    def __post_init__(self) -> None:
        for name in ("lower", "upper"):
            object.__setattr__(self, name, real_number(getattr(self, name), f"bounds.{name}"))
        if not self.lower < self.upper:
            raise ValueError(
                f"bounds must satisfy lower < upper (got lower={self.lower}, upper={self.upper})"
            )

    @property
    def width(self) -> float:
        return self.upper - self.lower


@dataclass(frozen=True)
class Threat:
    """An adversary's budget: perturbations of `norm` at most `eps`, results inside `bounds`."""

    norm: Norm
    eps: float
    bounds: Bounds = Bounds()

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", Norm.parse(self.norm))
        object.__setattr__(self, "eps", check_nonnegative(real_number(self.eps, "eps"), "eps"))
        bounds = self.bounds
        if isinstance(bounds, tuple | list) and len(bounds) == 2:
            bounds = Bounds(*bounds)
        if not isinstance(bounds, Bounds):
            raise TypeError(f"`bounds` must be a robustness_eval.types.Bounds or a (lower, upper) pair "
                            f"(got {type(bounds).__name__})")
        object.__setattr__(self, "bounds", bounds)

    def with_eps(self, eps: float) -> Threat:
        return Threat(self.norm, eps, self.bounds)


def check_nonnegative(value: float, argument: str) -> float:
    """Raise a ValueError naming `argument` unless `value` is a finite number ≥ 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{argument}` must be a number ≥ 0 (got {value!r})") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"`{argument}` must be a finite number ≥ 0 (got {value!r})")
    return number


def check_positive_int(value: int, argument: str) -> int:
    """Raise a ValueError naming `argument` unless `value` is an integer ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{argument}` must be an integer ≥ 1 (got {value!r})")
    return value


SEED_LIMIT = 2**63  # torch's generators take seeds below this; numpy's take no negative ones


def check_seed(value: int, argument: str) -> int:
    """Raise naming `argument` unless `value` is an integer in [0, 2**63 − 1] (a TypeError for a non-integer)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{argument}` must be an integer (got {value!r})")
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"`{argument}` must be an integer in [0, 2**63 - 1] (got {value})")
    return value


def check_probability(value: float, argument: str) -> float:
    """Raise a ValueError naming `argument` unless 0 < value < 1."""
    number = check_nonnegative(value, argument)
    if not 0.0 < number < 1.0:
        raise ValueError(f"`{argument}` must lie strictly between 0 and 1 (got {value!r})")
    return number

"""Attacks by name, and battery presets: ordered lists, cheapest first (AutoAttack's habit).

A preset is data: a list of (attack name, budget or None for the attack's default, options for the
attack's constructor, e.g. {"restarts": 3}). A package
adds attacks under the entry-point group `robustness_eval.attacks` (name = an `Attack`
subclass); they are listed, budgeted and run like the built-in ones.
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points

from attacks.apgd import APGD
from attacks.base import Attack
from attacks.bpda import BPDA, TargetedBPDA, UnrolledBPDA
from attacks.bpda_base import BPDABase
from attacks.decision import Boundary, HopSkipJump
from attacks.end_to_end import EndToEndPGD, TargetedEndToEndCW
from attacks.eot import EOT
from attacks.foolbox_pgd import FoolboxPGD
from attacks.lookahead import LookAhead
from attacks.minmax import MinMax, TargetedMinMax
from attacks.nevergrad_attack import NEVERGRAD_ATTACKS
from attacks.noise import RandomNoise
from attacks.path import GradientPath, TargetedGradientPath
from attacks.pgd import DLR, PGD, CWMargin, MultiTargetedCW
from attacks.rays import RayS
from attacks.spsa import SPSA
from attacks.square import Square, TargetedSquare
from attacks.surrogate import FixedRandomnessPGD, SurrogatePGD
from attacks.targeted import TargetedConfident
from robustness_eval.types import check_positive_int

ENTRY_POINT_GROUP = "robustness_eval.attacks"

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (
        PGD, CWMargin, DLR, MultiTargetedCW, APGD, TargetedConfident, FoolboxPGD, RandomNoise, GradientPath,
        TargetedGradientPath, LookAhead, MinMax, TargetedMinMax, EndToEndPGD, TargetedEndToEndCW, FixedRandomnessPGD,
        BPDA, TargetedBPDA, UnrolledBPDA, BPDABase, EOT, SurrogatePGD,
        Square, TargetedSquare, SPSA, *NEVERGRAD_ATTACKS, HopSkipJump, Boundary, RayS,
    )
}

# Through a search shell every black-box query is a whole search (0.5–1.2 ms per point on the
# digits MLP here, benchmarks/RESULTS.md), so `full` trims some black-box budgets to keep the
# default run under an hour on 2 cores: Square and SPSA keep their defaults; the six Nevergrad
# optimizers and the two decision-based attacks get less. The convergence pass doubles every
# budget, which says whether these were enough.
FULL_BUDGETS = {"hsj": 500, "boundary": 500, **{a.name: 200 for a in NEVERGRAD_ATTACKS}}

# The fast preset, chosen from measurements (docs/DESIGN.md, Truth checks): transfer PGD and CW climb 100
# steps from 5 starts each (uniform, ODS, ...), F's paths are checked on the shell from 3 starts, untargeted
# and toward each wrong class (pgd-path-t: one more MNIST other-class plant found for ~40 s on digits),
# look-ahead climbs the targeted margin from 6 starts (4 climbs from each random one, the steepest rise's
# corner beside the projected best iterate) and min-max goes through the shell's own searches from 5; the
# attacks' own defaults carry those settings, so `full` is never weaker. The other targeted forms (cw-t,
# minmax-t, bpda-t, square-t) found nothing more here for their time and run in `full` and escalation, and
# so does BPDA+EOT on a deterministic shell with a per-class search (MCN, NCN), where look-ahead and min-max
# use that search; on randomized shells and search-only purifiers EOT stays in `fast`.
# pgd-e2e and cw-e2e-t run only on a differentiable shell (MagNet, resize-pad, DiffPure), where they are the attack;
# pgd-fixed only on a randomized shell that can fix its draws and has a gradient, pgd-surrogate only where a
# surrogate exists (DiffPure's shorter chain, a user's), and, like BPDA+EOT, not in `fast` on MCN and NCN.
# Black-box attacks average 4 draws per row on a randomized shell (units.ORACLE_DRAWS_RANDOMIZED). RayS (hard
# label, L∞) runs in `full` and escalation.
FAST_OPTIONS = {"eot": {"search_shells": False}, "pgd-surrogate": {"search_shells": False}}
PRESETS: dict[str, list[tuple[str, int | None, dict]]] = {
    "fast": [(name, budget, FAST_OPTIONS.get(name, {})) for name, budget in (
        ("pgd", None), ("cw", None), ("noise", 20), ("pgd-path", None), ("pgd-path-t", None),
        ("lookahead", None), ("minmax", None), ("pgd-e2e", None), ("cw-e2e-t", None), ("pgd-fixed", None),
        ("bpda", 20), ("eot", 20), ("pgd-surrogate", None), ("square", 100))],
    "full": [(name, FULL_BUDGETS.get(name), {}) for name in ATTACKS],
}


# Escalation's rounds, as data like the presets: (name, budget, counts) per target, where round n multiplies the
# budget and every count by 2**(n-1); an attack with restarts starts them past the deterministic start at x.
# "shell" entries run where the shell offers what they need; "shell-always" ones (black box) always run.
ESCALATION: dict[str, list[tuple[str, int, dict[str, int]]]] = {
    "base": [("bpda-base", 40, {}), ("pgd", 100, {"restarts": 10}), ("cw-t", 100, {"restarts": 1}),
             ("square", 500, {})],
    "shell": [("pgd", 100, {"restarts": 10}), ("pgd-e2e", 100, {"restarts": 3}), ("cw-e2e-t", 100, {"restarts": 1}),
              ("pgd-fixed", 100, {"restarts": 2}), ("eot", 40, {}), ("pgd-surrogate", 100, {"restarts": 2, "draws": 8}),
              ("pgd-path-t", 20, {"restarts": 1}), ("lookahead", 40, {"restarts": 6}), ("minmax", 20, {"restarts": 5}),
              ("minmax-t", 20, {"restarts": 1}), ("bpda", 30, {"restarts": 2})],
    "shell-always": [("square", 500, {}), ("rays", 1000, {})],
}


def escalation_attack(name: str, budget: int, counts: dict[str, int], number: int, **objects) -> Attack:
    """One entry of `ESCALATION` built for round `number` (`objects`: run-time arguments, e.g. bpda-base's
    surrogate)."""
    scale = 2 ** (number - 1)
    options = {key: value * scale for key, value in counts.items()}
    if "restarts" in counts:
        options["first_restart"] = 1
    return attack_classes()[name](budget=budget * scale, **options, **objects)


def attack_classes() -> dict[str, type[Attack]]:
    """Every named attack: the built-in ones, then those registered by installed packages."""
    found = dict(ATTACKS)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        cls = point.load()
        if not (isinstance(cls, type) and issubclass(cls, Attack)):
            raise TypeError(f"entry point {point.name!r} in {ENTRY_POINT_GROUP} must name an Attack subclass "
                            f"(got {cls!r})")
        found.setdefault(point.name, cls)
    return found


def build_battery(spec: str | list[str], budgets: dict[str, int] | None = None,
                  budget_scale: float = 1.0, draws: int | None = None) -> list[Attack]:
    """Attack instances for a preset name, a comma list, or a list of names.

    `budgets` overrides budgets by attack name; `budget_scale` multiplies every budget (2.0 is
    the convergence check: everything doubled); `draws` sets the EOT draws of every attack that takes them.
    """
    known = attack_classes()
    if isinstance(spec, str) and spec in PRESETS:
        entries = list(PRESETS[spec])
    else:
        names = [p.strip() for p in spec.split(",") if p.strip()] if isinstance(spec, str) else list(spec)
        entries = [(name, None, {}) for name in names]
    budgets = dict(budgets or {})
    for name, value in budgets.items():
        check_positive_int(value, f"budget for {name}")
    unknown = [name for name in [*(e[0] for e in entries), *budgets] if name not in known]
    if unknown or not entries:
        valid = ", ".join([*PRESETS, *known])
        raise ValueError(f"unknown attack {', '.join(map(repr, unknown)) or repr(spec)}; "
                         f"choose presets or names from: {valid}")
    repeated = sorted({name for name, _, _ in entries if [e[0] for e in entries].count(name) > 1})
    if repeated:
        raise ValueError(f"attack {', '.join(map(repr, repeated))} is listed more than once; name each attack once")
    battery = []
    for name, preset_budget, options in entries:
        cls = known[name]
        budget = budgets.get(name, preset_budget or cls().budget)
        if draws is not None and "draws" in inspect.signature(cls.__init__).parameters:
            options = {**options, "draws": draws}
        battery.append(cls(budget=max(1, round(budget * budget_scale)), **options))
    return battery

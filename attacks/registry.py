"""Attacks by name, and battery presets: ordered lists, cheapest first (AutoAttack's habit)."""

from __future__ import annotations

from attacks.base import Attack
from attacks.foolbox_pgd import FoolboxPGD
from attacks.lookahead import LookAhead
from attacks.minmax import MinMax
from attacks.pgd import PGD, CWMargin

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (PGD, CWMargin, FoolboxPGD, LookAhead, MinMax)
}

PRESETS: dict[str, list[str]] = {
    "fast": ["pgd", "cw", "lookahead", "minmax"],
    "full": ["pgd", "cw", "fb-pgd", "lookahead", "minmax"],
}


def build_battery(spec: str | list[str], budgets: dict[str, int] | None = None,
                  budget_scale: float = 1.0) -> list[Attack]:
    """Attack instances for a preset name, a comma list, or a list of names.

    `budgets` overrides an attack's default budget by name; `budget_scale` multiplies every
    budget (2.0 is the convergence check: everything doubled).
    """
    names = PRESETS.get(spec, None) if isinstance(spec, str) else list(spec)
    if names is None:
        names = [part.strip() for part in spec.split(",") if part.strip()]
    budgets = dict(budgets or {})
    unknown = [name for name in [*names, *budgets] if name not in ATTACKS]
    if unknown or not names:
        valid = ", ".join([*PRESETS, *ATTACKS])
        raise ValueError(f"unknown attack {', '.join(map(repr, unknown)) or repr(spec)}; "
                         f"choose presets or names from: {valid}")
    battery = []
    for name in names:
        cls = ATTACKS[name]
        budget = budgets.get(name, cls().budget)
        battery.append(cls(budget=max(1, round(budget * budget_scale))))
    return battery

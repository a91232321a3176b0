"""Attacks behind one call shape, registered by name, and the battery presets."""

from attacks.base import Attack, AttackOutput
from attacks.registry import ATTACKS, PRESETS, build_battery

__all__ = ["ATTACKS", "PRESETS", "Attack", "AttackOutput", "build_battery"]

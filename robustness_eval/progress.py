"""Progress bars (tqdm on stderr) that one flag silences."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, disable: bool = False, total: int | None = None):
    """Wrap `items` in a tqdm bar unless `disable`; bars clear themselves when done."""
    return tqdm(items, desc=desc, disable=disable, total=total, leave=False, dynamic_ncols=True)

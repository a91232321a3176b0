"""The base of every typed record in results.json: a dataclass that writes itself as JSON and reads itself back.

A record's fields are its JSON keys, in order (a field whose JSON key is not a Python name says so in its
metadata, `json_key`). Reading checks every value against the field's type hint (records, lists and string-keyed
dicts of them, `X | None`, int, float, bool, str) and refuses a key the record does not know, naming where in the
file it is: a results.json of a known schema version with a key no version wrote is not one the suite wrote.
An optional field (default None) left out of a file reads as None, and None is not written back, so a file
from an earlier version reads as it is; `KEEP_NULL` names the fields whose None is a finding and is written.
An open record (`OPEN = True`) keeps the keys it does not know in its `other` field and writes them back after
its own: the run configuration and the extras hold what users and later phases add.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, ClassVar, Self


class RecordError(ValueError):
    """A results.json value that does not fit its record: the message names the key path and what was found."""


def json_key(name: str) -> dict:
    """Field metadata for a JSON key that is not a Python name (`significant_at_0.05`)."""
    return {"json_key": name}


class Record:
    """Mixin for dataclasses: `to_json()` and `from_json(data)` by the fields' names and type hints."""

    KEEP_NULL: ClassVar[tuple[str, ...]] = ()
    OPEN: ClassVar[bool] = False

    def to_json(self) -> dict:
        out = {}
        for item in dataclasses.fields(self):
            if item.name == "other" and self.OPEN:
                continue
            value = getattr(self, item.name)
            if value is None and item.name not in self.KEEP_NULL and _optional(item):
                continue
            out[item.metadata.get("json_key", item.name)] = encode(value)
        if self.OPEN:
            out.update({key: encode(value) for key, value in self.other.items() if key not in out})
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> Self:
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected an object, found {type(data).__name__}")
        hints = _hints(cls)
        known = {item.metadata.get("json_key", item.name): item for item in dataclasses.fields(cls)
                 if not (item.name == "other" and cls.OPEN)}
        unknown = [key for key in data if key not in known]
        if unknown and not cls.OPEN:
            raise RecordError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
        values = {}
        for key, item in known.items():
            if key in data:
                values[item.name] = decode(hints[item.name], data[key], f"{where}.{key}")
            elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where}: missing key {key!r}")
        if cls.OPEN:
            values["other"] = {key: data[key] for key in unknown}
        return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A record class's resolved field types (resolved once: a results.json has a record per point)."""
    return typing.get_type_hints(cls)


def _optional(item: dataclasses.Field) -> bool:
    return item.default is None


def encode(value: Any) -> Any:
    """A record, list or dict of them as plain JSON values."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, dict):
        return {key: encode(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(hint: Any, value: Any, where: str) -> Any:
    """`value` read as `hint`: a Record, list[X], dict[str, X], X | None, int, float, bool, str or Any."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        choices = [a for a in arguments if a is not type(None)]
        errors = []
        for choice in choices:
            try:
                return decode(choice, value, where)
            except RecordError as error:
                errors.append(str(error))
        raise RecordError(errors[0] if len(errors) == 1 else f"{where}: fits none of {hint}")
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, found {type(value).__name__}")
        return [decode(arguments[0] if arguments else Any, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, found {type(value).__name__}")
        inner = arguments[1] if arguments else Any
        return {key: decode(inner, v, f"{where}.{key}") for key, v in value.items()}
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is float:
        fits = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif hint in (bool, str):
        fits = isinstance(value, hint)
    elif hint in (list, dict):
        fits = isinstance(value, hint)
    else:
        raise TypeError(f"{where}: a record field typed {hint!r} cannot be read; use a Record, list, dict or scalar")
    if not fits:
        raise RecordError(f"{where}: expected {hint.__name__}, found {type(value).__name__} {value!r:.40}")
    return value

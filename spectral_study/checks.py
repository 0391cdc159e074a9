"""Value checks, written once and used everywhere a value comes in.

A check is a callable that returns the value in its canonical form (a list as a tuple, an int
as a float where a float is wanted) or raises `Invalid` saying what it got and what it expected.
The trial config (`spectral_study.config`) attaches one to each field; the study parser runs the
same checks and turns `Invalid` into one line naming the file and the field:

    studies/x.yaml: model.widths[2]: got -4; expected a positive integer

so a rule and its wording live here only. No torch, Ray or YAML here.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any


class Invalid(ValueError):
    """A value that breaks a rule; ``path`` says where it sits below the value checked
    (``"fractions[2]"``), so a caller can prefix where that value came from."""

    def __init__(self, value: Any, expected: str, path: str = "", *, message: str | None = None) -> None:
        self.value, self.expected, self.path = value, expected, path
        self.message = message if message is not None else f"got {value!r}; expected {expected}"
        super().__init__(f"{path}: {self.message}" if path else self.message)

    def within(self, prefix: str) -> Invalid:
        """The same problem, seen from ``prefix`` (a field name or ``[i]``) one level up."""
        return Invalid(self.value, self.expected, join_path(prefix, self.path), message=self.message)


def join_path(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def one_of(allowed: Sequence[Any]) -> str:
    return "one of: " + ", ".join(str(a) for a in allowed)


class Check:
    """Base of all checks: ``expected`` is the wording of the rule; ``kind`` the Python type of a
    valid scalar value (str, int, float, bool), or None for lists and mappings."""

    expected: str = "a valid value"
    kind: type | None = None

    def __call__(self, value: Any) -> Any:
        raise NotImplementedError  # every concrete check overrides it

    def fail(self, value: Any) -> Invalid:
        return Invalid(value, self.expected)


class Choice(Check):
    kind = str

    def __init__(self, options: Sequence[str]) -> None:
        self.options = tuple(options)
        self.expected = one_of(self.options)

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise self.fail(value)
        return value


class Integer(Check):
    """An int (never a bool: YAML's ``true`` is an int to Python) within the bounds."""

    kind = int

    def __init__(self, minimum: int = 0, maximum: int | None = None, *, expected: str | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.expected = expected or ("a positive integer" if minimum == 1 and maximum is None else
                                     f"an integer >= {minimum}" if maximum is None else
                                     f"an integer from {minimum} to {maximum}")

    def __call__(self, value: Any) -> int:
        if not _is_int(value) or value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise self.fail(value)
        return int(value)


class Number(Check):
    """A finite int or float (never a bool) strictly above ``above``; returned as a float."""

    kind = float

    def __init__(self, above: float = 0.0, *, expected: str = "a positive number") -> None:
        self.above, self.expected = above, expected

    def __call__(self, value: Any) -> float:
        if not _is_real(value) or not math.isfinite(value) or not value > self.above:
            raise self.fail(value)
        return float(value)


class Fraction(Check):
    kind = float

    def __init__(self, expected: str = "a number strictly between 0 and 1") -> None:
        self.expected = expected

    def __call__(self, value: Any) -> float:
        if not _is_real(value) or not 0 < value < 1:
            raise self.fail(value)
        return float(value)


class Boolean(Check):
    kind = bool
    expected = "true or false"

    def __call__(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(value)
        return value


class Text(Check):
    kind = str

    def __init__(self, expected: str = "a non-empty string", *, pattern: str | None = None) -> None:
        self.expected, self.pattern = expected, pattern

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not value or (self.pattern and not re.fullmatch(self.pattern, value)):
            raise self.fail(value)
        return value


class Optional(Check):
    """``None``, or a value ``inner`` accepts."""

    def __init__(self, inner: Check, *, expected: str | None = None) -> None:
        self.inner, self.kind = inner, inner.kind
        self.expected = expected or f"{inner.expected}, or null"

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            return self.inner(value)
        except Invalid as error:
            if error.path:
                raise
            raise self.fail(value) from None


class ListOf(Check):
    """A list (or tuple) read item by item; returned as a tuple. ``distinct``: a duplicate is
    refused (a grid would run the same trials twice); ``single``: one bare item is a list of one."""

    def __init__(self, item: Check, *, distinct: bool = True, nonempty: bool = True,
                 single: bool = False, expected: str | None = None) -> None:
        self.item, self.distinct, self.nonempty, self.single = item, distinct, nonempty, single
        self.expected = expected or f"a {'non-empty ' if nonempty else ''}list; each entry {item.expected}"

    def __call__(self, value: Any) -> tuple:
        if self.single and not isinstance(value, (list, tuple)):
            return (self.item(value),)
        if not isinstance(value, (list, tuple)) or (self.nonempty and not value):
            raise self.fail(value)
        items: list = []
        for i, item in enumerate(value):
            try:
                parsed = self.item(item)
            except Invalid as error:
                raise error.within(f"[{i}]") from None
            if self.distinct and parsed in items:
                raise Invalid(item, "each value once (a duplicate would repeat trials)", f"[{i}]")
            items.append(parsed)
        return tuple(items)


class Widths(Check):
    """Hidden widths: a list of positive ints (``[]`` is a perceptron), one int, or the string
    form Optuna's categorical choices need (``"256-128"``; ``"none"`` for no hidden layer)."""

    expected = "a list of positive integers ([] for no hidden layer), or a string such as '256-128' or 'none'"

    def __call__(self, value: Any) -> tuple[int, ...]:
        if isinstance(value, str):
            return decode_widths(value)
        if _is_int(value):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise self.fail(value)
        for i, w in enumerate(value):
            if not _is_int(w) or w < 1:
                raise Invalid(w, "a positive integer", f"[{i}]")
        return tuple(int(w) for w in value)


def decode_widths(text: str) -> tuple[int, ...]:
    """``"256-128"`` -> (256, 128); ``"none"`` (or ``""``) -> () for a perceptron."""
    if text.strip().lower() in ("", "none", "[]"):
        return ()
    parts = text.split("-")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise Widths().fail(text)
    return tuple(int(p) for p in parts)


def encode_widths(widths: Sequence[int]) -> str:
    """The string form: ``(256, 128) -> "256-128"``, ``() -> "none"``."""
    return "-".join(str(w) for w in widths) or "none"


class Record(Check):
    """A mapping (or an instance) read into the dataclass ``cls``, whose fields carry their own
    checks (see `setting`); unknown keys are refused with a did-you-mean."""

    def __init__(self, cls: type, *, hints: Mapping[str, str] | None = None) -> None:
        self.cls, self.hints = cls, dict(hints or {})
        self.keys = tuple(f.name for f in dataclasses.fields(cls) if f.init)
        self.expected = f"a mapping with keys from: {', '.join(self.keys)}"

    def __call__(self, value: Any) -> Any:
        if isinstance(value, self.cls):
            return value
        known_keys(value, self.keys, self.hints)
        return self.cls(**value)


def known_keys(value: Any, keys: Sequence[str], hints: Mapping[str, str] | None = None) -> Mapping:
    """``value`` as a mapping whose keys are all in ``keys``; ``hints`` maps a key known
    elsewhere to why it is not allowed here."""
    if not isinstance(value, Mapping):
        raise Invalid(value, f"a mapping with keys from: {', '.join(keys)}")
    for key in value:
        if key not in keys:
            if isinstance(key, str) and hints and key in hints:
                raise Invalid(value[key], "", str(key),
                              message=f"got {value[key]!r}; expected no value here: {hints[key]}")
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise Invalid(key, one_of(keys), str(key),
                          message=f"got unknown key {key!r}; expected {one_of(keys)}{hint}")
    return value


def _is_int(value: Any) -> bool:
    """An integer of any kind (numpy's too), but not a bool: YAML's ``true`` is an int to Python."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# ------------------------------------------------------------------------ dataclass fields

def setting(default: Any, check: Check, *, section: str | None = None, key: str | None = None,
            column: str | bool = True, doc: str = "") -> Any:
    """A dataclass field with its check and where it comes from.

    ``section``: the study file section that sets it for every trial (``"model"``, ``"training"``,
    ``""`` for the top level; None: not a study constant — an axis, or bookkeeping);
    ``key``: its name there when it differs from the field's; ``column``: the results column
    (True: the field's name; a string: another name; False: only in ``config_json``).
    """
    return dataclasses.field(default=default, metadata={
        "check": check, "section": section, "key": key, "column": column, "doc": doc})


def check_fields(instance: Any) -> None:
    """Run every field's check on a frozen dataclass instance and store the canonical values;
    an `Invalid` comes out located at the field (``pruning.fractions[1]``)."""
    for f in dataclasses.fields(instance):
        check = f.metadata.get("check")
        if check is None:
            continue
        try:
            value = check(getattr(instance, f.name))
        except Invalid as error:
            raise error.within(f.name) from None
        object.__setattr__(instance, f.name, value)

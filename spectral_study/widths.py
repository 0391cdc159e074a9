"""Hidden widths in their two forms: a list of ints, and Optuna's categorical string.

Optuna's categorical choices must be scalars, so a search over architectures suggests
``"256-128"``; every reader of a trial config decodes with `decode_widths`. No torch here:
the results writer uses it too.
"""
from __future__ import annotations


def decode_widths(value) -> list[int]:
    """Hidden widths from a list (``[256, 128]``), an int (one hidden layer), or the string form
    (``"256-128"``; ``"none"`` or ``""`` for a perceptron). ValueError if it is none of these."""
    if isinstance(value, str):
        if value.strip().lower() in ("", "none", "[]"):
            return []
        parts = value.split("-")
        if not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"cannot decode widths {value!r}; expected e.g. '256-128' or 'none'")
        value = [int(p) for p in parts]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in value):
        raise ValueError(f"cannot decode widths {value!r}; expected a list of positive integers")
    return list(value)


def encode_widths(widths) -> str:
    """The string form: ``[256, 128] -> "256-128"``, ``[] -> "none"``."""
    return "-".join(str(w) for w in widths) or "none"

"""Kubernetes resource quantities (``"15500m"``, ``"64Gi"``) read exactly."""

from __future__ import annotations

import math
import re
from fractions import Fraction

from .errors import InventoryError

MIB = 1 << 20

_QUANTITY_RE = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)
_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: object, field_name: str = "quantity") -> Fraction:
    """Read a Kubernetes resource quantity exactly: ``"16"``, ``"15500m"``, ``"1.5"``,
    ``"65843420Ki"``, ``"64Gi"``, ``"1e3"``, ``"2M"``. Raises :class:`InventoryError` naming
    ``field_name`` for anything else (including negative values).
    """
    if isinstance(value, bool):
        raise InventoryError(field_name, f"expected a Kubernetes quantity, got {value!r}")
    if isinstance(value, int):
        amount = Fraction(value)
    else:
        text = value.strip() if isinstance(value, str) else None
        match = _QUANTITY_RE.match(text) if text else None
        if match is None:
            raise InventoryError(
                field_name,
                "expected a Kubernetes quantity like 16, 15500m, 64Gi or 65843420Ki, "
                f"got {value!r}",
            )
        amount = Fraction(match["number"])
        suffix = match["suffix"] or ""
        if suffix in _BINARY_SUFFIXES:
            amount *= 1024 ** _BINARY_SUFFIXES[suffix]
        elif suffix in _DECIMAL_SUFFIXES:
            amount *= Fraction(10) ** _DECIMAL_SUFFIXES[suffix]
        elif suffix:
            amount *= Fraction(10) ** int(suffix[1:])
    if amount < 0:
        raise InventoryError(field_name, f"must not be negative, got {value!r}")
    return amount


def cpu_millis_from_quantity(value: object, field_name: str = "cpu") -> int:
    """CPU quantity in millicores, rounded down (so capacity is never overstated)."""
    return math.floor(parse_quantity(value, field_name) * 1000)


def memory_mib_from_quantity(value: object, field_name: str = "memory") -> int:
    """Memory quantity (bytes) in MiB, rounded down."""
    return math.floor(parse_quantity(value, field_name) / MIB)

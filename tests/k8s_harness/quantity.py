"""Kubernetes resource quantities: parsing, comparison and the server's canonical form."""

from __future__ import annotations

import math
import re
from fractions import Fraction

_QUANTITY_RE = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL.items()}

QUANTITY_HINT = "must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


class QuantityError(ValueError):
    """Raised for strings that are not quantities."""


def _split(value: str | int | float) -> tuple[Fraction, str]:
    if isinstance(value, bool):
        raise QuantityError(str(value))
    if isinstance(value, (int, float)):
        value = repr(value) if isinstance(value, float) else str(value)
        value = value.replace("e+", "e")
    m = _QUANTITY_RE.match(value)
    if not m:
        raise QuantityError(value)
    number = Fraction(m.group("num"))
    suffix = m.group("suffix") or ""
    if suffix in _BINARY:
        return number * 1024 ** _BINARY[suffix], "binary"
    if suffix in _DECIMAL:
        return number * Fraction(10) ** _DECIMAL[suffix], "decimal"
    return number * Fraction(10) ** int(suffix[1:]), "exponent"


def parse(value: str | int | float) -> Fraction:
    """The exact value of a quantity (raises :class:`QuantityError`)."""
    return _split(value)[0]


def is_valid(value: object) -> bool:
    """Whether ``value`` is a well-formed quantity."""
    try:
        _split(value)  # type: ignore[arg-type]
    except QuantityError:
        return False
    return True


def _round_up_nano(value: Fraction) -> Fraction:
    # Quantities keep nano precision; finer values are rounded up like resource.Quantity does.
    return Fraction(math.ceil(value * 10**9), 10**9)


def canonical(value: str | int | float) -> str:
    """Render a quantity the way the API server stores it (``0.5`` -> ``500m``)."""
    amount, fmt = _split(value)
    amount = _round_up_nano(amount)
    if amount == 0:
        return "0"
    if fmt == "binary" and (-1024 < amount < 1024 or amount.denominator != 1):
        fmt = "decimal"
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if fmt == "binary":
        number, exp = int(amount), 0
        while number % 1024 == 0 and exp < 6:
            number //= 1024
            exp += 1
        suffix = next(k for k, v in _BINARY.items() if v == exp) if exp else ""
        return f"{sign}{number}{suffix}"
    # Decimal: integer mantissa, exponent the largest multiple of 3 that keeps it integral.
    exp = -9
    mantissa = amount * 10**9
    while mantissa.denominator == 1 and mantissa % 10 == 0 and mantissa != 0:
        mantissa /= 10
        exp += 1
    while exp % 3:
        mantissa *= 10
        exp -= 1
    number = int(mantissa)
    if fmt == "exponent":
        return f"{sign}{number}" + (f"e{exp}" if exp else "")
    suffix = _DECIMAL_BY_EXP.get(exp)
    if suffix is None:
        return f"{sign}{number}e{exp}"
    return f"{sign}{number}{suffix}"

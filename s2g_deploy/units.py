"""Sizes with K/M/G/T suffixes, as users write budgets: ``300M`` MACs per second, ``1.5M`` params.

Suffixes are decimal powers of 1000 and case-insensitive (MACs and parameters are counts, not bytes,
and a milli-MAC makes no sense, so ``m`` means mega). A size is a whole, positive number.
"""

from __future__ import annotations

import math
import re

from s2g_deploy.errors import InputError

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
# ASCII digits only: Python's \d (and float()) would take Arabic-Indic or full-width digits
_SIZE_RE = re.compile(r"^\s*((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*$", re.ASCII)
_EXAMPLE = "a positive number with an optional K, M, G or T suffix (powers of 1000), e.g. 300M or 1.5M"


def parse_size(text: str | int | float, option: str) -> int:
    """``text`` as a whole positive count; raises :class:`InputError` naming ``option`` if it is not one."""
    if isinstance(text, bool):
        raise InputError(f"{option}: {text!r} is not a size; expected {_EXAMPLE}")
    if isinstance(text, int | float):
        value = float(text)
        shown = repr(text)
    else:
        shown = repr(str(text))
        match = _SIZE_RE.match(str(text))
        if not match:
            if str(text).strip().startswith("-"):
                raise InputError(f"{option}: {shown} is negative; a budget must be positive")
            raise InputError(f"{option}: {shown} is not a size; expected {_EXAMPLE}")
        # Decimal arithmetic through float is exact enough: sizes are far below 2**53.
        value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if not math.isfinite(value):
        raise InputError(f"{option}: {shown} is not a finite size")
    if value < 0:
        raise InputError(f"{option}: {shown} is negative; a budget must be positive")
    if value == 0:
        raise InputError(f"{option}: {shown} is zero; a budget must be positive")
    rounded = round(value)
    if abs(value - rounded) > 1e-6 * max(1.0, value):
        raise InputError(f"{option}: {shown} is {value:g}, not a whole number")
    return int(rounded)


def format_size(value: float, digits: int = 3) -> str:
    """``value`` with a K/M/G/T suffix and ``digits`` significant digits: 771_139_584 -> ``'771M'``."""
    value = float(value)
    scale, suffix = 1.0, ""
    for next_scale, next_suffix in ((1e3, "K"), (1e6, "M"), (1e9, "G"), (1e12, "T")):
        # the largest scale at which the rounded value is still at least 1 (999_960 -> 1.00M)
        if abs(float(f"{value / next_scale:.{digits}g}")) >= 1:
            scale, suffix = next_scale, next_suffix
    if not suffix and value.is_integer():
        return str(int(value))
    return _significant(value / scale, digits) + suffix


def _significant(x: float, digits: int) -> str:
    rounded = float(f"{x:.{digits}g}")
    if rounded == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{decimals}f}"

"""Calendar arithmetic on dates, as CQL and FHIRPath define it for calendar durations.

A quantity of UCUM time units is added to a date field by field: ``a`` (years) and ``mo`` (months)
move the year and month and keep the day, clamped to the last day of the resulting month
(2025-01-31 + 1 'mo' = 2025-02-28; 2024-01-31 + 1 'mo' = 2024-02-29; 2024-02-29 + 1 'a' =
2025-02-28); ``wk`` and ``d`` add days. As in CQL, the decimal part of a quantity of a unit above
days is ignored (1.5 'mo' is 1 month). UCUM's own definition of ``mo`` (the mean Julian month) is not used
for dates: clinicians, CQL and FHIRPath count calendar months.

>>> from datetime import date
>>> from decimal import Decimal
>>> add(date(2025, 1, 31), Decimal(2), "mo")
datetime.date(2025, 3, 31)
>>> add(date(2025, 12, 31), Decimal(2), "mo")
datetime.date(2026, 2, 28)
>>> subtract(date(2025, 10, 31), Decimal(12), "mo")
datetime.date(2024, 10, 31)
>>> window(date(2025, 8, 31), Decimal(2), Decimal(3), "mo")
(datetime.date(2025, 10, 31), datetime.date(2025, 11, 30))
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from dateutil.relativedelta import relativedelta

from b12kg.errors import KnowledgeBaseError

__all__ = ["UNITS", "add", "describe", "subtract", "window"]

#: UCUM calendar-duration units -> the relativedelta field they move (CQL "calendar duration" semantics)
UNITS = {"a": "years", "mo": "months", "wk": "weeks", "d": "days"}
_WORDS = {"a": ("year", "years"), "mo": ("month", "months"), "wk": ("week", "weeks"), "d": ("day", "days")}


def _delta(amount: Decimal, unit: str) -> relativedelta:
    field = UNITS.get(unit)
    if field is None:
        raise KnowledgeBaseError(f"{unit!r} is not a calendar duration unit (use one of {', '.join(UNITS)})")
    whole = int(Decimal(amount).to_integral_value(rounding="ROUND_DOWN"))
    return relativedelta(**{field: whole})


def add(day: date, amount: Decimal | int, unit: str) -> date:
    """``day`` + ``amount`` ``unit``, calendar arithmetic (end of month clamped)."""
    return day + _delta(Decimal(amount), unit)


def subtract(day: date, amount: Decimal | int, unit: str) -> date:
    """``day`` - ``amount`` ``unit``, calendar arithmetic (end of month clamped)."""
    return day - _delta(Decimal(amount), unit)


def window(anchor: date, low: Decimal | int, high: Decimal | int, unit: str) -> tuple[date, date]:
    """The dates ``low`` to ``high`` ``unit`` after ``anchor``, both counted from the anchor (never chained)."""
    return add(anchor, low, unit), add(anchor, high, unit)


def describe(amount: Decimal | int, unit: str) -> str:
    """A duration for people: ``6 months``, ``1 year``.

    >>> describe(Decimal("6.0"), "mo")
    '6 months'
    """
    _delta(Decimal(amount), unit)  # the same units as the arithmetic
    whole = int(Decimal(amount).to_integral_value(rounding="ROUND_DOWN"))
    singular, plural = _WORDS[unit]
    return f"{whole} {singular if whole == 1 else plural}"

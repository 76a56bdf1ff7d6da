"""Calendar arithmetic as CQL and FHIRPath define it for calendar durations: months and years move the
calendar fields and clamp the day to the end of the month; weeks and days add days."""

from __future__ import annotations

import doctest
from datetime import date
from decimal import Decimal

import pytest

from b12kg import dates
from b12kg.errors import KnowledgeBaseError


@pytest.mark.parametrize(("start", "amount", "unit", "expected"), [
    (date(2025, 1, 31), 1, "mo", date(2025, 2, 28)),   # clamped to the end of February
    (date(2024, 1, 31), 1, "mo", date(2024, 2, 29)),   # leap year
    (date(2025, 1, 31), 2, "mo", date(2025, 3, 31)),   # counted from the anchor, not chained (not 28 March)
    (date(2025, 8, 31), 3, "mo", date(2025, 11, 30)),
    (date(2025, 12, 31), 2, "mo", date(2026, 2, 28)),  # across the year
    (date(2023, 12, 31), 2, "mo", date(2024, 2, 29)),
    (date(2024, 2, 29), 12, "mo", date(2025, 2, 28)),
    (date(2024, 2, 29), 1, "a", date(2025, 2, 28)),
    (date(2024, 2, 29), 4, "a", date(2028, 2, 29)),
    (date(2025, 10, 31), 1, "wk", date(2025, 11, 7)),
    (date(2025, 10, 31), 1, "d", date(2025, 11, 1)),
    (date(2025, 1, 31), Decimal("1.9"), "mo", date(2025, 2, 28)),  # CQL: the decimal part of a month is ignored
])
def test_add(start, amount, unit, expected):
    assert dates.add(start, Decimal(amount), unit) == expected


@pytest.mark.parametrize(("start", "amount", "unit", "expected"), [
    (date(2025, 10, 31), 12, "mo", date(2024, 10, 31)),
    (date(2025, 10, 31), 6, "mo", date(2025, 4, 30)),  # clamped
    (date(2025, 2, 28), 12, "mo", date(2024, 2, 28)),
    (date(2025, 3, 1), 12, "mo", date(2024, 3, 1)),
    (date(2024, 3, 31), 1, "mo", date(2024, 2, 29)),
])
def test_subtract(start, amount, unit, expected):
    assert dates.subtract(start, Decimal(amount), unit) == expected


def test_window_counts_both_ends_from_the_anchor():
    assert dates.window(date(2025, 1, 31), Decimal(2), Decimal(3), "mo") == (date(2025, 3, 31), date(2025, 4, 30))


def test_an_unknown_unit_is_a_knowledge_base_error():
    with pytest.raises(KnowledgeBaseError, match="'mon' is not a calendar duration unit"):
        dates.add(date(2025, 1, 1), Decimal(1), "mon")


def test_describe():
    assert dates.describe(Decimal("6.0"), "mo") == "6 months"
    assert dates.describe(Decimal(1), "d") == "1 day"


def test_the_module_examples_hold():
    assert doctest.testmod(dates).failed == 0

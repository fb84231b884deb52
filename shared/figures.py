"""Figures written as people write them: '$155,000', '$1,234.50', '51.6%', '18', 'n/a' for a figure with nothing
to compute from. One place, so the report, the CLI and the prompts agree."""

from __future__ import annotations

from decimal import Decimal

from shared.contracts import Fact


def money(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    text = f"${value:,.2f}"
    return text.removesuffix(".00")


def percent(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value}%"


def count(value: Decimal | int | None) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def fact_value(fact: Fact) -> str:
    if fact.unit == "usd":
        return money(fact.value)
    if fact.unit == "percent":
        return percent(fact.value)
    return count(fact.value)

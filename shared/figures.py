"""Figures written as people write them: '$155,000', '$1,234.50', '51.6%', '18', 'n/a' for a figure with nothing
to compute from. One place, so the report, the CLI and the prompts agree."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from shared.contracts import Fact


def share_pct(part: Decimal | int, whole: Decimal | int) -> Decimal | None:
    """part / whole as a percentage with one decimal, rounded half up (as people round); None when whole is 0. The
    one rule for every share: the facts, the fact catalogue and the report's coverage agree to the digit."""
    if not whole:
        return None
    return (Decimal(100) * Decimal(part) / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def money(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    text = f"${value:,.2f}"
    return text.removesuffix(".00")


def percent(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value}%"


def count(value: Decimal | int | None) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def counted(value: int | None, one: str, many: str | None = None) -> str:
    """A count and its noun, the noun singular for exactly one: '1 deal', '2 deals', '1,204 contacts', '1
    opportunity' (``many`` where adding an s is wrong: 'opportunities')."""
    return f"{count(value)} {one if value == 1 else many or one + 's'}"


def fact_value(fact: Fact) -> str:
    if fact.unit == "usd":
        return money(fact.value)
    if fact.unit == "percent":
        return percent(fact.value)
    return count(fact.value)

"""Figures as people write them (shared/figures.py): the one place the report, the CLI and the watcher agree."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.figures import count, counted, money, percent


@pytest.mark.parametrize(
    ("value", "one", "many", "written"),
    [(1, "deal", None, "1 deal"), (2, "deal", None, "2 deals"), (0, "deal", None, "0 deals"),
     (1_204, "contact", None, "1,204 contacts"), (1, "opportunity", "opportunities", "1 opportunity"),
     (3, "opportunity", "opportunities", "3 opportunities"), (1, "retry", "retries", "1 retry"),
     (None, "deal", None, "n/a deals")],
)
def test_a_count_takes_the_singular_for_exactly_one(value: int | None, one: str, many: str | None,
                                                    written: str) -> None:
    assert counted(value, one, many) == written


def test_money_percent_and_count() -> None:
    assert (money(Decimal("155000")), money(Decimal("1234.5")), money(None)) == ("$155,000", "$1,234.50", "n/a")
    assert (percent(Decimal("51.6")), percent(None), count(1_000_000)) == ("51.6%", "n/a", "1,000,000")

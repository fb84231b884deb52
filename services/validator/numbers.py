"""Numbers as people write them in prose, and whether one states a computed value.

'$1.2M', '35%', '3x', '4,200', 'half', 'twice': each is read with the precision it shows, so '1.2M' states
1,234,567 (to two significant figures) and '35%' states 34.6% (to a whole percent), while '1.3M' and '36%' do not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

NumberKind = Literal["plain", "percent", "multiple"]

_SCALES = {"k": Decimal(1000), "thousand": Decimal(1000), "m": Decimal(10**6), "mn": Decimal(10**6),
           "million": Decimal(10**6), "b": Decimal(10**9), "bn": Decimal(10**9), "billion": Decimal(10**9)}
_NUMBER = re.compile(
    r"(?<![\w.])(?P<currency>[$€£])?\s?(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:\s?(?P<scale>k|m|mn|b|bn|thousand|million|billion)\b)?"
    r"(?P<suffix>\s?%|\s?percent\b|x\b|\s?times\b)?",
    re.IGNORECASE,
)
_WORDS: dict[str, tuple[Decimal, NumberKind]] = {
    "half": (Decimal(50), "percent"), "a third": (Decimal("33.3"), "percent"),
    "one third": (Decimal("33.3"), "percent"),
    "a quarter": (Decimal(25), "percent"), "one quarter": (Decimal(25), "percent"),
    "two thirds": (Decimal("66.7"), "percent"), "three quarters": (Decimal(75), "percent"),
    "twice": (Decimal(2), "multiple"), "double": (Decimal(2), "multiple"), "doubled": (Decimal(2), "multiple"),
    "triple": (Decimal(3), "multiple"), "three times": (Decimal(3), "multiple"),
    "four times": (Decimal(4), "multiple"),
}
# 'one' and 'zero' are left out: 'one of the largest', 'no one' are not counts
_COUNT_WORDS = {word: Decimal(n) for n, word in enumerate([
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
]) if n >= 2}
_WORD = re.compile(r"\b(" + "|".join(sorted((*_WORDS, *_COUNT_WORDS), key=len, reverse=True)) + r")\b",
                   re.IGNORECASE)


@dataclass(frozen=True)
class StatedNumber:
    """A number in a text: its value in plain units, its kind, and the step it was rounded to."""

    text: str
    value: Decimal
    kind: NumberKind
    step: Decimal  # half of this is the rounding the writer may have applied
    currency: bool = False

    def states(self, actual: Decimal | float | int) -> bool:
        """Whether this number is ``actual`` as its writer rounded it (to the precision the text shows)."""
        exact = Decimal(str(actual))
        tolerance = self.step / 2
        return abs(exact - self.value) <= tolerance or _rounded(exact, self.step) == self.value


def _rounded(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step


def numbers_in(text: str) -> list[StatedNumber]:
    """Every number stated in ``text``, digits and words, with the precision each shows."""
    found: list[StatedNumber] = []
    for match in _NUMBER.finditer(text):
        digits = match.group("digits").replace(",", "")
        try:
            value = Decimal(digits)
        except InvalidOperation:  # pragma: no cover - the pattern admits only digits
            continue
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        step = Decimal(1).scaleb(-decimals)
        if decimals == 0 and "," not in match.group("digits") and value >= 1000 and not match.group("scale"):
            step = Decimal(1)  # '1250' is exact
        scale = _SCALES.get((match.group("scale") or "").lower(), Decimal(1))
        suffix = (match.group("suffix") or "").strip().lower()
        kind: NumberKind = "percent" if suffix in ("%", "percent") else "multiple" if suffix in ("x", "times") \
            else "plain"
        found.append(StatedNumber(match.group(0).strip(), value * scale, kind, step * scale,
                                  currency=bool(match.group("currency"))))
    for match in _WORD.finditer(text):
        word = match.group(1).lower()
        if word in _WORDS:
            value, kind = _WORDS[word]
            # 'half' is loose: it states 45% to 55% of a whole; 'twice' states 1.5x to 2.5x
            found.append(StatedNumber(match.group(0), value, kind, Decimal(10) if kind == "percent" else Decimal(1)))
        else:
            found.append(StatedNumber(match.group(0), _COUNT_WORDS[word], "plain", Decimal(1)))
    return found

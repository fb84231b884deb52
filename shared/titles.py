"""What a job title says unambiguously about rank, shared by the analyzer (as a hint to the model) and the
validator (as a rule). Everything a title does not settle is left to the models."""

from __future__ import annotations

import re
from typing import Literal

TitleRank = Literal["executive", "senior", "junior", "unknown"]

EXECUTIVE = re.compile(
    r"\b(ceo|cto|cfo|coo|cmo|cio|cro|chief|founder|co-?founder|owner|managing director)\b", re.IGNORECASE
)
PRESIDENT = re.compile(r"\bpresident\b", re.IGNORECASE)
VICE = re.compile(r"\b(vice|vp|svp|evp)\b", re.IGNORECASE)
SENIOR = re.compile(r"\b(vp|svp|evp|vice president|head|director)\b", re.IGNORECASE)
JUNIOR = re.compile(r"\b(intern|internship|trainee|apprentice|student)\b", re.IGNORECASE)


def title_rank(title: str) -> TitleRank | None:
    """The rank a title settles beyond doubt, or None when it takes judgement (a model's job)."""
    if not title.strip():
        return "unknown"
    if EXECUTIVE.search(title) or (PRESIDENT.search(title) and not VICE.search(title)):
        return "executive"
    if JUNIOR.search(title):
        return "junior"
    if SENIOR.search(title):
        return "senior"
    return None

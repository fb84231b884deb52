"""The domain's vocabulary, once: what a job title settles, what a stage is, what risk an open deal may carry.

Both sides read this one table. The analyzer turns it into hints for the model and labels in code whatever a title
settles completely; the validator turns the same table into rules. A hint and a rule can never disagree.

A title settles a *set* of allowed labels, not always one: "Software Engineer" allows mid or junior (judgement),
"Senior Software Engineer" allows senior only, "CEO" executive only. The model chooses within the set; the
validator rejects a label outside it. Grouping keys (``title_key``, ``company_key``, ``stage_key``) are documented
here and used everywhere a title, company or stage is counted or compared.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Literal, get_args

from shared.contracts import Department, RiskLevel, Seniority

ALL_DEPARTMENTS: tuple[Department, ...] = get_args(Department)
LADDER: tuple[Seniority, ...] = ("junior", "mid", "senior", "executive")
FUNCTIONS: frozenset[Department] = frozenset(ALL_DEPARTMENTS) - {"unknown", "executive"}

# --- grouping keys -----------------------------------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def text_key(value: str) -> str:
    """Unicode-normalised, case-folded, whitespace collapsed: 'Acme  Corp' and 'acme corp' are one key."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def company_key(name: str) -> str:
    """How companies are grouped: the text key without trailing dots or commas ('Acme Corp.' is 'acme corp')."""
    return text_key(name).rstrip(".,; ")


_ABBREVIATIONS = {
    "sr": "senior", "snr": "senior", "jr": "junior", "vp": "vice president", "svp": "senior vice president",
    "evp": "executive vice president", "avp": "assistant vice president", "mgr": "manager", "dir": "director",
    "eng": "engineering", "engr": "engineer", "exec": "executive", "ops": "operations", "rep": "representative",
    "cofounder": "co-founder", "mktg": "marketing", "acct": "account", "svc": "service",
}


@lru_cache(maxsize=65_536)
def title_key(title: str) -> str:
    """How titles are grouped: case-folded, punctuation to spaces ('-' inside a word kept), abbreviations spelt
    out (Sr. -> senior, VP -> vice president, Eng -> engineering …), whitespace collapsed."""
    words = re.sub(r"[^\w\s-]|(?<!\w)-|-(?!\w)", " ", text_key(title)).split()
    return " ".join(_ABBREVIATIONS.get(word, word) for word in words)


# --- what a title settles -------------------------------------------------------------------------------------

C_LEVEL = {"ceo", "cto", "cfo", "coo", "cmo", "cio", "cro", "chro", "ciso", "cdo", "cso", "cco"}
C_LEVEL_FUNCTION: dict[str, Department] = {
    "cto": "engineering", "cio": "engineering", "ciso": "engineering", "cfo": "finance", "coo": "operations",
    "cmo": "marketing", "cro": "sales", "chro": "hr",
}
TOP_ROLES = re.compile(r"\b(founder|co-founder|managing director|managing partner)\b|(?<!vice )\bpresident\b")
CHIEF_OFFICER = re.compile(r"\bchief (?!of staff)[\w ]*?officer\b")
OWNER = re.compile(r"^(co-)?owner\b|\bbusiness owner\b")
# Words that look like rank but are not (checked first; their own label applies where nothing else settles it).
FALSE_FRIENDS: tuple[tuple[str, frozenset[Seniority], frozenset[Department]], ...] = (
    ("chief of staff", frozenset({"senior"}), frozenset({"operations", "executive"})),
    ("executive assistant", frozenset({"junior", "mid"}), frozenset({"operations", "executive"})),
    ("assistant to", frozenset({"junior", "mid"}), frozenset({"operations", "executive"})),
    ("product owner", frozenset({"mid", "senior"}), frozenset({"product"})),
    ("account owner", frozenset({"mid"}), frozenset({"sales"})),
    ("process owner", frozenset({"mid", "senior"}), frozenset()),
    ("account executive", frozenset({"mid"}), frozenset({"sales"})),
)
MANAGEMENT = re.compile(r"\b(vice president|head|director|general manager)\b")
SENIOR_IC = re.compile(
    r"\b(senior|lead|principal|chief (?:architect|engineer|scientist)"
    r"|staff (?:engineer|software|scientist|developer|designer|architect|data|product|machine|security))\b"
)
JUNIOR = re.compile(r"\b(junior|intern|internship|trainee|apprentice|student|graduate|entry level)\b")
# Entry-level words: the title is junior unless it says more (a 'Senior Associate' is senior).
JUNIOR_OR_MID = re.compile(r"\b(assistant|associate|coordinator|representative|clerk|receptionist|agent)\b")
MANAGER = re.compile(r"\bmanager\b")
DEPARTMENT_WORDS: dict[Department, re.Pattern[str]] = {
    "engineering": re.compile(
        r"\b(engineer|engineering|developer|software|devops|sre|architect|qa|programmer|technology|technical"
        r"|it|infrastructure|platform|data|analytics)\b"),
    "sales": re.compile(r"\b(sales|account executive|account manager|account owner|business development|bdr|sdr"
                        r"|revenue)\b"),
    "marketing": re.compile(r"\b(marketing|brand|growth|content|communications|seo|demand generation)\b"),
    "finance": re.compile(r"\b(finance|financial|accountant|accounting|controller|treasurer|treasury|payroll"
                          r"|audit|auditor|bookkeeper|tax)\b"),
    "hr": re.compile(r"\b(hr|human resources|people|recruiter|recruiting|recruitment|talent)\b"),
    "operations": re.compile(r"\b(operations|office manager|logistics|supply chain|procurement|facilities"
                             r"|administrative|office administrator)\b"),
    "product": re.compile(r"\b(product|ux)\b"),
    "support": re.compile(r"\b(support|customer success|customer service|helpdesk|help desk|service desk)\b"),
    "legal": re.compile(r"\b(legal|counsel|lawyer|attorney|paralegal|compliance)\b"),
}


@dataclass(frozen=True)
class TitleRule:
    """The labels a title allows. A field with one allowed value is settled by the title; more is judgement."""

    key: str
    seniority: frozenset[Seniority]
    department: frozenset[Department]
    decision_maker: frozenset[bool]
    because: str  # the words that decided it, quoted in hints and in rejection reasons
    usual: Seniority | None = None  # where two seniorities are allowed, the one such a title usually has

    @property
    def settled(self) -> bool:
        return len(self.seniority) == 1 and len(self.department) == 1 and len(self.decision_maker) == 1

    def seniority_hint(self) -> str:
        """'mid (junior only if the title says entry level)', or the allowed values: the hint the model reads."""
        if self.usual is None or len(self.seniority) == 1:
            return describe(self.seniority)
        others = describe(self.seniority - {self.usual})
        return f"{self.usual} ({others} only if the title says so)"


def describe(values: frozenset[str] | frozenset[bool]) -> str:
    """'senior' or 'junior or mid', for hints and reasons."""
    words = sorted(str(v).lower() for v in values)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


# An export repeats a few hundred titles over its rows: each is read once (the rule is immutable, so sharing it is
# safe). The same holds for stages.
@lru_cache(maxsize=65_536)
def title_rule(title: str) -> TitleRule:
    """What a title allows. Seniority: a title without a rank word is mid (an experienced professional); an
    entry-level word (Assistant, Associate, Coordinator, Representative …) makes it junior or mid; a manager is mid
    or senior. Decision makers are the people who sign: executives and management (VP, Head, Director, General
    Manager) always; everyone else never, managers included (they influence a purchase, their director decides)."""
    key = title_key(title)
    if not key:
        return TitleRule(key, frozenset({"unknown"}), frozenset({"unknown"}), frozenset({False}), "a blank title")
    masked, friend = key, None
    for phrase, seniority, departments in FALSE_FRIENDS:
        if re.search(rf"\b{phrase}\b", masked):
            masked = re.sub(rf"\b{phrase}\b", " ", masked)
            friend = (phrase, seniority, departments)
            break
    tokens = set(masked.split())
    assistant = "assistant" in key.split()
    departments = frozenset(d for d, words in DEPARTMENT_WORDS.items() if words.search(key))
    c_level = sorted(tokens & C_LEVEL)
    top = None if assistant else (
        c_level[0] if c_level else
        (m.group(0) if (m := CHIEF_OFFICER.search(masked) or TOP_ROLES.search(masked) or OWNER.search(masked))
         else None))
    if top is not None:
        functions: set[Department] = {C_LEVEL_FUNCTION[c] for c in c_level if c in C_LEVEL_FUNCTION}
        if CHIEF_OFFICER.search(masked) and "executive officer" not in masked:
            functions |= departments
        return TitleRule(key, frozenset({"executive"}), frozenset({*functions, "executive"}), frozenset({True}),
                         f"'{top}'")
    if friend is not None and not (MANAGEMENT.search(masked) or SENIOR_IC.search(masked)):
        phrase, seniority, friend_departments = friend
        allowed_departments = friend_departments | departments if friend_departments else departments
        return TitleRule(key, seniority, allowed_departments or FUNCTIONS, frozenset({False}),
                         f"'{phrase}' (not an executive)", usual=min(seniority, key=LADDER.index))
    department = departments or FUNCTIONS
    if m := MANAGEMENT.search(masked):
        return TitleRule(key, frozenset({"senior"}), department, frozenset({True}), f"'{m.group(0)}'")
    if m := SENIOR_IC.search(masked):
        return TitleRule(key, frozenset({"senior"}), department, frozenset({False}), f"'{m.group(0)}'")
    if m := JUNIOR.search(masked):
        return TitleRule(key, frozenset({"junior"}), department, frozenset({False}), f"'{m.group(0)}'")
    if m := JUNIOR_OR_MID.search(masked):
        return TitleRule(key, frozenset({"junior", "mid"}), department, frozenset({False}), f"'{m.group(0)}'",
                         usual="junior")
    if MANAGER.search(masked):
        return TitleRule(key, frozenset({"mid", "senior"}), department, frozenset({False}), "'manager'",
                         usual="mid")
    return TitleRule(key, frozenset({"mid"}), department, frozenset({False}), "no rank word: an experienced "
                     "professional")


# --- stages and the risk of an open deal ---------------------------------------------------------------------

Stage = Literal["prospecting", "qualification", "proposal", "negotiation", "closed won", "closed lost"]
STAGE_NAMES: dict[Stage, str] = {
    "prospecting": "Prospecting", "qualification": "Qualification", "proposal": "Proposal",
    "negotiation": "Negotiation", "closed won": "Closed Won", "closed lost": "Closed Lost",
}
_STAGE_NAMES_BY_KEY: dict[str, str] = {str(key): name for key, name in STAGE_NAMES.items()}
_STAGE_ALIASES: dict[str, Stage] = {
    "lead": "prospecting", "new": "prospecting", "discovery": "qualification", "qualified": "qualification",
    "proposal sent": "proposal", "quote": "proposal", "won": "closed won", "closed-won": "closed won",
    "closedwon": "closed won", "lost": "closed lost", "closed-lost": "closed lost", "closedlost": "closed lost",
}
OPEN_STAGES: tuple[Stage, ...] = ("prospecting", "qualification", "proposal", "negotiation")


@lru_cache(maxsize=4_096)
def stage_key(stage: str) -> str:
    """How stages are grouped: the canonical stage for a known spelling ('closed won', 'Closed-Won' and 'won' are
    'closed won'), else the text key of what was written."""
    key = text_key(stage)
    return _STAGE_ALIASES.get(key, key)


def stage_name(stage: str) -> str:
    """The canonical display name of a stage ('Closed Won'), or the stage as written when it is not a known one."""
    return _STAGE_NAMES_BY_KEY.get(stage_key(stage), stage.strip())


AmountBand = Literal["small", "medium", "large"]
BAND_LIMITS = (Decimal(20_000), Decimal(100_000))  # small below 20,000; large from 100,000


def amount_band(amount: Decimal) -> AmountBand:
    return "small" if amount < BAND_LIMITS[0] else "large" if amount >= BAND_LIMITS[1] else "medium"


# The risk an open deal may carry, by stage and amount band: early stages with much at stake are risky, a small
# deal in negotiation is not.
RISK_ALLOWED: dict[tuple[str, AmountBand], frozenset[RiskLevel]] = {
    ("prospecting", "small"): frozenset({"low", "medium"}),
    ("prospecting", "medium"): frozenset({"medium", "high"}),
    ("prospecting", "large"): frozenset({"high"}),
    ("qualification", "small"): frozenset({"low", "medium"}),
    ("qualification", "medium"): frozenset({"medium", "high"}),
    ("qualification", "large"): frozenset({"high"}),
    ("proposal", "small"): frozenset({"low", "medium"}),
    ("proposal", "medium"): frozenset({"medium"}),
    ("proposal", "large"): frozenset({"medium", "high"}),
    ("negotiation", "small"): frozenset({"low"}),
    ("negotiation", "medium"): frozenset({"low", "medium"}),
    ("negotiation", "large"): frozenset({"medium"}),
}


ANY_RISK: frozenset[RiskLevel] = frozenset(get_args(RiskLevel))


def risk_allowed(stage: str, amount: Decimal) -> frozenset[RiskLevel]:
    """The risk levels an open deal may carry; a stage this table does not know allows any."""
    return RISK_ALLOWED.get((stage_key(stage), amount_band(amount)), ANY_RISK)


CLOSING_ACTION = re.compile(
    r"\b(close|closing|sign|signature|negotiat\w*|contract|proposal|push|discount|demo|follow[- ]?up)\b",
    re.IGNORECASE,
)
NO_ACTION = re.compile(r"^\s*(none|n/?a|nothing|-)?\s*\.?\s*$", re.IGNORECASE)

"""The deterministic layer for insights: every claim must be proved by the facts it cites, or it is rejected.

It fails closed. Every number in an insight's text must be the value of a fact it cites (as its writer rounded
it), or a share or multiple recomputed from two of them; every company, stage or deal it names must be what one
of its facts is about; a superlative needs a ranking fact, about the entity the text crowns. A number or a name
bound to nothing rejects the insight, and the reason says which fact would have supported it, if any does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import permutations

import polars as pl
from pydantic_core import from_json

from services.validator.numbers import StatedNumber, numbers_in
from shared.contracts import CatalogueFacts, Fact, FactCatalogue, FailedCheck, Insight, InsightsOutput, NamedEntity
from shared.figures import fact_value
from shared.taxonomy import text_key

SUPERLATIVE = re.compile(
    r"\b(most|largest|biggest|highest|top|leading|leads|lowest|least|fewest|smallest|greatest|best|worst)\b",
    re.IGNORECASE,
)
SHARE = re.compile(r"\b(share|proportion|percentage|fraction)\b", re.IGNORECASE)
SUGGESTIONS = 2
UNIT_WORDS = {"count": "a count, not money", "usd": "money", "percent": "a percentage"}


def _pattern(entity: NamedEntity) -> re.Pattern[str]:
    """How a text names an entity: its name as a whole phrase; a deal whose id is a bare number only after a word
    that says it is one ('deal 5003', 'opportunity #12'), so that '3 contacts' does not name deal 3."""
    return _name_pattern(text_key(entity.name), entity.kind == "deal" and entity.name.isdigit())


@lru_cache(maxsize=4_096)
def _name_pattern(key: str, bare_number: bool) -> re.Pattern[str]:
    name = re.escape(key)
    if bare_number:
        return re.compile(rf"\b(?:deal|opportunity|opp|id|no\.?|#)\s*#?\s*{name}(?![\w-])")
    return re.compile(rf"(?<![\w-]){name}(?![\w-])")


# the entities' columns in a catalogue's JSON (FactCatalogue.entities)
ENTITY_COLUMNS = {"kind": pl.String, "name": pl.String, "refers_to": pl.String}
# what str.split() splits on, among ASCII characters
_ASCII_SPACE = r"[ \t\n\r\x0b\x0c\x1c-\x1f]+"
_NOT_ASCII = r"[^\x00-\x7f]"


class EntityIndex:
    """A catalogue's names, longest first (ties in the catalogue's order), each with its key, made once for all the
    insights of a verdict. A catalogue names every deal of the export (100,000 names at 50,000 deals): the names
    are columns, keyed by polars where ``text_key`` is plain lower-casing and collapsing ASCII white space (an
    ASCII name) and by ``text_key`` itself otherwise, and a text's candidates are the keys it contains, found by
    polars. As models keyed one by one, reading and indexing them took 0.4 s of the insights gate at 50,000 deals;
    the places and the keys are the same (tests/test_claims.py)."""

    def __init__(self, entities: pl.DataFrame) -> None:
        named = entities.select(*ENTITY_COLUMNS).filter(pl.col("name").fill_null("") != "")
        names = named.get_column("name")
        keys = names.str.to_lowercase().str.replace_all(_ASCII_SPACE, " ").str.strip_chars(" ")
        other = names.str.contains(_NOT_ASCII).arg_true()
        if other.len():
            slow = text_key.__wrapped__  # once each: through the cache, 100,000 names would only evict one another
            keys = keys.scatter(other, [slow(name) for name in names.gather(other).to_list()])
        self.named = (named.with_columns(key=keys, length=names.str.len_chars()).with_row_index("place")
                      .sort("length", descending=True, maintain_order=True).drop("length", "place"))

    @classmethod
    def of(cls, entities: Sequence[NamedEntity]) -> EntityIndex:
        return cls(pl.DataFrame([e.model_dump() for e in entities], schema=ENTITY_COLUMNS))

    @classmethod
    def read(cls, catalogue: bytes) -> EntityIndex:
        """The entities of a catalogue's JSON (a ``FactCatalogue``), read as columns: no model an entity. (Polars'
        own JSON reader took as long and twice the memory: 80 MB at its peak against 32 at 50,000 deals.)"""
        entities = from_json(catalogue)["entities"]
        return cls(pl.DataFrame({name: [e[name] for e in entities] for name in ENTITY_COLUMNS}, schema=ENTITY_COLUMNS))

    @property
    def keys(self) -> list[str]:
        return self.named.get_column("key").to_list()

    def contained(self, text: str, start: int = 0) -> Iterator[tuple[int, NamedEntity]]:
        """The entities from place ``start`` on whose key ``text`` contains, in order, with their places."""
        found = self.named.with_row_index("place").slice(start).filter(
            pl.lit(text).str.contains(pl.col("key"), literal=True))
        for row in found.iter_rows(named=True):
            yield row["place"], NamedEntity(kind=row["kind"], name=row["name"], refers_to=row["refers_to"])


def entities_in(text: str, index: EntityIndex) -> list[NamedEntity]:
    """The entities a text names, longest names first, each at most once (a name inside a longer one that was
    found is not counted again: 'Renewal 19' does not also name the stage 'Renewal')."""
    found: list[NamedEntity] = []
    remaining = text_key(text)
    start = 0
    while True:
        # a catalogue names every company and deal of the export: most are not even a substring of the text
        for place, entity in index.contained(remaining, start):
            pattern = _pattern(entity)
            if pattern.search(remaining):
                found.append(entity)
                remaining = pattern.sub(" ", remaining)
                start = place + 1  # the text changed: the names after this one are looked for in what is left
                break
        else:
            return found


def without_names(text: str, named: Sequence[NamedEntity]) -> str:
    """The text with the entities it names taken out, so that 'Renewal 19' or deal 5003 is not read as a number."""
    stripped = text_key(text)
    for entity in sorted(named, key=lambda e: -len(e.name)):
        stripped = _pattern(entity).sub(" ", stripped)
    return stripped


def _unit_fits(number: StatedNumber, fact: Fact) -> bool:
    if number.kind == "percent":
        return fact.unit == "percent"
    if number.kind == "multiple":
        return False
    return fact.unit == "usd" if number.currency else fact.unit in ("count", "usd")


def bound(number: StatedNumber, cited: Sequence[Fact]) -> bool:
    """Whether the cited facts show this number: one of them states it, or, for a share or a multiple, it is
    recomputed from two of them in the same unit."""
    if any(_unit_fits(number, fact) and number.states(fact.value) for fact in cited):
        return True
    if number.kind in ("percent", "multiple"):
        for part, whole in permutations(cited, 2):
            if part.unit != whole.unit or part.unit == "percent" or not whole.value:
                continue
            ratio = part.value / whole.value
            if number.states(100 * ratio if number.kind == "percent" else ratio):
                return True
    return False


def _supporting(number: StatedNumber, every: Sequence[Fact]) -> list[str]:
    return [f.id for f in every if _unit_fits(number, f) and number.states(f.value)][:SUGGESTIONS]


def _about(entity: NamedEntity, every: Sequence[Fact]) -> list[str]:
    key = text_key(entity.refers_to)
    matching = [f.id for f in every if f.entity is not None and text_key(f.entity) == key]
    return sorted(matching, key=lambda i: (not i.startswith("rank:"), i))[:SUGGESTIONS]


def check_insight(number: int, insight: Insight, every: Sequence[Fact], facts: dict[str, Fact],
                  names: EntityIndex) -> list[FailedCheck]:
    where = f"insight {number}"
    failures: list[FailedCheck] = []

    def fail(check: str, reason: str) -> None:
        failures.append(FailedCheck(check=check, record_id=str(number), reason=f"{where} {reason}"[:300]))

    cited = [facts[i] for i in insight.facts if i in facts]
    for unknown in (i for i in insight.facts if i not in facts):
        fail("unknown_fact", f"cites {unknown!r}, which is not a fact; cite ids from FACTS")
    if not insight.facts:
        fail("no_facts", "cites no fact; every insight rests on at least one")
    text = f"{insight.title}. {insight.text}"
    about = {text_key(f.entity) for f in cited if f.entity}
    named = entities_in(text, names)
    for entity in named:
        if text_key(entity.refers_to) not in about:
            hint = _about(entity, every)
            fail("unbound_entity", f"names {entity.kind} {entity.name!r}, but none of its facts is about it"
                 + (f"; cite {' or '.join(hint)}" if hint else "; no fact is about it, leave it out"))
    if insight.entity and text_key(insight.entity) not in about:
        fail("unbound_entity", f"is about {insight.entity!r}, but none of its facts is")
    for stated in numbers_in(without_names(text, named)):
        if not bound(stated, cited):
            unit_slip = next((f for f in cited if stated.states(f.value)), None)
            hint = _supporting(stated, every)
            if unit_slip is not None:
                fail("unbound_number", f"states {stated.text}, but {unit_slip.id} is {fact_value(unit_slip)} "
                     f"({UNIT_WORDS[unit_slip.unit]}): write it as {fact_value(unit_slip)}")
            else:
                fail("unbound_number", f"states {stated.text}, which none of its facts shows"
                     + (f"; {' or '.join(hint)} would" if hint else "; no fact shows it, leave it out"))
    superlative = SUPERLATIVE.search(text)
    ranks = [f for f in cited if f.id.startswith("rank:")]
    if (superlative or insight.kind == "ranking") and not ranks:
        word = superlative.group(0) if superlative else "a ranking"
        fail("unsupported_superlative", f"claims {word!r} but cites no rank: fact; cite the ranking that shows it")
    elif superlative and ranks:
        crowned = {text_key(f.entity) for f in ranks if f.entity}
        contenders = [e for e in named if e.kind in {f.entity_kind for f in ranks}]
        if contenders and not any(text_key(e.refers_to) in crowned for e in contenders):
            fail("superlative_entity", f"says {contenders[0].name!r} is {superlative.group(0)!r}, but its ranking "
                 f"shows {', '.join(sorted(f.entity or '' for f in ranks))}")
    if insight.kind == "comparison" and len(cited) < 2:
        fail("comparison_needs_two_facts", "is a comparison but cites fewer than two facts")
    if (insight.kind == "share" or SHARE.search(text)) and not any(n.kind == "percent" for n in numbers_in(text)):
        fail("share_without_percent", "speaks of a share but states no percentage; cite a share fact or the two "
             "facts it divides, and give the percentage")
    return failures


def check_insights(catalogue: FactCatalogue | CatalogueFacts, output: InsightsOutput,
                   names: EntityIndex | None = None) -> list[FailedCheck]:
    """The insights checked against a catalogue's facts and the names of its entities (``names``, or else the
    catalogue's own entities)."""
    if names is None:
        assert isinstance(catalogue, FactCatalogue), "a catalogue read for its facts alone needs its names apart"
        names = EntityIndex.of(catalogue.entities)
    facts = {fact.id: fact for fact in catalogue.facts}
    failures = [f for n, insight in enumerate(output.insights, 1)
                for f in check_insight(n, insight, catalogue.facts, facts, names)]
    titles = [text_key(i.title) for i in output.insights]
    for n, title in enumerate(titles, 1):
        if title in titles[:n - 1]:
            failures.append(FailedCheck(check="duplicate_insight", record_id=str(n),
                                        reason=f"insight {n} repeats the title of an earlier one; say something new"))
    return failures

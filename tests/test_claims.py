"""Insights as proof-carrying claims: the fact catalogue, and each claim check with a true claim and its false
twins (a wrong number, another unit, a wrong entity, a superlative without its ranking, a share that does not add
up, a name no fact is about)."""

from __future__ import annotations

import random
from decimal import Decimal

import polars as pl
import pytest

from services.analyzer.catalogue import (
    BuiltCatalogue,
    CatalogueBuilder,
    build_catalogue,
    catalogue_digest,
    deal_entities,
)
from services.validator.claims import EntityIndex, _pattern, check_insights, entities_in
from services.validator.numbers import numbers_in
from shared.contracts import (
    ClaimKind,
    ContactFacts,
    Fact,
    FactCatalogue,
    Facts,
    Insight,
    InsightsOutput,
    NamedEntity,
    OpportunityFacts,
    StageItem,
)
from shared.taxonomy import text_key

FACTS = Facts(
    contacts=ContactFacts(total_contacts=6, unique_companies=2, top_company="Acme Corp", top_company_contacts=4,
                          company_distribution=[], unique_titles=5, missing_titles=0, duplicate_names=0),
    opportunities=OpportunityFacts(
        total_opportunities=4, total_value=Decimal("1234567.00"), open_opportunities=3,
        open_pipeline_value=Decimal("1154567.00"), won_count=1, won_value=Decimal("80000.00"), lost_count=0,
        lost_value=Decimal("0.00"), win_rate_by_value_pct=Decimal("100.0"), win_rate_by_count_pct=Decimal("100.0"),
        average_deal_value=Decimal("308641.75"),
        stage_breakdown=[StageItem(stage="Prospecting", count=2, value=Decimal("1104567.00")),
                         StageItem(stage="Closed Won", count=1, value=Decimal("80000.00")),
                         StageItem(stage="Negotiation", count=1, value=Decimal("50000.00"))],
        orphan_opportunities=0, orphan_opportunity_ids=[]),
)


@pytest.fixture(scope="module")
def catalogue() -> FactCatalogue:
    contacts = pl.DataFrame({"id": ["1", "2", "3", "4", "5", "6"],
                             "company": ["Acme Corp", "Acme Corp", "acme corp", "Acme Corp", "Globex", "Globex"],
                             "title": ["CEO", "VP Sales", "Engineer", "Engineer", "CTO", "Engineer"]})
    labels = pl.DataFrame({"id": ["1", "2", "3", "4", "5", "6"],
                           "seniority": ["executive", "senior", "mid", "mid", "executive", "mid"],
                           "department": ["executive", "sales", "engineering", "engineering", "engineering",
                                          "engineering"],
                           "decision_maker": [True, True, False, False, True, False]})
    deals = pl.DataFrame({"id": ["5001", "5002", "5003", "5004"],
                          "name": ["Renewal 19", "Pilot 7", "Platform Deal", "Starter 2"],
                          "stage": ["Prospecting", "prospecting", "Closed Won", "Negotiation"],
                          "amount": [Decimal("1000000.00"), Decimal("104567.00"), Decimal("80000.00"),
                                     Decimal("50000.00")],
                          "contact_id": ["1", "5", "2", "3"]})
    risks = pl.DataFrame({"id": ["5001", "5002", "5003", "5004"], "risk": ["high", "high", "low", "medium"]})
    built, shown = build_catalogue(FACTS, contacts, deals, labels, risks)
    assert set(shown) <= {f.id for f in built.facts}
    return built.model()


def fact(catalogue: FactCatalogue, fact_id: str) -> Decimal:
    [found] = [f for f in catalogue.facts if f.id == fact_id]
    return found.value


def test_the_catalogue_computes_per_company_per_stage_and_rankings(catalogue: FactCatalogue) -> None:
    assert fact(catalogue, "company:acme corp:contacts") == 4  # 'acme corp' and 'Acme Corp' are one company
    assert fact(catalogue, "company:acme corp:decision_makers") == 2
    # open pipeline through the contact join: 5001 (Acme) and 5004 (Acme) are open; 5002 is Globex's
    assert fact(catalogue, "company:acme corp:open_pipeline_value") == Decimal("1050000.00")
    assert fact(catalogue, "company:globex:open_pipeline_value") == Decimal("104567.00")
    assert fact(catalogue, "company:acme corp:share_of_open_pipeline") == Decimal("90.9")
    assert [f.entity for f in catalogue.facts if f.id == "rank:companies_by_open_pipeline:1"] == ["Acme Corp"]
    assert fact(catalogue, "stage:prospecting:deals") == 2
    assert fact(catalogue, "risk:high:value") == Decimal("1104567.00")
    assert fact(catalogue, "win_rate_by_value") == Decimal("100.0")


def test_a_tie_crowns_nobody() -> None:
    builder = CatalogueBuilder()
    builder.ranking("companies_by_contacts", "company by contacts",
                    [("Acme", Decimal(3)), ("Globex", Decimal(3)), ("Initech", Decimal(1))], "count", "company")
    assert [(f.id, f.entity) for f in builder.facts.values()] == [("rank:companies_by_contacts:3", "Initech")]
    builder.ranking("stages_by_deals", "stage by deals", [("Proposal", Decimal(4)), ("Negotiation", Decimal(3))],
                    "count", "stage")
    assert builder.get("rank:stages_by_deals:1") is not None and builder.get("rank:stages_by_deals:2") is not None



def with_fillers(insight: Insight) -> InsightsOutput:
    """``insight`` first, then two true claims: an output of the minimum size whose only faults are its own."""
    return InsightsOutput(insights=[insight, *(
        Insight(title=title, text="Contacts are spread.", kind="total", facts=["contacts"])
        for title in ("Spread", "Reach"))])


def checks_of(catalogue: FactCatalogue, text: str, facts: list[str], kind: ClaimKind = "total",
              entity: str | None = None) -> list[str]:
    insight = Insight(title="Finding", text=text, kind=kind, facts=facts, entity=entity)
    return [f.check for f in check_insights(catalogue, with_fillers(insight))]


@pytest.mark.parametrize(
    ("text", "facts", "kind", "expected"),
    [
        # a total, as written and rounded the ways people round
        ("The open pipeline is $1,154,567.", ["open_pipeline_value"], "total", []),
        ("The open pipeline is $1.15M.", ["open_pipeline_value"], "total", []),
        ("The open pipeline is about $1.2M.", ["open_pipeline_value"], "total", []),
        ("The open pipeline is $1.3M.", ["open_pipeline_value"], "total", ["unbound_number"]),  # wrong number
        ("The open pipeline is 1,154,567%.", ["open_pipeline_value"], "total", ["unbound_number"]),  # another unit
        ("The win rate by value is 100%.", ["win_rate_by_value"], "total", []),
        ("The win rate by value is $100.", ["win_rate_by_value"], "total", ["unbound_number"]),  # another unit
        ("There are 6 contacts.", ["contacts"], "total", []),
        ("There are six contacts.", ["contacts"], "total", []),
        ("There are 7 contacts.", ["contacts"], "total", ["unbound_number"]),
        ("There are seven contacts.", ["contacts"], "total", ["unbound_number"]),
        ("There are 6 contacts at 2 companies.", ["contacts"], "total", ["unbound_number"]),  # 2 is not cited
        ("There are 6 contacts at 2 companies.", ["contacts", "companies"], "comparison", []),
        # a ranking: the superlative needs the ranking fact, about the company the text crowns
        ("Acme Corp has the largest open pipeline.", ["rank:companies_by_open_pipeline:1"], "ranking", []),
        ("Acme Corp has the largest open pipeline.", ["company:acme corp:open_pipeline_value"], "ranking",
         ["unsupported_superlative"]),
        ("Globex has the largest open pipeline.", ["rank:companies_by_open_pipeline:1",
                                                   "company:globex:open_pipeline_value"], "ranking",
         ["superlative_entity"]),
        ("Globex has the largest open pipeline.", ["rank:companies_by_open_pipeline:1"], "ranking",
         ["unbound_entity", "superlative_entity"]),
        # a share: stated by a share fact, or recomputed from its parts
        ("Acme Corp holds 90.9% of the open pipeline.", ["company:acme corp:share_of_open_pipeline"], "share", []),
        ("Acme Corp holds 91% of the open pipeline.", ["company:acme corp:open_pipeline_value",
                                                       "open_pipeline_value"], "share", []),
        ("Acme Corp holds 95% of the open pipeline.", ["company:acme corp:open_pipeline_value",
                                                       "open_pipeline_value"], "share", ["unbound_number"]),
        ("Acme Corp holds most of the open pipeline.", ["company:acme corp:share_of_open_pipeline"], "share",
         ["unsupported_superlative", "share_without_percent"]),
        # a value called a share (what the demo's model once wrote), beside the same value called what it is
        ("Acme Corp's share of the open pipeline is $1,050,000.", ["company:acme corp:open_pipeline_value"],
         "total", ["share_without_percent"]),
        ("Acme Corp's open pipeline is $1,050,000.", ["company:acme corp:open_pipeline_value"], "total", []),
        # names: every company, stage or deal named must be what a cited fact is about
        ("Deal 5001 Renewal 19 carries $1,000,000 at high risk.", ["deal:5001:amount"], "total", []),
        ("Deal 5001 Renewal 19 carries $1,000,000 at high risk.", ["risk:high:value"], "total",
         ["unbound_entity", "unbound_entity", "unbound_number"]),
        ("Deal 5002 carries $1,000,000 at high risk.", ["deal:5001:amount"], "total", ["unbound_entity"]),
        ("Opportunity #5002 carries $1,000,000.", ["deal:5001:amount"], "total", ["unbound_entity"]),
        ("There are 5001 contacts.", ["contacts"], "total", ["unbound_number"]),  # a bare number is a number
        ("Prospecting holds $1.1M.", ["stage:prospecting:value"], "total", []),
        ("Negotiation holds $1.1M.", ["stage:prospecting:value"], "total", ["unbound_entity"]),
        ("Litware Group has 5 titles.", ["titles"], "total", []),  # not a company in this export: not a name
        ("Globex has 5 distinct titles.", ["titles"], "total", ["unbound_entity"]),
    ],
)
def test_claims(catalogue: FactCatalogue, text: str, facts: list[str], kind: ClaimKind,
                expected: list[str]) -> None:
    assert checks_of(catalogue, text, facts, kind) == expected


def test_a_reason_names_the_fact_that_would_support_the_number(catalogue: FactCatalogue) -> None:
    insight = Insight(title="Titles", text="Acme Corp has 5 titles.", kind="total",
                      facts=["company:acme corp:contacts"], entity="Acme Corp")
    [failure] = check_insights(catalogue, with_fillers(insight))
    assert failure.reason == "insight 1 states 5, which none of its facts shows; titles would"


def test_a_count_written_as_money_is_told_its_unit(catalogue: FactCatalogue) -> None:
    insight = Insight(title="Contacts", text="Acme Corp has $4 of contacts.", kind="total",
                      facts=["company:acme corp:contacts"], entity="Acme Corp")
    [failure] = check_insights(catalogue, with_fillers(insight))
    assert failure.reason == ("insight 1 states $4, but company:acme corp:contacts is 4 (a count, not money): write "
                              "it as 4")


def test_unknown_facts_and_repeated_titles_are_rejected(catalogue: FactCatalogue) -> None:
    insight = Insight(title="Churn", text="Churn is low.", kind="total", facts=["churn_rate"])
    failures = check_insights(catalogue, InsightsOutput(insights=[insight, insight, insight]))
    assert [f.check for f in failures][:2] == ["unknown_fact", "unknown_fact"]
    assert "duplicate_insight" in [f.check for f in failures]


@pytest.mark.parametrize(
    ("text", "value", "stated"),
    [("$1.2M", "1234567", True), ("$1.3M", "1234567", False), ("35%", "34.6", True), ("36%", "34.6", False),
     ("4,200", "4200", True), ("4,200", "4201", False), ("$155k", "155000", True), ("half", "48", True),
     ("half", "40", False), ("3x", "3.04", True), ("18.0", "18", True), ("18.0", "18.2", False)],
)
def test_numbers_as_people_write_them(text: str, value: str, stated: bool) -> None:
    [number] = numbers_in(text)
    assert number.states(Decimal(value)) is stated


def test_the_catalogue_digest_ignores_the_order_of_facts_and_sees_any_change(catalogue: FactCatalogue) -> None:
    """The insights step's reuse key: the same content in another order of facts (group-bys keep none) is the same
    digest; one fact's value or one entity's referent changed is another."""
    digest = catalogue_digest(catalogue)
    assert catalogue_digest(catalogue.model_copy(update={"facts": catalogue.facts[::-1]})) == digest
    first = catalogue.facts[0]
    changed = [first.model_copy(update={"value": first.value + 1}), *catalogue.facts[1:]]
    assert catalogue_digest(catalogue.model_copy(update={"facts": changed})) != digest
    deal = next(i for i, e in enumerate(catalogue.entities) if e.kind == "deal")
    renamed = list(catalogue.entities)
    renamed[deal] = renamed[deal].model_copy(update={"refers_to": "5999"})
    assert catalogue_digest(catalogue.model_copy(update={"entities": renamed})) != digest


def test_a_ranking_takes_the_places_a_full_sort_gives_them() -> None:
    """Rankings sort only the rows that can take a place; on random rows (ties, zeros, spellings of one name) the
    places and the ties left out are those of every row sorted, largest first, names in their canonical order."""
    rng = random.Random(7)
    for _ in range(3000):
        names = ["Acme", "acme", "Beta", "b", "Core"]
        rows = [(rng.choice(names) + str(rng.randrange(2)), Decimal(rng.randrange(-1, 5)))
                for _ in range(rng.randrange(0, 10))]
        built = CatalogueBuilder()
        built.ranking("r", "r", rows, "count", "company")
        ordered = sorted((r for r in rows if r[1] > 0), key=lambda r: (-r[1], text_key(r[0])))
        values = [value for _entity, value in ordered]
        expected = {f"rank:r:{place}": entity for place, (entity, value) in enumerate(ordered[:3], start=1)
                    if values.count(value) == 1}
        assert {fact_id: fact.entity for fact_id, fact in built.facts.items()} == expected, rows


def test_the_open_deals_ranking_is_that_of_every_open_deal() -> None:
    """The catalogue ranks open deals by amount from the deals as large as the third largest only; on random deals
    (ties at and above the cut, zeros, no amount, closed deals larger than any open one) its places and the ties it
    leaves out are those of a ranking over every open deal."""
    rng = random.Random(11)
    stages = ["Prospecting", "Negotiation", "Closed Won", "Closed Lost"]
    contacts = pl.DataFrame({"id": ["1"], "company": ["Acme"], "title": ["CEO"]})
    labels = pl.DataFrame({"id": ["1"], "seniority": ["executive"], "department": ["executive"],
                           "decision_maker": [True]})
    ranked_at_all = 0
    for _ in range(300):
        size = rng.randrange(0, 12)
        amounts = [None if rng.random() < 0.1 else Decimal(rng.choice([0, 1, 2, 3, 5, 8])) * 1000 +
                   Decimal(rng.choice(["0", "0.01"])) for _ in range(size)]
        deals = pl.DataFrame({"id": [f"D{i}" for i in range(size)], "name": [f"Deal {i}" for i in range(size)],
                              "stage": [rng.choice(stages) for _ in range(size)], "amount": amounts,
                              "contact_id": ["1"] * size},
                             schema={"id": pl.String, "name": pl.String, "stage": pl.String,
                                     "amount": pl.Decimal(20, 2), "contact_id": pl.String})
        risks = pl.DataFrame({"id": [f"D{i}" for i in range(size)], "risk": ["low"] * size},
                             schema={"id": pl.String, "risk": pl.String})
        built, _shown = build_catalogue(FACTS, contacts, deals, labels, risks)
        got = {f.id: (f.entity, f.value) for f in built.facts if f.id.startswith("rank:open_deals_by_amount:")}
        every = CatalogueBuilder()
        every.ranking("open_deals_by_amount", "open deal by amount",
                      [(f"D{i}", Decimal(str(a or 0)).quantize(Decimal("0.01"))) for i, a in enumerate(amounts)
                       if deals.get_column("stage")[i] in ("Prospecting", "Negotiation")], "usd", "deal")
        assert got == {fact_id: (f.entity, f.value) for fact_id, f in every.facts.items()}, deals
        ranked_at_all += bool(got)
    assert ranked_at_all > 100  # the random deals rank something most of the time


def test_the_catalogue_as_built_is_written_as_its_model_writes_it() -> None:
    """Aggregation writes the deals' entities (two a deal: its id, and its name when it has one) from columns, not
    as a model each: the file is byte for byte what ``FactCatalogue`` writes with a model an entity (names with
    quotes, backslashes, control characters, line separators and characters outside the BMP included), and the
    digest is the same (the insights step's reuse key does not change with the way it is computed)."""
    rng = random.Random(5)
    alphabet = [*map(chr, range(0x250)), "\u2028", "\u2029", "\ufeff", "\U0001f600", "\U0010ffff"]
    names: list[str | None] = ["".join(rng.choice(alphabet) for _ in range(1, rng.randrange(2, 12)))
                               for _ in range(400)]
    names[3], names[7] = None, ""  # no name: the deal is named by its id alone
    deals = pl.DataFrame({"id": [f"D{i}" for i in range(len(names))], "name": names})
    named = [NamedEntity(kind="company", name="Acme", refers_to="Acme"),
             NamedEntity(kind="stage", name="won", refers_to="Closed Won")]
    by_deal: list[NamedEntity] = []
    for deal_id, name in zip(deals.get_column("id"), names, strict=True):
        by_deal.append(NamedEntity(kind="deal", name=deal_id, refers_to=deal_id))
        if name:
            by_deal.append(NamedEntity(kind="deal", name=name, refers_to=deal_id))
    assert len(by_deal) == 798
    facts = [Fact(id="contacts", label="contacts in the export", entity_kind="run", value=Decimal(6), unit="count"),
             Fact(id="deal:D1:amount", label="amount of deal D1", entity_kind="deal", entity="D1",
                  value=Decimal("10.50"), unit="usd")]
    for companies_and_stages, rows, entities in ((named, deals, named + by_deal), ([], deals, by_deal),
                                                 (named, deals.head(0), named)):
        built = BuiltCatalogue(facts=facts, entities=companies_and_stages, deal_entities=deal_entities(rows))
        model = FactCatalogue(facts=facts, entities=entities)
        assert built.to_json() == model.model_dump_json().encode()
        assert built.model() == model
        assert catalogue_digest(built) == catalogue_digest(model)


def _scanned(text: str, entities: list[NamedEntity]) -> list[NamedEntity]:
    """What a text names, by the definition: every name keyed by text_key, longest first, tried in turn."""
    found: list[NamedEntity] = []
    remaining = text_key(text)
    for entity in sorted((e for e in entities if e.name), key=lambda e: -len(e.name)):
        if text_key(entity.name) in remaining and _pattern(entity).search(remaining):
            found.append(entity)
            remaining = _pattern(entity).sub(" ", remaining)
    return found


def _random_names(rng: random.Random, count: int) -> list[NamedEntity]:
    # upper case, every white space str.split() knows (ASCII and not), and characters NFKC or case folding change
    alphabet = [*"AaBbZz0159 .,-#", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1f", "\x85", "\xa0", "\u2028",
                "\u3000", "ß", "ẞ", "ﬁ", "İ", "Ａ", "½", "é", "e\u0301", "Σ", "ς"]
    entities = []
    for n in range(count):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 9)))
        kind = rng.choice(["company", "stage", "deal"])
        entities.append(NamedEntity(kind=kind, name=str(n) if kind == "deal" and rng.random() < 0.2 else name,
                                    refers_to=f"E{n}"))
    return entities


def test_the_names_index_keys_and_orders_names_as_text_key_does() -> None:
    """The index keys ASCII names by polars and the others by text_key: the keys are text_key's, longest names first
    and ties in the catalogue's order, nameless entities left out; read from a catalogue's JSON, the same."""
    rng = random.Random(11)
    for _ in range(40):
        entities = _random_names(rng, rng.randrange(0, 60))
        index = EntityIndex.of(entities)
        expected = sorted((e for e in entities if e.name), key=lambda e: -len(e.name))
        assert index.keys == [text_key(e.name) for e in expected]
        assert index.named.get_column("refers_to").to_list() == [e.refers_to for e in expected]
        read = EntityIndex.read(FactCatalogue(facts=[], entities=entities).model_dump_json().encode())
        assert read.named.equals(index.named)
    # a catalogue's size of ties (deals named alike): the order of the catalogue kept among them
    many = [NamedEntity(kind="deal", name=f"D{n % 97}" * (n % 3 + 1), refers_to=f"O{n}") for n in range(60_000)]
    expected = sorted(many, key=lambda e: -len(e.name))
    assert EntityIndex.of(many).named.get_column("refers_to").to_list() == [e.refers_to for e in expected]


def test_a_text_names_what_a_scan_of_every_name_finds() -> None:
    """Only the names a text contains are tried, and again after a name is taken out of it: the entities found are
    those of trying every name in turn, on random names and texts made of them."""
    rng = random.Random(12)
    fixed = [NamedEntity(kind="stage", name="Renewal", refers_to="Renewal"),
             NamedEntity(kind="deal", name="Renewal 19", refers_to="D19"),
             NamedEntity(kind="deal", name="19", refers_to="D19"),
             NamedEntity(kind="company", name="Acme", refers_to="Acme"),
             NamedEntity(kind="company", name="Acme Corp", refers_to="Acme Corp")]
    found = 0
    for _ in range(300):
        entities = fixed + _random_names(rng, rng.randrange(0, 40))
        index = EntityIndex.of(entities)
        words = [e.name for e in rng.sample(entities, min(4, len(entities)))] + ["deal", "the", "of", ",", "3"]
        text = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 8)))
        expected = _scanned(text, entities)
        assert entities_in(text, index) == expected, text
        found += len(expected)
    assert found > 300
    assert entities_in("Renewal 19 leads; deal 19 too", EntityIndex.of(fixed)) == [fixed[1], fixed[2]]

"""The fact catalogue: every figure an insight may cite, computed in code over the full data and the validated
labels, each with a stable id, the entity it is about, a value and a unit.

Rankings are facts (``rank:companies_by_open_pipeline:1`` is the company with the most open pipeline), so a
superlative can be checked; a share names its numerator and denominator, so it can be recomputed. Ids are built
from the grouping keys of ``shared.taxonomy``, so the same company or stage has the same id in every run.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property

import polars as pl
from pydantic import TypeAdapter

from shared.contracts import EntityKind, Fact, FactCatalogue, Facts, FactUnit, NamedEntity
from shared.figures import share_pct
from shared.taxonomy import OPEN_STAGES, company_key, stage_key, stage_name, text_key

RANKED = 3  # places kept per ranking
_ENTITIES = TypeAdapter(list[NamedEntity])
_FACTS = TypeAdapter(list[Fact])


def _fact(fact_id: str, label: str, value: Decimal | int | None, unit: FactUnit, kind: EntityKind = "run",
          entity: str | None = None, parts: Iterable[str] = ()) -> Fact | None:
    if value is None:
        return None
    return Fact(id=fact_id, label=label, entity_kind=kind, entity=entity, value=Decimal(value), unit=unit,
                parts=list(parts))


def _share(fact_id: str, label: str, part: Fact | None, whole: Fact | None, kind: EntityKind = "run",
           entity: str | None = None) -> Fact | None:
    if part is None or whole is None or not whole.value:
        return None
    return _fact(fact_id, label, share_pct(part.value, whole.value), "percent", kind, entity,
                 (part.id, whole.id))


def _money(value: object) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


class CatalogueBuilder:
    def __init__(self) -> None:
        self.facts: dict[str, Fact] = {}

    def add(self, *facts: Fact | None) -> None:
        for fact in facts:
            if fact is not None:
                self.facts[fact.id] = fact

    def get(self, fact_id: str) -> Fact | None:
        return self.facts.get(fact_id)

    def ranking(self, name: str, label: str, rows: list[tuple[str, Decimal]], unit: FactUnit,
                kind: EntityKind) -> None:
        """Places 1..RANKED of ``rows`` (entity, value), largest first; a zero value is not ranked, and a place
        shared by a tie is not a fact (nothing is 'the largest' when two are as large)."""
        positive = [row for row in rows if row[1] > 0]
        if not positive:
            return
        counts = Counter(value for _entity, value in positive)
        # only rows as large as the RANKED-th largest can take a place: the rest are not sorted (an open deal each)
        cutoff = heapq.nlargest(RANKED, counts.elements())[-1]
        ordered = sorted((row for row in positive if row[1] >= cutoff), key=lambda row: (-row[1], text_key(row[0])))
        for place, (entity, value) in enumerate(ordered[:RANKED], start=1):
            if counts[value] > 1:
                continue
            self.add(_fact(f"rank:{name}:{place}", f"{'top' if place == 1 else f'#{place}'} {label}: {entity}",
                           value, unit, kind, entity))


def build_catalogue(facts: Facts, contacts: pl.DataFrame, deals: pl.DataFrame, labels: pl.DataFrame,
                    risks: pl.DataFrame) -> tuple[BuiltCatalogue, list[str]]:
    """The catalogue and the ids of the facts worth showing the model (the rest are checkable, not shown).

    ``contacts``: id, company, title; ``deals``: id, name, stage, amount, contact_id; ``labels``: the validated
    contact labels (id, seniority, department, decision_maker); ``risks``: the validated risks (id, risk)."""
    c, o = facts.contacts, facts.opportunities
    b = CatalogueBuilder()
    b.add(
        _fact("contacts", "contacts in the export", c.total_contacts, "count"),
        _fact("companies", "distinct companies", c.unique_companies, "count"),
        _fact("titles", "distinct job titles", c.unique_titles, "count"),
        _fact("missing_titles", "contacts without a title", c.missing_titles, "count"),
        _fact("duplicate_names", "contacts whose name appears twice", c.duplicate_names, "count"),
        _fact("opportunities", "opportunities in the export", o.total_opportunities, "count"),
        _fact("total_value", "value of all opportunities, open and closed", o.total_value, "usd"),
        _fact("open_opportunities", "open opportunities (not closed)", o.open_opportunities, "count"),
        _fact("open_pipeline_value", "open pipeline value (not closed)", o.open_pipeline_value, "usd"),
        _fact("won_deals", "deals won", o.won_count, "count"),
        _fact("won_value", "value won", o.won_value, "usd"),
        _fact("lost_deals", "deals lost", o.lost_count, "count"),
        _fact("lost_value", "value lost", o.lost_value, "usd"),
        _fact("win_rate_by_value", "win rate by value: won / (won + lost)", o.win_rate_by_value_pct, "percent"),
        _fact("win_rate_by_count", "win rate by count: won / (won + lost) deals", o.win_rate_by_count_pct,
              "percent"),
        _fact("average_deal_value", "average opportunity value", o.average_deal_value, "usd"),
        _fact("unknown_contact_deals", "opportunities whose contact is not in the export", o.orphan_opportunities,
              "count"),
        _fact("stage_spelling_variants", "stages written in more than one way", o.stage_spelling_variants,
              "count"),
    )

    # validated labels, joined to the data
    companies = {name: company_key(name) for name in contacts.get_column("company").unique().to_list()
                 if name is not None}  # the key of each distinct name, not of each row
    people = contacts.join(labels, on="id", how="inner").with_columns(
        pl.col("company").replace_strict(companies, return_dtype=pl.String).alias("company_key"))
    names = {row["company_key"]: row["company"] for row in people.group_by("company_key").agg(
        pl.col("company").mode().sort().first()).to_dicts()}
    b.add(
        _fact("labelled_contacts", "contacts with validated labels", people.height, "count"),
        _fact("decision_makers", "decision makers", int(people.get_column("decision_maker").sum()), "count"),
    )
    b.add(_share("decision_maker_share", "decision makers as a share of labelled contacts",
                 b.get("decision_makers"), b.get("labelled_contacts")))
    for column, kind in (("seniority", "seniority"), ("department", "department")):
        counts = people.group_by(column).len().to_dicts()
        for row in counts:
            b.add(_fact(f"{kind}:{row[column]}:contacts", f"contacts of {kind} {row[column]}", row["len"], "count",
                        kind, row[column]))  # type: ignore[arg-type]
        b.ranking(f"{kind}_by_contacts", f"{kind} by contacts", [(r[column], Decimal(r["len"])) for r in counts],
                  "count", kind)  # type: ignore[arg-type]

    # deals, through their contact's company
    stages = {name: stage_key(name) for name in deals.get_column("stage").unique().to_list() if name is not None}
    deals = deals.with_columns(pl.col("stage").replace_strict(stages, return_dtype=pl.String).alias("stage_key"))
    owned = deals.join(people.select(pl.col("id").alias("contact_id"), "company_key"), on="contact_id", how="left")
    per_company = people.filter(pl.col("company_key") != "").group_by("company_key").agg(
        pl.len().alias("contacts"), pl.col("decision_maker").sum().alias("decision_makers"),
        (pl.col("seniority") == "executive").sum().alias("executives"),
        pl.col("seniority").is_in(["executive", "senior"]).sum().alias("senior_or_above"),
    )
    money = owned.filter(pl.col("company_key").is_not_null()).group_by("company_key").agg(
        pl.col("amount").filter(pl.col("stage_key").is_in(list(OPEN_STAGES))).sum().alias("open_pipeline"),
        pl.col("amount").filter(pl.col("stage_key") == "closed won").sum().alias("won"),
        pl.col("stage_key").is_in(list(OPEN_STAGES)).sum().alias("open_deals"),
    )
    rows = per_company.join(money, on="company_key", how="left").to_dicts()
    for row in rows:
        name = names.get(row["company_key"], row["company_key"])
        prefix = f"company:{row['company_key']}"
        b.add(
            _fact(f"{prefix}:contacts", f"contacts at {name}", row["contacts"], "count", "company", name),
            _fact(f"{prefix}:decision_makers", f"decision makers at {name}", row["decision_makers"], "count",
                  "company", name),
            _fact(f"{prefix}:executives", f"executives at {name}", row["executives"], "count", "company", name),
            _fact(f"{prefix}:senior_or_above", f"senior or executive contacts at {name}", row["senior_or_above"],
                  "count", "company", name),
            _fact(f"{prefix}:open_deals", f"open deals of {name}'s contacts", row["open_deals"] or 0, "count",
                  "company", name),
            _fact(f"{prefix}:open_pipeline_value", f"open pipeline of {name}'s contacts",
                  _money(row["open_pipeline"]), "usd", "company", name),
            _fact(f"{prefix}:won_value", f"value won with {name}'s contacts", _money(row["won"]), "usd", "company",
                  name),
        )
        b.add(_share(f"{prefix}:share_of_open_pipeline", f"{name}'s share of the open pipeline",
                     b.get(f"{prefix}:open_pipeline_value"), b.get("open_pipeline_value"), "company", name))
    for name, column, unit in (("contacts", "contacts", "count"), ("decision_makers", "decision_makers", "count"),
                               ("open_pipeline", "open_pipeline", "usd"), ("won_value", "won", "usd")):
        b.ranking(f"companies_by_{name}", f"company by {name.replace('_', ' ')}",
                  [(names.get(r["company_key"], r["company_key"]), _money(r[column]) if unit == "usd"
                    else Decimal(r[column] or 0)) for r in rows], unit, "company")  # type: ignore[arg-type]

    for item in o.stage_breakdown:
        key = stage_key(item.stage)
        b.add(_fact(f"stage:{key}:deals", f"deals in {item.stage}", item.count, "count", "stage", item.stage),
              _fact(f"stage:{key}:value", f"value in {item.stage}", item.value, "usd", "stage", item.stage))
    b.ranking("stages_by_value", "stage by value", [(i.stage, i.value) for i in o.stage_breakdown], "usd", "stage")
    b.ranking("stages_by_deals", "stage by deals", [(i.stage, Decimal(i.count)) for i in o.stage_breakdown],
              "count", "stage")

    assessed = deals.join(risks, on="id", how="inner")
    open_assessed = assessed.filter(pl.col("stage_key").is_in(list(OPEN_STAGES)))
    for level in ("low", "medium", "high"):
        subset = open_assessed.filter(pl.col("risk") == level)
        b.add(_fact(f"risk:{level}:deals", f"open deals at {level} risk", subset.height, "count", "risk", level),
              _fact(f"risk:{level}:value", f"open value at {level} risk", _money(subset.get_column("amount").sum()),
                    "usd", "risk", level))
    b.add(_share("risk:high:share_of_open_pipeline", "high-risk share of the open pipeline", b.get("risk:high:value"),
                 b.get("open_pipeline_value"), "risk", "high"))
    riskiest = open_assessed.filter(pl.col("risk") == "high").sort(["amount", "id"], descending=[True, False])
    for row in riskiest.head(RANKED).to_dicts():
        b.add(_fact(f"deal:{row['id']}:amount", f"amount of deal {row['id']} {row['name']} ({stage_name(row['stage'])},"
                    " high risk)", _money(row["amount"]), "usd", "deal", str(row["id"])))
    b.ranking("open_deals_by_amount", "open deal by amount", _contenders(deals.filter(
        pl.col("stage_key").is_in(list(OPEN_STAGES)))), "usd", "deal")

    entities = [NamedEntity(kind="company", name=name, refers_to=name) for name in sorted(set(names.values()))
                if name]
    for written in sorted(set(deals.get_column("stage").to_list())):
        entities += [NamedEntity(kind="stage", name=n, refers_to=stage_name(written))
                     for n in sorted({written, stage_name(written)})]
    facts_made = list(b.facts.values())
    # a quarantined chunk leaves rows without labels: a figure from labels says how many rows it counts
    # (the note carries no number: a number in a label invites the model to state it, unbound)
    if people.height < contacts.height:
        facts_made = _partial(facts_made, LABELLED_CONTACT_FACTS, "among the labelled contacts only")
    if assessed.height < deals.height:
        facts_made = _partial(facts_made, ASSESSED_DEAL_FACTS, "among the assessed deals only")
    catalogue = BuiltCatalogue(facts=facts_made, entities=entities, deal_entities=deal_entities(deals))
    return catalogue, prompt_facts(catalogue)


def _contenders(deals: pl.DataFrame) -> list[tuple[str, Decimal]]:
    """The deals (id, amount) that can take a place in a ranking by amount: those as large as the RANKED-th largest
    positive amount, every one of them (a tie at a place is left out of the ranking, so all of it is needed). The
    ranking would drop the rest; they are not made rows here (an open deal each: 6,700 at 10,000 deals). Amounts
    are exact (Decimal with cents), so the cut is the ranking's own."""
    positive = deals.filter(pl.col("amount") > 0)
    if positive.is_empty():
        return []
    cutoff = positive.get_column("amount").top_k(RANKED).min()
    return [(str(deal_id), _money(amount)) for deal_id, amount in
            positive.filter(pl.col("amount") >= cutoff).select("id", "amount").iter_rows()]


def deal_entities(deals: pl.DataFrame) -> pl.DataFrame:
    """A deal is named by its id and by its name (when it has one): two entities a deal, in the export's order, as
    the columns of ``NamedEntity`` (kind, name, refers_to)."""
    numbered = deals.select(pl.col("id").cast(pl.String), pl.col("name").cast(pl.String)).with_row_index("at")
    by_id = numbered.select("at", pl.lit(0, pl.UInt8).alias("by"), pl.col("id").alias("name"), "id")
    by_name = numbered.filter(pl.col("name").is_not_null() & (pl.col("name") != "")).select(
        "at", pl.lit(1, pl.UInt8).alias("by"), "name", "id")
    return pl.concat([by_id, by_name]).sort("at", "by").select(
        pl.lit("deal").alias("kind"), "name", pl.col("id").alias("refers_to"))


@dataclass(frozen=True)
class BuiltCatalogue:
    """A fact catalogue as aggregation builds it: the facts and the company and stage entities as models, the
    deals' entities (two a deal, 100,000 at 50,000 deals) as columns, written to the catalogue's JSON by polars
    rather than as a model an entity (at 10,000 deals those took a quarter of the aggregation's time). The JSON is
    what ``FactCatalogue`` writes, byte for byte (tests/test_claims.py)."""

    facts: list[Fact]
    entities: list[NamedEntity]
    deal_entities: pl.DataFrame

    @cached_property
    def entities_json(self) -> bytes:
        """Every entity, as ``FactCatalogue.entities`` is written: the companies and stages, then the deals."""
        named = _ENTITIES.dump_json(self.entities)
        if self.deal_entities.is_empty():
            return named
        deals = self.deal_entities.write_json().encode()
        return deals if not self.entities else named[:-1] + b"," + deals[1:]

    def to_json(self) -> bytes:
        """The catalogue's file: a ``FactCatalogue``."""
        return b'{"facts":' + _FACTS.dump_json(self.facts) + b',"entities":' + self.entities_json + b"}"

    def model(self) -> FactCatalogue:
        return FactCatalogue.model_validate_json(self.to_json())


def catalogue_digest(catalogue: FactCatalogue | BuiltCatalogue) -> str:
    """The catalogue's content as a digest: its facts in the order of their ids (group-bys keep none), its entities
    in the order they are built (companies and stages sorted, deals in the export's order), serialized in one call
    (at 10,000 deals, one call an entity took 70 ms)."""
    digest = hashlib.sha256()
    for fact in sorted(catalogue.facts, key=lambda f: f.id):
        digest.update(fact.model_dump_json().encode() + b"\n")
    digest.update(catalogue.entities_json if isinstance(catalogue, BuiltCatalogue)
                  else _ENTITIES.dump_json(catalogue.entities))
    return digest.hexdigest()


# Facts computed from the validated labels (contacts) or risks (deals), by id prefix.
LABELLED_CONTACT_FACTS = ("labelled_contacts", "decision_maker", "seniority:", "department:", "rank:seniority_",
                          "rank:department_", "company:", "rank:companies_by_")
ASSESSED_DEAL_FACTS = ("risk:", "deal:")


def _partial(facts: list[Fact], prefixes: tuple[str, ...], note: str) -> list[Fact]:
    return [f.model_copy(update={"label": f"{note}, {f.label}"}) if f.id.startswith(prefixes) else f
            for f in facts]


PROMPT_RUN_FACTS = (
    "contacts", "companies", "opportunities", "total_value", "open_opportunities", "open_pipeline_value",
    "won_value", "lost_value", "win_rate_by_value", "win_rate_by_count", "average_deal_value", "decision_makers",
    "unknown_contact_deals", "risk:high:deals", "risk:high:value", "risk:high:share_of_open_pipeline",
)


def prompt_facts(catalogue: FactCatalogue | BuiltCatalogue) -> list[str]:
    """The facts shown to the model: the run's headline figures, every first place of a ranking, and the leading
    company's share of the open pipeline. Some thirty lines: a small model on two cores reads 40 tokens a second,
    and writes better from thirty lines than from three hundred. The rest stay checkable."""
    ids = {fact.id for fact in catalogue.facts}
    leader = next((f.entity for f in catalogue.facts if f.id == "rank:companies_by_open_pipeline:1"), None)
    chosen = [i for i in PROMPT_RUN_FACTS if i in ids]
    chosen += [f.id for f in catalogue.facts if f.id.startswith("rank:") and f.id.endswith(":1")]
    chosen += [f.id for f in catalogue.facts if f.entity == leader and f.id.endswith(":share_of_open_pipeline")]
    return chosen

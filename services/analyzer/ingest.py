"""Ingest: stream-parse the two CSV exports, write normalized chunk files, compute the facts with polars.

The parser reads one row at a time, so memory stays flat whatever the export's size, and it stops at the first
bad row with an error that names the file, the row and the column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO

import polars as pl

from shared.artifacts import ArtifactStore
from shared.contracts import (
    MAX_LISTED,
    ArtifactRef,
    Branch,
    ContactFacts,
    ContactRecord,
    CountItem,
    DatasetRef,
    Facts,
    IngestRequest,
    IngestResult,
    KeyValue,
    OpportunityFacts,
    OpportunityRecord,
    QualityFlag,
    StageItem,
)
from shared.datasets import chunk_key, write_chunk

CONTACT_COLUMNS = ("id", "name", "company", "title", "created_date")
OPPORTUNITY_COLUMNS = ("id", "name", "stage", "amount", "contact_id", "close_date")
WON_STAGE = "closed won"
LOST_STAGE = "closed lost"


class BadInputError(ValueError):
    """The input cannot be analyzed as given; the message says where and why."""

    def __init__(self, path: str, problem: str, *, row: int | None = None, column: str | None = None) -> None:
        where = Path(path).name
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.row = row
        self.column = column


@dataclass(frozen=True)
class _Row:
    number: int  # 1-based data row, the header excluded
    values: dict[str, str]


def _read_rows(path: str, required: tuple[str, ...]) -> Iterator[_Row]:
    file = Path(path)
    if not file.is_file():
        raise BadInputError(path, "file not found")
    with file.open("rb") as probe:
        head = probe.read(4096)
    if b"\x00" in head:
        raise BadInputError(path, "not a CSV file: it contains binary data")
    if not head.strip():
        raise BadInputError(path, f"the file is empty; expected a header row with columns {', '.join(required)}")
    with file.open("rb") as handle:
        lines = _decoded_lines(path, handle)
        reader = csv.reader(lines)
        try:
            header = [name.strip() for name in next(reader)]
            missing = [name for name in required if name not in header]
            if missing:
                raise BadInputError(
                    path,
                    f"missing column(s) {', '.join(missing)}; the header has {', '.join(header) or 'nothing'}"
                    f" but needs {', '.join(required)}",
                )
            duplicated = sorted({name for name in header if header.count(name) > 1})
            if duplicated:
                raise BadInputError(path, f"column(s) {', '.join(duplicated)} appear more than once in the header")
            number = 0
            for fields in reader:
                if not fields or all(not field.strip() for field in fields):
                    continue
                number += 1
                if len(fields) != len(header):
                    raise BadInputError(
                        path, f"has {len(fields)} fields but the header has {len(header)}", row=number
                    )
                yield _Row(number, {name: value.strip() for name, value in zip(header, fields, strict=True)})
        except csv.Error as error:
            raise BadInputError(path, f"not a well-formed CSV: {error}") from None


def _decoded_lines(path: str, handle: BinaryIO) -> Iterator[str]:
    """UTF-8 lines (a BOM dropped), decoded one at a time so that a bad byte is reported at its line."""
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInputError(path, f"line {number} is not UTF-8 text; export the CSV as UTF-8") from None
        yield line.removeprefix("\ufeff") if number == 1 else line


def _parse_date(path: str, row: _Row, column: str) -> date | None:
    text = row.values[column]
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise BadInputError(path, f"{text!r} is not a date (expected YYYY-MM-DD)", row=row.number,
                            column=column) from None


def _parse_amount(path: str, row: _Row) -> float:
    text = row.values["amount"].replace(",", "").replace("$", "")
    try:
        amount = float(text)
    except ValueError:
        raise BadInputError(path, f"{row.values['amount']!r} is not a number", row=row.number,
                            column="amount") from None
    if not math.isfinite(amount) or amount < 0:
        raise BadInputError(path, f"{row.values['amount']!r} is not a non-negative amount", row=row.number,
                            column="amount")
    return amount


def _require_id(path: str, row: _Row, seen: set[str], column: str = "id") -> str:
    value = row.values[column]
    if not value:
        raise BadInputError(path, "the id is empty", row=row.number, column=column)
    if value in seen:
        raise BadInputError(path, f"id {value!r} appears more than once", row=row.number, column=column)
    seen.add(value)
    return value


def _extra(row: _Row, standard: tuple[str, ...]) -> list[KeyValue]:
    return [KeyValue(key=k, value=v) for k, v in row.values.items() if k not in standard]


def _odd_capitalisation(name: str) -> bool:
    letters = [c for c in name if c.isalpha()]
    return bool(letters) and (name == name.lower() or (name == name.upper() and len(letters) > 3))


def parse_contacts(path: str) -> Iterator[ContactRecord]:
    """Yield the contacts of one export, validated, with their ingest-time quality flags."""
    seen: set[str] = set()
    names: set[str] = set()
    for row in _read_rows(path, CONTACT_COLUMNS):
        name = row.values["name"]
        flags: list[QualityFlag] = []
        if not row.values["title"]:
            flags.append("missing_title")
        if not row.values["company"]:
            flags.append("missing_company")
        folded = " ".join(name.casefold().split())
        if folded and folded in names:
            flags.append("duplicate_name")
        names.add(folded)
        if _odd_capitalisation(name):
            flags.append("odd_capitalisation")
        yield ContactRecord(
            id=_require_id(path, row, seen),
            name=name,
            company=row.values["company"],
            title=row.values["title"],
            created_date=_parse_date(path, row, "created_date"),
            extra=_extra(row, CONTACT_COLUMNS),
            quality_flags=flags,
        )


def parse_opportunities(path: str, contact_ids: set[str]) -> Iterator[OpportunityRecord]:
    """Yield the opportunities of one export, validated; unknown contacts are flagged, not refused."""
    seen: set[str] = set()
    for row in _read_rows(path, OPPORTUNITY_COLUMNS):
        amount = _parse_amount(path, row)
        flags: list[QualityFlag] = []
        if row.values["contact_id"] not in contact_ids:
            flags.append("unknown_contact")
        if amount == 0:
            flags.append("zero_amount")
        yield OpportunityRecord(
            id=_require_id(path, row, seen),
            name=row.values["name"],
            stage=row.values["stage"],
            amount=amount,
            contact_id=row.values["contact_id"],
            close_date=_parse_date(path, row, "close_date"),
            extra=_extra(row, OPPORTUNITY_COLUMNS),
            quality_flags=flags,
        )


def _write_dataset(
    store: ArtifactStore,
    run_id: str,
    branch: Branch,
    source: str,
    records: Iterator[ContactRecord] | Iterator[OpportunityRecord],
    chunk_size: int,
    on_chunk: Callable[[int], None],
) -> DatasetRef:
    chunks: list[ArtifactRef] = []
    pending: list[dict[str, object]] = []
    rows = 0
    for record in records:
        pending.append(record.model_dump())
        rows += 1
        if len(pending) == chunk_size:
            chunks.append(write_chunk(store, branch, chunk_key(run_id, branch, len(chunks)), pending))
            pending = []
            on_chunk(rows)
    if pending:
        chunks.append(write_chunk(store, branch, chunk_key(run_id, branch, len(chunks)), pending))
    if rows == 0:
        raise BadInputError(source, "has a header but no data rows")
    return DatasetRef(branch=branch, source_name=Path(source).name, rows=rows, chunk_size=chunk_size,
                      chunks=chunks)


def _scan(store: ArtifactStore, dataset: DatasetRef) -> pl.LazyFrame:
    return pl.scan_parquet([store.path(ref) for ref in dataset.chunks])


def contact_facts(store: ArtifactStore, dataset: DatasetRef) -> ContactFacts:
    frame = _scan(store, dataset).select("company", "title", "quality_flags").collect()
    companies = (
        frame.filter(pl.col("company") != "")
        .group_by("company")
        .len()
        .sort(["len", "company"], descending=[True, False])
    )
    top = companies.head(1).to_dicts()
    flags = frame.get_column("quality_flags")
    return ContactFacts(
        total_contacts=frame.height,
        unique_companies=companies.height,
        top_company=top[0]["company"] if top else None,
        top_company_contacts=top[0]["len"] if top else 0,
        company_distribution=[
            CountItem(key=row["company"], count=row["len"]) for row in companies.head(MAX_LISTED).to_dicts()
        ],
        unique_titles=frame.filter(pl.col("title") != "").get_column("title").n_unique(),
        missing_titles=int(flags.list.contains("missing_title").sum()),
        duplicate_names=int(flags.list.contains("duplicate_name").sum()),
    )


def opportunity_facts(store: ArtifactStore, dataset: DatasetRef) -> OpportunityFacts:
    frame = (
        _scan(store, dataset)
        .select("id", "stage", "amount", "quality_flags")
        .with_columns(pl.col("stage").str.strip_chars().str.to_lowercase().alias("stage_key"))
        .collect()
    )
    total = float(frame.get_column("amount").sum())
    won = float(frame.filter(pl.col("stage_key") == WON_STAGE).get_column("amount").sum())
    lost = float(frame.filter(pl.col("stage_key") == LOST_STAGE).get_column("amount").sum())
    stages = (
        frame.group_by("stage")
        .agg(pl.len().alias("count"), pl.col("amount").sum().alias("value"))
        .sort(["value", "stage"], descending=[True, False])
    )
    orphans = frame.filter(pl.col("quality_flags").list.contains("unknown_contact")).get_column("id")
    return OpportunityFacts(
        total_opportunities=frame.height,
        pipeline_value=round(total, 2),
        won_value=round(won, 2),
        lost_value=round(lost, 2),
        win_rate_by_value_pct=round(100 * won / total, 1) if total else 0.0,
        average_deal_value=round(total / frame.height, 2) if frame.height else 0.0,
        stage_breakdown=[
            StageItem(stage=row["stage"], count=row["count"], value=round(float(row["value"]), 2))
            for row in stages.to_dicts()
        ],
        orphan_opportunities=orphans.len(),
        orphan_opportunity_ids=orphans.head(MAX_LISTED).to_list(),
    )


def ingest(store: ArtifactStore, request: IngestRequest, heartbeat: Callable[[int], None]) -> IngestResult:
    """Parse, normalize and chunk both exports, and compute the facts over the full data."""
    contacts = _write_dataset(
        store, request.run_id, "contacts", request.contacts_path,
        parse_contacts(request.contacts_path), request.contact_chunk_size, heartbeat,
    )
    contact_ids: set[str] = set()
    for ref in contacts.chunks:
        contact_ids.update(pl.read_parquet(store.path(ref), columns=["id"]).get_column("id").to_list())
    opportunities = _write_dataset(
        store, request.run_id, "opportunities", request.opportunities_path,
        parse_opportunities(request.opportunities_path, contact_ids), request.opportunity_chunk_size, heartbeat,
    )
    facts = Facts(contacts=contact_facts(store, contacts), opportunities=opportunity_facts(store, opportunities))
    return IngestResult(contacts=contacts, opportunities=opportunities, facts=facts)

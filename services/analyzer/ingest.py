"""Ingest: stream-parse the two CSV exports, write normalized chunk files, compute the facts with polars.

The parser reads one row at a time, so it holds no more than a chunk of records and the few columns the facts are
computed from, and it stops at the first bad row with an error that names the file, the row and the column.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import io
import itertools
import operator
import re
from collections.abc import Callable, Generator, Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import polars as pl

from shared.artifacts import ArtifactStore
from shared.contracts import (
    MAX_LISTED,
    Branch,
    ContactFacts,
    ContactRecord,
    CountItem,
    DatasetRef,
    Facts,
    IngestRequest,
    IngestResult,
    OpportunityFacts,
    OpportunityRecord,
    QualityFlag,
    StageItem,
)
from shared.datasets import CHUNK_FORMAT, CONTACT_COLUMNS, DELIMITERS, OPPORTUNITY_COLUMNS, chunk_key, write_chunk
from shared.figures import share_pct
from shared.taxonomy import company_key, stage_key, stage_name, title_key

WON_STAGE = "closed won"
LOST_STAGE = "closed lost"
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal(10) ** 15  # a quadrillion: past this an amount is a typo, and it would overflow the store


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


class _Export(NamedTuple):
    header: list[str]  # the column names, stripped, in the file's order
    rows: Iterator[tuple[int, list[str]]]  # (1-based data row, the header excluded; its fields as read, unstripped)


SNIPPET = 40  # characters of an offending cell an error quotes, at most
PROBE = 64 * 1024
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def snippet(text: str) -> str:
    """A cell as an error quotes it: bounded, so a megabyte cell never floods a message or a log."""
    return repr(text if len(text) <= SNIPPET else text[:SNIPPET] + "…")


def detect_encoding(path: str, head: bytes) -> tuple[str, str | None]:
    """UTF-8 unless the bytes say otherwise: a UTF-16 byte-order mark, or text that is not UTF-8 but is valid
    Windows-1252 (Excel's CSV on Windows). Returns the encoding and the warning to show, if any."""
    name = Path(path).name
    if head.startswith(UTF16_BOMS):
        return "utf-16", f"{name} was decoded as UTF-16 (it starts with a UTF-16 byte-order mark)"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8", None
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
    except UnicodeDecodeError:
        return "utf-8", None  # neither: the bad line is reported as not UTF-8
    return "cp1252", f"{name} is not UTF-8; it was decoded as Windows-1252 (export as UTF-8 to be sure)"


@contextlib.contextmanager
def _open_export(path: str, required: tuple[str, ...], warnings: list[str] | None = None) -> Iterator[_Export]:
    """The export's checked header and its data rows, blank rows skipped and every row's width checked. A row's
    fields come as the csv module reads them: the caller strips the ones it uses (stripping every field of every
    row, and a dict a row, were a third of ingest's time)."""
    file = Path(path)
    if not file.is_file():
        raise BadInputError(path, "file not found")
    with file.open("rb") as probe:
        head = probe.read(PROBE)
    encoding, warning = detect_encoding(path, head)
    if warning and warnings is not None:
        warnings.append(warning)
    if encoding != "utf-16" and b"\x00" in head[:4096]:
        raise BadInputError(path, "not a CSV file: it contains binary data")
    if not head.strip():
        raise BadInputError(path, f"the file is empty; expected a header row with columns {', '.join(required)}")
    # the lines closed before the file, however the rows end (a bad row, a reader that stops early)
    with file.open("rb") as handle, contextlib.closing(_decoded_lines(path, handle, encoding)) as lines:
        first = next(lines, "")
        delimiter = _delimiter(first, required)
        if delimiter != "," and warnings is not None:
            warnings.append(f"{file.name} is {DELIMITERS[delimiter]}-separated; it was read as such")
        reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
        try:
            header = [name.strip() for name in next(reader)]
        except csv.Error as error:
            raise _not_csv(path, error) from None
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
        yield _Export(header, _data_rows(path, reader, len(header)))


def _delimiter(first_line: str, required: tuple[str, ...]) -> str:
    """The separator of an export whose header is ``first_line``: of ``DELIMITERS``, the first that splits it into
    the most required columns (every one, on a good export), a comma when none finds any. A header that lacks a
    column is then named column by column as its separator splits it, not as one name."""
    best, found = ",", 0
    for delimiter in DELIMITERS:
        try:
            names = {name.strip() for row in csv.reader([first_line], delimiter=delimiter) for name in row}
        except csv.Error:
            continue
        if (count := len(names.intersection(required))) > found:
            best, found = delimiter, count
    return best


def _data_rows(path: str, reader: Iterator[list[str]], width: int) -> Iterator[tuple[int, list[str]]]:
    number = 0
    try:
        for fields in reader:
            if not "".join(fields).strip():  # no field, or only blank ones: not a row
                continue
            number += 1
            if len(fields) != width:
                raise BadInputError(path, f"has {len(fields)} fields but the header has {width}", row=number)
            yield number, fields
    except csv.Error as error:
        raise _not_csv(path, error) from None


def _not_csv(path: str, error: csv.Error) -> BadInputError:
    return BadInputError(path, f"not a well-formed CSV: {str(error)[:200]}")


def _decoded_lines(path: str, handle: BinaryIO, encoding: str = "utf-8") -> Generator[str, None, None]:
    """Text lines (a BOM dropped), decoded by the io module a block at a time (as the csv module wants them:
    ``newline=""``); a bad byte is then found again line by line, so that the error names its line."""
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    try:
        first = True
        for line in text:
            yield line.removeprefix("\ufeff") if first else line
            first = False
    except UnicodeDecodeError:
        if encoding == "utf-16":
            raise BadInputError(path, "is not valid UTF-16 text after its byte-order mark") from None
        raise _bad_line(path, encoding) from None
    finally:
        text.detach()


def _bad_line(path: str, encoding: str) -> BadInputError:
    """The first line of ``path`` that does not decode, as an error that names it."""
    what = "not UTF-8" if encoding == "utf-8" else "neither UTF-8 nor Windows-1252"
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return BadInputError(path, f"line {number} is {what} text; export the CSV as UTF-8")
    return BadInputError(path, f"is {what} text; export the CSV as UTF-8")


class _Dates:
    """One column's dates, each day parsed once (an export has far fewer days than rows): a text is read up to its
    tenth character, ``date.fromisoformat``'s YYYY-MM-DD."""

    KEPT = 4096  # days remembered at most; past it the memory starts again

    def __init__(self, path: str, column: str) -> None:
        self.path = path
        self.column = column
        self.days: dict[str, date] = {}

    def __call__(self, number: int, text: str) -> date | None:
        if not text:
            return None
        day = text[:10]
        parsed = self.days.get(day)
        if parsed is None:
            try:
                parsed = date.fromisoformat(day)
            except ValueError:
                raise BadInputError(self.path, f"{snippet(text)} is not a date (expected YYYY-MM-DD)", row=number,
                                    column=self.column) from None
            if len(self.days) >= self.KEPT:
                self.days.clear()
            self.days[day] = parsed
        return parsed


_CURRENCY = re.compile(r"^[$€£]|[$€£]$|\b(?:usd|eur|gbp)\b", re.IGNORECASE)


@functools.cache
def _amount_pattern(decimal_separator: str) -> re.Pattern[str]:
    """1234.56 or 1,234.56 (with "," as the separator: 1234,56 or 1.234,56), at most two decimals."""
    grouping = "," if decimal_separator == "." else "."
    dec, grp = re.escape(decimal_separator), re.escape(grouping)
    return re.compile(rf"-?(\d{{1,3}}({grp}\d{{3}})+|\d+)({dec}\d{{1,2}})?")


def parse_amount(text: str, decimal_separator: str = ".") -> Decimal:
    """An amount exactly as written, in the export's notation: '1,234.56' (or '1.234,56' with ',' as the decimal
    separator). A format that could be read two ways is refused, never reinterpreted; raises ValueError."""
    grouping = "," if decimal_separator == "." else "."
    raw = _CURRENCY.sub("", text.strip()).strip()
    if not _amount_pattern(decimal_separator).fullmatch(raw):
        if re.fullmatch(r"-?[\d.,]+", raw) and re.search(r"\d", raw):
            raise ValueError(
                f"{snippet(text)} is an ambiguous amount: with {decimal_separator!r} as the decimal separator it could "
                "be read two ways; write it as 1234.56 or 1,234.56, or set TOLLGATE_AMOUNT_DECIMAL_SEPARATOR for an "
                "export that writes 1.234,56")
        raise ValueError(f"{snippet(text)} is not a number")
    amount = Decimal(raw.replace(grouping, "").replace(decimal_separator, "."))
    if amount < 0:
        raise ValueError(f"{snippet(text)} is not a non-negative amount")
    if amount >= MAX_AMOUNT:
        raise ValueError(f"{snippet(text)} is not a plausible amount (at least {MAX_AMOUNT:,})")
    return amount


@functools.cache
def _plain_amount(decimal_separator: str) -> re.Pattern[str]:
    """An amount with nothing to interpret: up to 15 ASCII digits, then at most two decimals. ``parse_amount`` reads
    it as ``Decimal`` reads it, and a CRM writes most amounts so."""
    return re.compile(rf"[0-9]{{1,15}}(?:{re.escape(decimal_separator)}[0-9]{{1,2}})?")


def _amount(path: str, number: int, text: str, decimal_separator: str) -> Decimal:
    if _plain_amount(decimal_separator).fullmatch(text):
        return Decimal(text if decimal_separator == "." else text.replace(decimal_separator, "."))
    try:
        return parse_amount(text, decimal_separator)
    except ValueError as error:
        raise BadInputError(path, str(error), row=number, column="amount") from None


def _new_id(path: str, number: int, text: str, seen: set[str]) -> str:
    """The row's id, stripped and remembered; an id that is empty or seen before is refused at its row."""
    value = text.strip()
    if not value:
        raise BadInputError(path, "the id is empty", row=number, column="id")
    if value in seen:
        raise BadInputError(path, f"id {snippet(value)} appears more than once", row=number, column="id")
    seen.add(value)
    return value


def _extra_columns(header: list[str], standard: tuple[str, ...]) -> list[tuple[int, str]]:
    """Where the columns the analysis does not use are, and their names, in the file's order."""
    return [(place, name) for place, name in enumerate(header) if name not in standard]


def _odd_capitalisation(name: str) -> bool:
    """All lower case, or all upper case past three letters (an initialism is not odd). A name in a script without
    case (Chinese, Arabic) has no capitals to get wrong."""
    lower, upper = name.lower(), name.upper()
    if lower == upper:
        return False
    return name == lower or (name == upper and sum(c.isalpha() for c in name) > 3)


# A record as a row of its chunk file: the dict ``model_dump`` writes. Ingest builds these directly (a model per row
# then dumped again was a fifth of ingest's time); every value is checked here as the record's model would check it,
# and parse_contacts and parse_opportunities build the models from the same rows (tests/test_ingest.py).
Row = dict[str, object]


def contact_rows(path: str, keep_extra: bool = True, warnings: list[str] | None = None) -> Iterator[Row]:
    """The contacts of one export as chunk rows, validated, with their ingest-time quality flags. A row's first
    problem is named (its id before its date), and the first row with one."""
    seen: set[str] = set()
    names: set[str] = set()
    created = _Dates(path, "created_date")
    with _open_export(path, CONTACT_COLUMNS, warnings) as export:
        at_id, at_name, at_company, at_title, at_created = map(export.header.index, CONTACT_COLUMNS)
        extra = _extra_columns(export.header, CONTACT_COLUMNS) if keep_extra else []
        for number, fields in export.rows:
            name, company, title = fields[at_name].strip(), fields[at_company].strip(), fields[at_title].strip()
            flags: list[QualityFlag] = []
            if not title:
                flags.append("missing_title")
            if not company:
                flags.append("missing_company")
            folded = " ".join(name.casefold().split())
            if folded and folded in names:
                flags.append("duplicate_name")
            names.add(folded)
            if _odd_capitalisation(name):
                flags.append("odd_capitalisation")
            yield {
                "id": _new_id(path, number, fields[at_id], seen),
                "name": name,
                "company": company,
                "title": title,
                "created_date": created(number, fields[at_created].strip()),
                "extra": [{"key": key, "value": fields[place].strip()} for place, key in extra],
                "quality_flags": flags,
            }


def opportunity_rows(path: str, contact_ids: set[str], decimal_separator: str = ".", keep_extra: bool = True,
                     warnings: list[str] | None = None) -> Iterator[Row]:
    """The opportunities of one export as chunk rows, validated; unknown contacts are flagged, not refused. A row's
    first problem is named (its amount, then its id, then its date), and the first row with one."""
    seen: set[str] = set()
    closes = _Dates(path, "close_date")
    with _open_export(path, OPPORTUNITY_COLUMNS, warnings) as export:
        at_id, at_name, at_stage, at_amount, at_contact, at_close = map(export.header.index, OPPORTUNITY_COLUMNS)
        extra = _extra_columns(export.header, OPPORTUNITY_COLUMNS) if keep_extra else []
        for number, fields in export.rows:
            amount = _amount(path, number, fields[at_amount].strip(), decimal_separator)
            contact = fields[at_contact].strip()
            flags: list[QualityFlag] = []
            if contact not in contact_ids:
                flags.append("unknown_contact")
            if amount == 0:
                flags.append("zero_amount")
            yield {
                "id": _new_id(path, number, fields[at_id], seen),
                "name": fields[at_name].strip(),
                "stage": fields[at_stage].strip(),
                "amount": amount.quantize(CENT),  # as the chunk's schema holds it: to the cent
                "contact_id": contact,
                "close_date": closes(number, fields[at_close].strip()),
                "extra": [{"key": key, "value": fields[place].strip()} for place, key in extra],
                "quality_flags": flags,
            }


def parse_contacts(path: str, keep_extra: bool = True, warnings: list[str] | None = None
                   ) -> Iterator[ContactRecord]:
    """Yield the contacts of one export, validated, with their ingest-time quality flags."""
    for row in contact_rows(path, keep_extra, warnings):
        yield ContactRecord.model_validate(row)


def parse_opportunities(path: str, contact_ids: set[str], decimal_separator: str = ".", keep_extra: bool = True,
                        warnings: list[str] | None = None,
                        ) -> Iterator[OpportunityRecord]:
    """Yield the opportunities of one export, validated; unknown contacts are flagged, not refused."""
    for row in opportunity_rows(path, contact_ids, decimal_separator, keep_extra, warnings):
        yield OpportunityRecord.model_validate(row)


# The columns the facts are computed from, kept in memory as the chunks are written (reading every chunk back from
# the store cost more than parsing the export: about 2 ms a file)
FACT_COLUMNS: dict[Branch, dict[str, pl.DataType]] = {
    "contacts": {"id": pl.String(), "company": pl.String(), "title": pl.String(),
                 "quality_flags": pl.List(pl.String())},
    "opportunities": {"id": pl.String(), "stage": pl.String(), "amount": pl.Decimal(20, 2),
                      "quality_flags": pl.List(pl.String())}}


FACT_BATCH = 10_000
FLAGS = "quality_flags"
FLAG_SEPARATOR = "\x1f"  # no flag's name holds it (QualityFlag's literals)
TEXT_COLUMNS: dict[str, Callable[[Any], str]] = {FLAGS: FLAG_SEPARATOR.join, "amount": str}  # fact columns as text


def _write_dataset(
    store: ArtifactStore,
    run_id: str,
    branch: Branch,
    source: str,
    records: Iterator[Row],
    chunk_size: int,
    on_chunk: Callable[[int], None],
) -> tuple[DatasetRef, pl.DataFrame]:
    """Write the records as chunk files; returns the dataset and its fact columns over every row."""
    written = 0
    schema = FACT_COLUMNS[branch]
    # the fact columns, as Python values for up to FACT_BATCH rows, then as a frame: a frame a chunk took 5 times as
    # long to build, and Python values for every row took 17 MB more at 100,000 contacts
    kept: list[pl.DataFrame] = []
    columns: dict[str, list[object]] = {name: [] for name in schema}
    pending: list[Row] = []
    rows = 0

    # columns kept as text and turned back by polars: the flags one string a row, split (a list a row built a series
    # a row, half of ingest's time at 20,000 contacts), and amounts, cast (a Decimal column took five times as long to
    # build from Python values)
    as_text = {name: text for name, text in TEXT_COLUMNS.items() if name in schema}
    fields = {name: operator.itemgetter(name) for name in schema}

    def keep() -> None:
        frame = pl.DataFrame(columns, schema={**schema, **dict.fromkeys(as_text, pl.String())})
        kept.append(frame.with_columns(
            pl.when(pl.col(FLAGS) == "").then(pl.lit([], dtype=schema[FLAGS]))
            .otherwise(pl.col(FLAGS).str.split(FLAG_SEPARATOR)).alias(FLAGS),
            *(pl.col(name).cast(schema[name]) for name in as_text if name != FLAGS)))
        for values in columns.values():
            values.clear()

    def flush() -> None:
        nonlocal written, pending
        write_chunk(store, chunk_key(run_id, branch, written), pending)
        for name, values in columns.items():
            taken = map(fields[name], pending)
            values.extend(map(as_text[name], taken) if name in as_text else taken)
        if len(columns["id"]) >= FACT_BATCH:
            keep()
        written += 1
        pending = []

    for record in records:
        pending.append(record)
        rows += 1
        if len(pending) == chunk_size:
            flush()
            on_chunk(rows)
    if pending:
        flush()
    if rows == 0:
        raise BadInputError(source, "has a header but no data rows")
    keep()
    dataset = DatasetRef(branch=branch, source_name=Path(source).name, rows=rows, chunk_size=chunk_size,
                         chunk_count=written, chunk_prefix=chunk_key(run_id, branch, 0).rsplit("/", 1)[0],
                         chunk_format=CHUNK_FORMAT)
    return dataset, pl.concat(kept, how="vertical", rechunk=True)


def _keyed(frame: pl.DataFrame, column: str, key: Callable[[str], str]) -> pl.DataFrame:
    """``frame`` with a ``<column>_key`` column: the documented grouping key, computed once per distinct value."""
    mapping = {value: key(value) for value in frame.get_column(column).unique().to_list()}
    return frame.with_columns(pl.col(column).replace_strict(mapping, return_dtype=pl.String).alias(f"{column}_key"))


def _display_names(frame: pl.DataFrame, column: str) -> dict[str, str]:
    """For each key, the spelling the export uses most (ties: the first alphabetically)."""
    spellings = frame.group_by(f"{column}_key", column).len().sort(
        [f"{column}_key", "len", column], descending=[False, True, False])
    return {row[f"{column}_key"]: row[column] for row in spellings.unique(f"{column}_key", keep="first").to_dicts()}


def contact_facts(contacts: pl.DataFrame) -> ContactFacts:
    """The contact facts over every row (columns company, title, quality_flags)."""
    frame = _keyed(_keyed(contacts.select("company", "title", "quality_flags"), "company", company_key), "title",
                   title_key)
    names = _display_names(frame, "company")
    companies = (
        frame.filter(pl.col("company_key") != "")
        .group_by("company_key")
        .len()
        .sort(["len", "company_key"], descending=[True, False])
    )
    top = companies.head(1).to_dicts()
    flags = frame.get_column("quality_flags")
    return ContactFacts(
        total_contacts=frame.height,
        unique_companies=companies.height,
        top_company=names[top[0]["company_key"]] if top else None,
        top_company_contacts=top[0]["len"] if top else 0,
        company_distribution=[
            CountItem(key=names[row["company_key"]], count=row["len"])
            for row in companies.head(MAX_LISTED).to_dicts()
        ],
        unique_titles=frame.filter(pl.col("title_key") != "").get_column("title_key").n_unique(),
        missing_titles=int(flags.list.contains("missing_title").sum()),
        duplicate_names=int(flags.list.contains("duplicate_name").sum()),
    )


def _money_sum(frame: pl.DataFrame) -> Decimal:
    total = frame.get_column("amount").sum()
    return Decimal(total).quantize(CENT) if total is not None else Decimal("0.00")


def opportunity_facts(deals: pl.DataFrame) -> OpportunityFacts:
    """The opportunity facts over every row (columns id, stage, amount, quality_flags)."""
    frame = _keyed(deals.select("id", "stage", "amount", "quality_flags"), "stage", stage_key)
    won = frame.filter(pl.col("stage_key") == WON_STAGE)
    lost = frame.filter(pl.col("stage_key") == LOST_STAGE)
    open_deals = frame.filter(~pl.col("stage_key").is_in([WON_STAGE, LOST_STAGE]))
    total, won_value, lost_value = _money_sum(frame), _money_sum(won), _money_sum(lost)
    stages = (
        frame.group_by("stage_key")
        .agg(pl.len().alias("count"), pl.col("amount").sum().alias("value"),
             pl.col("stage").unique().sort().alias("spellings"))
        .sort(["value", "stage_key"], descending=[True, False])
    )
    orphans = frame.filter(pl.col("quality_flags").list.contains("unknown_contact")).get_column("id")
    breakdown = [
        StageItem(stage=stage_name(row["spellings"][0]), count=row["count"], value=Decimal(row["value"]),
                  spellings=row["spellings"][:MAX_LISTED] if len(row["spellings"]) > 1 else [])
        for row in stages.to_dicts()
    ]
    return OpportunityFacts(
        total_opportunities=frame.height,
        total_value=total,
        open_opportunities=open_deals.height,
        open_pipeline_value=_money_sum(open_deals),
        won_count=won.height,
        won_value=won_value,
        lost_count=lost.height,
        lost_value=lost_value,
        win_rate_by_value_pct=share_pct(won_value, won_value + lost_value),
        win_rate_by_count_pct=share_pct(Decimal(won.height), Decimal(won.height + lost.height)),
        average_deal_value=(total / frame.height).quantize(CENT, rounding=ROUND_HALF_UP) if frame.height else None,
        stage_breakdown=breakdown,
        stage_spelling_variants=sum(bool(item.spellings) for item in breakdown),
        orphan_opportunities=orphans.len(),
        orphan_opportunity_ids=orphans.head(MAX_LISTED).to_list(),
    )


def ingest(store: ArtifactStore, request: IngestRequest, heartbeat: Callable[[int], None]) -> IngestResult:
    """Parse, normalize and chunk both exports (read from the store, where the client uploaded them), and compute
    the facts over the full data."""
    warnings: list[str] = []
    for ref, name in ((request.contacts, request.contacts_name), (request.opportunities, request.opportunities_name)):
        if not store.exists(ref):
            raise BadInputError(name, "file not found (it is not in the artifact store; start the run again)")
    with store.local_copy(request.contacts, request.contacts_name) as path:
        contacts, contact_columns = _write_dataset(
            store, request.run_id, "contacts", str(path),
            contact_rows(str(path), request.keep_extra_columns, warnings),
            request.contact_chunk_size, heartbeat,
        )
    contact_ids = set(contact_columns.get_column("id").to_list())
    with store.local_copy(request.opportunities, request.opportunities_name) as path:
        opportunities, deal_columns = _write_dataset(
            store, request.run_id, "opportunities", str(path),
            opportunity_rows(str(path), contact_ids, request.decimal_separator, request.keep_extra_columns,
                             warnings),
            request.opportunity_chunk_size, heartbeat,
        )
    facts = Facts(contacts=contact_facts(contact_columns), opportunities=opportunity_facts(deal_columns))
    return IngestResult(contacts=contacts, opportunities=opportunities, facts=facts, warnings=warnings[:10])

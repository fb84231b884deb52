"""The normalized chunk files every service reads: one file per chunk, one schema per branch.

A chunk is JSON lines, one record a line as the record's model writes it (``model_dump_json``): a chunk step reads
its few hundred rows with one call of the records' validator, and aggregation scans the files' columns with polars.
Runs ingested before this wrote Parquet (``DatasetRef.chunk_format``); their chunks are read as they were written.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TypeVar

import polars as pl
from pydantic import TypeAdapter
from pydantic_core import to_json

from shared.artifacts import ArtifactStore
from shared.contracts import ArtifactRef, Branch, ContactRecord, OpportunityRecord

# The columns each export must have (more are kept): one definition for the ingest step and the CLI's early check.
CONTACT_COLUMNS = ("id", "name", "company", "title", "created_date")
OPPORTUNITY_COLUMNS = ("id", "name", "stage", "amount", "contact_id", "close_date")
# The separators an export's header may be written with, in the order ingest tries them: a comma, then a semicolon
# (Excel's CSV where the decimal separator is a comma) and a tab (Excel's "Unicode text").
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


CHUNK_FORMAT = "jsonl"  # what ingest writes now (DatasetRef.chunk_format)


def chunk_key(run_id: str, branch: Branch, index: int) -> str:
    return f"runs/{run_id}/data/{branch}/chunk-{index:05d}.{CHUNK_FORMAT}"


def _parquet(ref: ArtifactRef) -> bool:
    return ref.key.endswith(".parquet")


_EXTRA = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
_SCHEMAS: dict[Branch, dict[str, pl.DataType]] = {
    "contacts": {
        "id": pl.String(), "name": pl.String(), "company": pl.String(), "title": pl.String(),
        "created_date": pl.Date(), "extra": _EXTRA, "quality_flags": pl.List(pl.String),
    },
    "opportunities": {
        "id": pl.String(), "name": pl.String(), "stage": pl.String(), "amount": pl.Decimal(20, 2),
        "contact_id": pl.String(), "close_date": pl.Date(), "extra": _EXTRA, "quality_flags": pl.List(pl.String),
    },
}


def chunk_frame(branch: Branch, rows: Sequence[Mapping[str, object]]) -> pl.DataFrame:
    """Records (as ``model_dump`` writes them) as a frame of the branch's chunk schema."""
    return pl.DataFrame(list(rows), schema=_SCHEMAS[branch])


def chunk_bytes(rows: Sequence[Mapping[str, object]]) -> bytes:
    """Records (as ``model_dump`` writes them) as a chunk file: one JSON document a line."""
    return b"\n".join(map(to_json, rows)) + b"\n" if rows else b""


def write_chunk(store: ArtifactStore, key: str, rows: Sequence[Mapping[str, object]]) -> ArtifactRef:
    """One chunk file (JSON lines: nothing writes Parquet chunks any more, runs ingested before read theirs)."""
    return store.write_bytes(key, chunk_bytes(rows))


def read_frame(store: ArtifactStore, ref: ArtifactRef, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """One Parquet chunk (runs ingested before the JSON lines), through the store (a local file or an object)."""
    # one chunk is a few hundred rows: read on this thread, without the statistics no filter here would use (half
    # the time of polars' defaults, which a chunk step pays twice: analysis and validation)
    source = store.path(ref) if not store.remote else io.BytesIO(store.read_bytes(ref))
    return pl.read_parquet(source, columns=list(columns) if columns else None, parallel="none", use_statistics=False)


# A JSON lines chunk as polars scans it: dates and amounts are strings in JSON, typed as the Parquet chunks were
_SCANNED: dict[Branch, dict[str, pl.DataType]] = {
    branch: {name: pl.String() if name in ("created_date", "close_date", "amount") else dtype
             for name, dtype in schema.items()} for branch, schema in _SCHEMAS.items()}


def _typed(frame: pl.LazyFrame, branch: Branch) -> pl.LazyFrame:
    if branch == "contacts":
        return frame.with_columns(pl.col("created_date").str.to_date("%Y-%m-%d"))
    return frame.with_columns(pl.col("amount").cast(_SCHEMAS["opportunities"]["amount"]),
                              pl.col("close_date").str.to_date("%Y-%m-%d"))


def scan_chunks(store: ArtifactStore, refs: Sequence[ArtifactRef], branch: Branch) -> pl.LazyFrame:
    """Every chunk of a dataset as one frame of the branch's schema (lazily scanned from local files; read in turn
    from objects)."""
    if refs and _parquet(refs[0]):
        if not store.remote:
            return pl.scan_parquet([store.path(ref) for ref in refs])
        return pl.concat([read_frame(store, ref) for ref in refs]).lazy()
    if not refs:
        return pl.DataFrame(schema=_SCHEMAS[branch]).lazy()
    if not store.remote:
        return _typed(pl.scan_ndjson([store.path(ref) for ref in refs], schema=_SCANNED[branch]), branch)
    return _typed(pl.concat([pl.read_ndjson(io.BytesIO(store.read_bytes(ref)), schema=_SCANNED[branch])
                             for ref in refs]).lazy(), branch)


_CONTACTS = TypeAdapter(list[ContactRecord])  # a chunk's records validated in one call, not one call a record
_OPPORTUNITIES = TypeAdapter(list[OpportunityRecord])
R = TypeVar("R", ContactRecord, OpportunityRecord)


def _as_array(data: bytes) -> bytes:
    """JSON lines as one JSON array (a line holds no raw line break: JSON escapes it)."""
    return b"[" + data.strip().replace(b"\n", b",") + b"]"


def _read(adapter: TypeAdapter[list[R]], store: ArtifactStore, ref: ArtifactRef) -> tuple[list[R], bytes | None]:
    """A chunk's records, and the JSON array they were validated from (None for a Parquet chunk)."""
    if _parquet(ref):
        return adapter.validate_python(read_frame(store, ref).to_dicts()), None
    data = _as_array(store.read_bytes(ref))
    return adapter.validate_json(data), data


def read_contacts(store: ArtifactStore, ref: ArtifactRef) -> list[ContactRecord]:
    return _read(_CONTACTS, store, ref)[0]


def read_opportunities(store: ArtifactStore, ref: ArtifactRef) -> list[OpportunityRecord]:
    return _read(_OPPORTUNITIES, store, ref)[0]


# A chunk step's reuse key digests its records as one JSON array, as the records' model writes them. A JSON lines
# chunk is that array already, byte for byte (ingest writes each row as the model writes it: tests/test_reuse.py), so
# the step digests the bytes it read rather than dumping the records again (about 0.3 ms a chunk); a Parquet chunk's
# records are dumped, as before.
def contacts_with_content(store: ArtifactStore, ref: ArtifactRef) -> tuple[list[ContactRecord], bytes]:
    records, data = _read(_CONTACTS, store, ref)
    return records, data if data is not None else _CONTACTS.dump_json(records)


def opportunities_with_content(store: ArtifactStore, ref: ArtifactRef) -> tuple[list[OpportunityRecord], bytes]:
    records, data = _read(_OPPORTUNITIES, store, ref)
    return records, data if data is not None else _OPPORTUNITIES.dump_json(records)


def warm_up() -> None:
    """Pay at start-up what a worker's first chunk would pay: the records' first JSON read, polars' first JSON lines
    scan, group-by and join (about 7 ms more the first time than after)."""
    rows: list[tuple[Branch, dict[str, object]]] = [
        ("contacts", {"id": "w", "name": "w", "company": "w", "title": "w", "created_date": None}),
        ("opportunities", {"id": "w", "name": "w", "stage": "w", "amount": Decimal("1.00"), "contact_id": "w",
                           "close_date": None})]
    for branch, row in rows:
        data = chunk_bytes([row])
        (_CONTACTS if branch == "contacts" else _OPPORTUNITIES).validate_json(_as_array(data))
        frame = _typed(pl.read_ndjson(io.BytesIO(data), schema=_SCANNED[branch]).lazy(), branch).collect()
        frame.group_by("name").len().join(frame, on="name").to_dicts()

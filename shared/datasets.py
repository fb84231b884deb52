"""The normalized chunk files every service reads: one Parquet file per chunk, one schema per branch."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import polars as pl
from pydantic import TypeAdapter

from shared.artifacts import ArtifactStore
from shared.contracts import ArtifactRef, Branch, ContactRecord, OpportunityRecord

# The columns each export must have (more are kept): one definition for the ingest step and the CLI's early check.
CONTACT_COLUMNS = ("id", "name", "company", "title", "created_date")
OPPORTUNITY_COLUMNS = ("id", "name", "stage", "amount", "contact_id", "close_date")


def chunk_key(run_id: str, branch: Branch, index: int) -> str:
    return f"runs/{run_id}/data/{branch}/chunk-{index:05d}.parquet"


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


def write_frame(store: ArtifactStore, key: str, frame: pl.DataFrame) -> ArtifactRef:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return store.write_bytes(key, buffer.getvalue())


def write_chunk(store: ArtifactStore, branch: Branch, key: str, rows: Sequence[Mapping[str, object]]) -> ArtifactRef:
    return write_frame(store, key, chunk_frame(branch, rows))


def read_frame(store: ArtifactStore, ref: ArtifactRef, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """One chunk, through the store (a local file or an object)."""
    # one chunk is a few hundred rows: read on this thread, without the statistics no filter here would use (half
    # the time of polars' defaults, which a chunk step pays twice: analysis and validation)
    source = store.path(ref) if not store.remote else io.BytesIO(store.read_bytes(ref))
    return pl.read_parquet(source, columns=list(columns) if columns else None, parallel="none", use_statistics=False)


def scan_chunks(store: ArtifactStore, refs: Sequence[ArtifactRef]) -> pl.LazyFrame:
    """Every chunk of a dataset as one frame (lazily scanned from local files; read in turn from objects)."""
    if not store.remote:
        return pl.scan_parquet([store.path(ref) for ref in refs])
    return pl.concat([read_frame(store, ref) for ref in refs]).lazy()


_CONTACTS = TypeAdapter(list[ContactRecord])  # a chunk's records validated in one call, not one call a record
_OPPORTUNITIES = TypeAdapter(list[OpportunityRecord])


def read_contacts(store: ArtifactStore, ref: ArtifactRef) -> list[ContactRecord]:
    return _CONTACTS.validate_python(read_frame(store, ref).to_dicts())


def read_opportunities(store: ArtifactStore, ref: ArtifactRef) -> list[OpportunityRecord]:
    return _OPPORTUNITIES.validate_python(read_frame(store, ref).to_dicts())


def warm_up() -> None:
    """Pay at start-up what a worker's first chunk would pay: polars' first Parquet write and read and its first
    group-by and join (about 7 ms more the first time than after)."""
    rows: list[tuple[Branch, dict[str, object]]] = [
        ("contacts", {"id": "w", "name": "w", "company": "w", "title": "w", "created_date": None}),
        ("opportunities", {"id": "w", "name": "w", "stage": "w", "amount": 1, "contact_id": "w", "close_date": None})]
    for branch, row in rows:
        buffer = io.BytesIO()
        chunk_frame(branch, [row]).write_parquet(buffer)
        buffer.seek(0)
        frame = pl.read_parquet(buffer)
        frame.group_by("name").len().join(frame, on="name").to_dicts()

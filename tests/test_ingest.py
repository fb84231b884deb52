"""Parsing and facts: the exports as real CRMs write them, and the ways they go wrong."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from services.analyzer.ingest import (
    BadInputError,
    _Dates,
    contact_facts,
    contact_rows,
    ingest,
    opportunity_facts,
    opportunity_rows,
    parse_amount,
    parse_contacts,
    parse_opportunities,
)
from shared.artifacts import ArtifactStore
from shared.contracts import ArtifactRef, ContactRecord, DatasetRef, IngestRequest, KeyValue, OpportunityRecord
from shared.datasets import chunk_frame, chunk_key, read_contacts, read_opportunities, scan_chunks, write_chunk
from tests.harness import ARTICLE

HEADER = "id,name,company,title,created_date"
# a generator of decoded lines left open past its file raises when it is collected: an error here, not a warning
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def uploaded(store: ArtifactStore, run_id: str, contacts: str | Path, opportunities: str | Path,
             contact_chunk_size: int, opportunity_chunk_size: int) -> IngestRequest:
    """An ingest request as the client makes it: both exports uploaded to the store first (a missing file is
    left for ingest to refuse, as a file the store lost would be)."""
    def put(path: str | Path) -> ArtifactRef:
        file = Path(path)
        return store.upload(file) if file.is_file() else ArtifactRef(key=f"uploads/missing/{file.name}")
    return IngestRequest(run_id=run_id, contacts=put(contacts), contacts_name=Path(contacts).name,
                         opportunities=put(opportunities), opportunities_name=Path(opportunities).name,
                         contact_chunk_size=contact_chunk_size, opportunity_chunk_size=opportunity_chunk_size)


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return str(path)


def test_bom_crlf_quoted_fields_and_extra_columns(tmp_path: Path) -> None:
    text = ("\ufeffid,name,company,title,created_date,region\r\n"
            '1,"Smith, John","Acme, Inc.","CEO ""interim""",2024-01-15,EMEA\r\n'
            '2,"Ann\nLee",Beta,,,APAC\r\n')
    contacts = list(parse_contacts(write(tmp_path, "c.csv", text)))
    assert [c.id for c in contacts] == ["1", "2"]
    assert contacts[0].name == "Smith, John" and contacts[0].company == "Acme, Inc."
    assert contacts[0].title == 'CEO "interim"'
    assert contacts[0].extra == [KeyValue(key="region", value="EMEA")]
    assert contacts[1].name == "Ann\nLee" and contacts[1].created_date is None
    assert contacts[1].quality_flags == ["missing_title"]


def test_quality_flags_are_computed_not_guessed(tmp_path: Path) -> None:
    text = f"{HEADER}\n1,john smith,Acme,CEO,\n2,John  Smith,,CTO,\n3,ANNE LEE,Beta,Dev,\n"
    flags = [c.quality_flags for c in parse_contacts(write(tmp_path, "c.csv", text))]
    assert flags == [["odd_capitalisation"], ["missing_company", "duplicate_name"], ["odd_capitalisation"]]


@pytest.mark.parametrize(("name", "odd"), [
    ("john smith", True), ("John smith", False),  # all lower case is odd; a capital anywhere is not
    ("ANNE LEE", True), ("ANNE", True), ("ANN", False),  # all capitals past three letters; an initialism is not
    ("I.B.M.", False), ("A.B.C.D.", True),  # letters counted, not characters
    ("42", False), ("", False),  # no letters: nothing to capitalise
    ("张伟", False), ("张伟 li", True),  # a script without case has no capitals to get wrong; a cased part has
    ("O'Neil", False), ("o'neil", True),
])
def test_odd_capitalisation_against_its_neighbours(tmp_path: Path, name: str, odd: bool) -> None:
    [contact] = parse_contacts(write(tmp_path, "c.csv", f"{HEADER}\n1,{name},Acme,CEO,\n"))
    assert ("odd_capitalisation" in contact.quality_flags) is odd


def test_the_rows_ingest_writes_are_the_records_models_as_dumped(tmp_path: Path) -> None:
    """Ingest writes rows without building a model per row: each row is exactly what the record's model holds
    and dumps (types, flags, extra columns), so the chunk files are what they were when models were built."""
    contacts = write(tmp_path, "c.csv", "id,name,company,title,created_date,region\n"
                     "1,john smith,Acme,CEO,2024-01-15,EMEA\n2,Ann Lee,,,,\n3,John  Smith,Beta,CTO,2023-02-01,\n")
    deals = write(tmp_path, "o.csv", "id,name,stage,amount,contact_id,close_date,owner\n"
                  "D1,Big,Proposal,\"1,200.50\",1,2024-06-30,kim\nD2,Zero,Closed Won,0,9,,\n")
    rows = list(contact_rows(contacts))
    assert rows == [ContactRecord.model_validate(row).model_dump() for row in rows]
    assert [list(row) for row in rows] == [list(ContactRecord.model_fields)] * 3
    assert rows[0]["extra"] == [{"key": "region", "value": "EMEA"}] and rows[1]["created_date"] is None
    assert [row["quality_flags"] for row in rows] == [["odd_capitalisation"], ["missing_title", "missing_company"],
                                                      ["duplicate_name"]]
    deal_rows = list(opportunity_rows(deals, {"1"}))
    assert deal_rows == [OpportunityRecord.model_validate(row).model_dump() for row in deal_rows]
    assert deal_rows[0]["amount"] == Decimal("1200.50") and deal_rows[1]["quality_flags"] == ["unknown_contact",
                                                                                               "zero_amount"]
    assert [c.model_dump() for c in parse_contacts(contacts)] == rows


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "c.csv: the file is empty; expected a header row with columns id, name, company, title, created_date"),
        ("id,name,company\n1,a,b\n",
         "c.csv: missing column(s) title, created_date; the header has id, name, company but needs id, name, "
         "company, title, created_date"),
        (f"{HEADER}\n", "c.csv: has a header but no data rows"),
        (f"{HEADER}\n1,a,b,c,2024-13-40\n", "c.csv, row 1, column 'created_date': '2024-13-40' is not a date "
                                            "(expected YYYY-MM-DD)"),
        (f"{HEADER}\n1,a,b,c,\n1,d,e,f,\n", "c.csv, row 2, column 'id': id '1' appears more than once"),
        (f"{HEADER}\n,a,b,c,\n", "c.csv, row 1, column 'id': the id is empty"),
        (f"{HEADER}\n1,a,b\n", "c.csv, row 1: has 3 fields but the header has 5"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "c.csv: not a CSV file: it contains binary data"),
        (b"id,name,company,title,created_date\n1,\x81\x8d,b,c,\n",  # bytes neither UTF-8 nor Windows-1252 has
         "c.csv: line 2 is not UTF-8 text; export the CSV as UTF-8"),
        (f"{HEADER}\n1,a,b,c,{'9' * 5000}\n", "c.csv, row 1, column 'created_date': '" + "9" * 40 + "…' is not a "
         "date (expected YYYY-MM-DD)"),
        (f"{HEADER}\n1,{'x' * 200_000},b,c,\n", "c.csv: not a well-formed CSV: field larger than field limit "
         "(131072)"),
    ],
)
def test_bad_contacts_name_file_row_and_column(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = write(tmp_path, "c.csv", content)
    store = ArtifactStore(tmp_path / "store")
    request = uploaded(store, "r", path, str(ARTICLE / "crm_opportunities.csv"), 10, 10)
    with pytest.raises(BadInputError) as caught:
        ingest(store, request, lambda _: None)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1,Deal,Won,abc,1,2024-01-01", "o.csv, row 1, column 'amount': 'abc' is not a number"),
        ("1,Deal,Won,1.234;56,1,2024-01-01", "o.csv, row 1, column 'amount': '1.234;56' is not a number"),
        ('1,Deal,Won,"1.234,56",1,2024-01-01', "o.csv, row 1, column 'amount': '1.234,56' is an ambiguous amount: "
         "with '.' as the decimal separator it could be read two ways; write it as 1234.56 or 1,234.56, or set "
         "TOLLGATE_AMOUNT_DECIMAL_SEPARATOR for an export that writes 1.234,56"),
        ("1,Deal,Won,-5,1,2024-01-01", "o.csv, row 1, column 'amount': '-5' is not a non-negative amount"),
        ("1,Deal,Won,nan,1,2024-01-01", "o.csv, row 1, column 'amount': 'nan' is not a number"),
        ("1,Deal,Won,99999999999999999,1,2024-01-01", "o.csv, row 1, column 'amount': '99999999999999999' is not "
         "a plausible amount (at least 1,000,000,000,000,000)"),
        ("1,Deal,Won,5,1,soon", "o.csv, row 1, column 'close_date': 'soon' is not a date (expected YYYY-MM-DD)"),
    ],
)
def test_bad_opportunities(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path, "o.csv", f"id,name,stage,amount,contact_id,close_date\n{row}\n")
    with pytest.raises(BadInputError) as caught:
        list(parse_opportunities(path, {"1"}))
    assert str(caught.value) == message


def test_amounts_with_currency_formatting_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "o.csv", 'id,name,stage,amount,contact_id,close_date\n1,D,Won,"$1,250.50",9,\n')
    [opportunity] = parse_opportunities(path, {"1"})
    assert opportunity.amount == Decimal("1250.50") and opportunity.quality_flags == ["unknown_contact"]


def test_ingest_chunks_the_data_and_computes_the_facts(tmp_path: Path) -> None:
    contacts = write(tmp_path, "c.csv", f"{HEADER}\n" + "".join(
        f"{i},P{i},{'Acme' if i % 3 else 'Beta'},{'CEO' if i == 1 else 'Eng'},2024-01-01\n" for i in range(1, 12)))
    opportunities = write(tmp_path, "o.csv", "id,name,stage,amount,contact_id,close_date\n1,A,Closed Won,100,1,\n"
                          "2,B,Closed Lost,50,2,\n3,C,Negotiation,50,99,\n4,D,closed won,0,98,\n")
    store = ArtifactStore(tmp_path / "store")
    beats: list[int] = []
    result = ingest(store, uploaded(store, "r1", contacts, opportunities, 4, 3), beats.append)
    assert result.contacts.rows == 11 and len(result.contacts.chunks) == 3
    assert [c.id for c in read_contacts(store, result.contacts.chunks[2])] == ["9", "10", "11"]
    assert [o.id for o in read_opportunities(store, result.opportunities.chunks[1])] == ["4"]
    assert beats, "ingest heartbeats while it streams"
    c, o = result.facts.contacts, result.facts.opportunities
    assert (c.total_contacts, c.unique_companies, c.top_company, c.top_company_contacts) == (11, 2, "Acme", 8)
    assert c.unique_titles == 2
    assert (o.total_value, o.open_pipeline_value, o.won_value, o.lost_value) == (
        Decimal(200), Decimal(50), Decimal(100), Decimal(50))
    assert (o.open_opportunities, o.won_count, o.lost_count) == (1, 2, 1)
    # won / (won + lost): 100 / 150 by value, 2 of 3 by count
    assert o.win_rate_by_value_pct == Decimal("66.7") and o.win_rate_by_count_pct == Decimal("66.7")
    assert o.average_deal_value == Decimal(50)
    assert o.orphan_opportunities == 2 and o.orphan_opportunity_ids == ["3", "4"]
    # 'Closed Won' and 'closed won' are one stage; the two spellings are a data-quality finding
    assert {(s.stage, s.count, s.spellings[0] if s.spellings else "") for s in o.stage_breakdown} == {
        ("Closed Won", 2, "Closed Won"), ("Closed Lost", 1, ""), ("Negotiation", 1, "")}
    assert o.stage_spelling_variants == 1


def test_companies_and_titles_are_grouped_by_one_key(tmp_path: Path) -> None:
    contacts = write(tmp_path, "c.csv", f"{HEADER}\n1,A,Acme Corp,Sr. Engineer,\n2,B,acme corp.,senior engineer,\n"
                     "3,C, ACME  Corp ,Senior Engineer,\n4,D,Beta,CEO,\n5,E,Acme Corp,CEO,\n")
    opportunities = write(tmp_path, "o.csv", "id,name,stage,amount,contact_id,close_date\n1,A,Prospecting,10,1,\n")
    store = ArtifactStore(tmp_path / "store")
    c = ingest(store, uploaded(store, "r1", contacts, opportunities, 4, 3), lambda _: None).facts.contacts
    # the spelling used most names the group
    assert (c.unique_companies, c.top_company, c.top_company_contacts, c.unique_titles) == (2, "Acme Corp", 4, 2)


def test_a_closed_free_export_has_no_win_rate(tmp_path: Path) -> None:
    contacts = write(tmp_path, "c.csv", f"{HEADER}\n1,A,Acme,CEO,\n")
    opportunities = write(tmp_path, "o.csv", "id,name,stage,amount,contact_id,close_date\n1,A,Prospecting,10,1,\n")
    store = ArtifactStore(tmp_path / "store")
    o = ingest(store, uploaded(store, "r1", contacts, opportunities, 4, 3), lambda _: None).facts.opportunities
    assert o.win_rate_by_value_pct is None and o.win_rate_by_count_pct is None  # null, never 0 or NaN
    assert o.open_pipeline_value == Decimal(10)


@pytest.mark.parametrize(
    ("written", "separator", "amount"),
    [("1234", ".", "1234"), ("1,234.56", ".", "1234.56"), ("$1,250.50", ".", "1250.50"), ("0.1", ".", "0.1"),
     ("1.234,56", ",", "1234.56"), ("1234,5", ",", "1234.5"), ("€ 1.000", ",", "1000")],
)
def test_amounts_are_exact(written: str, separator: str, amount: str) -> None:
    assert parse_amount(written, separator) == Decimal(amount)


@pytest.mark.parametrize(
    ("written", "separator"),
    [("1.234,56", "."), ("1,234.5.6", "."), ("1.234", "."), ("12,34", "."), ("1,234.56", ",")],
)
def test_ambiguous_amounts_are_refused(written: str, separator: str) -> None:
    with pytest.raises(ValueError, match="is an ambiguous amount"):
        parse_amount(written, separator)


def test_utf16_and_windows_1252_exports_are_decoded_with_a_warning(tmp_path: Path) -> None:
    text = f"{HEADER}\n1,José Müller,Café Noir,Directeur Général,2024-01-01\n"
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(text.encode("utf-16"))  # with its byte-order mark, as Excel's "Unicode text" writes it
    cp1252 = tmp_path / "cp1252.csv"
    cp1252.write_bytes(text.encode("cp1252"))
    for path, said in ((utf16, "was decoded as UTF-16"), (cp1252, "it was decoded as Windows-1252")):
        warnings: list[str] = []
        [contact] = parse_contacts(str(path), warnings=warnings)
        assert (contact.name, contact.company, contact.title) == ("José Müller", "Café Noir", "Directeur Général")
        assert len(warnings) == 1 and said in warnings[0] and path.name in warnings[0]
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text(text, encoding="utf-8")
    warnings = []
    assert [c.name for c in parse_contacts(str(utf8), warnings=warnings)] == ["José Müller"] and warnings == []


def test_ingest_reports_what_it_assumed(tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_bytes(f"{HEADER}\n1,José,Café,Engineer,2024-01-01\n".encode("cp1252"))
    store = ArtifactStore(tmp_path / "store")
    result = ingest(store, uploaded(store, "r1", contacts, ARTICLE / "crm_opportunities.csv", 10, 10), lambda _: None)
    assert result.warnings == ["contacts.csv is not UTF-8; it was decoded as Windows-1252 (export as UTF-8 to be sure)"]


def test_chunks_are_json_lines_read_back_as_the_records_parsed(tmp_path: Path) -> None:
    """A chunk file is one record a line, read back equal to what the parser yielded (amounts to the cent, dates,
    extra columns, flags); aggregation scans the same files as typed columns."""
    contacts = write(tmp_path, "c.csv", f"{HEADER},notes\n1,Ann,Acme,CEO,2024-01-05,x\n2,bob,Acme,,,\"a, b\"\n"
                     '3,"Li\nWei \u2028Zhang",Acme,CTO,,\n')
    opportunities = write(tmp_path, "o.csv", "id,name,stage,amount,contact_id,close_date\n"
                          "1,A,Closed Won,\"1,250.5\",1,2024-06-30\n2,B,Open,0,7,\n")
    store = ArtifactStore(tmp_path / "store")
    request = uploaded(store, "r1", contacts, opportunities, 200, 200).model_copy(update={"keep_extra_columns": True})
    result = ingest(store, request, lambda rows: None)
    [chunk] = result.contacts.chunks
    assert chunk.key.endswith(".jsonl") and result.contacts.chunk_format == "jsonl"
    assert store.read_bytes(chunk).count(b"\n") == 3  # a line break inside a value is escaped in its line
    assert read_contacts(store, chunk) == list(parse_contacts(contacts))
    assert read_contacts(store, chunk)[2].name == "Li\nWei \u2028Zhang"
    assert read_contacts(store, chunk)[1].extra == [KeyValue(key="notes", value="a, b")]
    deals = read_opportunities(store, result.opportunities.chunks[0])
    assert deals == list(parse_opportunities(opportunities, {"1", "2"}))
    assert str(deals[0].amount) == "1250.50" and deals[1].quality_flags == ["unknown_contact", "zero_amount"]
    assert scan_chunks(store, result.contacts.chunks, "contacts").collect().get_column("name").to_list() == [
        "Ann", "bob", "Li\nWei \u2028Zhang"]
    scanned = scan_chunks(store, result.opportunities.chunks, "opportunities").collect()
    assert scanned.schema == chunk_frame("opportunities", []).schema
    assert scanned.get_column("amount").to_list() == [Decimal("1250.50"), Decimal("0.00")]
    assert scanned.get_column("close_date").to_list() == [date(2024, 6, 30), None]


def test_chunks_of_runs_ingested_as_parquet_are_still_read(tmp_path: Path) -> None:
    """A run ingested before the JSON lines (its DatasetRef has no chunk_format) reads its Parquet chunks as they
    were written, record for record and column for column."""
    store = ArtifactStore(tmp_path / "store")
    records = list(parse_contacts(str(ARTICLE / "crm_contacts.csv")))
    old = DatasetRef.model_validate({"branch": "contacts", "source_name": "c.csv", "rows": len(records),
                                     "chunk_size": 200, "chunk_count": 1, "chunk_prefix": "runs/old/data/contacts"})
    new = old.model_copy(update={"chunk_prefix": "runs/new/data/contacts", "chunk_format": "jsonl"})
    assert old.chunk(0).key == "runs/old/data/contacts/chunk-00000.parquet"
    parquet = io.BytesIO()  # as versions before the JSON lines wrote a chunk
    chunk_frame("contacts", [r.model_dump() for r in records]).write_parquet(parquet)
    store.write_bytes(old.chunk(0).key, parquet.getvalue())
    write_chunk(store, new.chunk(0).key, [r.model_dump() for r in records])
    for dataset in (old, new):
        assert read_contacts(store, dataset.chunk(0)) == records
    assert store.read_bytes(old.chunk(0)).startswith(b"PAR1")
    assert scan_chunks(store, old.chunks, "contacts").collect().equals(
        scan_chunks(store, new.chunks, "contacts").collect())


def test_facts_from_the_kept_columns_are_the_facts_of_the_chunks_written(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest keeps the fact columns as it writes (the flags as one string a row, split by polars, in batches of
    FACT_BATCH rows): the facts it computes are those of the rows in its chunk files, rows with no flag, one, and
    several included, across batch boundaries."""
    monkeypatch.setattr("services.analyzer.ingest.FACT_BATCH", 3)
    contacts = write(tmp_path, "c.csv", f"{HEADER}\n1,Ann,Acme,,\n2,ann,Acme,CEO,\n3,Bob,,Eng,\n4,Cy,Beta,Eng,\n"
                     "5,ANNE SMITH,Beta,,\n6,Ann,Beta,,\n7,Di,Acme,CEO,\n")
    opportunities = write(tmp_path, "o.csv", "id,name,stage,amount,contact_id,close_date\n1,A,Closed Won,0,99,\n"
                          "2,B,Closed Lost,50,2,\n3,C,Negotiation,50,98,\n4,D,closed won,0,1,\n5,E,Won,7,97,\n")
    store = ArtifactStore(tmp_path / "store")
    result = ingest(store, uploaded(store, "r1", contacts, opportunities, 2, 2), lambda _: None)
    rows = [c.model_dump() for ref in result.contacts.chunks for c in read_contacts(store, ref)]
    deals = [o.model_dump() for ref in result.opportunities.chunks for o in read_opportunities(store, ref)]
    assert {len(r["quality_flags"]) for r in rows} == {0, 1, 2}
    assert {len(d["quality_flags"]) for d in deals} == {0, 1, 2}
    assert result.facts.contacts == contact_facts(chunk_frame("contacts", rows))
    assert result.facts.opportunities == opportunity_facts(chunk_frame("opportunities", deals))
    assert (result.facts.contacts.missing_titles, result.facts.contacts.duplicate_names) == (3, 2)
    assert result.facts.opportunities.orphan_opportunity_ids == ["1", "3", "5"]


def test_a_bad_byte_past_the_encoding_probe_is_named_at_its_line(tmp_path: Path) -> None:
    """The exports are decoded a block at a time; a byte that is not UTF-8 far into the file (past the 64 KiB the
    encoding is guessed from, so the guess is UTF-8) is still reported at its line, not at its block."""
    rows = "".join(f"{i},Person {i},Acme,Engineer,2024-01-02\n" for i in range(1, 3001))
    path = write(tmp_path, "c.csv", f"{HEADER}\n{rows}".encode() + b"3001,\xff\xfe,Acme,Engineer,\n")
    assert Path(path).stat().st_size > 64 * 1024
    with pytest.raises(BadInputError) as caught:
        list(contact_rows(path))
    assert str(caught.value) == "c.csv: line 3002 is not UTF-8 text; export the CSV as UTF-8"
    fine = write(tmp_path, "d.csv", f"{HEADER}\n{rows}".encode() + b"3001,Zo\xc3\xab,Acme,Engineer,\n")
    assert [r["name"] for r in contact_rows(fine)][-2:] == ["Person 3000", "Zoë"]


def test_semicolon_and_tab_separated_exports_are_read_as_the_comma_separated_one(tmp_path: Path) -> None:
    """Excel writes ``;`` where the decimal separator is a comma, and tabs in UTF-16 as "Unicode text": the header
    says which, and the rows read as the comma-separated export's do, with a warning naming the separator."""
    rows = [["id", "name", "company", "title", "created_date"], ["1", "Müller, Jan", "Acme", "CEO", "2024-01-15"],
            ["2", "Ann Lee", "Beta; Sons", "Engineer", ""]]

    def export(separator: str) -> str:
        out = io.StringIO()
        csv.writer(out, delimiter=separator).writerows(rows)
        return out.getvalue()

    comma: list[str] = []
    expected = [c.model_dump() for c in parse_contacts(write(tmp_path, "comma.csv", export(",")), warnings=comma)]
    assert [c["name"] for c in expected] == ["Müller, Jan", "Ann Lee"] and comma == []
    semicolon: list[str] = []
    path = write(tmp_path, "semicolon.csv", export(";"))
    assert [c.model_dump() for c in parse_contacts(path, warnings=semicolon)] == expected
    assert semicolon == ["semicolon.csv is semicolon-separated; it was read as such"]
    tab: list[str] = []
    path = write(tmp_path, "tab.csv", export("\t").encode("utf-16"))
    assert [c.model_dump() for c in parse_contacts(path, warnings=tab)] == expected
    assert tab == ["tab.csv was decoded as UTF-16 (it starts with a UTF-16 byte-order mark)",
                   "tab.csv is tab-separated; it was read as such"]


def test_a_semicolon_export_ingests_to_the_comma_export_s_chunks_and_facts(tmp_path: Path) -> None:
    """Through the store, as a run ingests: the same chunk files byte for byte (so their digests, the reuse keys,
    match), the same facts, and the report's warning naming the separator."""
    store = ArtifactStore(tmp_path / "store")
    deals = ARTICLE / "crm_opportunities.csv"
    comma = ARTICLE / "crm_contacts.csv"
    semicolon = tmp_path / "contacts.csv"
    semicolon.write_text(comma.read_text().replace(",", ";"))
    plain = ingest(store, uploaded(store, "r1", comma, deals, 2, 10), lambda _: None)
    read = ingest(store, uploaded(store, "r2", semicolon, deals, 2, 10), lambda _: None)
    assert read.warnings == ["contacts.csv is semicolon-separated; it was read as such"] and plain.warnings == []
    assert read.facts == plain.facts and read.contacts.chunk_count == plain.contacts.chunk_count == 3
    for index in range(3):
        assert (store.read_bytes(chunk_key("r2", "contacts", index))
                == store.read_bytes(chunk_key("r1", "contacts", index)))


def test_a_separated_export_missing_a_column_is_named_column_by_column(tmp_path: Path) -> None:
    """Against the header as its separator splits it, not as one name: the column that is missing is named."""
    path = write(tmp_path, "c.csv", "id;name;company;title\n1;Ann;Acme;CEO\n")
    with pytest.raises(BadInputError) as caught:
        list(parse_contacts(path))
    assert str(caught.value) == ("c.csv: missing column(s) created_date; the header has id, name, company, title but "
                                 "needs id, name, company, title, created_date")
    # its comma-separated neighbour, whose cells hold semicolons, is read with commas
    fine = write(tmp_path, "d.csv", f"{HEADER}\n1,Ann;Bo,Acme;Co,CEO;CTO,\n")
    assert [(c.name, c.company, c.title) for c in parse_contacts(fine)] == [("Ann;Bo", "Acme;Co", "CEO;CTO")]


def test_a_semicolon_export_s_comma_decimals_need_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "o.csv", "id;name;stage;amount;contact_id;close_date\n7;Deal;Won;1234,56;1;2024-01-01\n")
    assert [d.amount for d in parse_opportunities(path, {"1"}, decimal_separator=",")] == [Decimal("1234.56")]
    with pytest.raises(BadInputError, match=r"'1234,56' is an ambiguous amount.*TOLLGATE_AMOUNT_DECIMAL_SEPARATOR"):
        list(parse_opportunities(path, {"1"}))


def test_old_mac_line_endings_are_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", f"{HEADER}\r1,Ann,Acme,CEO,\r2,Bob,Beta,Engineer,\r")
    assert [r["id"] for r in contact_rows(path)] == ["1", "2"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # a row's id is named before its date; the first row with a problem is named, not the worst one
        ("1,a,b,c,\n1,d,e,f,never\n", "c.csv, row 2, column 'id': id '1' appears more than once"),
        ("1,a,b,c,\n2,d,e,f,never\n3,g,h,i,\n3,j,k,l,\n", "c.csv, row 2, column 'created_date': 'never' is not a "
         "date (expected YYYY-MM-DD)"),
        # a day read once is remembered; the same day written wrong later is still refused at its own row
        ("1,a,b,c,2024-02-29\n2,d,e,f,2024-02-29\n3,g,h,i,2023-02-29\n", "c.csv, row 3, column 'created_date': "
         "'2023-02-29' is not a date (expected YYYY-MM-DD)"),
        # rows of blank fields are not rows: the row numbers count data rows only
        ("1,a,b,c,\n , ,,, \n,,,,\n1,d,e,f,\n", "c.csv, row 2, column 'id': id '1' appears more than once"),
    ],
)
def test_the_first_problem_is_named_at_its_row(tmp_path: Path, rows: str, message: str) -> None:
    with pytest.raises(BadInputError) as caught:
        list(contact_rows(write(tmp_path, "c.csv", f"{HEADER}\n{rows}")))
    assert str(caught.value) == message


def test_a_deal_row_names_its_amount_before_its_id(tmp_path: Path) -> None:
    path = write(tmp_path, "o.csv", "id,name,stage,amount,contact_id,close_date\n1,A,Won,5,1,\n1,B,Won,five,1,\n")
    with pytest.raises(BadInputError, match=r"row 2, column 'amount': 'five' is not a number"):
        list(opportunity_rows(path, {"1"}))


def test_dates_are_read_per_day_within_a_bounded_memory(tmp_path: Path) -> None:
    """More distinct days than are remembered, then the first ones again: every date is the one written."""
    days = [date(2000, 1, 1) + timedelta(days=n) for n in range(5000)] + [date(2000, 1, 1), date(2000, 1, 2)]
    path = write(tmp_path, "c.csv", f"{HEADER}\n" + "".join(
        f"{n},P{n},Acme,CEO,{day.isoformat()}{'T09:30:00' if n % 2 else ''}\n" for n, day in enumerate(days)))
    assert [row["created_date"] for row in contact_rows(path)] == days
    remembered = _Dates(path, "created_date")
    for n, day in enumerate(days):
        assert remembered(n + 1, day.isoformat()) == day and len(remembered.days) <= _Dates.KEPT


@pytest.mark.parametrize("separator", [".", ","])
def test_every_amount_is_read_as_parse_amount_reads_it(tmp_path: Path, separator: str) -> None:
    """Plain amounts (digits and two decimals at most) are read without the currency and grouping rules; every
    amount, plain or not, comes out as ``parse_amount`` reads it, or is refused with its message."""
    written = ["0", "007", "12", "12.5", "12.50", "12,5", "12,50", "12.505", "1,234", "1.234", "1.234,56",
               "999999999999999", "999999999999999.99", "1000000000000000", "٣٤", "$12", "12 EUR", "-3", "1e3", " 4 "]
    for n, text in enumerate(written):
        try:
            expected: Decimal | str = parse_amount(text, separator).quantize(Decimal("0.01"))
        except ValueError as error:
            expected = f"o.csv, row 1, column 'amount': {error}"
        path = write(tmp_path, "o.csv", f'id,name,stage,amount,contact_id,close_date\n{n},D,Won,"{text}",1,\n')
        try:
            [row] = opportunity_rows(path, {"1"}, separator)
            got: Decimal | str = row["amount"]  # type: ignore[assignment]
        except BadInputError as error:
            got = str(error)
        assert got == expected, text

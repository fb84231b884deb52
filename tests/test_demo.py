"""The demo's slice of the sample is consistent: the deals it keeps belong to the contacts it keeps."""

from __future__ import annotations

import csv
from pathlib import Path

from client.demo import SAMPLE, slice_export


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_slice_keeps_only_the_deals_of_its_contacts(tmp_path: Path) -> None:
    kept_contacts, kept_deals, all_contacts, all_deals = slice_export(SAMPLE, tmp_path, 24, 16)
    assert (kept_contacts, all_contacts, all_deals) == (24, 200, 120) and 0 < kept_deals <= 16
    ids = {row["id"] for row in rows(tmp_path / "crm_contacts.csv")}
    deals = rows(tmp_path / "crm_opportunities.csv")
    assert len(deals) == kept_deals and all(deal["contact_id"] in ids for deal in deals)


def test_the_whole_sample_keeps_every_deal_even_those_of_unknown_contacts(tmp_path: Path) -> None:
    assert slice_export(SAMPLE, tmp_path, 200, 120) == (200, 120, 200, 120)
    ids = {row["id"] for row in rows(tmp_path / "crm_contacts.csv")}
    assert any(deal["contact_id"] not in ids for deal in rows(tmp_path / "crm_opportunities.csv"))

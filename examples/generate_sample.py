"""Write a realistic, deterministic CRM export: about 200 contacts at about 40 companies and 120 opportunities.

It is messy the way real exports are: blank titles, the same person twice under two ids, odd capitalisation,
titles written five ways, and opportunities that point at contacts that are not in the export. Beside it goes
``ground_truth_contacts.csv``: each contact's labels, from a table labelled by hand (``TITLE_LABELS``).

    uv run python examples/generate_sample.py [OUT_DIR] [--contacts N] [--opportunities N] [--seed N]
"""

from __future__ import annotations

import argparse
import csv
import random
from datetime import date, timedelta
from pathlib import Path

FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
         "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
         "Priya", "Wei", "Fatima", "Carlos", "Aiko", "Olga", "Kwame", "Sofia", "Liam", "Noor", "Mateo", "Ingrid"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
        "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
        "Patel", "Chen", "Khan", "Silva", "Tanaka", "Ivanova", "Mensah", "Rossi", "Murphy", "Haddad", "Nilsen"]
COMPANY_STEMS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
                 "Soylent", "Hooli", "Pied Piper", "Vandelay", "Dunder", "Massive", "Aperture", "Black Mesa",
                 "Oscorp", "Gringotts", "Monarch", "Nakatomi", "Virtucon", "Gekko", "Bluth", "Prestige",
                 "Sterling", "Wernham", "Duff", "Krusty", "Ollivander", "Zorg", "Rekall", "Abstergo", "Ingen",
                 "Weyland", "Yoyodyne", "Kaiju", "Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware"]
COMPANY_SUFFIXES = ["Corp", "Inc", "Labs", "Systems", "Group", "Analytics", "Ltd", "Technologies"]
# (title, weight): executives and juniors are rarer than the middle, as in a real CRM
TITLES = [
    ("CEO", 3), ("Chief Executive Officer", 1), ("Founder & CEO", 2), ("Co-Founder", 1), ("CTO", 3),
    ("Chief Technology Officer", 1), ("CFO", 2), ("COO", 1), ("President", 1), ("VP Sales", 4),
    ("VP of Engineering", 3), ("Vice President, Marketing", 2), ("Head of Data", 3), ("Head of Eng", 2),
    ("Director of Finance", 2), ("Sales Director", 3), ("Engineering Manager", 4), ("Product Manager", 5),
    ("Marketing Manager", 4), ("Office Manager", 2), ("Account Executive", 6), ("Senior Software Engineer", 5),
    ("Software Engineer", 7), ("Developer", 6), ("Data Analyst", 4), ("HR Generalist", 2), ("Recruiter", 2),
    ("Sales Development Rep", 4), ("Customer Success Manager", 3), ("Financial Analyst", 2),
    ("Operations Coordinator", 2), ("Marketing Intern", 2), ("Engineering Intern", 2), ("Junior Developer", 3),
    ("Executive Assistant", 1), ("ceo", 1), ("vp sales", 1), ("SR. SOFTWARE ENGINEER", 1), ("", 9),
]
# Ground truth, labelled by hand for every title above (seniority, department, decision maker) and written beside
# the data. It is kept apart from the validator's taxonomy on purpose: the gate evaluation measures the rules and
# the models against it, so it must not be derived from them.
TITLE_LABELS: dict[str, tuple[str, str, bool]] = {
    "CEO": ("executive", "executive", True), "Chief Executive Officer": ("executive", "executive", True),
    "Founder & CEO": ("executive", "executive", True), "Co-Founder": ("executive", "executive", True),
    "CTO": ("executive", "engineering", True), "Chief Technology Officer": ("executive", "engineering", True),
    "CFO": ("executive", "finance", True), "COO": ("executive", "operations", True),
    "President": ("executive", "executive", True), "VP Sales": ("senior", "sales", True),
    "VP of Engineering": ("senior", "engineering", True), "Vice President, Marketing": ("senior", "marketing", True),
    "Head of Data": ("senior", "engineering", True), "Head of Eng": ("senior", "engineering", True),
    "Director of Finance": ("senior", "finance", True), "Sales Director": ("senior", "sales", True),
    "Engineering Manager": ("mid", "engineering", False), "Product Manager": ("mid", "product", False),
    "Marketing Manager": ("mid", "marketing", False), "Office Manager": ("mid", "operations", False),
    "Account Executive": ("mid", "sales", False), "Senior Software Engineer": ("senior", "engineering", False),
    "Software Engineer": ("mid", "engineering", False), "Developer": ("mid", "engineering", False),
    "Data Analyst": ("mid", "engineering", False), "HR Generalist": ("mid", "hr", False),
    "Recruiter": ("mid", "hr", False), "Sales Development Rep": ("junior", "sales", False),
    "Customer Success Manager": ("mid", "support", False), "Financial Analyst": ("mid", "finance", False),
    "Operations Coordinator": ("junior", "operations", False), "Marketing Intern": ("junior", "marketing", False),
    "Engineering Intern": ("junior", "engineering", False), "Junior Developer": ("junior", "engineering", False),
    "Executive Assistant": ("junior", "operations", False), "ceo": ("executive", "executive", True),
    "vp sales": ("senior", "sales", True), "SR. SOFTWARE ENGINEER": ("senior", "engineering", False),
    "": ("unknown", "unknown", False),
}
STAGES = [("Prospecting", 20), ("Qualification", 18), ("Proposal", 14), ("Negotiation", 14), ("Closed Won", 22),
          ("Closed Lost", 12)]
DEALS = ["Enterprise Deal", "Starter Package", "Platform Expansion", "Analytics Add-on", "Renewal", "Pilot",
         "Security Bundle", "Data Migration", "Team Licences", "Support Upgrade", "Multi-year Agreement"]


def _weighted(rng: random.Random, items: list[tuple[str, int]]) -> str:
    return rng.choices([item for item, _ in items], weights=[weight for _, weight in items])[0]


def _messy_name(rng: random.Random, first: str, last: str) -> str:
    roll = rng.random()
    if roll < 0.04:
        return f"{first} {last}".lower()
    if roll < 0.06:
        return f"{first} {last}".upper()
    if roll < 0.08:
        return f" {first}  {last} "
    return f"{first} {last}"


def generate(out: Path, contacts: int = 200, opportunities: int = 120, companies: int = 40, seed: int = 42) -> None:
    rng = random.Random(seed)
    names = rng.sample([f"{s} {x}" for s in COMPANY_STEMS for x in COMPANY_SUFFIXES], companies)
    # a few large accounts and a long tail, like a real CRM
    company_weights = [1 / (rank + 1) ** 0.8 for rank in range(companies)]
    start = date(2023, 1, 1)
    rows: list[dict[str, str]] = []
    for number in range(1, contacts + 1):
        if rows and rng.random() < 0.04:  # the same person entered twice
            twin = rng.choice(rows)
            rows.append({**twin, "id": str(1000 + number),
                         "created_date": (start + timedelta(days=rng.randrange(700))).isoformat()})
            continue
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = rng.choices(names, weights=company_weights)[0] if rng.random() > 0.02 else ""
        rows.append({
            "id": str(1000 + number),
            "name": _messy_name(rng, first, last),
            "company": company,
            "title": _weighted(rng, TITLES),
            "created_date": (start + timedelta(days=rng.randrange(700))).isoformat(),
        })
    out.mkdir(parents=True, exist_ok=True)
    with (out / "crm_contacts.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "name", "company", "title", "created_date"])
        writer.writeheader()
        writer.writerows(rows)
    with (out / "ground_truth_contacts.csv").open("w", newline="") as handle:
        truth = csv.writer(handle)
        truth.writerow(["id", "seniority", "department", "decision_maker"])
        for row in rows:
            seniority, department, decides = TITLE_LABELS[row["title"]]
            truth.writerow([row["id"], seniority, department, str(decides).lower()])
    ids = [row["id"] for row in rows]
    with (out / "crm_opportunities.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "stage", "amount", "contact_id", "close_date"])
        for number in range(1, opportunities + 1):
            contact = rng.choice(ids) if rng.random() > 0.05 else str(9000 + number)  # ~5% unknown contacts
            amount = round(rng.lognormvariate(10.2, 0.8), -2)
            writer.writerow([
                str(5000 + number), f"{rng.choice(DEALS)} {number}", _weighted(rng, STAGES), f"{amount:.0f}",
                contact, (date(2024, 1, 1) + timedelta(days=rng.randrange(540))).isoformat(),
            ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(Path(__file__).parent / "data" / "sample"))
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--opportunities", type=int, default=120)
    parser.add_argument("--companies", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    generate(Path(args.out), args.contacts, args.opportunities, args.companies, args.seed)
    print(f"wrote {args.out}/crm_contacts.csv and crm_opportunities.csv")


if __name__ == "__main__":
    main()

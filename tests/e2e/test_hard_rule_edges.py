"""Adversarial rounds through the command line: canonical CSVs → ingest → round → proposals.csv, households.csv, report."""

from __future__ import annotations

import csv
import re
import uuid

import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.reports.round_report import WAITING_REASON
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import pseudonym

MUNICIPALITY = (
    "submission_id,submitted_at,municipality_id,municipality_name,state,intake_period,latitude,longitude,capacity_persons,min_persons,"
    "housing_units,largest_unit_persons,accessible_units,pets_allowed,kita_places,school_places_primary,school_places_secondary,"
    "integration_course_places,medical_care,shortage_sectors,ukrainian_community,settlement_type,public_transport,contact_name,"
    "contact_email,contact_phone,notes"
).split(",")
HOUSEHOLD = (
    "submission_id,submitted_at,household_ref,consent_processing,consent_followup,contact_name,contact_phone,contact_email,current_address,"
    "pets,linked_household_refs,family_ties_municipality_id,family_ties_importance,imp_jobs,imp_schools_childcare,imp_medical_care,"
    "imp_community,imp_big_city,imp_quiet_rural,imp_family_nearby,preferred_municipality_ids,excluded_municipality_ids"
).split(",")
MEMBER = "submission_id,member_name,date_of_birth,sex,relation,languages,german_level,education,occupation_sector,wants_work,medical_needs,wheelchair".split(",")
ADULT = ("1990-01-01", "B1")
JULY = "2026-07-10T10:00:00"


def _id(tag: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, tag))


def _offer(ags: str, lat: float, lon: float, largest: int, kita: int, primary: int, course: int) -> dict[str, object]:
    return {
        "submission_id": _id(ags), "submitted_at": "2026-07-01T09:00:00", "municipality_id": ags, "municipality_name": f"Amt {ags}",
        "state": "DE-BY", "intake_period": "2026-07", "latitude": lat, "longitude": lon, "capacity_persons": 30, "min_persons": 0,
        "housing_units": 10, "largest_unit_persons": largest, "accessible_units": 0, "pets_allowed": "no", "kita_places": kita,
        "school_places_primary": primary, "school_places_secondary": 0, "integration_course_places": course, "medical_care": "general",
        "shortage_sectors": "", "ukrainian_community": "small", "settlement_type": "town", "public_transport": "good",
        "contact_name": "Amt", "contact_email": "amt@example.org", "contact_phone": "0049 30 1", "notes": "",
    }


def _household(ref: str, members: list[tuple[str, str]], when: str = JULY, **answers: str) -> tuple[dict[str, object], list[dict[str, object]]]:
    row = {c: "" for c in HOUSEHOLD} | {
        "submission_id": _id(ref), "submitted_at": when, "household_ref": ref, "consent_processing": "yes", "consent_followup": "no",
        "contact_name": "Kontakt", "contact_phone": "0038 1", "pets": "no", "family_ties_importance": "none",
        **{c: 1 for c in HOUSEHOLD if c.startswith("imp_")}, **answers,
    }
    people = [
        {"submission_id": _id(ref), "member_name": f"Person {k}", "date_of_birth": born, "sex": "female", "relation": "head" if k == 0 else "child",
         "languages": "uk", "german_level": level, "education": "school", "occupation_sector": "none", "wants_work": "no", "medical_needs": "",
         "wheelchair": "no"}
        for k, (born, level) in enumerate(members)
    ]
    return row, people


def _land(home: RematchHome, name: str, offers: list[dict[str, object]], households: list[tuple[dict[str, object], list[dict[str, object]]]]) -> None:
    tables = [("municipalities", f"municipalities_{name}.csv", MUNICIPALITY, offers)] if offers else []
    tables += [
        ("households", f"households_{name}.csv", HOUSEHOLD, [h for h, _ in households]),
        ("households", f"members_{name}.csv", MEMBER, [m for _, ms in households for m in ms]),
    ]
    for kind, file_name, header, rows in tables:
        with (home.landing(kind) / file_name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)


def _households_csv(home: RematchHome, round_id: str) -> dict[str, dict[str, str]]:
    with (home.path / "rounds" / round_id / "households.csv").open(encoding="utf-8-sig") as handle:
        return {row["household_pseudonym"]: row for row in csv.DictReader(handle)}


def test_a_linked_household_waiting_for_a_later_partner_is_listed_unplaced_with_its_reason(home: RematchHome) -> None:
    """A household linked to one submitted in a later period waits outside the round's pool (together or not at all).

    Before, it was missing from households.csv and the report: only the run's log said `1 linked household waits`,
    so a coordinator looking for it found no row and no reason."""
    _land(home, "july", [_offer("09663", 49.79, 9.95, 6, 5, 5, 5)], [
        _household("RM-ALONE", [ADULT]),
        _household("RM-WAITS", [ADULT], linked_household_refs="RM-LATER"),
        _household("RM-LATER", [ADULT], when="2026-08-02T10:00:00"),
    ])
    assert main(["ingest"]) == 0
    assert main(["round", "r1", "--period", "2026-07", "--time-limit", "10"]) == 0
    rows = _households_csv(home, "r1")
    secret = home.secret()
    waits, later = (pseudonym(secret, "household", ref) for ref in ("RM-WAITS", "RM-LATER"))
    assert rows[waits]["placed"] == "no" and rows[waits]["unplaced_reason"] == WAITING_REASON
    assert later not in rows, "a household of a later period is no household of this round"
    assert rows[pseudonym(secret, "household", "RM-ALONE")]["placed"] == "yes"
    assert "1 linked household waits outside this round" in (home.path / "rounds" / "r1" / "report.html").read_text()
    with (home.path / "rounds" / "r1" / "proposals.csv").open(encoding="utf-8-sig") as handle:
        assert [r["household_ref"] for r in csv.DictReader(handle)] == ["RM-ALONE"]
    # Its intake adds up with it: 3 received = 0 without consent + 0 not validated + 0 accepted + 1 submitted later
    # + 1 waiting + 1 in the pool (before, the waiting household was in no figure of the intake).
    intake = dict(re.findall(r"<tr><th>(.*?)</th><td class=\"num\">(.*?)</td></tr>", (home.path / "rounds" / "r1" / "report.html").read_text()))
    assert intake["Linked households waiting outside this pool (a household of their group is not in it)"] == "1"
    assert intake["Household questionnaires received"] == "3" and intake["Households in the matching pool"] == "1"
    assert intake["Households submitted after this intake period (not in this pool)"] == "1"


@pytest.mark.parametrize("importance", ["must", "nice"])
def test_edges_of_the_hard_rules_hold_from_the_landed_files_to_the_reasons(home: RematchHome, importance: str) -> None:
    """Real seats: Breitbrunn (09674118) lies 49.99 km and Strahlungen (09673171) 50.04 km from Auengrund (16069058, Thuringia,
    not in the round). A `must` tie there allows Breitbrunn only, a `nice` one is no rule; a household one person larger
    than every dwelling is kept out, one exactly as large is not; a group of three with one member excluded everywhere
    stays out whole; a child turning 6 on the submission date takes a school place, not a Kita place."""
    breitbrunn, strahlungen, wuerzburg = "09674118", "09673171", "09663"
    _land(home, "july", [
        _offer(breitbrunn, 50.018072, 10.70173, 5, 5, 5, 5),
        _offer(strahlungen, 50.283115, 10.232177, 5, 5, 5, 5),
        _offer(wuerzburg, 49.79, 9.95, 6, 0, 1, 1),  # no Kita place, one school place
    ], [
        _household("RM-TIE", [ADULT] * 2, family_ties_municipality_id="16069058", family_ties_importance=importance,
                   excluded_municipality_ids=wuerzburg),
        _household("RM-SEVEN", [ADULT] * 7),
        _household("RM-SIX", [ADULT] * 6),
        _household("RM-G1", [ADULT], linked_household_refs="RM-G2 RM-G3"),
        _household("RM-G2", [ADULT]),
        _household("RM-G3", [ADULT], excluded_municipality_ids=f"{breitbrunn} {strahlungen} {wuerzburg}"),
        _household("RM-SIX-TODAY", [ADULT, ("2020-07-10", "none")], excluded_municipality_ids=f"{breitbrunn} {strahlungen}"),
        _household("RM-SIX-TOMORROW", [ADULT, ("2020-07-11", "none")], excluded_municipality_ids=f"{breitbrunn} {strahlungen}"),
        _household("RM-EIGHTEEN-TODAY", [ADULT, ("2008-07-10", "none")], excluded_municipality_ids=f"{breitbrunn} {strahlungen}"),
    ])
    assert main(["ingest"]) == 0
    assert main(["round", "r1", "--period", "2026-07", "--time-limit", "10"]) == 0
    with (home.path / "rounds" / "r1" / "proposals.csv").open(encoding="utf-8-sig") as handle:
        placed = {r["household_ref"]: r["municipality_id"] for r in csv.DictReader(handle)}
    rows = {ref: _households_csv(home, "r1")[pseudonym(home.secret(), "household", ref)] for ref in placed.keys() | {
        "RM-SEVEN", "RM-G1", "RM-G2", "RM-G3", "RM-SIX-TOMORROW"}}
    if importance == "must":
        assert placed["RM-TIE"] == breitbrunn
    else:
        assert placed["RM-TIE"] in (breitbrunn, strahlungen)
    assert placed["RM-SIX"] == wuerzburg and "RM-SEVEN" not in placed
    assert rows["RM-SEVEN"]["unplaced_reason"] == "no compatible municipality (mostly: largest_unit)"
    assert not {"RM-G1", "RM-G2", "RM-G3"} & placed.keys()
    assert rows["RM-G1"]["unplaced_reason"] == rows["RM-G2"]["unplaced_reason"] == "no municipality compatible with every linked household"
    assert rows["RM-G3"]["unplaced_reason"] == "no compatible municipality (mostly: excluded)"
    assert placed["RM-SIX-TODAY"] == placed["RM-EIGHTEEN-TODAY"] == wuerzburg, "6 and 18 on the day: a school and a course place"
    assert "RM-SIX-TOMORROW" not in placed, "still 5 on the day: a Kita place, and Würzburg has none"


def _visible(html: str, section_id: str) -> str:
    """The text a reader sees in one <section> of report.html: tags (and their tooltips) stripped, spaces collapsed."""
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S)
    assert match, section_id
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1)).replace("\u202f", " "))


def test_the_round_report_names_rules_criteria_and_the_period_in_words(home: RematchHome) -> None:
    """Evaluators and municipalities read report.html: its unplaced reasons said `no compatible municipality (mostly:
    largest_unit)` and its proposals table was headed `schools_childcare`, `medical_care`, `neutral`, the names in
    code. A real round (period left empty) now reads in words throughout; the code names stay in the tooltips and
    in households.csv, which is read by machines and the docs' names."""
    _land(home, "july", [_offer("09674118", 50.018072, 10.70173, 5, 5, 5, 5), _offer("09663", 49.79, 9.95, 6, 0, 1, 1)], [
        _household("RM-SEVEN", [ADULT] * 7),  # larger than every dwelling: no candidate, mostly largest_unit
        _household("RM-TWO", [ADULT] * 2),
        _household("RM-ONE", [ADULT], excluded_municipality_ids="09663"),
    ])
    assert main(["ingest"]) == 0
    assert main(["round", "r1", "--time-limit", "10"]) == 0  # no --period: the latest period with offers
    html = (home.path / "rounds" / "r1" / "report.html").read_text(encoding="utf-8")
    details, unplaced, review = _visible(html, "details"), _visible(html, "unplaced"), _visible(html, "review")
    assert "Intake period 2026-07 (left empty: the latest period with offers)" in details
    assert "Weight: schools and childcare (Kita) 1" in details and "Weight: medical care 1" in details
    assert "no compatible municipality (mostly: household larger than the largest dwelling)" in unplaced
    assert 'title="no compatible municipality (mostly: largest_unit)"' in html
    for words in ("schools and childcare (Kita)", "medical care", "neutral (no preference stated)", "family nearby"):
        assert words in review, words
    for code in ("largest_unit", "schools_childcare", "medical_care", "family_nearby", "big_city", "quiet_rural"):
        assert code not in details + unplaced + review, code
    seven = _households_csv(home, "r1")[pseudonym(home.secret(), "household", "RM-SEVEN")]
    assert seven["unplaced_reason"] == "no compatible municipality (mostly: largest_unit)"


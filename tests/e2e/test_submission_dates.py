"""A submission at night is dated as its submitter wrote it, from every reader's export to the round.

At 00:30 on 10 July German summer time (2026-07-10T00:30+02:00) it is still 9 July in UTC. The household's ages and
intake period go by the date written (10 July), the UTC time only orders submissions (docs/formats.md, "Which
date a submission has")."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from rematch_pipeline.ags_reference import DEVICE_DATE_SET_ASIDE_RULE
from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import pseudonym
from tests.e2e.test_hard_rule_edges import HOUSEHOLD, MEMBER, MUNICIPALITY, _offer
from tests.formats.fixtures.exports import (
    kobo_kpi_households_xlsx,
    kobo_kpi_households_xlsx_typed_end,
    limesurvey_csv,
    odk_central_households,
    zipped,
)

WUERZBURG = "09663"
SCHOOL_CHILD = "UA-NIGHT-SIX"  # submitted at 00:30 on 10 July, its child born 10 July 2020: 6 that day
FIRST_OF_JULY = "UA-NIGHT-JULY"  # submitted at 00:30 on 1 July: a July household


def _person(name: str, born: str, relation: str) -> dict[str, str | None]:
    return {
        "member_name": name, "date_of_birth": born, "sex": "female", "relation": relation, "languages": "uk", "german_level": "B1",
        "education": "school", "occupation_sector": "none", "wants_work": "no", "medical_needs": None, "wheelchair": "no",
    }


def _households(on_tenth: str, on_first: str) -> list[dict]:
    """The two households with the submission times given (as each tool writes 00:30 on 10 and on 1 July)."""
    rows = []
    for ref, when, people in (
        (SCHOOL_CHILD, on_tenth, [_person("Mutter", "1990-01-01", "head"), _person("Kind", "2020-07-10", "child")]),
        (FIRST_OF_JULY, on_first, [_person("Vater", "1985-03-01", "head")]),
    ):
        rows.append({
            "submission_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, ref)), "submitted_at": when, "household_ref": ref,
            "consent_processing": "yes", "consent_followup": "no", "contact_name": "Kontakt", "contact_phone": "0038 1",
            "contact_email": None, "current_address": None, "pets": "no", "linked_household_refs": None,
            "family_ties_municipality_id": None, "family_ties_importance": "none",
            **{f"imp_{k}": "1" for k in ("jobs", "schools_childcare", "medical_care", "community", "big_city", "quiet_rural", "family_nearby")},
            "preferred_municipality_ids": None, "excluded_municipality_ids": None, "members": people,
        })
    return rows


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def _templates(on_tenth: str, on_first: str) -> Callable[[RematchHome, Path], None]:
    """Canonical households and members CSVs (the templates) with these submission times."""
    def land(home: RematchHome, tmp_path: Path) -> None:
        rows = _households(on_tenth, on_first)
        _write_csv(home.landing("households") / "households_night.csv", HOUSEHOLD, rows)
        _write_csv(home.landing("households") / "members_night.csv", MEMBER, [{"submission_id": r["submission_id"], **m} for r in rows for m in r["members"]])
    return land


def _kobo_xlsx(home: RematchHome, tmp_path: Path) -> None:
    """KPI XLSX with 'Store date and number responses as text': the end time as the device wrote it, with its offset."""
    rows = _households("2026-07-10T00:30:00.000+02:00", "2026-07-01T00:30:00.000+02:00")
    kobo_kpi_households_xlsx(home.landing("households") / "Haushalte.xlsx", rows)


def _kobo_xlsx_typed_end(home: RematchHome, tmp_path: Path) -> None:
    """KPI XLSX without that option: the end time's offset dropped, the server's UTC time (9 July, 30 June) read instead."""
    rows = _households("", "")
    data = kobo_kpi_households_xlsx_typed_end(
        tmp_path / "typed.xlsx", ["2026-07-10T00:30:00+02:00", "2026-07-01T00:30:00+02:00"], ["2026-07-09T22:30:07", "2026-06-30T22:30:05"], rows
    )
    (home.landing("households") / "Haushalte.xlsx").write_bytes(data)


def _odk_central(home: RematchHome, tmp_path: Path) -> None:
    rows = _households("2026-07-10T00:30:00.000+02:00", "2026-07-01T00:30:00.000+02:00")
    (home.landing("households") / "submissions.csv.zip").write_bytes(zipped(odk_central_households(rows)))


def _kobo_xlsx_without_end(home: RematchHome, tmp_path: Path) -> None:
    """A KoboToolbox form without an end time: submitted_at is `_submission_time`, the server's UTC receipt (9 July,
    30 June); the form's `start` (device time with offset, when the form was opened) has the date the submitter wrote."""
    rows = _households("2026-07-09T22:30:07", "2026-06-30T22:30:05")
    start = ["2026-07-10T00:12:40.000+02:00", "2026-07-01T00:21:13.000+02:00"]
    kobo_kpi_households_xlsx(home.landing("households") / "Haushalte.xlsx", rows, own_submitted_at=False, device={"start": start})


def _kobo_xlsx_default_end(home: RematchHome, tmp_path: Path) -> None:
    """A form built in KoboToolbox's form builder, which adds `start` and `end` under those names: not our submitted_at
    question, so `_submission_time` orders, and the device's `end` (the form finished just after midnight) dates."""
    rows = _households("2026-07-09T22:30:07", "2026-06-30T22:30:05")
    device = {
        "start": ["2026-07-09T23:58:02.000+02:00", "2026-06-30T23:59:30.000+02:00"],
        "end": ["2026-07-10T00:30:00.000+02:00", "2026-07-01T00:30:00.000+02:00"],
    }
    kobo_kpi_households_xlsx(home.landing("households") / "Haushalte.xlsx", rows, own_submitted_at=False, device=device)


def _odk_central_without_end(home: RematchHome, tmp_path: Path) -> None:
    """An ODK Central form without an end time: submitted_at is `SubmissionDate` (UTC); the form's `today` (device
    date) has the date written."""
    rows = _households("2026-07-09T22:30:07.412Z", "2026-06-30T22:30:05.118Z")
    device = {"today": ["2026-07-10", "2026-07-01"]}
    (home.landing("households") / "submissions.csv.zip").write_bytes(zipped(odk_central_households(rows, device=device)))


def _limesurvey(home: RematchHome, tmp_path: Path) -> None:
    """LimeSurvey's submitdate: the server's local time without offset (2026-07-10 00:30:00), read as written."""
    rows = _households("2026-07-10T00:30:00", "2026-07-01T00:30:00")
    (home.landing("households") / "results-survey123456.csv").write_bytes(limesurvey_csv("households", rows, incomplete=False))


# Per household: its intake period, Kita places and primary school places, as household_features has them.
EXPECTED = {SCHOOL_CHILD: ("2026-07", 0, 1), FIRST_OF_JULY: ("2026-07", 0, 0)}


def _dated(home: RematchHome) -> dict[str, tuple[str, int, int]]:
    """EXPECTED's households as household_features dates and counts them."""
    refs = {pseudonym(home.secret(), "household", ref): ref for ref in EXPECTED}
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        rows = con.execute("SELECT household_pseudonym, submitted_period, kita_places, school_places_primary FROM household_features").fetchall()
    return {refs[p]: (period, kita, school) for p, period, kita, school in rows if p in refs}


def _land_offer(home: RematchHome, name: str = "municipalities_july.csv", ags: str = WUERZBURG) -> None:
    offer = _offer(ags, 49.79, 9.95, 6, 0, 1, 1)  # no Kita place, one primary school place
    _write_csv(home.landing("municipalities") / name, MUNICIPALITY, [offer])


READERS: dict[str, Callable[[RematchHome, Path], None]] = {
    "templates with offset": _templates("2026-07-10T00:30:00+02:00", "2026-07-01T00:30:00+02:00"),
    "templates from a German Excel": _templates("10.07.2026 00:30", "01.07.2026 00:30"),
    "kobo xlsx": _kobo_xlsx,
    "kobo xlsx without its offset": _kobo_xlsx_typed_end,
    "odk central": _odk_central,
    "kobo xlsx without end, with start": _kobo_xlsx_without_end,
    "kobo xlsx with the builder's end": _kobo_xlsx_default_end,
    "odk central without end, with today": _odk_central_without_end,
    "limesurvey": _limesurvey,
}


@pytest.mark.parametrize("reader", list(READERS))
def test_a_night_submission_is_dated_as_written_for_ages_and_the_intake_period(home: RematchHome, tmp_path: Path, reader: str) -> None:
    """Before, 2026-07-10T00:30+02:00 was dated 9 July (its UTC date): the child born 10 July 2020 counted 5 and needed
    a Kita place Würzburg does not have, and the household submitted at 00:30 on 1 July was a June household."""
    _land_offer(home)
    READERS[reader](home, tmp_path)
    assert main(["ingest"]) == 0
    # 6 on the day written: a school place, not a Kita place; 00:30 on 1 July is July where it was written.
    assert _dated(home) == EXPECTED
    assert main(["round", "r1", "--period", "2026-07", "--time-limit", "10"]) == 0
    with (home.path / "rounds" / "r1" / "proposals.csv").open(encoding="utf-8-sig") as handle:
        placed = {r["household_ref"]: r["municipality_id"] for r in csv.DictReader(handle)}
    assert placed[SCHOOL_CHILD] == WUERZBURG


def test_a_warehouse_of_an_older_release_dates_its_stored_submissions_as_written(home: RematchHome, tmp_path: Path) -> None:
    """raw_households of a release before the date as written lacks its column: the warehouse gains it (null in the rows
    stored before), and validation dates those rows by their submitted_at as landed, offset and all."""
    _land_offer(home)
    READERS["templates with offset"](home, tmp_path)
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path)) as con:  # as the older release left it
        con.execute("ALTER TABLE raw_households DROP COLUMN submitted_on")
        con.execute("CREATE OR REPLACE TABLE household_features AS SELECT * EXCLUDE (submitted_on) FROM household_features")
    _land_offer(home, "municipalities_update.csv", "09162")  # a new file: the warehouse is validated again
    assert main(["ingest"]) == 0
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*), count(submitted_on) FROM raw_households").fetchone() == (2, 0)
    assert _dated(home) == EXPECTED


def test_a_kobo_xlsx_refused_before_is_dated_by_the_device_when_retried(
    home: RematchHome, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`rematch ingest --retry-rejected` reads an export again with today's readers: the device's date of an end time
    that lost its offset is stored beside the server's UTC time it orders by."""
    from tests.e2e.test_retry import _refused_by_an_older_version

    _land_offer(home)
    _kobo_xlsx_typed_end(home, tmp_path)
    _refused_by_an_older_version(home, home.landing("households") / "Haushalte.xlsx", "kobo: a rule of an older release")
    assert main(["ingest"]) == 0
    assert _dated(home) == {}
    assert main(["ingest", "--retry-rejected"]) == 0
    out = capsys.readouterr().out
    assert "retried: Haushalte.xlsx: ingested" in out and "(refused before)" in out, out
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        stored = con.execute("SELECT submitted_at, submitted_on FROM raw_households ORDER BY submitted_at").fetchall()
    assert stored == [("2026-06-30T22:30:05", "2026-07-01"), ("2026-07-09T22:30:07", "2026-07-10")]
    assert _dated(home) == EXPECTED


def test_a_device_date_no_clock_could_show_gives_way_to_the_servers_date(home: RematchHome, tmp_path: Path, capsys) -> None:  # noqa: ANN001 - pytest fixture
    """A form without an end time whose `start` a device clock got wrong (reset to 2000, or days ahead of the server's
    receipt) is dated by the server's UTC date, as before the device's date was read: not a child of -20 years
    quarantined, nor a household submitted in June counted in July. Ingestion says so per row (it said nothing)."""
    _land_offer(home)
    rows = _households("2026-07-09T22:30:07", "2026-06-30T22:30:05")
    start = ["2000-01-01T00:04:11.000+01:00", "2026-07-03T09:00:00.000+02:00"]
    kobo_kpi_households_xlsx(home.landing("households") / "Haushalte.xlsx", rows, own_submitted_at=False, device={"start": start})
    assert main(["ingest"]) == 0
    said = capsys.readouterr()
    warned = [line for line in (said.out + said.err).splitlines() if DEVICE_DATE_SET_ASIDE_RULE in line]
    assert len(warned) == 2 and all(line.startswith("warning: household H-") and "submitted_at (Haushalte.xlsx" in line for line in warned), warned
    assert "2000-01-01" not in said.out + said.err and "07-03" not in said.out + said.err
    # The server's dates: 9 July (the child is 5: a Kita place) and 30 June (a June household).
    assert _dated(home) == {SCHOOL_CHILD: ("2026-07", 1, 0), FIRST_OF_JULY: ("2026-06", 0, 0)}
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        stored = con.execute("SELECT submitted_at, submitted_on FROM raw_households ORDER BY submitted_at").fetchall()
    # The reader keeps what the device wrote; validation decides which date counts.
    assert stored == [("2026-06-30T22:30:05", "2026-07-03"), ("2026-07-09T22:30:07", "2000-01-01")]

"""A household that refuses consent is only counted: its members' analytic fields are blanked and
their names and birth dates leave the identity store, whichever file lands first (contract B)."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import duckdb
import polars as pl
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.warehouse import FILE_COLUMNS, raw_columns
from rematch_pipeline.sample import generate_round
from tests.formats.fixtures.exports import HOUSEHOLDS, kobo_kpi_households_xlsx, odk_central_households, zipped

# Everything but the keys that count and link a member row, and its provenance.
MEMBER_FIELDS = [c for c in raw_columns("members") if c not in ("submission_id", "member_pseudonym", *FILE_COLUMNS)]


def _query(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _stored_members(home: RematchHome, submission_id: str) -> tuple[int, int, int]:
    """(raw member rows, of them with any analytic field, member identity rows) of one submission."""
    analytic = " OR ".join(f"{c} IS NOT NULL" for c in MEMBER_FIELDS)
    rows, filled = _query(
        home.warehouse_path,
        f"SELECT count(*), count(*) FILTER ({analytic}) FROM raw_members WHERE submission_id = ? AND member_pseudonym IS NOT NULL",
        [submission_id],
    )[0]
    identities = _query(home.identity_path, "SELECT count(*) FROM member_identity WHERE submission_id = ?", [submission_id])[0][0]
    return rows, filled, identities


def _household_identities(home: RematchHome, submission_id: str) -> int:
    return _query(home.identity_path, "SELECT count(*) FROM household_identity WHERE submission_id = ?", [submission_id])[0][0]


def _csv(frame: pl.DataFrame) -> bytes:
    out = io.StringIO()
    frame.write_csv(out)
    return out.getvalue().encode()


def _ingest(home: RematchHome, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (home.landing("households") / name).write_bytes(data)
    assert main(["ingest"]) == 0


@pytest.mark.parametrize("members_first", [True, False], ids=["members_first", "household_first"])
def test_members_of_a_refusing_household_keep_only_their_keys_whichever_file_lands_first(home: RematchHome, members_first: bool) -> None:
    sample = generate_round(20, 3, seed=11)
    # A household no other names as linked, so that its refusal holds nobody else back.
    linked = {r for refs in sample.households["linked_household_refs"].drop_nulls() for r in refs.split()}
    alone = sample.households.filter(
        (pl.col("linked_household_refs").fill_null("") == "") & ~pl.col("household_ref").is_in(list(linked)) & (pl.col("consent_processing") == "yes")
    )["submission_id"]
    target, other = alone[0], alone[1]
    households = sample.households.with_columns(
        pl.when(pl.col("submission_id") == target).then(pl.lit("no")).otherwise(pl.col("consent_processing")).alias("consent_processing")
    )
    theirs = sample.members.filter(pl.col("submission_id") == target)
    # Names that no other row of the round carries: their bytes must leave identity.duckdb.
    others = {*sample.members.filter(pl.col("submission_id") != target)["member_name"], *sample.households["contact_name"]}
    names = [n for n in theirs["member_name"] if n not in others]
    # The household's own phone number, which no other row carries, must leave too.
    phone = households.filter(pl.col("submission_id") == target)["contact_phone"][0]
    assert theirs.height and names and households["contact_phone"].to_list().count(phone) == 1
    names.append(phone)
    first, second = ({"members.csv": _csv(sample.members)}, {"households.csv": _csv(households)})
    if not members_first:
        first, second = second, first

    _ingest(home, first)
    if members_first:  # nothing tells yet that their household refuses
        assert _stored_members(home, target) == (theirs.height, theirs.height, theirs.height)
    _ingest(home, second)

    assert _stored_members(home, target) == (theirs.height, 0, 0)
    assert _household_identities(home, target) == 0 and _household_identities(home, other) == 1
    identity_bytes = home.identity_path.read_bytes()
    assert not any(name.encode() in identity_bytes for name in names)
    refusing = households.filter(pl.col("consent_processing") == "no")["household_ref"].n_unique()
    assert _query(home.warehouse_path, "SELECT value FROM intake_counts WHERE name = 'households_without_consent'") == [(refusing,)]
    # Counted, not quarantined: nothing is wrong with the blanked rows.
    assert _query(home.warehouse_path, "SELECT count(*) FROM quarantine") == [(0,)]
    assert _stored_members(home, other)[1] > 0
    assert _query(home.warehouse_path, "SELECT count(*) FROM members WHERE submission_id = ?", [other])[0][0] > 0


def test_a_kobo_workbook_with_a_refusing_household_stores_no_member_data(home: RematchHome, tmp_path: Path) -> None:
    rows = copy.deepcopy(HOUSEHOLDS)
    rows[1]["consent_processing"] = "no"  # its member sheet rows are in the same file
    refusing, consenting = rows[1]["submission_id"], rows[0]["submission_id"]
    _ingest(home, {"haushalte.xlsx": kobo_kpi_households_xlsx(tmp_path / "haushalte.xlsx", rows).read_bytes()})
    assert _stored_members(home, refusing) == (1, 0, 0)
    assert _stored_members(home, consenting) == (2, 2, 2)


def test_an_edit_in_central_that_refuses_withdraws_the_members_and_a_later_edit_that_consents_brings_them_back(
    home: RematchHome,
) -> None:
    """Central keeps the submission id and date of an edited submission: the latest export wins."""
    rows = copy.deepcopy(HOUSEHOLDS)
    target = rows[1]["submission_id"]
    refused = copy.deepcopy(rows)
    refused[1]["consent_processing"] = "no"
    refused[1]["members"] = []  # the members repeat is relevant only with consent

    _ingest(home, {"week1.csv.zip": zipped(odk_central_households(rows))})
    assert _stored_members(home, target) == (1, 1, 1)
    assert {r[0] for r in _query(home.warehouse_path, "SELECT submission_id FROM households")} == {r["submission_id"] for r in rows}

    _ingest(home, {"week2.csv.zip": zipped(odk_central_households(refused))})
    assert _stored_members(home, target) == (1, 0, 0)
    assert _household_identities(home, target) == 0
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households WHERE submission_id = ? AND pets IS NOT NULL", [target]) == [(0,)]
    # Its partner waits (linked households go together or not at all); nothing of the refusing one is matched.
    assert _query(home.warehouse_path, "SELECT count(*) FROM households") == [(0,)]
    assert _query(home.warehouse_path, "SELECT value FROM intake_counts WHERE name = 'households_without_consent'") == [(1,)]

    _ingest(home, {"week3.csv.zip": zipped(odk_central_households(rows))})
    assert _stored_members(home, target) == (2, 1, 1)  # week 1's copy stays blank, week 3's is stored
    assert _household_identities(home, target) == 1
    assert {r[0] for r in _query(home.warehouse_path, "SELECT submission_id FROM households")} == {r["submission_id"] for r in rows}
    assert _query(home.warehouse_path, "SELECT count(*) FROM members WHERE submission_id = ?", [target]) == [(1,)]
    assert _query(home.warehouse_path, "SELECT value FROM intake_counts WHERE name = 'households_without_consent'") == [(0,)]


def _alone(sample) -> list[str]:  # noqa: ANN001 - a SampleRound
    """Submission ids of consenting households that neither name nor are named by a linked household."""
    linked = {r for refs in sample.households["linked_household_refs"].drop_nulls() for r in refs.split()}
    return sample.households.filter(
        (pl.col("linked_household_refs").fill_null("") == "") & ~pl.col("household_ref").is_in(list(linked)) & (pl.col("consent_processing") == "yes")
    )["submission_id"].to_list()


@pytest.mark.parametrize("refusal_is_later", [True, False], ids=["refusal_later", "refusal_earlier"])
def test_a_refusal_in_another_submission_of_the_household_blanks_the_earlier_submissions_rows(home: RematchHome, refusal_is_later: bool) -> None:
    """Latest wins per household too: a second questionnaire of the same household_ref that refuses
    withdraws the first one like an edit of it would: rows blanked, names and contacts deleted. One
    dated before the first questionnaire does not (the consenting one is the latest)."""
    sample = generate_round(20, 3, seed=11)
    target = _alone(sample)[0]
    first = sample.households.filter(pl.col("submission_id") == target)
    theirs = sample.members.filter(pl.col("submission_id") == target)
    _ingest(home, {"households.csv": _csv(sample.households), "members.csv": _csv(sample.members)})
    assert _stored_members(home, target) == (theirs.height, theirs.height, theirs.height)

    submitted = first["submitted_at"][0]
    when = "2026-07-30T09:00:00" if refusal_is_later else "2026-06-01T09:00:00"
    assert (when > submitted) == refusal_is_later
    refusal = first.with_columns(
        pl.lit("5e0c1f7a-0000-4000-8000-00000000beef").alias("submission_id"),
        pl.lit(when).alias("submitted_at"),
        pl.lit("no").alias("consent_processing"),
    )
    _ingest(home, {"refusal.csv": _csv(refusal)})

    blanked = _query(home.warehouse_path, "SELECT count(*) FROM raw_households WHERE submission_id = ? AND pets IS NOT NULL", [target])[0][0] == 0
    in_round = _query(home.warehouse_path, "SELECT count(*) FROM households WHERE submission_id = ?", [target])[0][0] == 1
    if refusal_is_later:
        assert blanked and not in_round
        assert _stored_members(home, target) == (theirs.height, 0, 0)
        assert _household_identities(home, target) == 0
        identity_bytes = home.identity_path.read_bytes()
        assert first["contact_phone"][0].encode() not in identity_bytes
        assert not any(name.encode() in identity_bytes for name in theirs["member_name"])
        refusing = sample.households.filter(pl.col("consent_processing") == "no").height + 1
        assert _query(home.warehouse_path, "SELECT value FROM intake_counts WHERE name = 'households_without_consent'") == [(refusing,)]
    else:
        assert not blanked and in_round
        assert _stored_members(home, target) == (theirs.height, theirs.height, theirs.height)
        assert _household_identities(home, target) == 1
        # Processed, so not without consent: it counted there and among the validated, and a round's intake
        # did not add up (received = without consent + not validated + validated).
        counts = dict(_query(home.warehouse_path, "SELECT name, value FROM intake_counts"))
        assert counts["households_without_consent"] == sample.households.filter(pl.col("consent_processing") == "no").height
        received = _query(home.warehouse_path, "SELECT count(DISTINCT household_pseudonym) FROM raw_households")[0][0]
        validated = _query(home.warehouse_path, "SELECT count(*) FROM households")[0][0]
        assert received == counts["households_without_consent"] + counts["households_not_validated"] + validated


def test_members_of_a_consenting_edit_that_land_before_its_household_row_are_kept(home: RematchHome) -> None:
    """A refusal, then an edit back to yes whose members CSV lands (and is ingested) before its
    households CSV: the members arrived while the refusal stood, so they were blanked; the edit's
    household row brings them back, and the household is matched with them."""
    sample = generate_round(20, 3, seed=11)
    target = _alone(sample)[0]
    theirs = sample.members.filter(pl.col("submission_id") == target)
    refused = sample.households.with_columns(
        pl.when(pl.col("submission_id") == target).then(pl.lit("no")).otherwise(pl.col("consent_processing")).alias("consent_processing")
    )
    _ingest(home, {"households.csv": _csv(refused), "members.csv": _csv(sample.members)})
    assert _stored_members(home, target) == (theirs.height, 0, 0)

    # The edit: same submission id and date (Kobo and Central keep both), consent yes, in two CSVs.
    edited_members = theirs.with_columns(pl.lit("A2").alias("german_level"))
    _ingest(home, {"members_edit.csv": _csv(edited_members)})
    assert _stored_members(home, target) == (2 * theirs.height, 0, 0)  # the refusal still stands
    _ingest(home, {"households_edit.csv": _csv(sample.households.filter(pl.col("submission_id") == target))})

    assert _stored_members(home, target) == (2 * theirs.height, theirs.height, theirs.height)
    assert _household_identities(home, target) == 1
    assert _query(home.warehouse_path, "SELECT count(*) FROM households WHERE submission_id = ?", [target]) == [(1,)]
    assert _query(home.warehouse_path, "SELECT german_level, count(*) FROM members WHERE submission_id = ? GROUP BY 1", [target]) == [("A2", theirs.height)]
    # The members stored with the refusal stay blank: they belong to the withdrawn copy.
    analytic = " OR ".join(f"{c} IS NOT NULL" for c in MEMBER_FIELDS)
    assert _query(
        home.warehouse_path, f"SELECT count(*) FROM raw_members WHERE submission_id = ? AND file_name = 'members.csv' AND ({analytic})", [target]
    ) == [(0,)]
    refusing = sample.households.filter(pl.col("consent_processing") == "no").height
    assert _query(home.warehouse_path, "SELECT value FROM intake_counts WHERE name = 'households_without_consent'") == [(refusing,)]


def test_erasure_names_the_dagster_runs_that_still_name_the_household(home: RematchHome, capsys: pytest.CaptureFixture[str]) -> None:
    """A held-out household is named by pseudonym in the validation run's log and metadata. Erasure
    cannot rewrite Dagster's storage, so it names those runs for the operator to delete."""
    from rematch_pipeline.resources.identity import pseudonym

    sample = generate_round(20, 3, seed=11)
    target = _alone(sample)[0]
    ref = sample.households.filter(pl.col("submission_id") == target)["household_ref"][0]
    broken = sample.households.with_columns(
        pl.when(pl.col("submission_id") == target).then(pl.lit("vielleicht")).otherwise(pl.col("pets")).alias("pets")
    )
    _ingest(home, {"households.csv": _csv(broken), "members.csv": _csv(sample.members)})
    shown = pseudonym(home.secret(), "household", ref)
    assert shown in capsys.readouterr().err  # "held out: household H-…"

    assert main(["erase", ref]) == 0
    err = capsys.readouterr().err
    assert "still name the household" in err and "validate_job" in err
    assert ref not in err and shown not in err  # named by run, not by household


def test_a_refusal_saved_by_a_german_excel_withdraws_the_export_it_corrects() -> None:
    # The refusal is the same submission landed again from Excel, which shows 05.07.2026 10:48 for
    # 2026-07-05T10:48:45: dropping the seconds must not make the later copy the older one.
    from rematch_pipeline.schemas.consent import refused_submissions, withdrawn_copies

    rows = pl.DataFrame(
        {
            "submission_id": ["s1", "s1"],
            "household_pseudonym": ["H-1", "H-1"],
            "submitted_at": ["2026-07-05T10:48:45", "05.07.2026 10:48"],
            "consent_processing": ["yes", "nein"],
        }
    )
    withdrawn = withdrawn_copies(rows)
    assert withdrawn.to_list() == [True, True]
    assert refused_submissions(rows, withdrawn).to_list() == ["s1"]

"""The latest submission per municipality / household is chosen before validity: a broken later
submission holds its entity out instead of leaving the older one in force."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import polars as pl
import pytest

from rematch_pipeline.definitions import build_definitions
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import pseudonym
from rematch_pipeline.runs import run_round
from rematch_pipeline.sample import SampleRound
from rematch_pipeline.schemas.parsing import SUBMITTED_AT_RULE
from rematch_pipeline.validation import HELD_OUT_RULE
from tests.e2e.test_bad_inputs import SECRET, _csv, _files, _ingest, _set, sample  # noqa: F401 (sample: fixture)

UPDATE_ID = "7f1c2a9e-0000-4000-8000-00000000a001"


def _later(frame: pl.DataFrame) -> str:
    """A submitted_at after every submission of the frame."""
    latest = max(dt.datetime.fromisoformat(v) for v in frame["submitted_at"].to_list())
    return (latest + dt.timedelta(hours=1)).isoformat(timespec="seconds")


def _query(home: RematchHome, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _everything(home: RematchHome) -> str:
    tables = ("quarantine", "superseded_submissions", "held_out", "ingestion_log", "municipalities", "households")
    return " ".join(str(_query(home, f'SELECT * FROM "{t}"')) for t in tables)


@pytest.mark.parametrize(("column", "value", "rule"), [("capacity_persons", SECRET, "type: whole number"), ("submitted_at", SECRET, "type: ISO 8601 timestamp")])
def test_invalid_later_municipality_update_holds_the_municipality_out(
    home: RematchHome, sample: SampleRound, column: str, value: str, rule: str
) -> None:
    summary, _ = _ingest(home, _files(sample))
    ags = sample.municipalities["municipality_id"][0]
    assert _query(home, "SELECT count(*) FROM municipalities WHERE municipality_id = ?", [ags]) == [(1,)]

    update = sample.municipalities.head(1).with_columns(
        pl.lit(UPDATE_ID).alias("submission_id"), pl.lit(_later(sample.municipalities)).alias("submitted_at")
    )
    summary, logs = _ingest(home, {"municipalities/update.csv": _csv(_set(update, 0, column, value))})

    # Not silently replaced by the older valid offer: no offer of that municipality at all.
    assert _query(home, "SELECT count(*) FROM municipalities WHERE municipality_id = ?", [ags]) == [(0,)]
    assert _query(home, "SELECT count(*) FROM municipality_features WHERE municipality_id = ?", [ags]) == [(0,)]
    held = _query(home, 'SELECT municipality_id, file_name, file_row, "column", rule, older_submissions_not_used FROM held_out')
    assert held == [(ags, "update.csv", 2, column, rule, 1)]
    assert _query(home, "SELECT file_name, file_row, rule FROM superseded_submissions") == [("municipalities.csv", 2, HELD_OUT_RULE)]
    assert len(summary.held_out) == 1
    line = summary.held_out[0]
    assert ags in line and "update.csv, row 2" in line and column in line and "older submission was not used" in line
    for text in (logs, _everything(home), line):
        assert SECRET not in text

    # A round reads the canonical tables only: the held-out municipality gets no proposal.
    with dg.instance_for_test(temp_dir=str(home.dagster_home)) as instance:
        run_round(build_definitions(home), instance, home, "r1", {"period": sample.period, "time_limit_seconds": 10.0})
    assert _query(home, "SELECT count(*) FROM proposals") != [(0,)]
    assert _query(home, "SELECT count(*) FROM proposals WHERE municipality_id = ?", [ags]) == [(0,)]
    assert _query(home, "SELECT count(*) FROM round_municipalities WHERE municipality_id = ?", [ags]) == [(0,)]


def test_corrected_copy_of_the_broken_update_is_used(home: RematchHome, sample: SampleRound) -> None:
    _ingest(home, _files(sample))
    ags = sample.municipalities["municipality_id"][0]
    update = sample.municipalities.head(1).with_columns(
        pl.lit(UPDATE_ID).alias("submission_id"), pl.lit(_later(sample.municipalities)).alias("submitted_at"), pl.lit("3").alias("capacity_persons")
    )
    _ingest(home, {"municipalities/update.csv": _csv(_set(update, 0, "capacity_persons", SECRET))})
    # The same submission exported again, fixed: ingested later, so it is the latest.
    summary, _ = _ingest(home, {"municipalities/update_fixed.csv": _csv(update)})
    assert _query(home, "SELECT capacity_persons FROM municipalities WHERE municipality_id = ?", [ags]) == [(3,)]
    assert _query(home, "SELECT count(*) FROM held_out") == [(0,)]
    assert summary.held_out == []


@pytest.mark.parametrize("broken", ["own row", "member row"])
def test_invalid_later_household_submission_holds_the_household_out(home: RematchHome, sample: SampleRound, broken: str) -> None:
    """A later submission whose own row (or one of whose member rows) fails holds the household out, its older
    submission not used: one held_out row per violation, at the household's row (a member row's named in the rule)."""
    _ingest(home, _files(sample))
    households = sample.households.filter((pl.col("consent_processing") == "yes") & (pl.col("linked_household_refs").fill_null("") == ""))
    original = households.row(0, named=True)
    target = pseudonym(home.secret(), "household", original["household_ref"])
    assert _query(home, "SELECT count(*) FROM households WHERE household_pseudonym = ?", [target]) == [(1,)]

    # A new submission (new submission_id) of the same household, later, with an out-of-range rating.
    update = households.head(1).with_columns(
        pl.lit(UPDATE_ID).alias("submission_id"), pl.lit(_later(sample.households)).alias("submitted_at"),
        pl.lit("7" if broken == "own row" else "3").alias("imp_jobs"),
    )
    members = sample.members.filter(pl.col("submission_id") == original["submission_id"]).with_columns(pl.lit(UPDATE_ID).alias("submission_id"))
    if broken == "member row":
        members = _set(members, 0, "sex", SECRET)
    summary, logs = _ingest(home, {"households/households_update.csv": _csv(update), "households/members_update.csv": _csv(members)})

    assert _query(home, "SELECT count(*) FROM households WHERE household_pseudonym = ?", [target]) == [(0,)]
    assert _query(home, "SELECT count(*) FROM household_features WHERE household_pseudonym = ?", [target]) == [(0,)]
    held = _query(home, 'SELECT household_pseudonym, file_name, file_row, "column", rule, older_submissions_not_used FROM held_out')
    if broken == "own row":
        assert held == [(target, "households_update.csv", 2, "imp_jobs", "range: <= 3", 1)]
    else:
        rule = "a member row of this household failed validation: members_update.csv, row 2, column sex: code list: one of female/male/diverse"
        assert held == [(target, "households_update.csv", 2, "members", rule, 1)]
    assert any(target in line and "households_update.csv, row 2" in line and "its 1 older submission was not used" in line for line in summary.held_out)
    for text in (logs, _everything(home), " ".join(summary.held_out)):
        assert original["household_ref"] not in text and original["contact_name"] not in text and SECRET not in text


def test_a_valid_later_household_submission_supersedes_the_earlier_ones_members(home: RematchHome, sample: SampleRound) -> None:
    # Played as a coordinator (thirty-eighth session): one household's answers edited in KoboToolbox (a new
    # submission id) and the whole form exported again. The household was matched on its new answers, but the member
    # rows of its earlier submission were quarantined as `member row without a valid household`, rows the
    # coordinator was sent to look up for a household with nothing wrong. They are superseded, as its row is.
    _ingest(home, _files(sample))
    households = sample.households.filter((pl.col("consent_processing") == "yes") & (pl.col("linked_household_refs").fill_null("") == ""))
    original = households.row(0, named=True)
    target = pseudonym(home.secret(), "household", original["household_ref"])
    update = households.head(1).with_columns(pl.lit(UPDATE_ID).alias("submission_id"), pl.lit(_later(sample.households)).alias("submitted_at"))
    old_members = sample.members.filter(pl.col("submission_id") == original["submission_id"])
    members = old_members.with_columns(pl.lit(UPDATE_ID).alias("submission_id"))
    summary, _ = _ingest(home, {"households/households_update.csv": _csv(update), "households/members_update.csv": _csv(members)})

    # `rematch ingest` says which stored submission the new file replaced, and that it is a new one (not a copy).
    assert summary.replaced == [
        "households_update.csv: replaced 1 household submission of households.csv: 1 correction or later submission of"
        " the same household (row 2 replaces row 2)"
    ]
    assert _query(home, "SELECT submission_id FROM households WHERE household_pseudonym = ?", [target]) == [(UPDATE_ID,)]
    assert _query(home, "SELECT count(*) FROM members WHERE submission_id = ?", [UPDATE_ID]) == [(old_members.height,)]
    assert _query(home, "SELECT count(*) FROM quarantine WHERE \"table\" = 'members'") == [(0,)]
    superseded = _query(home, "SELECT count(*) FROM superseded_submissions WHERE \"table\" = 'members' AND rule = 'duplicate: superseded by a later submission'")
    assert superseded == [(old_members.height,)]


def _as_german_excel_saves_it(frame: pl.DataFrame) -> bytes:
    """The template opened in a German Excel and saved as CSV: `;`, CRLF, Windows-1252, and each
    timestamp as the cell shows it, 05.07.2026 10:48 (the seconds are gone)."""
    shown = frame.with_columns(pl.col("submitted_at").str.to_datetime(strict=True).dt.strftime("%d.%m.%Y %H:%M"))
    return _csv(shown, sep=";").decode().replace("\n", "\r\n").encode("cp1252", errors="replace")


def test_a_correction_saved_by_a_german_excel_wins_over_the_export_it_corrects(home: RematchHome, sample: SampleRound) -> None:
    # Exploratory testing: a coordinator corrected one offer in the landed template with Excel and landed it
    # again. Excel had dropped the seconds of every submitted_at, so the corrected copy (10:48) counted as
    # older than the export it corrects (10:48:45) and the wrong capacity stayed in force, without a word.
    # As the tools export it: to the second.
    exported = sample.municipalities.with_columns(pl.col("submitted_at").str.slice(0, 17) + "45")
    _ingest(home, {"municipalities/municipalities.csv": _csv(exported)})
    ags = exported["municipality_id"][0]
    corrected = _set(exported, 0, "capacity_persons", "3")
    summary, _ = _ingest(home, {"municipalities/municipalities_korrigiert.csv": _as_german_excel_saves_it(corrected)})
    assert not summary.rejected
    assert _query(home, "SELECT capacity_persons, file_name FROM municipalities WHERE municipality_id = ?", [ags]) == [
        (3, "municipalities_korrigiert.csv")
    ]
    # Every other offer is the same submission again: the later copy of each is used, nothing is lost.
    assert _query(home, "SELECT count(*), count(DISTINCT file_name) FROM municipalities") == [(exported.height, 1)]


@pytest.mark.parametrize(
    "submitted_at",
    [
        "0001-01-01T00:00:00",  # a zero date (an empty date field of another system, exported)
        "0001-01-01T00:00:00+01:00",  # the same with an offset: converting it to UTC overflowed, crashing validation
        "2019-05-02T10:00:00",  # before the programme
        "2099-07-05T10:00:00",  # in the future
    ],
)
def test_an_implausible_submitted_at_is_quarantined_and_the_entity_held_out(
    home: RematchHome, sample: SampleRound, submitted_at: str
) -> None:
    # Exploratory testing as a state authority's data engineer: a municipality's update dated 0001-01-01 was
    # accepted, lost to its older offer without a word, and a date in 2099 would win over every later correction.
    _ingest(home, _files(sample))
    ags = sample.municipalities["municipality_id"][0]
    update = sample.municipalities.head(1).with_columns(pl.lit(UPDATE_ID).alias("submission_id"), pl.lit("3").alias("capacity_persons"))
    summary, logs = _ingest(home, {"municipalities/update.csv": _csv(_set(update, 0, "submitted_at", submitted_at))})

    held = _query(home, 'SELECT municipality_id, file_name, file_row, "column", rule FROM held_out')
    assert held == [(ags, "update.csv", 2, "submitted_at", SUBMITTED_AT_RULE)]
    assert _query(home, 'SELECT file_name, file_row, "column", rule FROM quarantine WHERE file_name = \'update.csv\'') == [
        ("update.csv", 2, "submitted_at", SUBMITTED_AT_RULE)
    ]
    assert _query(home, "SELECT count(*) FROM municipalities WHERE municipality_id = ?", [ags]) == [(0,)]
    assert "2022-01-01" in SUBMITTED_AT_RULE and submitted_at not in logs + " ".join(summary.held_out)

    # The corrected copy, landed later, is used: the broken date does not keep it out.
    fixed = update.with_columns(pl.lit(_later(sample.municipalities)).alias("submitted_at"))
    _ingest(home, {"municipalities/update_fixed.csv": _csv(fixed)})
    assert _query(home, "SELECT capacity_persons, file_name FROM municipalities WHERE municipality_id = ?", [ags]) == [(3, "update_fixed.csv")]
    assert _query(home, "SELECT count(*) FROM held_out") == [(0,)]


def test_a_household_dated_a_day_after_its_file_landed_is_quarantined(home: RematchHome, sample: SampleRound) -> None:
    # The latest plausible time is when the file landed, plus a day for a device clock set wrong: so validating
    # again later (the stored rows are checked on every pass) gives the same answer.
    households = sample.households.filter((pl.col("consent_processing") == "yes") & (pl.col("linked_household_refs").fill_null("") == ""))
    tomorrow = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(hours=30)
    in_a_few_hours = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(hours=5)
    target, near = households["submission_id"][0], households["submission_id"][1]
    dated = sample.households.with_columns(
        pl.when(pl.col("submission_id") == target).then(pl.lit(tomorrow.isoformat(timespec="seconds")))
        .when(pl.col("submission_id") == near).then(pl.lit(in_a_few_hours.isoformat(timespec="seconds")))
        .otherwise(pl.col("submitted_at")).alias("submitted_at")
    )
    _ingest(home, _files(sample, households=dated))
    row = dated["submission_id"].to_list().index(target) + 2
    assert _query(home, 'SELECT file_name, file_row, "column", rule FROM quarantine WHERE "column" = \'submitted_at\'') == [
        ("households.csv", row, "submitted_at", SUBMITTED_AT_RULE)
    ]
    assert _query(home, "SELECT count(*) FROM households WHERE submission_id = ?", [near]) == [(1,)]


def test_a_household_that_corrects_its_answers_a_month_later_stays_in_the_pool_of_the_month_it_applied(
    home: RematchHome, sample: SampleRound
) -> None:
    """A household re-submitted in August with changed answers (same submission id) left July's pool: its period
    was its latest submission's, so a July round run again after August landed left it out, and refused a forbid
    of it as `it submitted after period 2026-07`. Its period is now its first submission's; its answers are the
    latest copy's."""
    _ingest(home, _files(sample))
    households = sample.households.filter((pl.col("consent_processing") == "yes") & (pl.col("linked_household_refs").fill_null("") == ""))
    original = households.row(0, named=True)
    target = pseudonym(home.secret(), "household", original["household_ref"])
    assert _query(home, "SELECT submitted_period FROM household_features WHERE household_pseudonym = ?", [target]) == [("2026-07",)]

    corrected = households.head(1).with_columns(pl.lit("2026-08-03T09:00:00").alias("submitted_at"), pl.lit("3").alias("imp_jobs"))
    members = sample.members.filter(pl.col("submission_id") == original["submission_id"])
    _ingest(home, {"households/households_august.csv": _csv(corrected), "households/members_august.csv": _csv(members)})

    assert _query(home, "SELECT imp_jobs, file_name FROM households WHERE household_pseudonym = ?", [target]) == [(3, "households_august.csv")]
    assert _query(home, "SELECT submitted_period FROM household_features WHERE household_pseudonym = ?", [target]) == [("2026-07",)]
    with dg.instance_for_test(temp_dir=str(home.dagster_home)) as instance:
        run_round(build_definitions(home), instance, home, "r-july", {"period": "2026-07", "time_limit_seconds": 10.0})
    assert _query(home, "SELECT count(*) FROM round_households WHERE round_id = 'r-july' AND household_pseudonym = ?", [target]) == [(1,)]

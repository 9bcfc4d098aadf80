"""AGS keys and coordinates are checked against the 2020 reference lists: warnings that name the AGS or the
household pseudonym and column, never reject the row, and explain a household that can never be placed."""

from __future__ import annotations

import datetime as dt
import io

import dagster as dg
import duckdb
import polars as pl
import pytest
import xlsxwriter

from rematch_pipeline.ags_reference import (
    AGS_RESTORED_RULE,
    FAR_COORDINATES_RULE,
    PERIOD_RESTORED_RULE,
    UNKNOWN_MUNICIPALITY_RULE,
    UNKNOWN_MUST_TIE_RULE,
    UNKNOWN_PLACE_RULE,
)
from rematch_pipeline.assets.matching import UNKNOWN_TIE_REASON
from rematch_pipeline.definitions import build_definitions
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import pseudonym
from rematch_pipeline.runs import run_round
from rematch_pipeline.sample import SampleRound
from rematch_pipeline.schemas.models import TEXT_FORMATS
from rematch_pipeline.schemas.parsing import period_from_excel_date
from tests.e2e.test_bad_inputs import _csv, _files, _ingest, _set, _valid_households, baseline, sample  # noqa: F401 (fixtures)

PERIOD_RULE = TEXT_FORMATS["intake_period"][1]
HAMBURG, MUENCHEN = ("53.55", "9.99"), ("48.137", "11.575")


def _query(home: RematchHome, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _check(summary, name: str) -> dg.AssetCheckEvaluation:
    evaluations = [c for c in summary.results[-1].get_asset_check_evaluations() if c.check_name == name]
    assert len(evaluations) == 1, name
    return evaluations[0]


def test_unknown_ags_and_coordinates_elsewhere_are_kept_with_a_warning(home: RematchHome, sample: SampleRound, baseline) -> None:
    frame = sample.municipalities
    far = MUENCHEN if float(frame["latitude"][2]) > 51 else HAMBURG
    frame = _set(_set(frame, 0, "municipality_id", "01999"), 0, "state", "DE-SH")  # no such Kreis
    frame = _set(_set(frame, 1, "municipality_id", "01099999"), 1, "state", "DE-SH")  # no such Gemeinde
    frame = _set(_set(frame, 2, "latitude", far[0]), 2, "longitude", far[1])  # another place's seat
    summary, _ = _ingest(home, _files(sample, municipalities=frame))

    assert _valid_households(home) == baseline  # still validated and offered: the list is from 2020
    warned = _query(home, 'SELECT municipality_id, file_name, file_row, "column", rule FROM validation_warnings ORDER BY file_row')
    assert warned == [
        ("01999", "municipalities.csv", 2, "municipality_id", UNKNOWN_MUNICIPALITY_RULE),
        ("01099999", "municipalities.csv", 3, "municipality_id", UNKNOWN_MUNICIPALITY_RULE),
        (frame["municipality_id"][2], "municipalities.csv", 4, "latitude", FAR_COORDINATES_RULE),
    ]
    check = _check(summary, "municipalities_match_reference")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["unknown_ags"].value == 2 and check.metadata["far_coordinates"].value == 1
    assert "01999" in check.metadata["warnings"].value and "01099999" in check.metadata["warnings"].value
    lines = " | ".join(summary.warnings)
    assert len(summary.warnings) == 3 and "municipality 01999" in lines and "municipality 01099999" in lines and "row 4" in lines
    assert _check(summary, "households_name_known_places").passed


def test_household_naming_an_unknown_place_is_warned_by_pseudonym_and_diagnosed(home: RematchHome, sample: SampleRound) -> None:
    households = sample.households
    solo = households.with_row_index("i").filter((pl.col("consent_processing") == "yes") & (pl.col("linked_household_refs").fill_null("") == ""))
    tie_row, wish_row = solo["i"][0], solo["i"][1]
    households = _set(_set(households, tie_row, "family_ties_municipality_id", "99999"), tie_row, "family_ties_importance", "must")
    households = _set(households, wish_row, "preferred_municipality_ids", "09999999")
    summary, logs = _ingest(home, _files(sample, households=households))
    tie_pseudonym = pseudonym(home.secret(), "household", solo["household_ref"][0])
    wish_pseudonym = pseudonym(home.secret(), "household", solo["household_ref"][1])

    # Kept (a newer municipality may be meant), but warned by pseudonym and column, without the AGS given.
    assert _query(home, "SELECT count(*) FROM households WHERE household_pseudonym IN (?, ?)", [tie_pseudonym, wish_pseudonym]) == [(2,)]
    warned = _query(home, 'SELECT household_pseudonym, file_name, file_row, "column", rule FROM validation_warnings ORDER BY file_row')
    assert sorted(warned) == sorted(
        [
            (tie_pseudonym, "households.csv", tie_row + 2, "family_ties_municipality_id", UNKNOWN_MUST_TIE_RULE),
            (wish_pseudonym, "households.csv", wish_row + 2, "preferred_municipality_ids", UNKNOWN_PLACE_RULE),
        ]
    )
    check = _check(summary, "households_name_known_places")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert tie_pseudonym in check.metadata["warnings"].value
    for text in (" ".join(summary.warnings).replace(tie_pseudonym, "").replace(wish_pseudonym, ""), check.metadata["warnings"].value.replace(tie_pseudonym, "").replace(wish_pseudonym, "")):
        assert "99999" not in text and "09999999" not in text
    assert any(tie_pseudonym in line and "family_ties_municipality_id" in line for line in summary.warnings)

    # The round says why that household can never be placed.
    with dg.instance_for_test(temp_dir=str(home.dagster_home)) as instance:
        run_round(build_definitions(home), instance, home, "r1", {"period": sample.period, "time_limit_seconds": 10.0})
    reason = _query(home, "SELECT placed, unplaced_reason FROM round_outcomes WHERE household_pseudonym = ?", [tie_pseudonym])
    assert reason == [(False, f"no compatible municipality: {UNKNOWN_TIE_REASON}")]


def _excel_workbook(frame: pl.DataFrame, number_columns: set[str]) -> bytes:
    """The template as Excel saves it after a key was typed into a General cell: a number, zeros gone."""
    out = io.BytesIO()
    with xlsxwriter.Workbook(out, {"in_memory": True}) as book:
        sheet = book.add_worksheet("municipalities")
        for c, name in enumerate(frame.columns):
            sheet.write_string(0, c, name)
        for r, row in enumerate(frame.iter_rows(), start=1):
            for c, value in enumerate(row):
                if value is not None:
                    if frame.columns[c] in number_columns:
                        sheet.write_number(r, c, float(value))
                    else:
                        sheet.write_string(r, c, value)
    return out.getvalue()


def test_ags_keys_that_lost_their_leading_zero_are_restored_with_a_warning(home: RematchHome, sample: SampleRound, baseline) -> None:
    municipalities = sample.municipalities
    assert all(m.startswith("0") for m in municipalities["municipality_id"])
    households = sample.households
    solo = households.with_row_index("i").filter((pl.col("consent_processing") == "yes") & (pl.col("linked_household_refs").fill_null("") == ""))
    tie_row, broken_row = solo["i"][0], solo["i"][1]
    # München 09162 typed as 9162; Gemeinde keys of 7 digits; 1234 pads to no AGS and stays broken.
    households = _set(_set(households, tie_row, "family_ties_municipality_id", "9162"), tie_row, "family_ties_importance", "nice")
    households = _set(households, tie_row, "excluded_municipality_ids", "9162000 05315000")
    households = _set(households, broken_row, "preferred_municipality_ids", "1234")
    files = _files(sample, households=households)
    del files["municipalities/municipalities.csv"]
    files["municipalities/municipalities.xlsx"] = _excel_workbook(municipalities, {"municipality_id"})
    summary, _ = _ingest(home, files)

    # Every offer is validated under its real key, with one warning per restored key naming file, sheet and row.
    stored = _query(home, "SELECT municipality_id FROM municipalities ORDER BY municipality_id")
    assert [m for (m,) in stored] == sorted(municipalities["municipality_id"])
    assert _query(home, "SELECT municipality_id FROM raw_municipalities ORDER BY file_row")[0][0] == municipalities["municipality_id"][0][1:]
    warned = _query(home, 'SELECT "table", municipality_id, sheet, file_row, "column" FROM validation_warnings WHERE rule = ? ORDER BY "table", file_row', [AGS_RESTORED_RULE])
    tie_pseudonym = pseudonym(home.secret(), "household", solo["household_ref"][0])
    expected = [("households", None, None, tie_row + 2, c) for c in ("excluded_municipality_ids", "family_ties_municipality_id")]
    expected += [("municipalities", m, "municipalities", i + 2, "municipality_id") for i, m in enumerate(municipalities["municipality_id"])]
    assert warned == expected
    assert _query(home, "SELECT DISTINCT household_pseudonym FROM validation_warnings WHERE \"table\" = 'households'") == [(tie_pseudonym,)]
    assert _query(home, "SELECT family_ties_municipality_id, excluded_municipality_ids FROM households WHERE household_pseudonym = ?", [tie_pseudonym]) == [
        ("09162", ["09162000", "05315000"])
    ]
    assert _query(home, "SELECT value FROM intake_counts WHERE name = 'ags_keys_restored'") == [(len(expected),)]
    lines = " | ".join(summary.warnings)
    # One line per file and column, naming its rows (thirty-ninth session; was a line per offer and per household).
    n = municipalities.height
    assert f"municipalities.xlsx, sheet municipalities: {n} rows (column municipality_id, rows 2, 3, 4{' …' if n > 3 else ''}): {AGS_RESTORED_RULE}" in summary.warnings
    assert f"1 row (column family_ties_municipality_id, row {tie_row + 2}): {AGS_RESTORED_RULE}" in lines
    assert "9162" not in lines  # a household's places are not named
    # A key whose padded form is no AGS is quarantined as before, without its value.
    quarantined = _query(home, 'SELECT file_row, "column", rule FROM quarantine WHERE "table" = \'households\'')
    assert (broken_row + 2, "preferred_municipality_ids", "type: space-separated AGS keys of 5 or 8 digits") in quarantined
    assert _valid_households(home)[1] == baseline[1]
    # A pass with nothing new says nothing of them again (thirtieth session: every pass repeated the whole table's
    # warnings, up to 20 lines); the table keeps them.
    again, _ = _ingest(home, {})
    assert again.files_ingested == 0 and again.warnings == []
    assert len(_query(home, "SELECT * FROM validation_warnings WHERE rule = ?", [AGS_RESTORED_RULE])) == len(expected)



def test_ags_keys_written_as_decimal_numbers_are_restored_with_a_warning(home: RematchHome, sample: SampleRound, baseline) -> None:
    # A CSV a script (pandas: a number column with an empty cell is floats) or LibreOffice wrote from a key column
    # read as numbers: 9162.0 for 09162. Before, every offer was quarantined as `type: AGS …` and held out, all three
    # under one pseudo-municipality "#withheld".
    municipalities = sample.municipalities.with_columns(
        pl.col("municipality_id").map_elements(lambda key: f"{int(key)}.0", return_dtype=pl.Utf8)
    )
    assert all(m.count(".") == 1 and not m.startswith("0") for m in municipalities["municipality_id"])
    households = sample.households
    solo = households.with_row_index("i").filter((pl.col("consent_processing") == "yes") & (pl.col("linked_household_refs").fill_null("") == ""))
    tie_row = solo["i"][0]
    households = _set(_set(households, tie_row, "family_ties_municipality_id", "9162.0"), tie_row, "family_ties_importance", "nice")
    summary, _ = _ingest(home, _files(sample, municipalities=municipalities, households=households))

    stored = _query(home, "SELECT municipality_id FROM municipalities ORDER BY municipality_id")
    assert [m for (m,) in stored] == sorted(sample.municipalities["municipality_id"])
    assert _query(home, "SELECT \"table\", \"column\", rule FROM quarantine WHERE \"column\" IN ('municipality_id', 'family_ties_municipality_id')") == []
    tie_pseudonym = pseudonym(home.secret(), "household", solo["household_ref"][0])
    assert _query(home, "SELECT family_ties_municipality_id FROM households WHERE household_pseudonym = ?", [tie_pseudonym]) == [("09162",)]
    warned = _query(home, 'SELECT "table", "column", file_row FROM validation_warnings WHERE rule = ? ORDER BY "table", file_row', [AGS_RESTORED_RULE])
    assert warned == [("households", "family_ties_municipality_id", tie_row + 2)] + [
        ("municipalities", "municipality_id", i + 2) for i in range(municipalities.height)
    ]
    assert "ended in .0" in AGS_RESTORED_RULE and "9162" not in " | ".join(summary.warnings).replace(AGS_RESTORED_RULE, "").replace(tie_pseudonym, "")
    assert _valid_households(home) == baseline


def _periods_as_excel_saw_them(frame: pl.DataFrame, dates: list[object]) -> bytes:
    """The template after Excel turned the typed intake period into a date: per row, a date cell (shown as
    'Jul 26') or a number (a date cell whose format was set to General: its serial)."""
    out = io.BytesIO()
    period = frame.columns.index("intake_period")
    with xlsxwriter.Workbook(out, {"in_memory": True}) as book:
        sheet = book.add_worksheet("municipalities")
        month = book.add_format({"num_format": "mmm yy"})
        for c, name in enumerate(frame.columns):
            sheet.write_string(0, c, name)
        for r, row in enumerate(frame.iter_rows(), start=1):
            for c, value in enumerate(row):
                if c == period:
                    date = dates[r - 1]
                    sheet.write_datetime(r, c, date, month) if isinstance(date, dt.datetime) else sheet.write_number(r, c, date)
                elif value is not None:
                    sheet.write_string(r, c, value)
    return out.getvalue()


@pytest.mark.parametrize(
    ("cell", "period"),
    [
        ("Jul 26", "2026-07"), ("Mrz 27", "2027-03"), ("Mär 27", "2027-03"), ("Dez 26", "2026-12"), ("Jul-26", "2026-07"),
        ("Oct-26", "2026-10"), ("Juli 2026", "2026-07"), ("01.07.2026", "2026-07"), ("1.7.2026", "2026-07"),
        ("2026-07-01", "2026-07"), ("2026-07-01T00:00:00", "2026-07"), ("2026-07-01 00:00:00", "2026-07"),
        # Not a month Excel made: left as it is, for the format rule to refuse.
        ("2026-07-15", None), ("15.07.2026", None), ("2026-07-01T08:00:00", None), ("Jul 2", None), ("Foo 26", None),
        ("07/01/2026", None), ("2026-07", None), ("1899-12-01", None), ("", None),
    ],
)
def test_period_from_excel_date(cell: str, period: str | None) -> None:
    assert period_from_excel_date(cell) == period


def test_intake_periods_excel_turned_into_dates_are_read_with_a_warning(home: RematchHome, sample: SampleRound) -> None:
    municipalities = sample.municipalities
    assert sample.period == "2026-07" and municipalities.height == 5
    ids = municipalities["municipality_id"]
    # Opened in Excel and saved again as CSV (German Excel: ';', Windows-1252): the month comes back as Excel shows it.
    saved = municipalities.head(3).with_columns(pl.Series("intake_period", ["Jul 26", "01.07.2026", "Jul-26"]))
    # The workbook: a date cell, a serial number, and (again for the third offer) a date that is no month's first day.
    workbook = pl.concat([municipalities.slice(3, 2), municipalities.slice(2, 1)])
    dates = [dt.datetime(2026, 7, 1), 46204, dt.datetime(2026, 7, 15)]  # 46204: 2026-07-01 in the 1900 date system
    files = _files(sample)
    del files["municipalities/municipalities.csv"]
    files["municipalities/saved_by_excel.csv"] = _csv(saved, sep=";").decode().replace("\n", "\r\n").encode("cp1252")
    files["municipalities/template.xlsx"] = _periods_as_excel_saw_them(workbook, dates)
    summary, logs = _ingest(home, files)

    assert not summary.rejected
    # Every offer is read for the month Excel showed, with a warning naming file, sheet and row.
    assert _query(home, "SELECT municipality_id, intake_period FROM municipalities ORDER BY municipality_id") == [(m, "2026-07") for m in sorted(ids)]
    warned = _query(
        home,
        'SELECT file_name, sheet, file_row, municipality_id, intake_period, "column" FROM validation_warnings WHERE rule = ? ORDER BY file_name, file_row',
        [PERIOD_RESTORED_RULE],
    )
    assert warned == [
        ("saved_by_excel.csv", None, 2, ids[0], "2026-07", "intake_period"),
        ("saved_by_excel.csv", None, 3, ids[1], "2026-07", "intake_period"),
        ("saved_by_excel.csv", None, 4, ids[2], "2026-07", "intake_period"),
        ("template.xlsx", "municipalities", 2, ids[3], "2026-07", "intake_period"),
        ("template.xlsx", "municipalities", 3, ids[4], "2026-07", "intake_period"),
    ]
    assert _query(home, "SELECT value FROM intake_counts WHERE name = 'intake_periods_restored'") == [(5,)]
    # One line per file and column, naming its rows (thirty-ninth session; was a line per offer).
    assert f"saved_by_excel.csv: 3 rows (column intake_period, rows 2, 3, 4): {PERIOD_RESTORED_RULE}" in summary.warnings
    assert f"template.xlsx, sheet municipalities: 2 rows (column intake_period, rows 2, 3): {PERIOD_RESTORED_RULE}" in summary.warnings
    # Raw rows keep the cell as landed: it has a date's shape, so it is not withheld.
    assert _query(home, "SELECT intake_period FROM raw_municipalities WHERE file_name = 'saved_by_excel.csv' ORDER BY file_row")[0] == ("Jul 26",)
    # A date that is not the 1st of a month is not read as a month: quarantined naming the rule, never the date.
    quarantined = _query(home, 'SELECT file_name, sheet, file_row, "column", rule FROM quarantine WHERE "column" = \'intake_period\'')
    assert quarantined == [("template.xlsx", "municipalities", 4, "intake_period", PERIOD_RULE)]
    for text in (logs, " ".join(summary.held_out + summary.quarantined + summary.warnings)):
        assert "2026-07-15" not in text and "46204" not in text


@pytest.mark.parametrize(
    ("table", "column", "value", "rule"),
    [
        ("municipalities", "municipality_id", "０３２４１", "type: AGS of 5 or 8 digits kept as text (leading zeros lost?)"),  # fullwidth, as pasted from a PDF
        ("municipalities", "intake_period", "٢٠٢٦-07", "format: YYYY-MM"),  # Arabic-Indic, as a phone keyboard types them
        ("households", "preferred_municipality_ids", "03241 ٠٣٣٥٧", "type: space-separated AGS keys of 5 or 8 digits"),
    ],
)
def test_keys_of_digits_other_than_0_to_9_break_their_rule(sample: SampleRound, table: str, column: str, value: str, rule: str) -> None:
    # Exploratory testing: `\d` also matches other scripts' digits, so such a key passed its type rule. An offer
    # in period ٢٠٢٦-07 was valid and in no round of 2026-07, without a word; a fullwidth AGS was quarantined for
    # the wrong rule (state). The forms allow 0-9 only (forms_builder.AGS_REGEX, PERIOD_REGEX); so does validation.
    from rematch_pipeline.formats.canonical import ParsedTable
    from rematch_pipeline.formats.landing import split_identity
    from rematch_pipeline.validation import check_rows

    frame = getattr(sample, table).head(1).with_columns(pl.lit(value).alias(column), pl.lit(2, dtype=pl.Int32).alias("file_row"))
    raw, _ = split_identity(ParsedTable(table, frame), b"k" * 32, "0" * 64, "f.csv")
    good, quarantine = check_rows(table, raw)
    assert good.height == 0
    assert (column, rule) in quarantine.select("column", "rule").rows()

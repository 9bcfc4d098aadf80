"""What a pass's files replaced, as `rematch ingest` says it: validation's superseded rows name the row that replaced
each and whether it gave the same answers (validation.SUPERSEDED_SCHEMA); replacement_lines folds them per file.
Unit level, no warehouse or Dagster."""

from __future__ import annotations

import polars as pl

from rematch_pipeline.assets.validate import replacement_lines
from rematch_pipeline.resources.warehouse import raw_columns
from rematch_pipeline.sample import generate_round
from rematch_pipeline.validation import SUPERSEDED_RULE, SUPERSEDED_SCHEMA, latest_valid


def _raw(frame: pl.DataFrame, sha: str, name: str) -> pl.DataFrame:
    """Municipality rows as ingestion stores them (text, with their file's provenance)."""
    return frame.with_columns(
        pl.lit(sha).alias("file_sha256"), pl.lit(name).alias("file_name"), pl.lit(None, pl.Utf8).alias("sheet"),
        (pl.int_range(pl.len()) + 2).cast(pl.Int32).alias("file_row"), pl.lit(None, pl.Utf8).alias("left_out"),
    ).select(raw_columns("municipalities")).with_columns(pl.exclude("file_row").cast(pl.Utf8))


def test_superseded_rows_name_their_replacing_row_and_tell_a_copy_from_a_correction() -> None:
    """The next full export lands: one offer as before (a copy), one with a changed capacity (a correction), one whose
    answers in another table of its file changed (for households: its members), one with such answers in one file only
    (members in a separate file are not compared). Before, superseded rows said only `duplicate`."""
    offers = generate_round(4, 4, seed=5).municipalities
    first = _raw(offers, "a" * 64, "offers_november.csv")
    again = _raw(offers, "b" * 64, "offers_december.csv").with_columns(
        pl.when(pl.col("file_row") == 3).then(pl.lit("999")).otherwise(pl.col("capacity_persons")).alias("capacity_persons")
    )
    answers_of = pl.DataFrame(
        {"file_sha256": ["a" * 64, "b" * 64, "b" * 64], "submission_id": offers["submission_id"].gather([2, 2, 3]).to_list(), "_answers": [["x"], ["y"], ["z"]]}
    )
    superseded: list[pl.DataFrame] = []
    latest_valid("municipalities", pl.concat([first, again]), [["intake_period", "municipality_id"]], superseded, None, answers_of)
    rows = pl.concat(superseded, how="diagonal").filter(pl.col("rule") == SUPERSEDED_RULE).sort("file_row")

    assert rows.schema == pl.Schema(SUPERSEDED_SCHEMA)
    assert rows.select("file_name", "file_row", "replaced_by_file", "replaced_by_row", "unchanged").rows() == [
        ("offers_november.csv", 2, "offers_december.csv", 2, True),
        ("offers_november.csv", 3, "offers_december.csv", 3, False),
        ("offers_november.csv", 4, "offers_december.csv", 4, False),
        ("offers_november.csv", 5, "offers_december.csv", 5, True),
    ]
    assert replacement_lines(rows) == [
        "offers_december.csv: replaced 4 municipality offers of offers_november.csv: 2 copies landed again (same submission,"
        " same answers), 2 corrections or later submissions of the same offer (row 3 replaces row 3; row 4 replaces row 4)"
    ]


def test_a_national_re_export_is_one_line_per_file_with_a_few_examples() -> None:
    """40,000 households replaced by a full re-export: one line, three named, never a value; left-out rows and member
    rows (no replacing row) are not counted as replaced."""
    n = 40_000
    rows = pl.DataFrame(
        {
            "file_sha256": ["a" * 64] * n, "file_name": ["kobo_november.xlsx"] * n, "sheet": ["Haushalte"] * n,
            "file_row": list(range(2, n + 2)), "table": ["households"] * n, "column": ["submission_id"] * n,
            "rule": [SUPERSEDED_RULE] * n, "replaced_by_sha256": ["b" * 64] * n, "replaced_by_file": ["kobo_december.xlsx"] * n,
            "replaced_by_sheet": ["Haushalte"] * n, "replaced_by_row": list(range(2, n + 2)), "unchanged": [i >= 10 for i in range(n)],
        },
        schema=SUPERSEDED_SCHEMA,
    )
    other = pl.DataFrame(
        [{**dict.fromkeys(SUPERSEDED_SCHEMA), "file_name": "members.csv", "file_row": 2, "table": "members", "rule": SUPERSEDED_RULE}],
        schema=SUPERSEDED_SCHEMA,
    )
    lines = replacement_lines(pl.concat([rows, other]))
    assert lines == [
        "kobo_december.xlsx, sheet Haushalte: replaced 40000 household submissions of kobo_november.xlsx: 39990 copies"
        " landed again (same submission, same answers), 10 corrections or later submissions of the same household"
        " (row 2 replaces row 2; row 3 replaces row 3; row 4 replaces row 4; and 7 more)"
    ]


def test_rows_replacing_several_files_name_the_file_of_each() -> None:
    """The same households in two Länder's exports landed in one pass: the replaced row's file is named."""
    rows = pl.DataFrame(
        [
            {"file_sha256": sha, "file_name": name, "sheet": None, "file_row": 2, "table": "households", "column": "household_ref",
             "rule": SUPERSEDED_RULE, "replaced_by_sha256": "c" * 64, "replaced_by_file": "sachsen.csv", "replaced_by_sheet": None,
             "replaced_by_row": by, "unchanged": False}
            for sha, name, by in (("a" * 64, "bayern.csv", 5), ("b" * 64, "berlin.csv", 9))
        ],
        schema=SUPERSEDED_SCHEMA,
    )
    assert replacement_lines(rows) == [
        "sachsen.csv: replaced 2 household submissions of bayern.csv, berlin.csv: 2 corrections or later submissions of the"
        " same household (row 5 replaces bayern.csv, row 2; row 9 replaces berlin.csv, row 2)"
    ]

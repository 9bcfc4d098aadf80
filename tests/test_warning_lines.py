"""Validation's warning lines for the command line (ags_reference.warning_lines): unit level, no warehouse."""

from __future__ import annotations

import polars as pl

from rematch_pipeline.ags_reference import AGS_RESTORED_RULE, UNKNOWN_PLACE_RULE, WARNING_SCHEMA, warning_lines


def _warning(file_row: int, column: str, rule: str, pseudonym: str | None = None, file_name: str = "decisions.csv") -> dict:
    return {**dict.fromkeys(WARNING_SCHEMA), "table": "decisions", "household_pseudonym": pseudonym or f"H-{file_row:020d}", "file_sha256": "a" * 64,
            "file_name": file_name, "sheet": None, "file_row": file_row, "column": column, "rule": rule}


def test_a_restored_leading_zero_is_one_line_per_file_and_column_naming_rows_not_values() -> None:
    """A decisions CSV with 9 AGS typed as numbers printed 9 lines, one per row (thirty-eighth session); now one, as
    the `?`-in-a-name warning says its rows. Other warnings stay one line per household."""
    rows = [_warning(r, "municipality_id", AGS_RESTORED_RULE) for r in range(2, 11)]
    rows += [_warning(3, "municipality_id", AGS_RESTORED_RULE, file_name="other.csv")]
    rows += [_warning(5, "preferred_municipality_ids", UNKNOWN_PLACE_RULE, pseudonym="H-known")]
    lines = warning_lines(pl.DataFrame(rows, schema=WARNING_SCHEMA))
    assert lines == [
        f"decisions.csv: 9 rows (column municipality_id, rows 2, 3, 4 …): {AGS_RESTORED_RULE}",
        f"other.csv: 1 row (column municipality_id, row 3): {AGS_RESTORED_RULE}",
        f"household H-known, preferred_municipality_ids (decisions.csv, row 5): {UNKNOWN_PLACE_RULE}",
    ]


def test_the_limit_counts_folded_lines_and_names_what_is_left() -> None:
    rows = [_warning(2, "municipality_id", AGS_RESTORED_RULE)] + [_warning(r, "household_ref", UNKNOWN_PLACE_RULE) for r in range(3, 8)]
    lines = warning_lines(pl.DataFrame(rows, schema=WARNING_SCHEMA), limit=3)
    assert len(lines) == 4 and lines[-1] == "... and 3 more (table validation_warnings)"


def test_two_files_of_one_name_are_folded_apart() -> None:
    """A households.xlsx and a municipalities/decisions file of the same name (landing/'s folders) or two weekly
    templates of one name read again by --retry: their rows were one line, `rows 2, 2, 3 …`, counting both files'
    rows under one name. Folded per file content (sha256), each line counts its own file's rows."""
    first = [_warning(r, "municipality_id", AGS_RESTORED_RULE) for r in (2, 3)]
    second = [{**_warning(r, "municipality_id", AGS_RESTORED_RULE), "file_sha256": "b" * 64} for r in (2, 4, 5)]
    lines = warning_lines(pl.DataFrame(first + second, schema=WARNING_SCHEMA))
    assert lines == [
        f"decisions.csv: 2 rows (column municipality_id, rows 2, 3): {AGS_RESTORED_RULE}",
        f"decisions.csv: 3 rows (column municipality_id, rows 2, 4, 5): {AGS_RESTORED_RULE}",
    ]

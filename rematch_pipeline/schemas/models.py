"""Pandera schemas of the canonical (typed, pseudonymised) tables, generated from the contract.

Used twice: row-level validation at the validate stage (failing rows go to quarantine) and the
blocking asset checks on the stored tables.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import polars as pl

from rematch_pipeline.schemas.contract import STATE_BY_LAND, TABLES, Field, Kind

PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"  # 0-9 only, as AGS_PATTERN (parsing.py)
# A household pseudonym as the identity store makes it (identity.pseudonym): what a decisions file names
# a household by when it has no household_ref. Anything else there may be a reference or a name typed in.
HOUSEHOLD_PSEUDONYM_PATTERN = r"^H-[0-9a-f]{20}$"
# A round id names a folder (rounds/<round_id>/) and a partition of `rounds` (assets.matching checks it). A
# decisions file's round_id without this shape answers no round, and may be a name typed in the wrong column.
ROUND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ROUND_ID_FORMAT_RULE = "format: a round id (1-64 letters, digits, '.', '_' or '-', starting with a letter or digit)"
# Text fields held to a format that a spreadsheet makes a date of when typed like one (a round id 2026-07):
# the rule for such a cell, said instead of the format's own (ingestion keeps only that the cell was a date).
DATE_CELL_RULES: dict[str, str] = {
    "round_id": "format: the cell is a date (Excel made a date of the round id); format the column as text and type it again",
}
# Text fields held to a format: field name -> (pattern, rule).
TEXT_FORMATS: dict[str, tuple[str, str]] = {
    "round_id": (ROUND_ID_PATTERN, ROUND_ID_FORMAT_RULE),
    "intake_period": (PERIOD_PATTERN, "format: YYYY-MM"),
    "household_pseudonym": (HOUSEHOLD_PSEUDONYM_PATTERN, "format: a household pseudonym (H- and 20 hex digits)"),
}

_DTYPES: dict[Kind, str | None] = {
    Kind.INT: "Int64",
    Kind.DECIMAL: "Float64",
    Kind.BOOL: "boolean",
}


def _german_words(field: Field) -> str:
    """The German words a decisions file may write for the field's codes (its aliases, contract D), for the rule's
    name: a German coordinator whose `vielleicht` was refused is told `Zusage`/`Absage`, not only `accept/decline`."""
    if not field.aliases:
        return ""
    words = [
        "/".join(alias.capitalize() for alias, aliased in field.aliases if aliased == code)
        for code in field.codes
    ]
    return f" (or in German: {', '.join(w for w in words if w)})"


def _column_checks(field: Field) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if field.minimum is not None:
        low = field.minimum
        checks.append(pa.Check(lambda s: s >= low, name=f"range: >= {low:g}"))
    if field.maximum is not None:
        high = field.maximum
        checks.append(pa.Check(lambda s: s <= high, name=f"range: <= {high:g}"))
    if field.kind is Kind.CODE:
        codes = list(field.codes)
        checks.append(pa.Check(lambda s: s.isin(codes), name=f"code list: one of {'/'.join(codes)}{_german_words(field)}"))
    if field.kind is Kind.CODES:
        allowed = frozenset(field.codes)
        checks.append(
            pa.Check(lambda v: set(v) <= allowed, element_wise=True, name="code list: every code known")
        )
        checks.append(pa.Check(lambda v: len(set(v)) == len(v), element_wise=True, name="code list: no repeats"))
    if field.max_items is not None:
        limit = field.max_items
        checks.append(pa.Check(lambda v: len(v) <= limit, element_wise=True, name=f"list: at most {limit} items"))
    if field.name in TEXT_FORMATS:
        pattern, rule = TEXT_FORMATS[field.name]
        checks.append(pa.Check(lambda s: s.str.match(pattern), name=rule))
    return checks


def _row_checks(table: str) -> list[pa.Check]:
    """Rules across columns of one row; the check name says which column it is reported on."""
    if table != "municipalities":
        return []
    return [
        pa.Check(
            lambda df: df["accessible_units"].isna() | df["housing_units"].isna() | (df["accessible_units"] <= df["housing_units"]),
            name="accessible_units: at most housing_units",
        ),
        pa.Check(
            lambda df: df["min_persons"].isna() | df["capacity_persons"].isna() | (df["min_persons"] <= df["capacity_persons"]),
            name="min_persons: at most capacity_persons",
        ),
        pa.Check(
            lambda df: df["state"].isna()
            | df["municipality_id"].isna()
            | (df["municipality_id"].str[:2].map(STATE_BY_LAND) == df["state"]),
            name="state: matches the Land of municipality_id",
        ),
    ]


def schema_for(table: str) -> pa.DataFrameSchema:
    """Pandera schema of a canonical table (identifying fields are never in it)."""
    columns: dict[str, pa.Column] = {}
    for field in TABLES[table]:
        if field.pii:
            continue
        checks = _column_checks(field)
        is_list = field.kind in (Kind.CODES, Kind.AGS_LIST)
        if is_list and field.required:
            checks.append(pa.Check(lambda v: len(v) > 0, element_wise=True, name="required: at least one code"))
        columns[field.name] = pa.Column(
            _DTYPES.get(field.kind),
            checks=checks,
            nullable=not field.required or is_list,
            required=False,
            name=field.name,
        )
    if table == "households":
        columns["household_pseudonym"] = pa.Column(str, nullable=False)
    if table == "members":
        columns["age_years"] = pa.Column("Int64", checks=[pa.Check(lambda s: s.between(0, 120), name="range: age 0-120")], nullable=False, required=False)
    return pa.DataFrameSchema(columns, checks=_row_checks(table), name=table, strict=False)


def row_failures(table: str, typed: pl.DataFrame) -> pl.DataFrame:
    """Rows breaking a pandera rule: (_row, column, rule). Failure values are dropped, never read."""
    frame: pd.DataFrame = typed.to_pandas(use_pyarrow_extension_array=False)
    for field in TABLES[table]:
        if field.name in frame.columns and field.kind in _DTYPES:
            frame[field.name] = frame[field.name].astype(_DTYPES[field.kind])
        if field.name in frame.columns and field.kind in (Kind.CODES, Kind.AGS_LIST):
            frame[field.name] = frame[field.name].map(lambda v: [] if v is None else list(v))
    frame.index = pd.RangeIndex(len(frame))
    try:
        schema_for(table).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        cases = cases[cases["index"].notna()]
        row_rules = {c.name for c in _row_checks(table)}
        rows = []
        for column, check, index in zip(cases["column"], cases["check"], cases["index"]):
            check = str(check)
            if check in row_rules:
                column = check.partition(":")[0]  # row rules are reported on the column they name
            if check.startswith("not_nullable"):
                check = "required: a value is needed"
            rows.append((int(index), str(column), check))
        return pl.DataFrame(rows, schema={"_row": pl.UInt32, "column": pl.Utf8, "rule": pl.Utf8}, orient="row").unique()
    return pl.DataFrame(schema={"_row": pl.UInt32, "column": pl.Utf8, "rule": pl.Utf8})

"""AGS keys and coordinates against the shipped reference lists (`reference/`, territorial status 2020).

Plain Python (no Dagster). The lists are from 2020 and municipalities merge, so a key missing from them may be
a newer municipality: these checks warn, they never reject (docs/decisions.md, "AGS reference"). Warnings
name the table, the key column and the rule, a municipality by its AGS (not personal data) and a household by
its pseudonym only, never a household's cell value.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources

import numpy as np
import polars as pl

from rematch_pipeline.engine._common import AgsIndex, haversine_km
from rematch_pipeline.wording import counted, first_rows, in_file

# Seat coordinates further than this from the reference place of their AGS are probably another place's.
COORDINATE_TOLERANCE_KM: float = 30.0
REFERENCE_YEAR = 2020

WARNING_SCHEMA: dict[str, pl.DataType] = {
    "table": pl.Utf8,
    "municipality_id": pl.Utf8,
    "intake_period": pl.Utf8,
    "household_pseudonym": pl.Utf8,
    "submission_id": pl.Utf8,
    "file_sha256": pl.Utf8,
    "file_name": pl.Utf8,
    "sheet": pl.Utf8,
    "file_row": pl.Int32,
    "column": pl.Utf8,
    "rule": pl.Utf8,
}
UNKNOWN_MUNICIPALITY_RULE = f"reference: AGS not in the {REFERENCE_YEAR} reference list (a newer or merged municipality, or a typo)"
FAR_COORDINATES_RULE = (
    f"reference: latitude/longitude more than {COORDINATE_TOLERANCE_KM:g} km from this AGS in the {REFERENCE_YEAR} reference list"
)
UNKNOWN_PLACE_RULE = f"reference: names an AGS that is neither in the {REFERENCE_YEAR} reference list nor among the validated municipalities"
UNKNOWN_MUST_TIE_RULE = UNKNOWN_PLACE_RULE + "; a `must` tie to it can never be met"
# Validation restores a key that lost its leading zero (schemas.parsing.restore_ags_keys); per raw row,
# this column names the restored columns, comma-separated.
AGS_RESTORED_COLUMN = "ags_restored"
AGS_RESTORED_RULE = (
    "ags: leading zero restored (the key was one digit short, as Excel stores a key typed as a number,"
    " or ended in .0, as a script writes a number); save the key column as text in the source"
)
# Validation reads an intake period that Excel had turned into a date (schemas.parsing.restore_periods);
# per raw row, this column says whether it did.
PERIOD_RESTORED_COLUMN = "period_restored"
PERIOD_RESTORED_RULE = (
    "intake_period: read as YYYY-MM from the date Excel had made of it (the 1st of that month);"
    " format the column as text in the source"
)
# Validation dates a household by its form's device date only where a device clock could show it
# (schemas.parsing.with_written_date); per raw row, this column says whether it set one aside.
DEVICE_DATE_SET_ASIDE_COLUMN = "device_date_set_aside"
DEVICE_DATE_SET_ASIDE_RULE = (
    "date: the form's device date (its end, start or today) lies before 2022 or more than a day after the server"
    " received it (a device clock set wrong?); dated by the server's time instead, which decides its age and period"
)
# Household columns holding AGS keys: (column, is a list).
HOUSEHOLD_AGS_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("family_ties_municipality_id", False),
    ("preferred_municipality_ids", True),
    ("excluded_municipality_ids", True),
)


@cache
def reference_kreise() -> pl.DataFrame:
    """The 401 reference Kreise: ags (5 digits), name, lat, lon (population-weighted mean of its Gemeinden)."""
    with resources.files("rematch_pipeline.reference").joinpath("kreise_2020_derived.csv").open("rb") as f:
        return pl.read_csv(f, schema_overrides={"ags": pl.Utf8}).select(
            "ags", "name", pl.col("lat_popweighted").alias("lat"), pl.col("lon_popweighted").alias("lon")
        )


@cache
def reference_gemeinden() -> pl.DataFrame:
    """The 11,004 reference Gemeinden: ags (8 digits), kreis_ags, name, lat, lon (null for uninhabited areas)."""
    with resources.files("rematch_pipeline.reference").joinpath("gemeinden_2020_clean.csv").open("rb") as f:
        return pl.read_csv(f, schema_overrides={"ags": pl.Utf8, "kreis_ags": pl.Utf8}).select("ags", "kreis_ags", "name", "lat", "lon")


@cache
def _reference_population() -> dict[str, int]:
    """Population (2020) of every reference Kreis (5-digit AGS) and Gemeinde (8-digit AGS)."""
    out: dict[str, int] = {}
    for name in ("kreise_2020_derived.csv", "gemeinden_2020_clean.csv"):
        with resources.files("rematch_pipeline.reference").joinpath(name).open("rb") as f:
            frame = pl.read_csv(f, columns=["ags", "population"], schema_overrides={"ags": pl.Utf8, "population": pl.Int64})
        out.update(frame.drop_nulls().iter_rows())
    return out


def reference_population(municipality_ids: Sequence[str]) -> dict[str, int] | None:
    """Each municipality's population from the reference lists (2020), the fixed key's weight
    (docs/mechanisms.md §6); None when any of them is not in the lists (a caller then keys by
    the capacity offered instead, for all alike)."""
    population = _reference_population()
    if any(m not in population for m in municipality_ids):
        return None
    return {m: population[m] for m in municipality_ids}


# The Königsteiner Schlüssel column the fixed key uses between Länder (reference/README.md: the year labels of
# the source are ambiguous, and no verified 2018-2025 values exist).
KOENIGSTEIN_YEAR = 2017


@cache
def koenigstein_shares() -> dict[str, int]:
    """Each Land's Königsteiner share (KOENIGSTEIN_YEAR column) by AGS Land prefix ("01".."16"), in
    hundred-thousandths of a percent so the fixed key can apportion in exact integers (the 16 sum to 10,000,000)."""
    with resources.files("rematch_pipeline.reference").joinpath("koenigsteiner_schluessel_bamf_quota_2015_2017.csv").open("rb") as f:
        frame = pl.read_csv(f, schema_overrides={"land_code": pl.Utf8, f"quota_{KOENIGSTEIN_YEAR}_pct": pl.Utf8})
    # Read as text: the table has five decimals, so the shift is exact (no float rounding).
    return {
        land: int(whole) * 100_000 + int(fraction.ljust(5, "0"))
        for land, (whole, _, fraction) in zip(
            frame["land_code"].to_list(), (p.partition(".") for p in frame[f"quota_{KOENIGSTEIN_YEAR}_pct"].to_list()), strict=True
        )
    }


@cache
def reference_ags() -> frozenset[str]:
    """Every AGS of the reference lists, Kreise and Gemeinden."""
    return frozenset(reference_kreise()["ags"].to_list()) | frozenset(reference_gemeinden()["ags"].to_list())


def warning_rows(frame: pl.DataFrame, table: str, column: str, rule: str | pl.Expr) -> pl.DataFrame:
    """Warning rows for the rows of frame: provenance, key columns present in frame, column and rule."""
    keys = [c for c in ("municipality_id", "intake_period", "household_pseudonym", "submission_id") if c in frame.columns]
    out = frame.select(
        *keys, "file_sha256", "file_name", "sheet", "file_row",
        pl.lit(table).alias("table"), pl.lit(column).alias("column"),
        (pl.lit(rule) if isinstance(rule, str) else rule).alias("rule"),
    )
    return out.with_columns([pl.lit(None, dtype=pl.Utf8).alias(c) for c in WARNING_SCHEMA if c not in out.columns]).select(
        list(WARNING_SCHEMA)
    ).cast(WARNING_SCHEMA)


def _far_from_reference(municipalities: pl.DataFrame) -> pl.Series:
    """Per row: the stated coordinates are far from every reference point of its (known) AGS.

    An 8-digit key is compared with its Gemeinde. A Kreis's seat may lie far from its population-weighted
    mean, so a 5-digit key passes if it is near that mean or near any Gemeinde of the Kreis (the seat is one).
    """
    gemeinden = reference_gemeinden().filter(pl.col("lat").is_not_null())
    points = pl.concat(
        [
            reference_kreise().select(pl.col("ags").alias("key"), "lat", "lon"),
            gemeinden.select(pl.col("ags").alias("key"), "lat", "lon"),
            gemeinden.select(pl.col("kreis_ags").alias("key"), "lat", "lon"),
        ]
    )
    rows = municipalities.select(
        pl.int_range(pl.len()).alias("_i"), pl.col("municipality_id").alias("key"), "latitude", "longitude"
    ).join(points, on="key", how="inner")
    if rows.is_empty():
        return pl.Series([False] * municipalities.height)
    distance = haversine_km(
        rows["latitude"].to_numpy().astype(float), rows["longitude"].to_numpy().astype(float),
        rows["lat"].to_numpy().astype(float), rows["lon"].to_numpy().astype(float),
    )
    nearest = rows.select("_i").with_columns(pl.Series("km", np.nan_to_num(distance, nan=np.inf))).group_by("_i").agg(pl.col("km").min())
    far = set(nearest.filter(pl.col("km") > COORDINATE_TOLERANCE_KM)["_i"].to_list())
    return pl.Series([i in far for i in range(municipalities.height)])


def municipality_warnings(municipalities: pl.DataFrame) -> pl.DataFrame:
    """Validated municipality offers whose AGS is not in the reference list, or whose coordinates are far
    from that AGS's place (WARNING_SCHEMA)."""
    if municipalities.is_empty():
        return pl.DataFrame(schema=WARNING_SCHEMA)
    unknown = ~pl.col("municipality_id").is_in(list(reference_ags()))
    far = municipalities.filter(_far_from_reference(municipalities))
    return pl.concat(
        [
            warning_rows(municipalities.filter(unknown), "municipalities", "municipality_id", UNKNOWN_MUNICIPALITY_RULE),
            warning_rows(far, "municipalities", "latitude", FAR_COORDINATES_RULE),
        ]
    )


def restored_key_warnings(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """One warning per validated row and AGS column whose key validation restored (a leading zero lost,
    parsing.restore_ags_keys): kept, since the restored key is a reference AGS, but the source should be fixed."""
    if frame.is_empty() or AGS_RESTORED_COLUMN not in frame.columns:
        return pl.DataFrame(schema=WARNING_SCHEMA)
    rows = frame.filter(pl.col(AGS_RESTORED_COLUMN).is_not_null()).with_columns(pl.col(AGS_RESTORED_COLUMN).str.split(","))
    found = [pl.DataFrame(schema=WARNING_SCHEMA)]
    for column in sorted(set(rows[AGS_RESTORED_COLUMN].explode().to_list())):
        flagged = rows.filter(pl.col(AGS_RESTORED_COLUMN).list.contains(column))
        found.append(warning_rows(flagged, table, column, AGS_RESTORED_RULE))
    return pl.concat(found)


def restored_period_warnings(municipalities: pl.DataFrame) -> pl.DataFrame:
    """One warning per validated offer whose intake period validation read back from a date
    (parsing.restore_periods): kept, since the month is certain, but the source should be fixed."""
    if municipalities.is_empty() or PERIOD_RESTORED_COLUMN not in municipalities.columns:
        return pl.DataFrame(schema=WARNING_SCHEMA)
    return warning_rows(municipalities.filter(pl.col(PERIOD_RESTORED_COLUMN)), "municipalities", "intake_period", PERIOD_RESTORED_RULE)


def device_date_warnings(households: pl.DataFrame) -> pl.DataFrame:
    """One warning per validated household whose device date validation set aside for the server's
    (parsing.with_written_date): kept, dated by submitted_at, but a wrong clock may have a cause to look at."""
    if households.is_empty() or DEVICE_DATE_SET_ASIDE_COLUMN not in households.columns:
        return pl.DataFrame(schema=WARNING_SCHEMA)
    return warning_rows(households.filter(pl.col(DEVICE_DATE_SET_ASIDE_COLUMN)), "households", "submitted_at", DEVICE_DATE_SET_ASIDE_RULE)


def unknown_places(keys: list[str], municipality_ids: list[str]) -> set[str]:
    """The keys that are neither reference AGS nor matching any of the municipalities by the AGS rule
    (a Gemeinde key lies in the Kreis it starts with)."""
    known = reference_ags()
    index = AgsIndex(sorted(set(municipality_ids)))
    return {k for k in set(keys) if k not in known and not index.lookup(k)}


def household_warnings(households: pl.DataFrame, municipalities: pl.DataFrame) -> pl.DataFrame:
    """One warning per household and AGS column naming a place that is neither in the reference list nor
    among the validated municipalities (of any period): a typo there silently drops a wish, an exclusion,
    or, for a `must` family tie, every placement (WARNING_SCHEMA)."""
    found = [pl.DataFrame(schema=WARNING_SCHEMA)]
    offered = municipalities["municipality_id"].to_list() if municipalities.height else []
    for column, is_list in HOUSEHOLD_AGS_COLUMNS:
        if households.is_empty() or column not in households.columns:
            continue
        keys = households[column].explode().drop_nulls().to_list() if is_list else households[column].drop_nulls().to_list()
        unknown = list(unknown_places(keys, offered))
        if not unknown:
            continue
        names = pl.col(column).list.eval(pl.element().is_in(unknown)).list.any() if is_list else pl.col(column).is_in(unknown)
        flagged = households.filter(names.fill_null(False))
        rule: str | pl.Expr = UNKNOWN_PLACE_RULE
        if column == "family_ties_municipality_id":
            rule = pl.when(pl.col("family_ties_importance") == "must").then(pl.lit(UNKNOWN_MUST_TIE_RULE)).otherwise(pl.lit(UNKNOWN_PLACE_RULE))
        found.append(warning_rows(flagged, "households", column, rule))
    return pl.concat(found)


# Warnings about how a column was saved (Excel stored keys as numbers, months as dates): one line per file, sheet and
# column naming its rows, as the `?`-in-a-name warning (formats.canonical.with_replaced_letters); a line per row said
# the same thing nine times for a decisions file of nine AGS typed as numbers (thirty-eighth session).
FOLDED_RULES: tuple[str, ...] = (AGS_RESTORED_RULE, PERIOD_RESTORED_RULE)


def warning_lines(warnings: pl.DataFrame, limit: int = 20) -> list[str]:
    """Lines for the command line: municipalities by AGS, households by pseudonym, a column-format warning (FOLDED_RULES)
    once per file, sheet and column naming its first rows (never a value); at most `limit` lines."""
    lines = []
    folded = warnings.filter(pl.col("rule").is_in(FOLDED_RULES))
    # By file content, not name: two files of one name (landing/'s folders, weekly templates retried) are two lines.
    for (_, file_name, sheet, column, rule), group in folded.group_by("file_sha256", "file_name", "sheet", "column", "rule", maintain_order=True):
        rows = group["file_row"].sort().to_list()
        where = in_file(file_name, sheet)
        lines.append(f"{where}: {counted(len(rows), 'row')} (column {column}, {first_rows(rows)}): {rule}")
    warnings = warnings.filter(~pl.col("rule").is_in(FOLDED_RULES))
    room = max(limit - len(lines), 0)
    for row in warnings.head(room).iter_rows(named=True):
        where = f"{in_file(row['file_name'], row['sheet'])}, row {row['file_row']}"
        who = (
            f"municipality {row['municipality_id']} (intake period {row['intake_period']})"
            if row["table"] == "municipalities"
            else f"household {row['household_pseudonym']}"
        )
        lines.append(f"{who}, {row['column']} ({where}): {row['rule']}")
    if warnings.height > room:
        lines.append(f"... and {warnings.height - room} more (table validation_warnings)")
    return lines

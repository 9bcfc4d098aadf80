"""Split a parsed template into analytic raw rows (pseudonymised) and identity rows (PII)."""

from __future__ import annotations

import polars as pl

from rematch_pipeline.formats.canonical import LEFT_OUT_COLUMN, SUBMITTED_ON_COLUMN, ParsedTable
from rematch_pipeline.resources.identity import pseudonym
from rematch_pipeline.resources.warehouse import FILE_COLUMNS, PSEUDONYM_COLUMNS, REVIEWED_TABLES, raw_columns
from rematch_pipeline.schemas.consent import refuses
from rematch_pipeline.schemas.contract import TABLES
from rematch_pipeline.schemas.parsing import withhold_unshaped, without_spreadsheet_errors

# Columns a refusing household's raw rows keep: it is counted, not processed. The keys link its
# rows (erasure finds them by pseudonym and submission); every analytic field is blanked.
KEPT_WITHOUT_CONSENT: dict[str, tuple[str, ...]] = {
    "households": ("submission_id", "submitted_at", SUBMITTED_ON_COLUMN, "consent_processing", "household_pseudonym"),
    "members": ("submission_id", "member_pseudonym"),
}


def blanked_without_consent(table: str) -> list[str]:
    """Raw columns of households or members that a refusal blanks (not keys, provenance or the left-out reason)."""
    kept = (*KEPT_WITHOUT_CONSENT[table], *FILE_COLUMNS, LEFT_OUT_COLUMN)
    return [c for c in raw_columns(table) if c not in kept]


def blank_where(table: str, frame: pl.DataFrame, withdrawn: pl.Expr | pl.Series) -> pl.DataFrame:
    """Raw rows of households or members with the analytic fields of withdrawn rows blanked."""
    return frame.with_columns(
        pl.when(withdrawn).then(None).otherwise(pl.col(c)).alias(c) for c in blanked_without_consent(table) if c in frame.columns
    )


def pseudonyms(secret: bytes, kind: str, column: pl.Series) -> pl.Series:
    """Keyed pseudonyms of a column's values (nulls stay null)."""
    return column.map_elements(lambda v: pseudonym(secret, kind, v), return_dtype=pl.Utf8, skip_nulls=True)


def _pseudonym_list(secret: bytes, column: pl.Series) -> pl.Series:
    return column.map_elements(
        lambda v: " ".join(pseudonym(secret, "household", ref) for ref in v.split()),
        return_dtype=pl.Utf8,
        skip_nulls=True,
    )


def split_identity(
    parsed: ParsedTable, secret: bytes, file_sha256: str, file_name: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Raw analytic rows (PII replaced by pseudonyms, cells without their column's shape withheld)
    and identity rows of one parsed table."""
    frame = without_spreadsheet_errors(parsed.frame).with_columns(
        pl.lit(file_sha256).alias("file_sha256"),
        pl.lit(file_name).alias("file_name"),
        pl.lit(parsed.sheet, dtype=pl.Utf8).alias("sheet"),
    )
    table = parsed.table
    if table in REVIEWED_TABLES and LEFT_OUT_COLUMN not in frame.columns:  # the export readers add it where a row is flagged
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(LEFT_OUT_COLUMN))
    if table == "households" and SUBMITTED_ON_COLUMN not in frame.columns:  # only the Kobo reader keeps it, where needed
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(SUBMITTED_ON_COLUMN))
    pii = [f.name for f in TABLES[table] if f.pii]
    provenance = ["file_sha256", "file_row"]
    if table == "households":
        frame = frame.with_columns(
            pseudonyms(secret, "household", frame["household_ref"]).alias("household_pseudonym"),
            _pseudonym_list(secret, frame["linked_household_refs"]).alias("linked_household_pseudonyms"),
        )
        # A row without a submission id is stored to be quarantined (validation: `required`); its
        # identity row is keyed by file and row, the submission id of its key then empty, not missing.
        identity = frame.select(["household_pseudonym", pl.col("submission_id").fill_null(""), *pii, *provenance])
        # Members and earlier copies of a refusing submission may be in other files: ingestion blanks those.
        frame = blank_where(table, frame, refuses())
    elif table == "members":
        # A person is identified by submission and position; the name itself never leaves.
        position = pl.int_range(pl.len()).over("submission_id").cast(pl.Utf8)
        frame = frame.with_columns((pl.col("submission_id").fill_null("") + ":" + position).alias("_member_key"))
        frame = frame.with_columns(pseudonyms(secret, "person", frame["_member_key"]).alias("member_pseudonym"))
        identity = frame.select(["member_pseudonym", "submission_id", "member_name", "date_of_birth", *provenance])
    elif table == "municipalities":
        identity = frame.select(["municipality_id", "submission_id", *pii, *provenance])
    else:  # decisions
        frame = frame.with_columns(
            pseudonyms(secret, "household", frame["household_ref"]).alias("household_ref_pseudonym")
        )
        identity = frame.select(
            pl.col("household_ref_pseudonym").alias("household_pseudonym"), "household_ref", *provenance
        ).filter(pl.col("household_ref").is_not_null())
    renames = PSEUDONYM_COLUMNS[table]
    assert set(renames.values()) <= set(frame.columns)
    # Free text typed into a code, yes/no, number or date column would otherwise reach the warehouse.
    return withhold_unshaped(table, frame.select(raw_columns(table))), identity

"""Raw questionnaire rows → canonical typed tables plus a quarantine of broken rows.

Plain Python (no Dagster). A full recompute over every raw row ever ingested: raw tables are
append-only, so nothing stored is lost and a corrected file simply adds better rows.
Quarantine rows name file, row, column and rule — never the cell value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from rematch_pipeline.formats.canonical import LEFT_OUT_COLUMN
from rematch_pipeline.schemas.models import row_failures
from rematch_pipeline.schemas.parsing import FALSE_WORDS, parse_date, parse_timestamp, type_table

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "file_sha256": pl.Utf8,
    "file_name": pl.Utf8,
    "sheet": pl.Utf8,
    "file_row": pl.Int32,
    "table": pl.Utf8,
    "column": pl.Utf8,
    "rule": pl.Utf8,
}


@dataclass
class CanonicalTables:
    """The validated tables and what was set aside."""

    municipalities: pl.DataFrame
    households: pl.DataFrame
    members: pl.DataFrame
    decisions: pl.DataFrame
    quarantine: pl.DataFrame
    superseded: pl.DataFrame  # duplicates resolved by the latest submitted_at, and submissions left out by review
    counts: dict[str, int] = field(default_factory=dict)


def _quarantine_rows(table: str, raw: pl.DataFrame, violations: pl.DataFrame) -> pl.DataFrame:
    """Violations (by _row index) with the file provenance of their raw rows."""
    if violations.is_empty():
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    provenance = raw.select("file_sha256", "file_name", "sheet", "file_row").with_row_index("_row")
    return (
        violations.with_columns(pl.col("_row").cast(pl.UInt32))
        .join(provenance, on="_row")
        .with_columns(pl.lit(table).alias("table"))
        .select(list(QUARANTINE_SCHEMA))
        .cast(QUARANTINE_SCHEMA)
    )


def check_rows(table: str, raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed rows that pass every row rule, and quarantine rows for those that do not."""
    typed, type_violations = type_table(table, raw)
    value_violations = row_failures(table, typed)
    # A badly typed cell is null afterwards; report its type rule, not a follow-on "required".
    value_violations = value_violations.join(type_violations.select("_row", "column"), on=["_row", "column"], how="anti")
    violations = pl.concat([type_violations.cast({"_row": pl.UInt32}), value_violations.cast({"_row": pl.UInt32})])
    bad_rows = violations["_row"].unique()
    good = typed.with_row_index("_row").filter(~pl.col("_row").is_in(bad_rows.implode())).drop("_row")
    return good, _quarantine_rows(table, raw, violations)


def _row_rule(frame: pl.DataFrame, table: str, column: str, rule: str | pl.Expr) -> pl.DataFrame:
    """Provenance rows of frame with one rule for all, or a rule per row (an expression over frame)."""
    return frame.select(
        "file_sha256", "file_name", "sheet", "file_row",
        pl.lit(table).alias("table"), pl.lit(column).alias("column"),
        (pl.lit(rule) if isinstance(rule, str) else rule).alias("rule"),
    ).cast(QUARANTINE_SCHEMA)


def _latest(frame: pl.DataFrame, table: str, keys: list[str], superseded: list[pl.DataFrame]) -> tuple[pl.DataFrame, int]:
    """Keep the latest submission per key (then the latest ingested); report the others in `superseded`."""
    if frame.is_empty():
        return frame, 0
    ordered = frame.with_row_index("_order").sort(["submitted_at", "_order"])
    kept = ordered.unique(subset=keys, keep="last", maintain_order=True)
    dropped = ordered.join(kept.select("_order"), on="_order", how="anti")
    superseded.append(_row_rule(dropped, table, keys[-1] if keys[-1] != "household_pseudonym" else "household_ref", "duplicate: superseded by a later submission"))
    return kept.sort("_order").drop("_order"), dropped.height


def _without_left_out(raw: pl.DataFrame, table: str, superseded: list[pl.DataFrame], counts: dict[str, int]) -> tuple[pl.DataFrame, pl.Series]:
    """Leave out submissions whose latest ingested copy the collection tool marks as not to be used
    (LEFT_OUT_COLUMN: a reviewer rejected it, or it was never completed), with every earlier copy of
    them: a weekly full export must withdraw what an earlier one loaded. A marked copy that a later,
    unmarked one replaced goes as superseded. Returns the other raw rows (without the column) and the
    left-out submission ids."""
    if LEFT_OUT_COLUMN not in raw.columns:
        counts[f"{table}_left_out"] = 0
        return raw, pl.Series("submission_id", [], dtype=pl.Utf8)
    ordered = raw.with_row_index("_order")
    last = (
        ordered.filter(pl.col("submission_id").is_not_null())
        .group_by("submission_id")
        .agg(pl.col(LEFT_OUT_COLUMN).sort_by("_order").last().alias("_reason"))
    )
    withdrawn = last.filter(pl.col("_reason").is_not_null())
    joined = ordered.join(withdrawn, on="submission_id", how="left").sort("_order")
    goes = pl.col("_reason").is_not_null() | pl.col(LEFT_OUT_COLUMN).is_not_null()
    dropped = joined.filter(goes)
    rule = (
        pl.when(pl.col("_reason").is_not_null()).then(pl.lit("left out: ") + pl.col("_reason"))
        .when(pl.col("submission_id").is_null()).then(pl.lit("left out: ") + pl.col(LEFT_OUT_COLUMN))
        .otherwise(pl.lit("duplicate: superseded by a later submission"))
    )
    superseded.append(_row_rule(dropped, table, "submission_id", rule))
    counts[f"{table}_left_out"] = withdrawn.height + dropped.filter(pl.col("submission_id").is_null()).height
    return joined.filter(~goes).drop("_order", "_reason", LEFT_OUT_COLUMN), withdrawn["submission_id"]


def ages_on(members: pl.DataFrame, households: pl.DataFrame, birth_dates: pl.DataFrame) -> pl.DataFrame:
    """Whole years of age on the household's submission date; the birth date itself is not kept."""
    reference = households.select("submission_id", pl.col("submitted_at").dt.date().alias("_on"))
    joined = members.join(birth_dates, on=["file_sha256", "file_row"], how="left").join(reference, on="submission_id", how="left")

    def age(born: str | None, on: dt.date | None) -> int | None:
        day = parse_date(born)
        if day is None or on is None:
            return None
        years = on.year - day.year - ((on.month, on.day) < (day.month, day.day))
        return years

    ages = [age(b, o) for b, o in zip(joined["date_of_birth"].to_list(), joined["_on"].to_list())]
    return joined.drop("date_of_birth", "_on").with_columns(pl.Series("age_years", ages, dtype=pl.Int64))


def build_canonical(raw: dict[str, pl.DataFrame], birth_dates: pl.DataFrame, known_proposals: pl.DataFrame) -> CanonicalTables:
    """Validate every raw table and apply the cross-table rules of the contract.

    `known_proposals` (round_id, household_pseudonym, municipality_id) is what decisions may answer.
    """
    quarantine: list[pl.DataFrame] = []
    counts: dict[str, int] = {}

    superseded: list[pl.DataFrame] = [pl.DataFrame(schema=QUARANTINE_SCHEMA)]
    raw_municipalities, _ = _without_left_out(raw["municipalities"], "municipalities", superseded, counts)
    municipalities, q = check_rows("municipalities", raw_municipalities)
    quarantine.append(q)
    municipalities, counts["municipality_duplicates_resolved"] = _latest(municipalities, "municipalities", ["intake_period", "municipality_id"], superseded)

    # Without consent a household is only counted (contract B): its rows are neither checked nor kept.
    raw_households, left_out_ids = _without_left_out(raw["households"], "households", superseded, counts)
    refused_mask = raw_households["consent_processing"].str.strip_chars().str.to_lowercase().is_in(list(FALSE_WORDS)).fill_null(False)
    refused = raw_households.filter(refused_mask)
    counts["households_without_consent"] = refused["household_pseudonym"].n_unique()
    refused_ids = refused["submission_id"].implode()

    households, q = check_rows("households", raw_households.filter(~refused_mask))
    quarantine.append(q)
    households, dup_submissions = _latest(households, "households", ["submission_id"], superseded)
    households, dup_households = _latest(households, "households", ["household_pseudonym"], superseded)
    counts["household_duplicates_resolved"] = dup_submissions + dup_households
    # A later submission that withdraws consent withdraws the household.
    withdrawn = refused.select(
        "household_pseudonym", pl.col("submitted_at").map_elements(parse_timestamp, return_dtype=pl.Datetime("us")).alias("_refused_at")
    ).group_by("household_pseudonym").agg(pl.col("_refused_at").max())
    households = households.join(withdrawn, on="household_pseudonym", how="left").filter(
        pl.col("_refused_at").is_null() | (pl.col("submitted_at") > pl.col("_refused_at"))
    ).drop("_refused_at")

    # A withdrawn household's members go with it (no quarantine: nothing is wrong with them).
    members_raw = raw["members"].filter(~pl.col("submission_id").is_in(refused_ids) & ~pl.col("submission_id").is_in(left_out_ids.implode()))
    members, member_q = check_rows("members", members_raw)
    quarantine.append(member_q)
    # Members of a re-submitted household: keep those of the latest file that carries the submission.
    if not members.is_empty():
        latest_file = members.with_row_index("_order").group_by("submission_id").agg(pl.col("file_sha256").sort_by("_order").last())
        members = members.join(latest_file, on=["submission_id", "file_sha256"], how="semi")

    orphans = members.join(households, on="submission_id", how="anti")
    quarantine.append(_row_rule(orphans, "members", "submission_id", "reference: member row without a valid household"))
    members = members.join(households, on="submission_id", how="semi")

    members = ages_on(members, households, birth_dates)
    bad_age = members.filter(pl.col("age_years").is_null() | ~pl.col("age_years").is_between(0, 120))
    quarantine.append(_row_rule(bad_age, "members", "date_of_birth", "date: ISO date giving an age of 0-120 on the submission date"))
    members = members.join(bad_age.select("file_sha256", "file_row"), on=["file_sha256", "file_row"], how="anti")

    # A household with any broken member row would be matched on the wrong needs: hold it back whole.
    failed_member_rows = members_raw.join(member_q.select("file_sha256", "file_row"), on=["file_sha256", "file_row"], how="semi")
    broken = pl.concat([failed_member_rows.select("submission_id"), bad_age.select("submission_id")])["submission_id"].unique()
    held = households.filter(pl.col("submission_id").is_in(broken.implode()))
    quarantine.append(_row_rule(held, "households", "submission_id", "members: a member row of this household failed validation"))
    households = households.join(held.select("submission_id"), on="submission_id", how="anti")

    no_members = households.join(members, on="submission_id", how="anti")
    quarantine.append(_row_rule(no_members, "households", "submission_id", "members: household has no member rows"))
    households = households.join(members, on="submission_id", how="semi")

    # Linked households must all be present, else the together-or-not-at-all rule cannot be honoured.
    households = households.with_columns(
        pl.col("linked_household_pseudonyms").fill_null("").str.split(" ").list.eval(pl.element().filter(pl.element() != "")).alias("linked_household_pseudonyms")
    )
    while True:
        known = households["household_pseudonym"].implode()
        missing = households.filter(
            pl.col("linked_household_pseudonyms").list.eval(~pl.element().is_in(known)).list.any()
        )
        if missing.is_empty():
            break
        quarantine.append(_row_rule(missing, "households", "linked_household_refs", "reference: a linked household is not among the valid households"))
        households = households.join(missing.select("submission_id"), on="submission_id", how="anti")
    members = members.join(households, on="submission_id", how="semi")

    decisions, q = check_rows("decisions", raw["decisions"])
    quarantine.append(q)
    decisions = decisions.with_columns(
        pl.coalesce("household_ref_pseudonym", "household_pseudonym").alias("household_pseudonym")
    ).drop("household_ref_pseudonym")
    unknown = decisions.join(known_proposals, on=["round_id", "household_pseudonym", "municipality_id"], how="anti")
    quarantine.append(_row_rule(unknown, "decisions", "municipality_id", "reference: not a proposal of that round"))
    decisions = decisions.join(known_proposals, on=["round_id", "household_pseudonym", "municipality_id"], how="semi")
    decisions = decisions.with_row_index("_order").unique(["round_id", "household_pseudonym"], keep="last").sort("_order").drop("_order")

    quarantine_frame = pl.concat(quarantine).unique(maintain_order=True).sort(["file_name", "sheet", "file_row", "column"], nulls_last=True)
    counts["rows_quarantined"] = quarantine_frame.select(pl.struct("file_sha256", "sheet", "file_row")).n_unique()
    superseded_frame = pl.concat(superseded).sort(["file_name", "sheet", "file_row"], nulls_last=True)
    return CanonicalTables(municipalities, households, members, decisions, quarantine_frame, superseded_frame, counts)

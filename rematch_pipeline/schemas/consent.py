"""Consent to processing (contract B): which household rows a refusal withdraws.

Without `consent_processing` a household is not processed at all, only counted (GDPR Art. 9).
Copies of one submission, and the submissions of one household (household_ref), follow the
contract's latest-wins rule: the latest `submitted_at` (to the minute), then the latest ingested (an edit in Kobo
or Central keeps the submission id and date). A refusing copy withdraws itself and every earlier
copy of its submission and of its household's other submissions; a later consenting copy (an edit,
or a new questionnaire) stands again on its own. Ingestion blanks what a refusal withdraws,
validation leaves it out: both take the rule from here.
"""

from __future__ import annotations

import polars as pl

from rematch_pipeline.schemas.parsing import FALSE_WORDS, parse_timestamp, submission_time_order


def refuses(column: str = "consent_processing") -> pl.Expr:
    """Whether a raw consent cell says no (any of the contract's false words; empty is not a refusal)."""
    return pl.col(column).str.strip_chars().str.to_lowercase().is_in(list(FALSE_WORDS)).fill_null(False)


def _key(column: str) -> pl.Expr:
    """A grouping key in which every empty value is a group of its own: rows without a
    submission id or household reference are not copies of each other."""
    return pl.coalesce(pl.col(column), pl.lit("\x1f#row") + pl.col("_order").cast(pl.Utf8))


def withdrawn_copies(households: pl.DataFrame) -> pl.Series:
    """Per raw household row (in ingestion order): whether it refuses, or a later copy of its
    submission or a later submission of its household refuses. Needs submission_id,
    household_pseudonym, submitted_at (text) and consent_processing."""
    flagged = (
        households.select("submission_id", "household_pseudonym", "submitted_at", refuses().alias("_refuses"))
        .with_row_index("_order")
        .with_columns(_key("submission_id").alias("_submission"), _key("household_pseudonym").alias("_household"))
    )
    # Only submissions and households with a refusing copy need their dates read (most have none).
    touched = flagged.filter(pl.col("_refuses").any().over("_submission") | pl.col("_refuses").any().over("_household"))
    if touched.is_empty():
        return pl.Series("withdrawn", [False] * households.height, dtype=pl.Boolean)
    # An unreadable date sorts first: such a copy is older than any dated one.
    later_refusal = pl.col("_refuses").cum_max(reverse=True)
    marked = (
        touched.with_columns(submission_time_order(pl.col("submitted_at").map_elements(parse_timestamp, return_dtype=pl.Datetime("us"))).alias("_at"))
        .sort(["_at", "_order"], nulls_last=False)
        .with_columns((later_refusal.over("_submission") | later_refusal.over("_household")).alias("withdrawn"))
    )
    joined = flagged.join(marked.select("_order", "withdrawn"), on="_order", how="left").sort("_order")
    return joined["withdrawn"].fill_null(False)


def refused_submissions(households: pl.DataFrame, withdrawn: pl.Series) -> pl.Series:
    """Submission ids every copy of which is withdrawn (its latest copy refuses, or a later
    submission of its household does), each once;
    withdrawn is withdrawn_copies(households), which the callers need as well."""
    if households.is_empty():
        return pl.Series("submission_id", [], dtype=pl.Utf8)
    flagged = households.select("submission_id").with_columns(withdrawn.alias("_withdrawn"))
    return (
        flagged.filter(pl.col("submission_id").is_not_null())
        .group_by("submission_id")
        .agg(pl.col("_withdrawn").all())
        .filter(pl.col("_withdrawn"))["submission_id"]
        .sort()
    )

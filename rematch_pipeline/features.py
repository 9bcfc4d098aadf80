"""Household and municipality feature tables (contract section C: what a household uses and needs).

Plain Python (no Dagster): canonical tables in, feature tables out.
"""

from __future__ import annotations

from functools import cache

import polars as pl

from rematch_pipeline.ags_reference import reference_gemeinden, reference_kreise
from rematch_pipeline.formats.canonical import FIRST_SUBMITTED_ON_COLUMN, SUBMITTED_ON_COLUMN
from rematch_pipeline.schemas.contract import COURSE_LEVELS, IMPORTANCE_FIELDS

# Resources a household uses and a municipality offers, in the order the engine sees them.
RESOURCES: tuple[str, ...] = (
    "persons",
    "housing_units",
    "accessible_units",
    "kita_places",
    "school_places_primary",
    "school_places_secondary",
    "integration_course_places",
)
# The municipality column that caps each resource.
CAPACITY_COLUMNS: dict[str, str] = {r: r for r in RESOURCES} | {"persons": "capacity_persons"}

# Age bands of contract section C (inclusive, whole years on the intake date).
AGE_BANDS: dict[str, tuple[int, int]] = {
    "kita_places": (1, 5),
    "school_places_primary": (6, 10),
    "school_places_secondary": (11, 17),
}
COURSE_AGES: tuple[int, int] = (18, 64)


@cache
def reference_places() -> pl.DataFrame:
    """AGS → coordinates for all Kreise (5 digits) and Gemeinden (8 digits) of the reference data."""
    kreise = reference_kreise().select("ags", "name", "lat", "lon")
    gemeinden = reference_gemeinden().select("ags", "name", "lat", "lon")
    return pl.concat([kreise, gemeinden.filter(pl.col("lat").is_not_null())])


def link_groups(households: pl.DataFrame) -> pl.DataFrame:
    """household_pseudonym → link_group: connected components of linked households (smallest pseudonym names the group)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for own, linked in zip(households["household_pseudonym"].to_list(), households["linked_household_pseudonyms"].to_list()):
        find(own)
        for other in linked or []:
            a, b = find(own), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    pseudonyms = households["household_pseudonym"].to_list()
    return pl.DataFrame(
        {"household_pseudonym": pseudonyms, "link_group": [find(p) for p in pseudonyms]},
        schema={"household_pseudonym": pl.Utf8, "link_group": pl.Utf8},
    )


def household_features(households: pl.DataFrame, members: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """One row per consenting household with its resource usage, needs, wishes and decision history."""
    if SUBMITTED_ON_COLUMN not in households.columns:
        # A households table validated by a release before the date as written (its members' ages are UTC-dated
        # too): the UTC date until validation runs again (docs/decisions.md, thirty-first session).
        households = households.with_columns(pl.col("submitted_at").dt.date().alias(SUBMITTED_ON_COLUMN))
    first_submitted = [pl.col(FIRST_SUBMITTED_ON_COLUMN)] if FIRST_SUBMITTED_ON_COLUMN in households.columns else []
    age = pl.col("age_years")
    usage = members.group_by("submission_id").agg(
        pl.len().cast(pl.Int64).alias("persons"),
        pl.col("wheelchair").any().cast(pl.Int64).alias("accessible_units"),
        *[age.is_between(lo, hi).sum().cast(pl.Int64).alias(name) for name, (lo, hi) in AGE_BANDS.items()],
        (age.is_between(*COURSE_AGES) & pl.col("german_level").is_in(list(COURSE_LEVELS))).sum().cast(pl.Int64).alias("integration_course_places"),
        pl.col("medical_needs").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique().sort().alias("medical_needs"),
        pl.col("occupation_sector").filter(pl.col("wants_work")).sort().alias("work_sectors"),
        pl.col("wants_work").sum().cast(pl.Int64).alias("members_wanting_work"),
        pl.col("languages").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique().sort().alias("languages"),
        pl.col("age_years").min().alias("youngest_age"),
        pl.col("age_years").max().alias("oldest_age"),
    )
    declined = (
        decisions.filter(pl.col("decision") == "decline")
        .group_by("household_pseudonym")
        .agg(pl.col("municipality_id").unique().sort().alias("declined_municipality_ids"))
    )
    accepted = (
        decisions.filter(pl.col("decision") == "accept")
        .sort("round_id")
        .group_by("household_pseudonym")
        .agg(pl.col("municipality_id").last().alias("accepted_municipality_id"), pl.col("round_id").last().alias("accepted_round_id"))
    )
    ties = reference_places().select(
        pl.col("ags").alias("family_ties_municipality_id"), pl.col("lat").alias("family_tie_lat"), pl.col("lon").alias("family_tie_lon")
    )
    features = (
        households.join(usage, on="submission_id", how="inner")
        .join(link_groups(households), on="household_pseudonym", how="left")
        .join(declined, on="household_pseudonym", how="left")
        .join(accepted, on="household_pseudonym", how="left")
        .join(ties, on="family_ties_municipality_id", how="left")
        .with_columns(
            pl.lit(1, dtype=pl.Int64).alias("housing_units"),
            pl.col("declined_municipality_ids").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))),
            pl.col("family_ties_importance").fill_null("none"),
            # The period of the date the submitter wrote: 00:30 on 1 July in Germany is July, though June in UTC.
            # Its first submission's: a household that corrected its answers in August applied in July (ages stay
            # on the latest submission's date, whose answers are used). Tables validated before: their own date.
            pl.coalesce(*first_submitted, SUBMITTED_ON_COLUMN).dt.strftime("%Y-%m").alias("submitted_period"),
        )
    )
    return features.select(
        "household_pseudonym",
        "link_group",
        "submitted_at",
        SUBMITTED_ON_COLUMN,
        "submitted_period",
        *RESOURCES,
        "medical_needs",
        "pets",
        "excluded_municipality_ids",
        "preferred_municipality_ids",
        "declined_municipality_ids",
        "family_ties_municipality_id",
        "family_ties_importance",
        "family_tie_lat",
        "family_tie_lon",
        *IMPORTANCE_FIELDS,
        "work_sectors",
        "members_wanting_work",
        "languages",
        "youngest_age",
        "oldest_age",
        "accepted_municipality_id",
        "accepted_round_id",
    ).sort("household_pseudonym")


def municipality_features(municipalities: pl.DataFrame) -> pl.DataFrame:
    """One row per municipality offer and intake period, with the capacities of every resource."""
    return municipalities.select(
        "municipality_id",
        "municipality_name",
        "state",
        "intake_period",
        "latitude",
        "longitude",
        "capacity_persons",
        "min_persons",
        "housing_units",
        "largest_unit_persons",
        "accessible_units",
        "pets_allowed",
        "kita_places",
        "school_places_primary",
        "school_places_secondary",
        "integration_course_places",
        pl.col("medical_care").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))),
        pl.col("shortage_sectors").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))),
        "ukrainian_community",
        "settlement_type",
        "public_transport",
    ).sort(["intake_period", "municipality_id"])

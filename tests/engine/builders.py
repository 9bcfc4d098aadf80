"""Builders for small hand-made engine inputs (row dicts with neutral defaults)."""

from __future__ import annotations

from typing import Any

import polars as pl

HOUSEHOLD_SCHEMA: dict[str, Any] = {
    "household_pseudonym": pl.String,
    "link_group": pl.String,
    "persons": pl.Int64,
    "housing_units": pl.Int64,
    "accessible_units": pl.Int64,
    "kita_places": pl.Int64,
    "school_places_primary": pl.Int64,
    "school_places_secondary": pl.Int64,
    "integration_course_places": pl.Int64,
    "medical_needs": pl.List(pl.String),
    "pets": pl.Boolean,
    "excluded_municipality_ids": pl.List(pl.String),
    "preferred_municipality_ids": pl.List(pl.String),
    "declined_municipality_ids": pl.List(pl.String),
    "family_ties_municipality_id": pl.String,
    "family_ties_importance": pl.String,
    "family_tie_lat": pl.Float64,
    "family_tie_lon": pl.Float64,
    "imp_jobs": pl.Int64,
    "imp_schools_childcare": pl.Int64,
    "imp_medical_care": pl.Int64,
    "imp_community": pl.Int64,
    "imp_big_city": pl.Int64,
    "imp_quiet_rural": pl.Int64,
    "imp_family_nearby": pl.Int64,
    "work_sectors": pl.List(pl.String),
    "members_wanting_work": pl.Int64,
    "languages": pl.List(pl.String),
}

MUNICIPALITY_SCHEMA: dict[str, Any] = {
    "municipality_id": pl.String,
    "municipality_name": pl.String,
    "latitude": pl.Float64,
    "longitude": pl.Float64,
    "capacity_persons": pl.Int64,
    "min_persons": pl.Int64,
    "housing_units": pl.Int64,
    "largest_unit_persons": pl.Int64,
    "accessible_units": pl.Int64,
    "kita_places": pl.Int64,
    "school_places_primary": pl.Int64,
    "school_places_secondary": pl.Int64,
    "integration_course_places": pl.Int64,
    "pets_allowed": pl.Boolean,
    "medical_care": pl.List(pl.String),
    "shortage_sectors": pl.List(pl.String),
    "ukrainian_community": pl.String,
    "settlement_type": pl.String,
    "public_transport": pl.String,
}


def household(pseudonym: str, **overrides: Any) -> dict[str, Any]:
    """One household row with neutral defaults (2 adults, no needs, no wishes)."""
    row: dict[str, Any] = {
        "household_pseudonym": pseudonym,
        "link_group": pseudonym,
        "persons": 2,
        "housing_units": 1,
        "accessible_units": 0,
        "kita_places": 0,
        "school_places_primary": 0,
        "school_places_secondary": 0,
        "integration_course_places": 0,
        "medical_needs": [],
        "pets": False,
        "excluded_municipality_ids": [],
        "preferred_municipality_ids": [],
        "declined_municipality_ids": [],
        "family_ties_municipality_id": None,
        "family_ties_importance": "none",
        "family_tie_lat": None,
        "family_tie_lon": None,
        "imp_jobs": 0,
        "imp_schools_childcare": 0,
        "imp_medical_care": 0,
        "imp_community": 0,
        "imp_big_city": 0,
        "imp_quiet_rural": 0,
        "imp_family_nearby": 0,
        "work_sectors": [],
        "members_wanting_work": 0,
        "languages": ["uk"],
    }
    unknown = set(overrides) - set(row)
    assert not unknown, unknown
    row.update(overrides)
    return row


def municipality(ags: str, **overrides: Any) -> dict[str, Any]:
    """One municipality row with generous defaults (plenty of every resource)."""
    row: dict[str, Any] = {
        "municipality_id": ags,
        "municipality_name": f"M{ags}",
        "latitude": 52.0,
        "longitude": 10.0,
        "capacity_persons": 100,
        "min_persons": 0,
        "housing_units": 50,
        "largest_unit_persons": 8,
        "accessible_units": 5,
        "kita_places": 10,
        "school_places_primary": 10,
        "school_places_secondary": 10,
        "integration_course_places": 20,
        "pets_allowed": True,
        "medical_care": ["general"],
        "shortage_sectors": [],
        "ukrainian_community": "none",
        "settlement_type": "town",
        "public_transport": "medium",
    }
    unknown = set(overrides) - set(row)
    assert not unknown, unknown
    row.update(overrides)
    return row


def households_df(*rows: dict[str, Any]) -> pl.DataFrame:
    """Household feature table from rows."""
    return pl.DataFrame(list(rows), schema=HOUSEHOLD_SCHEMA)


def municipalities_df(*rows: dict[str, Any]) -> pl.DataFrame:
    """Municipality feature table from rows."""
    return pl.DataFrame(list(rows), schema=MUNICIPALITY_SCHEMA)

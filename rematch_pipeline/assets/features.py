"""Canonical tables → household and municipality feature tables."""


import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.failures import reason_first
from rematch_pipeline.assets.validate import replace_table
from rematch_pipeline.features import household_features as build_household_features
from rematch_pipeline.features import municipality_features as build_municipality_features
from rematch_pipeline.resources.warehouse import warehouse_connection
from rematch_pipeline.wording import counted


@dg.asset(deps=["households", "members", "decisions"], group_name="features", pool="duckdb", kinds={"duckdb"})
@reason_first
def household_features(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Per household: persons and resource usage, medical needs, wishes, ties, importance ratings, decisions."""
    with warehouse_connection(warehouse) as con:
        households = con.execute("SELECT * FROM households").pl()
        members = con.execute("SELECT * FROM members").pl()
        decisions = con.execute("SELECT * FROM decisions").pl()
        features = build_household_features(households, members, decisions)
        replace_table(con, "household_features", features)
    linked = features.filter(pl.col("link_group") != pl.col("household_pseudonym")).height
    context.log.info(f"{counted(features.height, 'household')}, {counted(int(features['persons'].sum() or 0), 'person')}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": features.height,
            "persons": int(features["persons"].sum() or 0),
            "households_linked": linked,
            "households_with_medical_needs": features.filter(pl.col("medical_needs").list.len() > 0).height,
            "households_accepted": features.filter(pl.col("accepted_municipality_id").is_not_null()).height,
        }
    )


@dg.asset(deps=["municipalities"], group_name="features", pool="duckdb", kinds={"duckdb"})
@reason_first
def municipality_features(warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Per municipality and intake period: capacities of every resource and what it offers."""
    with warehouse_connection(warehouse) as con:
        features = build_municipality_features(con.execute("SELECT * FROM municipalities").pl())
        replace_table(con, "municipality_features", features)
    periods = features.group_by("intake_period").agg(pl.len(), pl.col("capacity_persons").sum()).sort("intake_period")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": features.height,
            "periods": dg.MetadataValue.md(
                "| period | municipalities | persons capacity |\n|---|---|---|\n"
                + "\n".join(f"| {p} | {n} | {c} |" for p, n, c in periods.iter_rows())
            ),
        }
    )

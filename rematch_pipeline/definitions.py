"""The one Definitions object: assets by stage, checks, jobs and resources on the data home."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.features import household_features, municipality_features
from rematch_pipeline.assets.ingest import landed_exports
from rematch_pipeline.assets.matching import round_candidates, round_proposals
from rematch_pipeline.assets.reports import round_report
from rematch_pipeline.assets.validate import canonical_tables, contract_checks
from rematch_pipeline.resources.home import RematchHome, default_home
from rematch_pipeline.resources.identity import IdentityStore

INTAKE_ASSETS = [landed_exports, canonical_tables, household_features, municipality_features]
ROUND_ASSETS = [round_candidates, round_proposals, round_report]

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(*INTAKE_ASSETS),
    description="Ingest every new file in landing/, validate, and rebuild the feature tables.",
)
round_job = dg.define_asset_job(
    "round_job",
    selection=dg.AssetSelection.assets(*ROUND_ASSETS),
    description="Run one matching round (a partition of `rounds`): candidates, assignment, report.",
)


def build_resources(home: RematchHome) -> dict[str, object]:
    """Resources bound to one data home (tests pass a temporary one)."""
    return {
        "home": home,
        "identity": IdentityStore(home=home),
        "warehouse": DuckDBResource(database=str(home.warehouse_path)),
    }


def build_definitions(home: RematchHome) -> dg.Definitions:
    """Definitions over a data home."""
    return dg.Definitions(
        assets=[*INTAKE_ASSETS, *ROUND_ASSETS],
        asset_checks=contract_checks,
        jobs=[ingest_job, round_job],
        resources=build_resources(home),
    )


defs = build_definitions(RematchHome(root=str(default_home())))

"""The one Definitions object: assets by stage, checks, jobs, sensors and resources on the data home."""

import dagster as dg

from rematch_pipeline.assets.decisions import record_decisions_job
from rematch_pipeline.assets.expectations import expectation_checks
from rematch_pipeline.assets.failures import CONSOLE_LOGGER_RUN_CONFIG, console_logger
from rematch_pipeline.assets.features import household_features, municipality_features
from rematch_pipeline.assets.ingest import landed_export
from rematch_pipeline.assets.matching import round_candidates, round_proposals
from rematch_pipeline.assets.reports import round_report
from rematch_pipeline.assets.retry import retry_exports_job
from rematch_pipeline.assets.sensors import hourly_ingestion, ingest_file_job, landing_sensor, validate_after_ingestion, validate_job
from rematch_pipeline.assets.validate import canonical_tables, contract_checks, reference_checks
from rematch_pipeline.resources.home import RematchHome, default_home
from rematch_pipeline.resources.identity import IdentityStore
from rematch_pipeline.resources.warehouse import Warehouse

VALIDATE_ASSETS = [canonical_tables, household_features, municipality_features]
ROUND_ASSETS = [round_candidates, round_proposals, round_report]
CHECKS = [*contract_checks, *expectation_checks, *reference_checks]

round_job = dg.define_asset_job(
    "round_job",
    config=CONSOLE_LOGGER_RUN_CONFIG,
    selection=dg.AssetSelection.assets(*ROUND_ASSETS),
    # Shown on the job's page, which has no Launchpad tab for an asset job (an op job such as record_decisions_job has one).
    description="Run one matching round (a partition of `rounds`: the round id): candidates, assignment, report. To launch"
    " it: the arrow beside *Materialize all…* → *Open launchpad*; pick the round id or *Add new partition*, set `period`"
    " (and weights, locks), then *Materialize*. Answers to its proposals: record_decisions_job.",
)


def build_resources(home: RematchHome) -> dict[str, object]:
    """Resources bound to one data home (tests pass a temporary one)."""
    return {
        "home": home,
        "identity": IdentityStore(home=home),
        "warehouse": Warehouse(database=str(home.warehouse_path)),
    }


def build_definitions(home: RematchHome) -> dg.Definitions:
    """Definitions over a data home."""
    return dg.Definitions(
        assets=[landed_export, *VALIDATE_ASSETS, *ROUND_ASSETS],
        asset_checks=CHECKS,
        jobs=[ingest_file_job, validate_job, retry_exports_job, round_job, record_decisions_job],
        sensors=[landing_sensor, validate_after_ingestion],
        schedules=[hourly_ingestion],
        resources=build_resources(home),
        loggers={"console": console_logger},
    )


defs = build_definitions(RematchHome(root=str(default_home())))

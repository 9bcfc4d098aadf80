"""Unattended ingestion: a sensor on landing/, a schedule, and validation after each ingested export."""

import dagster as dg

from rematch_pipeline.assets.failures import CONSOLE_LOGGER_RUN_CONFIG
from rematch_pipeline.assets.features import household_features, municipality_features
from rematch_pipeline.assets.ingest import exports_partitions, landed_export, misplaced_files, pending_exports
from rematch_pipeline.assets.retry import retry_exports_job
from rematch_pipeline.assets.validate import canonical_tables
from rematch_pipeline.resources.home import LANDING_KINDS, RematchHome
from rematch_pipeline.wording import counted

# A file younger than this may still be being copied into landing/.
SETTLE_SECONDS = 10.0

ingest_file_job = dg.define_asset_job(
    "ingest_file_job",
    selection=dg.AssetSelection.assets(landed_export),
    description="Ingest one landed export (a partition of `exports`, keyed by the file's sha256).",
)
validate_job = dg.define_asset_job(
    "validate_job",
    config=CONSOLE_LOGGER_RUN_CONFIG,
    selection=dg.AssetSelection.assets(canonical_tables, household_features, municipality_features),
    description="Validate every raw row and rebuild the feature tables.",
)


def export_run_requests(home: RematchHome, known: set[str], settle_seconds: float) -> tuple[list[dg.RunRequest], list[str]]:
    """One run request per new landed content; run_key = sha256 so the same bytes never run twice."""
    requests, keys = [], []
    for kind, path, sha in pending_exports(home, known, settle_seconds):
        keys.append(sha)
        requests.append(
            dg.RunRequest(
                run_key=sha,
                partition_key=sha,
                run_config={**CONSOLE_LOGGER_RUN_CONFIG, "ops": {"landed_export": {"config": {"path": str(path), "kind": kind}}}},
                tags={"rematch/file": path.name},
            )
        )
    return requests, keys


# The UI's Automation page shows these descriptions; a docstring alone is not shown there (Dagster 1.13).
LANDING_SENSOR_DESCRIPTION = (
    f"On by default. Every 30 s looks for new files in {', '.join(f'landing/{k}/' for k in LANDING_KINDS)} and starts one"
    " ingest_file_job run per new file content (the same bytes never twice; a corrected file does); files younger than"
    f" {SETTLE_SECONDS:g} s wait, as they may still be copied. validate_after_ingestion then rebuilds the validated tables."
    " A file in the wrong folder starts nothing: the tick says why."
)
HOURLY_INGESTION_DESCRIPTION = (
    "Off by default. The landing sensor's work once an hour, for deployments that run schedules but not sensors:"
    " one ingest_file_job run per new file content in landing/."
)
VALIDATE_AFTER_INGESTION_DESCRIPTION = (
    "On by default. After each successful ingest_file_job or retry_exports_job run, starts validate_job: validates every"
    " raw row (pandera, Great Expectations) and rebuilds the feature tables that rounds read."
)


@dg.sensor(
    job=ingest_file_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING, description=LANDING_SENSOR_DESCRIPTION
)
def landing_sensor(context: dg.SensorEvaluationContext, home: RematchHome) -> dg.SensorResult:
    """Starts one ingestion run per new file content in landing/; skips files still being written."""
    known = set(context.instance.get_dynamic_partitions(exports_partitions.name))
    requests, keys = export_run_requests(home, known, SETTLE_SECONDS)
    if keys:
        context.log.info(f"{counted(len(keys), 'new export')} in landing/")
    misplaced = misplaced_files(home)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[exports_partitions.build_add_request(keys)] if keys else [],
        # The tick history shows why a file dropped in the wrong folder starts no run (a log line would repeat every tick).
        skip_reason="; ".join(misplaced) if misplaced and not requests else None,
    )


@dg.schedule(
    job=ingest_file_job, cron_schedule="0 * * * *", default_status=dg.DefaultScheduleStatus.STOPPED, description=HOURLY_INGESTION_DESCRIPTION
)
def hourly_ingestion(context: dg.ScheduleEvaluationContext, home: RematchHome) -> list[dg.RunRequest] | dg.SkipReason:
    """Hourly sweep of landing/ for deployments that run schedules but not sensors."""
    known = set(context.instance.get_dynamic_partitions(exports_partitions.name))
    requests, keys = export_run_requests(home, known, SETTLE_SECONDS)
    if keys:
        # Schedules cannot return partition requests, so the partitions are added here.
        context.instance.add_dynamic_partitions(exports_partitions.name, keys)
    return requests or dg.SkipReason("no new files in landing/")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_file_job, retry_exports_job],
    request_job=validate_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=VALIDATE_AFTER_INGESTION_DESCRIPTION,
)
def validate_after_ingestion(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """Validation is a full recompute, so one run after each ingested export (or retry) keeps the tables current."""
    return dg.RunRequest(run_key=f"validate-after-{context.dagster_run.run_id}")

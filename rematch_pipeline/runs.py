"""Launching the definitions' jobs in-process on the data home's Dagster instance (CLI and tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._config.config_type import ConfigTypeKind
from dagster._config.errors import DagsterEvaluationErrorReason
from dagster._config.stack import EvaluationStackEntry, EvaluationStackListItemEntry, EvaluationStackPathEntry
from dagster._core.definitions.run_config_schema import RunConfigSchema
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.failures import reason_said_by_launcher
from rematch_pipeline.assets.ingest import (
    files_with_skipped,
    files_with_warnings,
    ingested_hashes,
    misplaced_files,
    rejected_files,
    rejected_hashes,
)
from rematch_pipeline.assets.sensors import export_run_requests
from rematch_pipeline.assets.validate import CANONICAL_TABLES, quarantine_lines, replaced_lines, stored_findings, validation_inputs_digest
from rematch_pipeline.errors import UserFacingError
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.warehouse import table_exists, warehouse_connection
from rematch_pipeline.schemas.parsing import utc_now


class RunFailed(UserFacingError):
    """A job run failed; the message is one line naming the run and the reason."""


@dataclass(frozen=True)
class IngestionSummary:
    """What one ingestion pass did."""

    files_ingested: int
    rejected: list[str]  # error lines (file, row, column, rule)
    skipped: list[str]  # "file: submissions left out on purpose" (incomplete, rejected in the tool)
    results: list[dg.ExecuteInProcessResult]  # one run per file, then the validation run
    held_out: list[str] = field(default_factory=list)  # entities whose latest submission failed validation
    warnings: list[str] = field(default_factory=list)  # rows read though hidden (per sheet), AGS reference warnings (kept rows)
    quarantined: list[str] = field(default_factory=list)  # rows of this pass's files that validation set aside
    retried: list[str] = field(default_factory=list)  # one line per export read again (--retry-rejected)
    files_retried: int = 0  # of them, files whose rows were stored again
    misplaced: list[str] = field(default_factory=list)  # files in landing/ that lie where ingestion does not look
    validated_before: str = ""  # the run whose validation still holds, when nothing it read has changed since
    replaced: list[str] = field(default_factory=list)  # per file of this pass: the stored submissions its rows replaced


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """The first step failure or failed blocking check of a run, as one line."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                return data.user_failure_data.description
            # Anything but a dg.Failure is a bug (assets.failures.reason_first): Dagster wraps it, and the
            # exception itself is the wrapper's cause.
            error = data.error.cause or data.error if data.error else None
            return error.message.strip().splitlines()[0] if error else "step failed"
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            return f"check {event.event_specific_data.check_name} failed"
    return "see the run in the Dagster UI"


def config_path(stack: EvaluationStackEntry) -> str:
    """Where in the run config an error is: fields and list entries (`ops.x.config.locked_pairs[0].municipality_id`).
    Map keys are left out: they are text typed in, like values."""
    parts: list[str] = []
    for entry in stack.entries:
        if isinstance(entry, EvaluationStackPathEntry):
            parts.append(("." if parts else "") + entry.field_name)
        elif isinstance(entry, EvaluationStackListItemEntry):
            parts.append(f"[{entry.list_index}]")
    return "".join(parts) or "run config"


def list_example(stack: EvaluationStackEntry, item_key: str | None, schema: RunConfigSchema | None) -> str:
    """A list field in YAML's one-line form with placeholder words for its entries' fields (never a value typed):
    `locked_pairs: [{household_pseudonym: "<household_pseudonym>", municipality_id: "<municipality_id>"}]`."""
    name = next((e.field_name for e in reversed(stack.entries) if isinstance(e, EvaluationStackPathEntry)), "the field")
    item = schema.config_type_dict_by_key.get(item_key) if schema and item_key else None
    fields = getattr(item, "fields", None) if item is not None and item.kind in (ConfigTypeKind.STRICT_SHAPE, ConfigTypeKind.PERMISSIVE_SHAPE) else None
    if not fields:
        return f"{name}: [<entry>, <entry>]"
    # Text fields quoted, as an AGS must be; optional ones left out, as the shortest entry that is taken.
    shown = [f"{f}: " + (f'"<{f}>"' if fields[f].config_type.key in ("String", "StringSourceType") else f"<{f}>") for f in fields if fields[f].is_required]
    return f"{name}: [{{{', '.join(shown)}}}]"


def config_error_lines(exc: dg.DagsterInvalidConfigError, schema: RunConfigSchema | None = None) -> list[str]:
    """Dagster's run-config errors as `field: rule` lines, without the values typed (Dagster's own
    messages quote them, and a value typed into the wrong field may be a name). schema (the job's run config
    schema) gives a list field's entries their field names in the example of its form."""
    lines = []
    for error in exc.errors:
        path = config_path(error.stack)
        data = error.error_data
        fields = ", ".join(getattr(data, "field_names", None) or [getattr(data, "field_name", "")])
        if error.reason in (DagsterEvaluationErrorReason.FIELD_NOT_DEFINED, DagsterEvaluationErrorReason.FIELDS_NOT_DEFINED):
            lines.append(f"{path}: unknown field {fields}")
        elif error.reason in (DagsterEvaluationErrorReason.MISSING_REQUIRED_FIELD, DagsterEvaluationErrorReason.MISSING_REQUIRED_FIELDS):
            lines.append(f"{path}: required field {fields} missing")
        elif error.reason == DagsterEvaluationErrorReason.RUNTIME_TYPE_MISMATCH:
            expected = data.config_type_snap.given_name or data.config_type_snap.kind.value.lower()
            if data.config_type_snap.kind == ConfigTypeKind.ENUM:
                # A code list (a decision's reason): its codes are ours, never what was typed.
                words = [str(v.value) for v in data.config_type_snap.enum_values or []]
                codes = list(dict.fromkeys(w.lower() for w in words))
                # A list of each word in three cases (the Launchpad's decision) is named once per word.
                cases = " (lower case, Capitalised or UPPER CASE)" if len(codes) < len(words) else ""
                lines.append(f"{path}: code: not one of {', '.join(codes)}{cases}")
            elif expected in ("Float", "Int"):
                lines.append(f"{path}: expected a number")
            elif expected == "Bool":
                # YAML 1.2 (the Launchpad's editor) takes only true and false: `ja`, `yes` or `1` is refused.
                lines.append(f"{path}: expected true or false")
            elif data.config_type_snap.kind == ConfigTypeKind.ARRAY:
                # A list given as a mapping (one entry without its "- ") or a single value.
                item_key = (data.config_type_snap.type_param_keys or [None])[0]
                lines.append(f'{path}: expected a list, one entry per line starting with "- ", or in one line: {list_example(error.stack, item_key, schema)}')
            elif expected == "String":
                # YAML reads unquoted digits as a number: an AGS such as 01001 loses its leading zero.
                lines.append(f'{path}: expected text (quote it in YAML, as an AGS "01001")')
            else:
                lines.append(f"{path}: expected {expected}")
        else:
            lines.append(f"{path}: {error.reason.value.lower().replace('_', ' ')}")
    return lines


# The terminal shows the runs' progress lines (INFO and up); Dagster's per-step DEBUG events (~70 lines a
# run) stay in the run's event log, which the UI shows whole.
CONSOLE_LOG_LEVEL = "INFO"


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """Run a job of the definitions in-process; raises RunFailed with a one-line reason."""
    # Its console logger at its level, whatever a run request names (CONSOLE_LOGGER_RUN_CONFIG, for runs launched elsewhere).
    run_config = {**kwargs.pop("run_config", {}), "loggers": {"console": {"config": {"log_level": CONSOLE_LOG_LEVEL}}}}
    try:
        with reason_said_by_launcher():  # RunFailed below says an expected failure's reason, once
            result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=False, run_config=run_config, **kwargs)
    except dg.DagsterInvalidConfigError as exc:
        # Refused before a run exists: nothing was read or written.
        lines = config_error_lines(exc, defs.resolve_job_def(job_name).run_config_schema)
        raise RunFailed(f"{job_name} not started, fix the run config: {'; '.join(lines)}") from None
    if not result.success:
        raise RunFailed(f"{job_name} failed (run {result.run_id[:8]}): {failure_reason(result)}")
    return result


def ingest_landing(defs: dg.Definitions, instance: dg.DagsterInstance, home: RematchHome, retry: bool = False) -> IngestionSummary:
    """One ingestion run per new landed file (as the sensor would), with `retry` a retry_exports_job
    run (exports an older version refused or withheld cells of), then one validation run."""
    warehouse = DuckDBResource(database=str(home.warehouse_path))
    started = utc_now()
    known = ingested_hashes(warehouse)
    requests, keys = export_run_requests(home, known, settle_seconds=0.0)
    misplaced = misplaced_files(home)
    if not requests and not known and not retry:
        # Nothing was ever landed: validating empty tables would only warn that each is empty.
        return IngestionSummary(0, [], [], [], misplaced=misplaced)
    instance.add_dynamic_partitions("exports", keys)
    results = []
    for r in requests:
        try:
            results.append(execute(defs, instance, "ingest_file_job", partition_key=r.partition_key, run_config=r.run_config, tags=r.tags))
        except RunFailed:
            # A refused file fails its run (the UI shows it red) and is reported below from the ledger, with
            # the others; any other failure stops the pass.
            if r.partition_key not in rejected_hashes(warehouse):
                raise
    retried: list[str] = []
    if retry:
        results.append(execute(defs, instance, "retry_exports_job"))
        retried = results[-1].output_for_node("retry_rejected_exports")
    digest = validation_inputs_digest(home, warehouse)
    # Nothing landed and nothing validation reads changed since its last run: it would write the same tables.
    validated_before = "" if requests or retry else _still_validated(instance, warehouse, digest)
    if not validated_before:
        _forget_validation(warehouse)  # a run that fails part-way leaves no digest behind
        results.append(execute(defs, instance, "validate_job"))
        _remember_validation(warehouse, digest, results[-1].run_id)
    rejected = rejected_files(warehouse, since=started)["error"].to_list()
    held_out, warnings = stored_findings(warehouse, since=started)
    # What this pass's files had read anyway (hidden rows or columns, readers' warnings) first, then validation's reference warnings.
    warnings = files_with_warnings(warehouse, since=started) + warnings
    quarantined = quarantine_lines(warehouse, since=started)
    skipped = files_with_skipped(warehouse, since=started)
    return IngestionSummary(
        len(requests) - len(rejected), rejected, skipped, results, held_out, warnings, quarantined,
        retried, sum(line.startswith("retried: ") for line in retried), misplaced, validated_before, replaced_lines(warehouse, since=started),
    )


def _still_validated(instance: dg.DagsterInstance, warehouse: DuckDBResource, digest: str) -> str:
    """The id of the last successful validate_job run of `rematch ingest` if it validated inputs with this digest and
    its run is still in the instance (an operator deleting it, as after an erasure, wants a new one); else ''."""
    with warehouse_connection(warehouse) as con:
        stored = con.execute("SELECT run_id FROM validated_inputs WHERE digest = ?", [digest]).fetchone()
        # A validated table gone (dropped by hand) is made again.
        stored = stored if all(table_exists(con, t) for t in (*CANONICAL_TABLES, "quarantine", "household_features", "municipality_features")) else None
    run = instance.get_run_by_id(stored[0]) if stored else None
    return run.run_id if run is not None and run.status == dg.DagsterRunStatus.SUCCESS else ""


def _forget_validation(warehouse: DuckDBResource) -> None:
    with warehouse_connection(warehouse) as con:
        con.execute("DELETE FROM validated_inputs")


def _remember_validation(warehouse: DuckDBResource, digest: str, run_id: str) -> None:
    with warehouse_connection(warehouse) as con:
        con.execute("INSERT INTO validated_inputs VALUES (?, ?, ?)", [digest, run_id, utc_now()])


def run_round(defs: dg.Definitions, instance: dg.DagsterInstance, home: RematchHome, round_id: str, config: dict) -> Path:
    """Run round_job for one round id; returns the report path."""
    instance.add_dynamic_partitions("rounds", [round_id])
    execute(defs, instance, "round_job", partition_key=round_id, run_config={"ops": {"round_candidates": {"config": config}}})
    return home.round_dir(round_id) / "report.html"



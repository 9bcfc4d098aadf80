"""Great Expectations suites as blocking Dagster asset checks on the validated tables, one per table.

dagster-ge does not support GX 1.x, so each check reads its table from the warehouse, runs the
table's suites (`rematch_pipeline.schemas.expectations`) with the GX file context under
`<REMATCH_HOME>/gx/`, updates Data Docs there and reports the outcome as check metadata: which
expectation failed on which column and how many rows — never a cell value.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.validate import CANONICAL_TABLES
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.warehouse import warehouse_connection


def _expectation_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table,
        name=f"{table}_meet_expectations",
        blocking=True,
        description=f"Great Expectations suites of {table} (keys, ranges, code lists, references, capacity) on the stored table.",
    )
    def check(context: dg.AssetCheckExecutionContext, home: RematchHome, warehouse: DuckDBResource) -> dg.AssetCheckResult:
        # Imported here: loading GX takes several seconds, which code-location loads should not pay.
        from rematch_pipeline.schemas import expectations as suites

        with warehouse_connection(warehouse) as con:
            tables = {table: con.execute(f"SELECT * FROM {table}").pl()}
            for other, columns in suites.REFERENCED_COLUMNS.get(table, {}).items():
                tables[other] = con.execute(f"SELECT {', '.join(columns)} FROM {other}").pl()
        # Connection closed before GX runs: DuckDB admits one writing process at a time.
        outcome = suites.validate_table(home.path, table, tables, run_name=context.run.run_id)
        failed = outcome.failed
        # An empty table (e.g. its only file was rejected) is worth a warning, not a stop for every other table.
        only_empty = bool(failed) and all(o.rule == suites.EMPTY_TABLE_RULE for o in failed)
        if only_empty:
            context.log.warning(f"{table}: no rows stored (no export of it ingested yet, or every one rejected); rounds need it")
        elif failed:
            context.log.warning(
                f"{table}: {len(failed)} of {len(outcome.outcomes)} expectations failed; see the check metadata and Data Docs"
            )
        metadata: dict[str, object] = {
            "rows_checked": tables[table].height,
            "expectations_evaluated": len(outcome.outcomes),
            "expectations_failed": len(failed),
            "expectations": dg.MetadataValue.md(suites.outcome_markdown(outcome)),
            "data_docs": dg.MetadataValue.path(str(outcome.data_docs_index)),
        }
        if table in outcome.data_docs_pages:
            metadata["data_docs_page"] = dg.MetadataValue.path(str(outcome.data_docs_pages[table]))
        severity = dg.AssetCheckSeverity.WARN if only_empty else dg.AssetCheckSeverity.ERROR
        return dg.AssetCheckResult(passed=outcome.success, severity=severity, metadata=metadata)

    return check


# For Definitions(asset_checks=...): one blocking check per validated table.
expectation_checks: list[dg.AssetChecksDefinition] = [_expectation_check(t) for t in CANONICAL_TABLES]

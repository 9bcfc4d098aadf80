"""raw_* tables → canonical tables and quarantine; pandera checks on what is stored."""


import datetime as dt
import hashlib
import importlib.metadata
import warnings
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
from dagster_pandera import pandera_schema_to_dagster_type
import polars as pl
from dagster_duckdb import DuckDBResource

from rematch_pipeline.ags_reference import household_warnings, municipality_warnings, warning_lines
from rematch_pipeline.assets.failures import reason_first
from rematch_pipeline.formats.errors import Violation
from rematch_pipeline.resources.identity import IdentityStore
from rematch_pipeline.resources.warehouse import table_exists, warehouse_connection
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.schemas.contract import TABLES
from rematch_pipeline.schemas.models import row_failures, schema_for
from rematch_pipeline.validation import MEMBER_ROW_HELD_RULE, build_canonical
from rematch_pipeline.wording import counted, in_file

CANONICAL_TABLES: tuple[str, ...] = ("municipalities", "households", "members", "decisions")
# What each table of canonical_tables holds, as the UI's asset pages show it (one docstring would say the same of all).
TABLE_DESCRIPTIONS: dict[str, str] = {
    "municipalities": "Validated municipality offers: one row per municipality (AGS) and intake period, its latest valid"
    " submission; capacities, services, settlement type. Contact details stay in the identity store.",
    "households": "Validated households by pseudonym: one row per household, its latest valid submission; consent, pets,"
    " linked households, family ties, wishes, exclusions, importance ratings. Names, contacts and references stay in the identity store.",
    "members": "Validated household members by pseudonym: age in years, relation, languages, German level, education, work"
    " and medical needs. Names and birth dates stay in the identity store.",
    "decisions": "Coordinators' accept/decline answers to round proposals (from landing/decisions/ and record_decisions_job)"
    " that count: by round, household pseudonym and municipality.",
}
QUARANTINE_DESCRIPTION = (
    "Rows validation set aside, by file, sheet, row, column and rule (never the value), with the households and"
    " municipalities held out; see the metadata's by_rule table. Fix the export and land it again."
)


def replace_table(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    """Replace a derived warehouse table with a frame (in the caller's transaction)."""
    con.register("incoming", frame.to_arrow())
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM incoming")
    con.unregister("incoming")


def _quarantine_markdown(quarantine: pl.DataFrame, limit: int = 20) -> str:
    if quarantine.is_empty():
        return "nothing quarantined"
    summary = quarantine.group_by("table", "column", "rule").agg(pl.len().alias("rows")).sort("rows", descending=True)
    lines = ["| table | column | rule | rows |", "|---|---|---|---|"]
    lines += [f"| {t} | {c or '(whole file)'} | {r} | {n} |" for t, c, r, n in summary.head(limit).iter_rows()]
    return "\n".join(lines)


# The held_out table's entities, disjoint: a failed latest row, a failed member row (own row passed), an unlinked member row,
# a linked household held out or failed.
HELD_OUT_COUNTS = (
    "municipalities_held_out", "households_held_out", "households_held_out_for_members", "households_held_out_for_unlinked_members",
    "households_held_out_for_linked_households",
)


def held_out_lines(held_out: pl.DataFrame) -> list[str]:
    """One line per held-out entity: which entity (AGS and period, or household pseudonym), where its
    failed latest submission is (file, row, columns, rules) and whether an older one was set aside; for a
    household whose own row passed but a member row failed, where its row is and the failed member rows. Households
    held out for a member row of their export that names no household (rows without an older-submissions
    count: their own submission passed) are one line per cause, naming the count and the households' files."""
    if held_out.is_empty():
        return []
    beside = held_out.filter(pl.col("older_submissions_not_used").is_null())
    entities = (
        held_out.filter(pl.col("older_submissions_not_used").is_not_null())
        .group_by("table", "municipality_id", "intake_period", "household_pseudonym", "submission_id", "file_name", "sheet", "file_row", maintain_order=True)
        .agg(
            pl.concat_str(pl.col("column"), pl.lit(": "), pl.col("rule")).alias("problems"),
            pl.col("older_submissions_not_used").first(),
            (pl.col("column") == "members").all().alias("member_rows_only"),
        )
    )
    lines = []
    for row in entities.iter_rows(named=True):
        if row["table"] == "municipalities":
            entity = f"municipality {row['municipality_id']} (intake period {row['intake_period']})"
        else:
            entity = f"household {row['household_pseudonym'] or 'of submission ' + str(row['submission_id'])}"
        where = f"{in_file(row['file_name'], row['sheet'])}, row {row['file_row']}"
        older = row["older_submissions_not_used"]
        note = f"its {counted(older, 'older submission was', 'older submissions were')} not used in its place" if older else "it has no older submission"
        if row["member_rows_only"]:  # validation.MEMBER_ROW_HELD_RULE: its own row passed, a member row failed
            failed = "; ".join(problem.removeprefix("members: " + MEMBER_ROW_HELD_RULE.split("{where}")[0]) for problem in row["problems"])
            lines.append(f"{entity} ({where}): a member row failed validation ({failed}); held out, {note}")
            continue
        lines.append(f"{entity}: latest submission failed validation ({where}; {'; '.join(row['problems'])}); held out, {note}")
    # One line per cause (validation.UNLINKED_MEMBERS_HELD_RULE), not one per household of a 300-household export.
    for row in beside.group_by("column", "rule", maintain_order=True).agg(pl.len().alias("_n"), pl.col("file_name").unique(maintain_order=True)).iter_rows(named=True):
        files = ", ".join(row["file_name"])
        lines.append(f"{counted(row['_n'], 'household')} of {files} (see the held_out table): {row['column']}: {row['rule']}")
    return lines


def stored_findings(warehouse: DuckDBResource, since: dt.datetime | None = None) -> tuple[list[str], list[str]]:
    """Lines for held-out entities and reference warnings of the warehouse's last validation. With `since`, the
    warnings of rows of files ingested (or retried) since then only, as quarantine_lines: a kept row's warning is
    said when its file lands, not again on every pass (the table keeps them all)."""
    with warehouse_connection(warehouse) as con:
        held = held_out_lines(con.execute("SELECT * FROM held_out").pl()) if table_exists(con, "held_out") else []
        warned = []
        if table_exists(con, "validation_warnings"):
            query, params = "SELECT * FROM validation_warnings", []
            if since is not None:
                query += " WHERE file_sha256 IN (SELECT file_sha256 FROM ingestion_log WHERE ingested_at >= ? OR retried_at >= ?)"
                params = [since, since]
            warned = warning_lines(con.execute(query, params).pl())
    return held, warned


def quarantine_lines(warehouse: DuckDBResource, since: dt.datetime, limit: int = 20) -> list[str]:
    """Lines for the command line: rows of files ingested (or retried) since then that validation quarantined,
    by file, sheet, row, column and rule (never a value); at most `limit` lines."""
    with warehouse_connection(warehouse) as con:
        if not table_exists(con, "quarantine"):
            return []
        rows = con.execute(
            "SELECT q.file_name, q.sheet, q.file_row, q.\"column\", q.rule FROM quarantine q"
            " WHERE q.file_sha256 IN (SELECT file_sha256 FROM ingestion_log WHERE ingested_at >= ? OR retried_at >= ?)"
            " ORDER BY q.file_name, q.sheet NULLS FIRST, q.file_row NULLS FIRST, q.\"column\"",
            [since, since],
        ).fetchall()
    # A file-level line (households without any member row in the file) has no row or column.
    lines = [Violation(name, row, column, rule, sheet=sheet).describe() for name, sheet, row, column, rule in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more (table quarantine)")
    return lines


def replacement_lines(superseded: pl.DataFrame, examples: int = 3) -> list[str]:
    """Per replacing file (and sheet) and table of superseded rows (validation.SUPERSEDED_SCHEMA): how many submissions
    its rows replaced, split into copies landed again (same submission id and answers) and corrections or later
    submissions of the same household or offer, the files they came from, and `examples` of the changed ones by file
    and row (never a value). One line per file however many it replaced: a full re-export replaces them all."""
    rows = superseded.filter(pl.col("replaced_by_sha256").is_not_null()).sort(
        "replaced_by_file", "replaced_by_sheet", "table", "replaced_by_row", "file_name", "file_row", nulls_last=False
    )
    nouns = {"households": ("household submission", "household submissions"), "municipalities": ("municipality offer", "municipality offers")}
    lines = []
    for (file, sheet, table), group in rows.group_by("replaced_by_file", "replaced_by_sheet", "table", maintain_order=True):
        of = ", ".join(group["file_name"].unique(maintain_order=True).to_list())
        copies = group.filter(pl.col("unchanged")).height
        changed = group.filter(~pl.col("unchanged"))
        parts = [f"{counted(copies, 'copy', 'copies')} landed again (same submission, same answers)"] if copies else []
        if changed.height:
            # The replaced row's file and sheet are named where the line's `of` names more than one.
            one_source = group.select("file_sha256", "sheet").unique().height == 1
            named = "; ".join(
                f"row {by} replaces {'' if one_source else in_file(name, s) + ', '}row {row}"
                for name, s, row, by in changed.head(examples).select("file_name", "sheet", "file_row", "replaced_by_row").iter_rows()
            )
            more = f"; and {changed.height - examples} more" if changed.height > examples else ""
            entity = "household" if table == "households" else "offer"
            parts.append(f"{counted(changed.height, 'correction or later submission', 'corrections or later submissions')} of the same {entity} ({named}{more})")
        where = in_file(file, sheet)
        lines.append(f"{where}: replaced {counted(group.height, *nouns.get(table, ('submission', 'submissions')))} of {of}: {', '.join(parts)}")
    return lines


def replaced_lines(warehouse: DuckDBResource, since: dt.datetime) -> list[str]:
    """replacement_lines for the rows of files ingested (or retried) since then, as quarantine_lines: a pass says
    what its own files replaced (superseded_submissions keeps every replaced row ever)."""
    with warehouse_connection(warehouse) as con:
        if not table_exists(con, "superseded_submissions"):
            return []
        rows = con.execute("SELECT * FROM superseded_submissions LIMIT 0").pl()
        if "replaced_by_sha256" not in rows.columns:  # written before the column was kept
            return []
        rows = con.execute(
            "SELECT * FROM superseded_submissions"
            " WHERE replaced_by_sha256 IN (SELECT file_sha256 FROM ingestion_log WHERE ingested_at >= ? OR retried_at >= ?)",
            [since, since],
        ).pl()
    return replacement_lines(rows)


# Everything validate_job reads from the warehouse (canonical_tables below; the feature tables read only its output).
# A table canonical_tables reads must be listed here, or a pass with nothing new would skip a change to it
# (tests/assets/test_validation_skip.py reads the asset's source for its FROM clauses).
VALIDATION_INPUTS: tuple[str, ...] = (
    *(f"raw_{t}" for t in TABLES), "ingestion_log", "proposals", "round_households", "replaced_proposals", "rounds",
    "erased_unlinked_members",
)


def validation_inputs_digest(home: RematchHome, warehouse: DuckDBResource) -> str:
    """A digest of what a validation run's answer depends on: the stored rows it reads (warehouse and identity
    store, as multisets of rows), the code and reference lists of this package, the installed libraries' versions
    and today's date (a member's birth date is checked against today where its household's date is unknown).
    The same digest as the last successful run's means validating again would write the same tables."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(package)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    libraries = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    digest.update("\n".join([*libraries, dt.datetime.now(dt.timezone.utc).date().isoformat()]).encode())

    def tables(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
        for name in names:
            # Count and sum of row hashes: cheap on 100,000s of rows, and independent of the rows' physical order.
            found = con.execute(f"SELECT count(*), sum(hash(t)) FROM {name} t").fetchone() if table_exists(con, name) else None
            digest.update(f"{name}:{found}\n".encode())

    with warehouse_connection(warehouse) as con:
        tables(con, list(VALIDATION_INPUTS))
    with IdentityStore(home=home).connect() as con:
        tables(con, sorted(r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()))
    return digest.hexdigest()


def column_schema(table: str) -> dg.TableSchema:
    """The table's columns as the Dagster UI shows them, derived from its pandera schema."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return pandera_schema_to_dagster_type(schema_for(table)).metadata["schema"].schema


@dg.multi_asset(
    specs=[
        *(
            dg.AssetSpec(
                name,
                deps=["landed_export"],
                group_name="validate",
                description=TABLE_DESCRIPTIONS[name],
                kinds={"duckdb", "pandera"},
                metadata={"dagster/column_schema": column_schema(name)},
            )
            for name in CANONICAL_TABLES
        ),
        dg.AssetSpec("quarantine", deps=["landed_export"], group_name="validate", description=QUARANTINE_DESCRIPTION, kinds={"duckdb"}),
    ],
    pool="duckdb",
    can_subset=False,
)
@reason_first
def canonical_tables(context: dg.AssetExecutionContext, identity: IdentityStore, warehouse: DuckDBResource) -> Iterator[dg.MaterializeResult]:
    """Type and check every raw row; broken rows go to `quarantine` (file, row, column, rule — no values)."""
    with warehouse_connection(warehouse) as con:
        raw = {t: con.execute(f"SELECT * FROM raw_{t}").pl() for t in TABLES}
        # With each household's link group in its round: decisions for linked households must agree.
        link_group = (
            "(SELECT link_group FROM round_households h WHERE h.round_id = p.round_id AND h.household_pseudonym = p.household_pseudonym)"
            if table_exists(con, "round_households")
            else "NULL"
        )
        proposals = (
            con.execute(f"SELECT p.round_id, p.household_pseudonym, p.municipality_id, {link_group} AS link_group FROM proposals p").pl()
            if table_exists(con, "proposals")
            else pl.DataFrame(schema={"round_id": pl.Utf8, "household_pseudonym": pl.Utf8, "municipality_id": pl.Utf8, "link_group": pl.Utf8})
        )
        # Proposals of a round id's earlier runs, with when the round was last run: a decision made from them is told so.
        replaced_proposals = con.execute(
            "SELECT DISTINCT p.round_id, p.household_pseudonym, p.municipality_id, strftime(r.started_at, '%Y-%m-%d %H:%M') AS run_again"
            " FROM replaced_proposals p JOIN rounds r USING (round_id) ORDER BY ALL"
        ).pl()
        # When each file landed bounds its submitted_at: validating again later gives the same answer.
        landed = con.execute("SELECT file_sha256, ingested_at FROM ingestion_log").pl()
        # Members files an erasure took unlinked rows out of: their households stay held out.
        erased_unlinked = con.execute(
            "SELECT file_sha256, file_name, sheet, sum(member_rows)::INTEGER AS member_rows FROM erased_unlinked_members"
            " GROUP BY ALL ORDER BY file_name, file_sha256, sheet"
        ).pl()
        # Each round's period dates its quarantined decision rows (a round's intake counts its own period's).
        round_periods = con.execute("SELECT round_id, period FROM rounds").pl() if table_exists(con, "rounds") else None
    context.log.info("validating " + ", ".join(counted(frame.height, f"raw {t} row") for t, frame in raw.items()))
    result = build_canonical(raw, identity.birth_dates(), proposals, landed, erased_unlinked, replaced_proposals, round_periods)
    with warehouse_connection(warehouse) as con:
        con.execute("BEGIN TRANSACTION")
        for name in CANONICAL_TABLES:
            replace_table(con, name, getattr(result, name))
        replace_table(con, "quarantine", result.quarantine)
        replace_table(con, "superseded_submissions", result.superseded)
        replace_table(con, "held_out", result.held_out)
        replace_table(con, "validation_warnings", result.warnings)
        replace_table(con, "intake_counts", pl.DataFrame({"name": list(result.counts), "value": list(result.counts.values())}))
        replace_table(con, "quarantined_by_period", result.quarantined_by_period)
        con.execute("COMMIT")
    if result.counts["rows_quarantined"]:
        context.log.warning(f"{counted(result.counts['rows_quarantined'], 'row')} quarantined; see the quarantine table")
    held = held_out_lines(result.held_out)
    if held:
        entities = sum(result.counts[k] for k in HELD_OUT_COUNTS)
        context.log.warning(f"{counted(entities, 'municipality or household', 'municipalities or households')} held out; see the held_out table")
    if result.warnings.height:
        context.log.warning(f"{counted(result.warnings.height, 'AGS reference warning')} (kept, not rejected); see the validation_warnings table")
    for name in CANONICAL_TABLES:
        frame = getattr(result, name)
        extra = {k: v for k, v in result.counts.items() if k.startswith(name[:-1])}
        yield dg.MaterializeResult(asset_key=name, metadata={"dagster/row_count": frame.height, **extra})
    yield dg.MaterializeResult(
        asset_key="quarantine",
        metadata={
            "dagster/row_count": result.quarantine.height,
            "rows_quarantined": result.counts["rows_quarantined"],
            "households_without_consent": result.counts["households_without_consent"],
            "duplicates_superseded": result.superseded.height,
            "municipalities_held_out": result.counts["municipalities_held_out"],
            **{k: result.counts[k] for k in HELD_OUT_COUNTS[1:]},
            "held_out": dg.MetadataValue.md("\n".join(f"- {line}" for line in held[:20]) if held else "none"),
            "by_rule": dg.MetadataValue.md(_quarantine_markdown(result.quarantine)),
        },
    )


def _pandera_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=table, name=f"{table}_meet_contract", blocking=True, description=f"Pandera schema of {table} on the stored table.")
    def check(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        with warehouse_connection(warehouse) as con:
            stored = con.execute(f"SELECT * FROM {table}").pl()
        failures = row_failures(table, stored) if stored.height else pl.DataFrame()
        rules = failures.group_by("column", "rule").agg(pl.len().alias("rows")) if failures.height else failures
        return dg.AssetCheckResult(
            passed=failures.height == 0,
            metadata={
                "rows_checked": stored.height,
                "failures": failures.height,
                "rules_failed": dg.MetadataValue.md(
                    "\n".join(f"- {c}: {r} ({counted(n, 'row')})" for c, r, n in rules.iter_rows()) if failures.height else "none"
                ),
            },
        )

    return check


contract_checks: list[dg.AssetChecksDefinition] = [_pandera_check(t) for t in CANONICAL_TABLES]


def _warning_markdown(warnings: pl.DataFrame, subject: str, limit: int = 30) -> str:
    """Per column and rule, how many rows and which subjects (AGS or household pseudonyms)."""
    if warnings.is_empty():
        return "none"
    summary = warnings.group_by("column", "rule", maintain_order=True).agg(pl.len().alias("rows"), pl.col(subject).unique().sort())
    return "\n".join(
        f"- {column}: {rule} ({counted(rows, 'row')}): {', '.join(str(s) for s in subjects[:limit])}{' …' if len(subjects) > limit else ''}"
        for column, rule, rows, subjects in summary.iter_rows()
    )


@dg.asset_check(
    asset="municipalities",
    name="municipalities_match_reference",
    blocking=False,
    description="Warns (never blocks) about AGS keys missing from the 2020 reference list and coordinates far from their AGS.",
)
def municipalities_match_reference(warehouse: DuckDBResource) -> dg.AssetCheckResult:
    """Reference warnings on the stored municipalities; an AGS is not personal data, so it is named."""
    with warehouse_connection(warehouse) as con:
        stored = con.execute("SELECT * FROM municipalities").pl()
    warnings = municipality_warnings(stored)
    unknown = warnings.filter(pl.col("column") == "municipality_id")["municipality_id"].unique().sort().to_list()
    return dg.AssetCheckResult(
        passed=warnings.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_checked": stored.height,
            "unknown_ags": len(unknown),
            "far_coordinates": warnings.filter(pl.col("column") == "latitude").height,
            "warnings": dg.MetadataValue.md(_warning_markdown(warnings, "municipality_id")),
        },
    )


@dg.asset_check(
    asset="households",
    name="households_name_known_places",
    blocking=False,
    additional_deps=["municipalities"],
    description="Warns (never blocks) about family ties, wishes and exclusions naming an AGS neither in the reference list nor offered.",
)
def households_name_known_places(warehouse: DuckDBResource) -> dg.AssetCheckResult:
    """Reference warnings on the stored households, by household pseudonym and column only."""
    with warehouse_connection(warehouse) as con:
        households = con.execute("SELECT * FROM households").pl()
        municipalities = con.execute("SELECT municipality_id FROM municipalities").pl()
    warnings = household_warnings(households, municipalities)
    return dg.AssetCheckResult(
        passed=warnings.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_checked": households.height,
            "households_warned": warnings["household_pseudonym"].n_unique(),
            "warnings": dg.MetadataValue.md(_warning_markdown(warnings, "household_pseudonym")),
        },
    )


reference_checks: list[dg.AssetChecksDefinition] = [municipalities_match_reference, households_name_known_places]

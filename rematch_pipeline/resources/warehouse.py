"""The analytic warehouse (one DuckDB file): table layout and connection helper.

Only pseudonymised data lives here. Raw tables keep the text of every non-identifying cell
as landed, except a cell of a code, yes/no, number or date column without that shape (free
text: a placeholder failing the same rule is stored, `parsing.withhold_unshaped`); identifying
columns are replaced by pseudonyms at ingestion.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource

from rematch_pipeline.errors import UserFacingError
from rematch_pipeline.features import RESOURCES
from rematch_pipeline.formats.canonical import LEFT_OUT_COLUMN, SUBMITTED_ON_COLUMN
from rematch_pipeline.resources.home import owner_only_files
from rematch_pipeline.schemas.contract import TABLES
from rematch_pipeline.schemas.models import ROUND_ID_PATTERN
from rematch_pipeline.schemas.parsing import WITHHELD, WITHHELD_VALUES

_PLACEHOLDERS = ", ".join(f"'{v}'" for v in WITHHELD_VALUES)  # SQL list of ingestion's placeholders

# Identifying columns replaced by pseudonyms in raw tables (all other PII columns are dropped).
PSEUDONYM_COLUMNS: dict[str, dict[str, str]] = {
    "households": {"household_ref": "household_pseudonym", "linked_household_refs": "linked_household_pseudonyms"},
    "members": {"member_name": "member_pseudonym"},
    "decisions": {"household_ref": "household_ref_pseudonym"},
    "municipalities": {},
}
_LOCK_RETRIES = 8
FILE_COLUMNS: tuple[str, ...] = ("file_sha256", "file_name", "sheet", "file_row")
# Columns of ingestion_log, named in every insert (older warehouses have `skipped` last, added by ALTER).
INGESTION_LOG_COLUMNS: tuple[str, ...] = (
    "file_sha256", "file_name", "landing_kind", "archived_as", "status", "tables", "rows_ingested", "error", "ingested_at", "skipped",
)
# ingestion_log status of a file content that erasure (or ingestion, dropping erased submissions) wrote, or of a
# landed file whose content without its erased lines was stored before (ingest._content_stored): landing it again
# is a no-op.
ERASURE_COPY = "erasure_copy"
# Tables whose raw rows carry LEFT_OUT_COLUMN (questionnaires' main tables, and members: the repeat rows of a copy
# of a submission not taken, formats.kobo.DUPLICATE_COPY); validation leaves such submissions (member rows) out.
REVIEWED_TABLES: tuple[str, ...] = ("households", "municipalities", "members")


def raw_columns(table: str) -> list[str]:
    """Columns of raw_<table>: non-PII canonical columns, pseudonyms, the left-out reason, households' date as
    written where a reader kept it apart (SUBMITTED_ON_COLUMN), then file provenance."""
    renames = PSEUDONYM_COLUMNS[table]
    columns = []
    for f in TABLES[table]:
        if f.name in renames:
            columns.append(renames[f.name])
        elif not f.pii:
            columns.append(f.name)
    if table in REVIEWED_TABLES:
        columns.append(LEFT_OUT_COLUMN)
    if table == "households":
        columns.append(SUBMITTED_ON_COLUMN)
    return columns + list(FILE_COLUMNS)


def _raw_ddl(table: str) -> str:
    cols = ", ".join(f"{c} {'INTEGER' if c == 'file_row' else 'VARCHAR'}" for c in raw_columns(table))
    return f"CREATE TABLE IF NOT EXISTS raw_{table} ({cols});"


WAREHOUSE_DDL = "\n".join(
    [
        """
CREATE TABLE IF NOT EXISTS ingestion_log (
    file_sha256 VARCHAR PRIMARY KEY, file_name VARCHAR, landing_kind VARCHAR, archived_as VARCHAR,
    status VARCHAR, tables VARCHAR, rows_ingested INTEGER, error VARCHAR, ingested_at TIMESTAMP
);
-- Added after the first releases: warehouses made before gain it here.
ALTER TABLE ingestion_log ADD COLUMN IF NOT EXISTS skipped VARCHAR;
-- When `rematch ingest --retry-rejected` last read the file again (ingested_at stays when it landed).
ALTER TABLE ingestion_log ADD COLUMN IF NOT EXISTS retried_at TIMESTAMP;
-- What the file's reading found and read anyway, one line per sheet and kind (hidden rows or columns, readers' warnings): the run log's and `rematch ingest`'s
-- `warning: …` lines.
ALTER TABLE ingestion_log ADD COLUMN IF NOT EXISTS warnings VARCHAR;
CREATE TABLE IF NOT EXISTS quarantine (
    file_sha256 VARCHAR, file_name VARCHAR, sheet VARCHAR, file_row INTEGER, "table" VARCHAR,
    "column" VARCHAR, rule VARCHAR
);
CREATE TABLE IF NOT EXISTS rounds (
    round_id VARCHAR PRIMARY KEY, period VARCHAR, config_json VARCHAR, started_at TIMESTAMP
);
-- Proposals of a round id's earlier runs, which a run again replaced (pseudonyms only): a decision answering one is
-- quarantined saying the round was run again, not only that it answers no proposal (validation.REPLACED_PROPOSAL_RULE).
CREATE TABLE IF NOT EXISTS replaced_proposals (
    round_id VARCHAR, household_pseudonym VARCHAR, municipality_id VARCHAR, proposed_at TIMESTAMP, replaced_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS erasures (household_pseudonym VARCHAR, erased_at TIMESTAMP);
-- The erased households' submissions (keyed pseudonyms): a file read again leaves out their members too.
CREATE TABLE IF NOT EXISTS erased_submissions (submission_pseudonym VARCHAR, erased_at TIMESTAMP);
-- Members files (as stored: the original's sha256) an erasure took unlinked member rows out of, counted: their
-- households stay held out (validation._unlinked_member_holds), as the rows may have been one of theirs.
CREATE TABLE IF NOT EXISTS erased_unlinked_members (file_sha256 VARCHAR, file_name VARCHAR, sheet VARCHAR, member_rows INTEGER, erased_at TIMESTAMP);
-- The last validate_job run of `rematch ingest` and the digest of what it read (assets.validate.validation_inputs_digest):
-- a pass with nothing new whose digest is the same does not validate again.
CREATE TABLE IF NOT EXISTS validated_inputs (digest VARCHAR, run_id VARCHAR, validated_at TIMESTAMP);
""",
        # What an erased household's accepted proposal used, without the household: the places stay taken for
        # the rest of the intake period (assets.matching.round_candidates), as contract D says of an accept.
        "CREATE TABLE IF NOT EXISTS erased_accepted (period VARCHAR, municipality_id VARCHAR, "
        + ", ".join(f"{r} BIGINT" for r in RESOURCES)
        + ", erased_at TIMESTAMP);",
        *(_raw_ddl(t) for t in TABLES),
        # Warehouses made before the column existed gain it (its position does not matter: inserts name columns).
        *(f"ALTER TABLE raw_{t} ADD COLUMN IF NOT EXISTS {LEFT_OUT_COLUMN} VARCHAR;" for t in REVIEWED_TABLES),
        # So do households' rows the date as written (thirty-first session); null in rows stored before, whose date
        # validation reads from their submitted_at text as landed (schemas.parsing.with_written_date).
        f"ALTER TABLE raw_households ADD COLUMN IF NOT EXISTS {SUBMITTED_ON_COLUMN} VARCHAR;",
        # Releases before the round id's shape was checked stored what was typed there (a name, once): such a
        # cell answers no round, and is withheld as ingestion now withholds it.
        f"UPDATE raw_decisions SET round_id = '{WITHHELD}' WHERE round_id NOT IN ({_PLACEHOLDERS})"
        f" AND NOT regexp_full_match(round_id, '{ROUND_ID_PATTERN}');",
    ]
)


class Warehouse(DuckDBResource):
    """The warehouse of the data home (warehouse.duckdb): every table the steps write, households by pseudonym.
    Leave it as scaffolded (or delete the block)."""

    # A DuckDBResource under its own docstring: the Launchpad showed dagster_duckdb's, a Python example with
    # `.. code-block::`, as the description of the `warehouse` block coordinators see scaffolded.


@contextmanager
def warehouse_connection(resource: DuckDBResource) -> Iterator[duckdb.DuckDBPyConnection]:
    """A warehouse connection with the base tables created, closed even when the caller fails.

    DuckDBResource.get_connection does not close on an exception, which would keep DuckDB's
    single-writer lock in a long-lived process; hence our own open/close around its settings.
    """
    con = _connect(resource.database, dict(resource.connection_config))
    try:
        con.execute(WAREHOUSE_DDL)
        yield con
    finally:
        con.close()


def _connect(database: str, config: dict[str, object] | None = None) -> duckdb.DuckDBPyConnection:
    """A read-write connection, retried while another process holds DuckDB's write lock."""
    for attempt in range(_LOCK_RETRIES - 1):
        try:
            return duckdb.connect(database, config=config or {})
        except duckdb.IOException:
            # Another process holds the write lock (e.g. a UI-launched run); wait briefly.
            time.sleep(0.5 * (attempt + 1))
    try:
        return duckdb.connect(database, config=config or {})
    except duckdb.IOException as exc:
        if "lock" not in str(exc):
            raise
        # Not a bug: say so in words, not as DuckDB's exception (reason_first withholds a bug's message).
        raise UserFacingError(
            f"{Path(database).name}: another process is writing it (DuckDB allows one writer at a time): try again when"
            " it has finished (a run in the Dagster UI, another rematch command)",
            {"file": Path(database).name, "rule": "one writer at a time"},
        ) from None


def compact(path: Path) -> None:
    """Rewrite a DuckDB file with its live rows only, keeping its permissions.

    A DELETE only marks rows: their bytes stay in the file, even after a CHECKPOINT (measured
    with DuckDB 1.5: an erased value stayed readable in the file). The copy is made while this
    connection holds the old file's write lock, and renamed over it before the lock goes, so
    no other process writes to the old file in between.
    """
    copy = path.with_name(path.name + ".compact")
    copy.unlink(missing_ok=True)
    # An owner-only file (the identity store) is copied into owner-only files, its log included.
    private = owner_only_files() if path.exists() and not path.stat().st_mode & 0o077 else nullcontext()
    with private:
        _compact_into(path, copy)


def _compact_into(path: Path, copy: Path) -> None:
    """compact's copy and rename, under the caller's umask."""
    con = _connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("CHECKPOINT")
        name = con.execute("SELECT current_database()").fetchone()[0]
        quoted = str(copy).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS compacted")
        con.execute(f'COPY FROM DATABASE "{name}" TO compacted')
        con.execute("DETACH compacted")
        os.chmod(copy, path.stat().st_mode & 0o777)
        copy.replace(path)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    finally:
        con.close()


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table exists in the warehouse (derived tables appear after their first run)."""
    return bool(
        con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0]
    )

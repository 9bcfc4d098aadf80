"""landing/ → archive (by sha256), identity store and raw warehouse tables, with an ingestion log."""


import datetime as dt
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from rematch_pipeline.formats.canonical import read_canonical
from rematch_pipeline.formats.errors import InputFileError
from rematch_pipeline.formats.landing import split_identity
from rematch_pipeline.resources.home import LANDING_KINDS, RematchHome
from rematch_pipeline.resources.identity import IdentityStore
from rematch_pipeline.resources.warehouse import warehouse_connection

# Editors and copy tools leave these while a file is still being written.
_PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one landed file (no cell values)."""

    file_name: str
    kind: str
    sha256: str
    status: str  # ingested | rejected | already_ingested
    rows: int = 0
    tables: str = ""
    error: str = ""


def landed_files(home: RematchHome) -> list[tuple[str, Path]]:
    """(landing kind, path) of every complete file in landing/, in a stable order."""
    found = []
    for kind in LANDING_KINDS:
        folder = home.landing(kind)
        if not folder.exists():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith((".", "~$")) and not path.name.endswith(_PARTIAL_SUFFIXES):
                found.append((kind, path))
    return found


def ingest_file(kind: str, path: Path, home: RematchHome, identity: IdentityStore, warehouse: DuckDBResource) -> FileOutcome:
    """Archive one landed file and load it; the same bytes are never loaded twice."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with warehouse_connection(warehouse) as con:
        if con.execute("SELECT 1 FROM ingestion_log WHERE file_sha256 = ?", [sha]).fetchone():
            return FileOutcome(path.name, kind, sha, "already_ingested")
    archived = home.archive / f"{sha}{path.suffix.lower()}"
    if not archived.exists():
        shutil.copyfile(path, archived)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    try:
        parsed = read_canonical(path, data)
        split = [(p.table, *split_identity(p, home.secret(), sha, path.name)) for p in parsed]
    except InputFileError as exc:
        outcome = FileOutcome(path.name, kind, sha, "rejected", error=str(exc))
        with warehouse_connection(warehouse) as con:
            con.execute(
                "INSERT INTO ingestion_log VALUES (?, ?, ?, ?, 'rejected', ?, 0, ?, ?)",
                [sha, path.name, kind, archived.name, exc.violation.table or "", outcome.error, now],
            )
        return outcome
    # Identity rows first: if the warehouse write fails, a retry re-inserts the same keys harmlessly.
    for table, _, identity_rows in split:
        identity.store(table, identity_rows)
    rows = sum(raw.height for _, raw, _ in split)
    tables = " ".join(sorted({t for t, _, _ in split}))
    with warehouse_connection(warehouse) as con:
        con.execute("BEGIN TRANSACTION")
        for table, raw, _ in split:
            con.register("incoming", raw.to_arrow())
            con.execute(f"INSERT INTO raw_{table} ({', '.join(raw.columns)}) SELECT * FROM incoming")
            con.unregister("incoming")
        con.execute(
            "INSERT INTO ingestion_log VALUES (?, ?, ?, ?, 'ingested', ?, ?, NULL, ?)",
            [sha, path.name, kind, archived.name, tables, rows, now],
        )
        con.execute("COMMIT")
    return FileOutcome(path.name, kind, sha, "ingested", rows, tables)


def outcomes_markdown(outcomes: list[FileOutcome]) -> str:
    """A table of file outcomes for the Dagster UI."""
    lines = ["| file | folder | status | rows | tables | error |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.file_name} | {o.kind} | {o.status} | {o.rows} | {o.tables} | {o.error} |")
    return "\n".join(lines)


@dg.asset(group_name="ingest", pool="duckdb", kinds={"duckdb"})
def landed_exports(
    context: dg.AssetExecutionContext, home: RematchHome, identity: IdentityStore, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """Every new file in landing/: archived unchanged by sha256, PII to the identity store, the rest to raw tables."""
    home.prepare()
    outcomes = []
    files = landed_files(home)
    for number, (kind, path) in enumerate(files, start=1):
        outcome = ingest_file(kind, path, home, identity, warehouse)
        outcomes.append(outcome)
        if outcome.status == "rejected":
            context.log.error(f"[{number}/{len(files)}] rejected {outcome.error}")
        elif outcome.status == "ingested":
            context.log.info(f"[{number}/{len(files)}] {path.name}: {outcome.rows} rows into {outcome.tables}")
    new = [o for o in outcomes if o.status != "already_ingested"]
    with warehouse_connection(warehouse) as con:
        logged = con.execute("SELECT count(*) FROM ingestion_log WHERE status = 'ingested'").fetchone()[0]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(o.rows for o in new),
            "files_new": len(new),
            "files_ingested": sum(o.status == "ingested" for o in new),
            "files_rejected": sum(o.status == "rejected" for o in new),
            "files_in_log": logged,
            "files": dg.MetadataValue.md(outcomes_markdown(new) if new else "no new files"),
        }
    )


def rejected_files(warehouse: DuckDBResource, since: dt.datetime | None = None) -> pl.DataFrame:
    """Files rejected at ingestion (name and error), newest first."""
    with warehouse_connection(warehouse) as con:
        return con.execute(
            "SELECT file_name, error, ingested_at FROM ingestion_log WHERE status = 'rejected'"
            " AND (? IS NULL OR ingested_at >= ?) ORDER BY ingested_at DESC",
            [since, since],
        ).pl()

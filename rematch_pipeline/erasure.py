"""Erasure on request: a household leaves the identity store, every derived table, and the
copies of its exports (archive/, landing/), of the coordinators' proposals and of the round files."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.ingest import log_rewritten_copy, replace_landed_copies
from rematch_pipeline.assets.reports import ROUND_FILES, round_report_data, write_round_report
from rematch_pipeline.errors import UserFacingError
from rematch_pipeline.features import RESOURCES
from rematch_pipeline.formats.detect import read_export
from rematch_pipeline.formats.errors import InputFileError
from rematch_pipeline.formats.limits import csv_records
from rematch_pipeline.formats.redact import Unlink, holds_cell, without_rows
from rematch_pipeline.formats.writers import replace_file
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import IDENTITY_TABLES, IdentityStore, lists_token_sql, pseudonym, without_token_sql
from rematch_pipeline.resources.warehouse import compact, table_exists, warehouse_connection
from rematch_pipeline.schemas.parsing import utc_now
from rematch_pipeline.validation import members_naming_no_household
from rematch_pipeline.wording import counted, quiet

# Warehouse columns that carry a household pseudonym.
_HOUSEHOLD_COLUMNS = ("household_pseudonym", "household_ref_pseudonym")

_FileRows = dict[str, dict[str | None, set[int]]]


@dataclass(frozen=True)
class _Rewrite:
    """An archived export written again without some rows: its new content and the copy it replaces."""

    sha256: str  # of the new content
    path: Path  # the new archived copy
    previous: Path  # the archived copy it replaces (the original, or an earlier erasure's copy)
    previous_sha256: str  # of the replaced copy's content: a landed file with it gets the new content
    dropped: dict[str | None, set[int]]  # per sheet, the rows (of the replaced copy) it no longer has


@dataclass
class Erasure:
    """What an erasure removed: rows, and rejected exports that named the household (deleted
    whole: they loaded nothing), and the names of rejected exports it could not inspect."""

    rows: int = 0
    rejected_deleted: int = 0
    unlinked: int = 0  # households that had named it as linked: the link is gone from their rows
    rejected_uninspected: list[str] = field(default_factory=list)
    # Dagster runs ("job run_id") whose config, tags, event log or compute logs name the household
    # (pseudonym or reference): erasure does not rewrite Dagster's storage, the operator deletes them.
    dagster_runs: list[str] = field(default_factory=list)
    # When an earlier erasure had removed it and nothing of it is stored: nothing was changed this time.
    already_erased: dt.datetime | None = None
    # Member rows without a household's link in the files that held its members (they may be one of its persons), holding
    # a person: those hold the file's other households out (erased_unlinked_members); a sum row taken too is not one.
    unlinked_members: int = 0


NO_SUCH_HOUSEHOLD = (
    "erasure stopped, nothing erased: no household has this reference (none in the warehouse, the identity store,"
    " a rejected export or a round's proposals.csv, and none erased before); check it against the household_ref"
    " column of the households export, or of a round's proposals.csv: erase takes a household's reference,"
    " not its submission id or pseudonym"
)
# Said after NO_SUCH_HOUSEHOLD when the argument is a stored household's other key (never the value itself).
GIVEN_SUBMISSION_ID = "; this is a household's submission id: give the household_ref of that submission's row"
GIVEN_PSEUDONYM = "; this is a household's pseudonym (H-…): give the household_ref beside it in the round's proposals.csv"


def erase_household(home: RematchHome, household_ref: str, say: Callable[[str], None] = quiet) -> Erasure:
    """Delete a household everywhere; the erasure is recorded by pseudonym only.

    Exports that held its rows are rewritten without them: the archived copy (under the new
    content's sha256) and a landed file with the same content. The new content is logged as
    already ingested, so the sensor does not load it again; the original's log entry stays, so
    the original bytes landed again stay a no-op too. A rejected export loaded no rows, so it
    cannot be rewritten by row: when a cell of it holds the household's reference or one of its
    submission ids (a members file, a partner's link list), its archived and landed copies are
    deleted (its log entry stays, without the archive name).

    Households that named it as linked keep their rows, without its reference (identity store,
    their export cells) or pseudonym (warehouse lists, link-group names). Every round's
    proposals.csv loses its row; every round whose report.html or households.csv shows it has both, and
    municipalities.csv, written again from the warehouse without it.
    Both DuckDB files are then rewritten (compact): a deleted row's bytes would otherwise stay in them.
    say: one line at each step (what it does, counts; never the reference), for the person waiting: on a national
    data home the steps take half a minute and more together.
    """
    identity = IdentityStore(home=home)
    target = pseudonym(home.secret(), "household", household_ref)
    removed = 0
    with warehouse_connection(DuckDBResource(database=str(home.warehouse_path))) as con:
        say("erasing: finding the household's rows and the exports that hold them")
        # Before anything is changed: a reference no household has (mistyped, a submission id) stops here.
        erased_at = check_household_known(home, con, identity, target, household_ref)
        if erased_at is not None:
            say("erasing: searching the Dagster runs' logs and config for the household")
            return Erasure(already_erased=erased_at, dagster_runs=dagster_runs_naming(home, [target, household_ref.strip()]))
        submissions = [r[0] for r in con.execute("SELECT DISTINCT submission_id FROM raw_households WHERE household_pseudonym = ?", [target]).fetchall()]
        # Member rows that may be one of its persons though they name no household: taken with it.
        unlinked = _unlinked_rows(con, target, submissions, identity.birth_dates())
        rows = _export_rows(con, target, submissions)
        for sha, sheet, row in unlinked.select("file_sha256", "sheet", "file_row").iter_rows():
            rows[sha][sheet].add(int(row))
        # Rewritten before anything is deleted: a file that cannot be rewritten stops the erasure with nothing lost.
        rewrites = _rewrite_exports(home, con, rows, _linking_rows(con, target), household_ref.strip())
        sheets = _sheets_of(con, sorted(rewrites))
        rejected, uninspected = _rejected_naming(home, con, [household_ref.strip(), *submissions])
        say(
            f"erasing: deleting its rows from the warehouse ({counted(len(rewrites), 'export')} rewritten without them,"
            f" {counted(len(rejected), 'rejected export')} to delete)"
        )
        con.execute("BEGIN TRANSACTION")
        keep_accepted_places(con, target)
        tables = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE column_name IN ('household_pseudonym', 'household_ref_pseudonym', 'submission_id')"
        ).fetchall()
        for table, column in tables:
            if table == "erasures":
                continue
            if column in _HOUSEHOLD_COLUMNS:
                removed += len(con.execute(f'DELETE FROM "{table}" WHERE "{column}" = ? RETURNING 1', [target]).fetchall())
            elif submissions:
                placeholders = ", ".join("?" for _ in submissions)
                removed += len(con.execute(f'DELETE FROM "{table}" WHERE submission_id IN ({placeholders}) RETURNING 1', submissions).fetchall())
        removed += _forget_unlinked_rows(con, unlinked)
        linking = _unlink(con, target)
        dropped = _dropped_lines(rewrites)
        _renumber_rows(con, dropped)
        now = utc_now()
        for old, rewrite in rewrites.items():
            # Every entry that named the replaced copy (the original's, an earlier erasure copy's) names the new one.
            log_rewritten_copy(con, old, rewrite.previous.name, rewrite.sha256, rewrite.path.name, now)
        for sha in rejected:
            con.execute("UPDATE ingestion_log SET archived_as = NULL WHERE file_sha256 = ?", [sha])
        con.execute("INSERT INTO erasures VALUES (?, ?)", [target, now])
        # Keyed, like the household: a retried file (ingest.retry_export) leaves these submissions' members out.
        for submission in submissions:
            con.execute("INSERT INTO erased_submissions VALUES (?, ?)", [pseudonym(home.secret(), "submission", submission), now])
        con.execute("COMMIT")
    say("erasing: replacing the exports' copies and the rounds' files")
    _replace_copies(home, rewrites, rejected)
    _erase_from_proposals(home, household_ref)
    _erase_from_reports(home, target)
    say("erasing: deleting it from the identity store")
    removed += identity.erase_household(target, household_ref)
    removed += identity.erase_member_rows(unlinked.select("file_sha256", "file_row", "member_pseudonym"))
    identity.renumber_rows(_identity_lines(dropped, sheets))
    # Rewriting the warehouse of a national data home (about 1 GB) is the longest step.
    say("erasing: rewriting the warehouse and the identity store without the deleted rows' bytes")
    compact(home.warehouse_path)
    compact(home.identity_path)
    say("erasing: searching the Dagster runs' logs and config for the household")
    return Erasure(removed, len(rejected), linking, uninspected, dagster_runs_naming(home, [target, household_ref.strip()]), unlinked_members=int(unlinked["holds_person"].sum()))


def keep_accepted_places(con: duckdb.DuckDBPyConnection, target: str) -> None:
    """Keep what the household's counted accept uses at its municipality, without the household (erased_accepted):
    the family took those places for the rest of the intake period, erased or not. Without this, the next round
    of the period offered them again."""
    if not (table_exists(con, "decisions") and table_exists(con, "household_features")):
        return
    con.execute(
        f"""INSERT INTO erased_accepted SELECT r.period, d.municipality_id, {', '.join('f.' + r for r in RESOURCES)}, ?
            FROM decisions d JOIN rounds r USING (round_id) JOIN household_features f USING (household_pseudonym)
            WHERE d.decision = 'accept' AND d.household_pseudonym = ?""",
        [utc_now(), target],
    )


def check_household_known(
    home: RematchHome, con: duckdb.DuckDBPyConnection, identity: IdentityStore, target: str, household_ref: str
) -> dt.datetime | None:
    """Stop with a UserFacingError, nothing changed, when nothing stored names the household (by its pseudonym
    `target` or its reference): no warehouse row, link, identity row, rejected export or proposals.csv row, and no
    earlier erasure. Returns when an earlier erasure removed it and nothing of it is stored again (nothing to do),
    None when there is something to erase. The one check of every erasure (`erase_household`); the message
    never repeats the reference (it may be personal data), it says what the argument is when it is another key."""
    ref = household_ref.strip()
    if ref and _stored_anywhere(home, con, identity, target, ref):
        return None
    erased = con.execute("SELECT max(erased_at) FROM erasures WHERE household_pseudonym = ?", [target]).fetchone()[0]
    if ref and erased is not None:
        return erased
    hint = ""
    if ref and con.execute("SELECT 1 FROM raw_households WHERE submission_id = ? LIMIT 1", [ref]).fetchone():
        hint = GIVEN_SUBMISSION_ID
    elif ref and con.execute("SELECT 1 FROM raw_households WHERE household_pseudonym = ? LIMIT 1", [ref]).fetchone():
        hint = GIVEN_PSEUDONYM
    raise UserFacingError(NO_SUCH_HOUSEHOLD + hint, {"rule": "no household has this reference"})


def _stored_anywhere(home: RematchHome, con: duckdb.DuckDBPyConnection, identity: IdentityStore, target: str, ref: str) -> bool:
    """Whether anything erasure would remove names the household; the cheap places first."""
    columns = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main'"
        " AND column_name IN ('household_pseudonym', 'household_ref_pseudonym') AND table_name <> 'erasures'"
        " ORDER BY table_name NOT IN ('raw_households', 'raw_decisions'), table_name, column_name"
    ).fetchall()
    for table, column in columns:
        if con.execute(f'SELECT 1 FROM "{table}" WHERE "{column}" = ? LIMIT 1', [target]).fetchone():
            return True
    # A partner's link list names it though it never submitted: erasure takes the link out.
    if con.execute(f"SELECT 1 FROM raw_households WHERE {lists_token_sql('linked_household_pseudonyms')} LIMIT 1", {"token": target}).fetchone():
        return True
    if identity.names_household(target, ref):
        return True
    if _proposals_naming(home, ref):
        return True
    return bool(_rejected_naming(home, con, [ref])[0])


def dagster_runs_naming(home: RematchHome, tokens: list[str]) -> list[str]:
    """"job run_id" of every run of the data home's Dagster instance whose run config, tags, event
    log (messages and metadata: a held-out household is named by pseudonym there) or compute logs
    hold one of the tokens, oldest first.

    Found, not rewritten: Dagster's storage is Dagster's, and a run's events are its materialisation
    history. Deleting such runs (UI or `dagster run delete`) is the operator's step (docs/operations.md).
    """
    import dagster as dg
    from dagster._serdes import serialize_value

    if not (home.dagster_home / "dagster.yaml").exists():
        return []
    found: list[str] = []
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        for record in reversed(instance.get_run_records()):
            run = record.dagster_run
            texts = [serialize_value(run.run_config), serialize_value(run.tags)]
            texts += [serialize_value(entry) for entry in instance.all_logs(run.run_id)]
            logs = home.dagster_home / "storage" / run.run_id
            texts += [p.read_bytes().decode("utf-8", "replace") for p in sorted(logs.rglob("*")) if p.is_file()] if logs.is_dir() else []
            if any(token and token in text for token in tokens for text in texts):
                found.append(f"{run.job_name} {run.run_id}")
    return found


def _archived(home: RematchHome, archived_as: str | None) -> Path | None:
    """A logged export's archived copy, unless an operator removed it."""
    archived = home.archive / archived_as if archived_as else None
    return archived if archived is not None and archived.exists() else None


def _rejected_naming(home: RematchHome, con: duckdb.DuckDBPyConnection, tokens: list[str]) -> tuple[dict[str, Path], list[str]]:
    """Rejected exports (sha256 -> archived copy) with a cell holding one of the tokens (the
    reference, the household's submission ids), and the names of those that cannot be inspected."""
    found: dict[str, Path] = {}
    uninspected: list[str] = []
    logged = con.execute("SELECT file_sha256, file_name, archived_as FROM ingestion_log WHERE status = 'rejected' ORDER BY file_sha256").fetchall()
    for sha, name, archived_as in logged:
        archived = _archived(home, archived_as)
        if archived is None:
            continue
        holds = holds_cell(archived.read_bytes(), tokens, name)
        if holds is None:
            uninspected.append(name)
        elif holds:
            found[sha] = archived
    return found, uninspected


def _export_rows(con: duckdb.DuckDBPyConnection, target: str, submissions: list[str]) -> _FileRows:
    """Per file sha256 and sheet: the rows the household's raw rows came from (its members' too)."""
    found = con.execute(
        "SELECT file_sha256, sheet, file_row FROM raw_households WHERE household_pseudonym = ? "
        "UNION SELECT file_sha256, sheet, file_row FROM raw_decisions WHERE household_ref_pseudonym = ?",
        [target, target],
    ).fetchall()
    if submissions:
        placeholders = ", ".join("?" for _ in submissions)
        found += con.execute(f"SELECT file_sha256, sheet, file_row FROM raw_members WHERE submission_id IN ({placeholders})", submissions).fetchall()
    return _by_file(found)


def _unlinked_rows(con: duckdb.DuckDBPyConnection, target: str, submissions: list[str], birth_dates: pl.DataFrame) -> pl.DataFrame:
    """Raw member rows whose household cannot be told (validation.members_naming_no_household) and that may be one of
    the household's persons: those of a members file (sheet) that carries members of its households file (sheet),
    the export it came with, those of an export (a workbook, a zip) that holds its rows, and every one whose link
    is empty (it names no one). Whose person such a
    row is cannot be told, so it goes with every household it may belong to; a linked row of another household
    is never taken. A row holding no person (a sum row under the table, or a person's name alone) is taken too but
    has `holds_person` False: it holds no household out. `birth_dates`: the identity store's
    (IdentityStore.birth_dates), which tell a person's row from a sum row.
    Columns: file_sha256, file_name, sheet, file_row, member_pseudonym, holds_person."""
    households = con.execute("SELECT file_sha256, sheet, file_row, submission_id, household_pseudonym FROM raw_households").pl()
    members = con.execute("SELECT file_sha256, file_name, sheet, file_row, submission_id, member_pseudonym, sex, relation FROM raw_members").pl()
    unlinked = members_naming_no_household(members, households, birth_dates)
    if unlinked.is_empty():
        return unlinked.select("file_sha256", "file_name", "sheet", "file_row", "member_pseudonym", "holds_person")
    own = households.filter(pl.col("household_pseudonym") == target).select("file_sha256", "sheet").unique()
    beside = households.join(own, on=["file_sha256", "sheet"], nulls_equal=True)["submission_id"].drop_nulls().implode()
    paired = members.filter(pl.col("submission_id").is_in(beside)).select("file_sha256", "sheet").unique()
    exports = pl.concat([own["file_sha256"], members.filter(pl.col("submission_id").is_in(submissions))["file_sha256"]]).implode()
    reached = unlinked.join(paired, on=["file_sha256", "sheet"], how="semi", nulls_equal=True)
    # An empty link names no one: the row may be its person in any file (a members file of that row alone), as
    # ingestion after an erasure takes it (formats.erased.erased_lines). A link naming no household stays unless
    # reached: its households file may land later.
    return (
        pl.concat([reached, unlinked.filter(pl.col("file_sha256").is_in(exports)), unlinked.filter(pl.col("submission_id").is_null())])
        .unique(["file_sha256", "sheet", "file_row", "member_pseudonym"], maintain_order=True)
        .select("file_sha256", "file_name", "sheet", "file_row", "member_pseudonym", "holds_person")
    )


def _forget_unlinked_rows(con: duckdb.DuckDBPyConnection, unlinked: pl.DataFrame) -> int:
    """The warehouse's raw rows and quarantine lines of the unlinked member rows taken with the household (by file
    and row: also where the archived copy is gone and no line is dropped), and a count of them per members file
    (erased_unlinked_members, no value) of those holding a person, by which the file's other households stay held
    out. Returns the rows deleted."""
    if unlinked.is_empty():
        return 0
    con.register("unlinked_rows", unlinked.to_arrow())
    at = "u.file_sha256 = t.file_sha256 AND u.sheet IS NOT DISTINCT FROM t.sheet AND u.file_row = t.file_row"
    removed = len(
        con.execute(f"DELETE FROM raw_members t WHERE EXISTS (SELECT 1 FROM unlinked_rows u WHERE {at} AND u.member_pseudonym = t.member_pseudonym) RETURNING 1").fetchall()
    )
    con.execute(f"""DELETE FROM quarantine t WHERE t."table" = 'members' AND EXISTS (SELECT 1 FROM unlinked_rows u WHERE {at})""")
    con.execute(
        "INSERT INTO erased_unlinked_members SELECT file_sha256, file_name, sheet, count(*), ? FROM unlinked_rows WHERE holds_person GROUP BY ALL ORDER BY ALL",
        [utc_now()],
    )
    con.unregister("unlinked_rows")
    return removed


def _by_file(found: list[tuple[str, str | None, int]]) -> _FileRows:
    """(file sha256, sheet, row) triples grouped per file and sheet."""
    rows: _FileRows = defaultdict(lambda: defaultdict(set))
    for sha, sheet, row in found:
        rows[sha][sheet].add(int(row))
    return rows


def _linking_rows(con: duckdb.DuckDBPyConnection, target: str) -> _FileRows:
    """Per file sha256 and sheet: the rows of households that named the household as linked."""
    found = con.execute(
        f"SELECT file_sha256, sheet, file_row FROM raw_households WHERE {lists_token_sql('linked_household_pseudonyms')}",
        {"token": target},
    ).fetchall()
    return _by_file(found)


def _unlink(con: duckdb.DuckDBPyConnection, target: str) -> int:
    """The pseudonym out of every linked-household list, and out of link-group names (the group
    takes its smallest remaining member's, as link_groups names groups); returns the raw rows changed."""
    types: dict[str, dict[str, str]] = defaultdict(dict)
    for table, column, data_type in con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns").fetchall():
        types[table][column] = data_type
    unlinked = 0
    for table, column in [(t, c) for t in sorted(types) for c in ("link_group", "linked_household_pseudonyms") if c in types[t]]:
        if column == "link_group":
            by_round = "AND g.round_id = t.round_id" if "round_id" in types[table] else ""
            con.execute(
                f'UPDATE "{table}" t SET link_group = (SELECT min(g.household_pseudonym) FROM "{table}" g '
                f"WHERE g.link_group = $token {by_round}) WHERE t.link_group = $token",
                {"token": target},
            )
            continue
        if types[table][column].endswith("[]"):
            new, where = f"list_filter({column}, lambda v: v <> $token)", f"list_contains({column}, $token)"
        else:
            new, where = without_token_sql(column), lists_token_sql(column)
        changed = len(con.execute(f'UPDATE "{table}" SET {column} = {new} WHERE {where} RETURNING 1', {"token": target}).fetchall())
        unlinked += changed if table == "raw_households" else 0
    return unlinked


def _rewrite_exports(
    home: RematchHome, con: duckdb.DuckDBPyConnection, rows: _FileRows, linking: _FileRows, household_ref: str
) -> dict[str, _Rewrite]:
    """Archived exports without the rows, and without the reference in the linking rows, per sha256
    of the stored file. The old copy stays until committed.

    Row numbers are those of the current archived copy: an earlier erasure renumbered the stored rows
    to it (_renumber_rows)."""
    rewrites: dict[str, _Rewrite] = {}
    copies: dict[str, tuple[Path, bytes]] = {}
    for sha in sorted(set(rows) | set(linking)):
        logged = con.execute("SELECT file_name, archived_as FROM ingestion_log WHERE file_sha256 = ?", [sha]).fetchone()
        archived = _archived(home, logged[1] if logged else None)
        if archived is None:  # removed by an operator: nothing left to rewrite
            continue
        copies[sha] = (archived, archived.read_bytes())
        # Checked for every file before any is written: a mismatch stops the erasure with nothing changed.
        _check_rows_in_place(con, sha, logged[0], *copies[sha])
    for sha, (archived, content) in copies.items():
        drop = {sheet: set(numbers) for sheet, numbers in rows.get(sha, {}).items()}
        data = without_rows(content, drop, archived.name, Unlink(frozenset({household_ref}), linking[sha]) if sha in linking else None)
        new, previous = hashlib.sha256(data).hexdigest(), hashlib.sha256(content).hexdigest()
        if new == previous:  # none of the rows was in this file after all
            continue
        target = home.archive / f"{new}{archived.suffix}"
        replace_file(target, data, 0o600)  # an archived export stays owner-only, as ingestion made it
        rewrites[sha] = _Rewrite(new, target, archived, previous, drop)
    return rewrites


def _check_rows_in_place(con: duckdb.DuckDBPyConnection, sha: str, name: str, archived: Path, content: bytes) -> None:
    """Stop unless every stored row of the file names the row of its archived copy that holds its
    submission: erasure drops lines by those numbers. An erasure by a version before the renumbering
    (docs/decisions.md) left a file's rows numbered by its original; dropping by them would delete
    other households' lines. The message names the file and counts rows, never a value."""
    try:
        parsed = read_export(Path(name), content, as_landed=True)  # as it was read when it landed
    except InputFileError as exc:
        raise UserFacingError(f"erasure stopped, nothing erased: the archived copy {archived.name} of {name} cannot be read: {exc}") from exc
    misplaced = 0
    for table in {p.table for p in parsed}:
        read = {
            (p.sheet, row, submission)
            for p in parsed
            if p.table == table and "submission_id" in p.frame.columns
            for row, submission in p.frame.select("file_row", "submission_id").iter_rows()
        }
        if not read:
            continue  # a table without submission ids (decisions) cannot be checked so
        stored = con.execute(f"SELECT sheet, file_row, submission_id FROM raw_{table} WHERE file_sha256 = ?", [sha]).fetchall()
        misplaced += sum(1 for key in stored if key not in read)
    if misplaced:
        raise UserFacingError(
            f"erasure stopped, nothing erased: {name}: {counted(misplaced, 'stored row does', 'stored rows do')} not name their row of the archived copy"
            f" {archived.name} (erased from by an older version?); see docs/operations.md, Erasure"
        )


def _sheets_of(con: duckdb.DuckDBPyConnection, shas: list[str]) -> dict[str, dict[str, str | None]]:
    """Per stored file, the sheet each table's rows came from (None: a CSV). Identity rows carry
    no sheet: this tells which sheet's row numbers they follow."""
    sheets: dict[str, dict[str, str | None]] = defaultdict(dict)
    if not shas:
        return sheets
    placeholders = ", ".join("?" for _ in shas)
    for table in IDENTITY_TABLES:
        found = con.execute(f"SELECT DISTINCT file_sha256, sheet FROM raw_{table} WHERE file_sha256 IN ({placeholders})", shas).fetchall()
        for sha, sheet in found:
            sheets[sha][table] = sheet
    return sheets


def _dropped_lines(rewrites: dict[str, _Rewrite]) -> pl.DataFrame:
    """(file_sha256, sheet, file_row) of every row the rewritten exports no longer hold."""
    lines = [(sha, sheet, row) for sha, rewrite in rewrites.items() for sheet, numbers in rewrite.dropped.items() for row in sorted(numbers)]
    return pl.DataFrame(lines, schema={"file_sha256": pl.Utf8, "sheet": pl.Utf8, "file_row": pl.Int32}, orient="row")


def _renumber_rows(con: duckdb.DuckDBPyConnection, dropped: pl.DataFrame) -> None:
    """Every warehouse row keyed by file and row follows its line into the rewritten copy: rows that
    pointed at a dropped line go, rows below one move up. Without this a later erasure, retry or
    validation of the same file would read another household's line (docs/decisions.md)."""
    if dropped.is_empty():
        return
    keyed = defaultdict(set)
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main' AND column_name IN ('file_sha256', 'sheet', 'file_row')"
    ).fetchall():
        keyed[table].add(column)
    con.register("dropped_lines", dropped.to_arrow())
    for table in sorted(t for t, columns in keyed.items() if {"file_sha256", "file_row"} <= columns):
        # A table without a sheet column (none today) follows the rows dropped from any sheet of the file.
        same = "d.sheet IS NOT DISTINCT FROM t.sheet" if "sheet" in keyed[table] else "true"
        con.execute(
            f'DELETE FROM "{table}" t WHERE EXISTS (SELECT 1 FROM dropped_lines d WHERE d.file_sha256 = t.file_sha256 AND {same} AND d.file_row = t.file_row)'
        )
        con.execute(
            f'UPDATE "{table}" t SET file_row = file_row - (SELECT count(*) FROM dropped_lines d'
            f" WHERE d.file_sha256 = t.file_sha256 AND {same} AND d.file_row < t.file_row)"
            " WHERE t.file_sha256 IN (SELECT file_sha256 FROM dropped_lines)"
        )
    con.unregister("dropped_lines")


def _identity_lines(dropped: pl.DataFrame, sheets: dict[str, dict[str, str | None]]) -> dict[str, pl.DataFrame]:
    """Per questionnaire table, the (file_sha256, file_row) lines dropped from the sheet its rows came from."""
    lines: dict[str, pl.DataFrame] = {}
    for table in IDENTITY_TABLES:
        wanted = [(sha, sheets[sha][table]) for sha in dropped["file_sha256"].unique().sort() if table in sheets.get(sha, {})]
        keep = pl.DataFrame(wanted, schema={"file_sha256": pl.Utf8, "sheet": pl.Utf8}, orient="row")
        lines[table] = dropped.join(keep, on=["file_sha256", "sheet"], how="semi", nulls_equal=True).select("file_sha256", "file_row")
    return lines


def _replace_copies(home: RematchHome, rewrites: dict[str, _Rewrite], deleted: dict[str, Path]) -> None:
    """Landed files with a rewritten content (the original's or an earlier erasure's) get the new one,
    those with a deleted content go (one pass over landing/); then the old archive copies go."""
    if not rewrites and not deleted:
        return
    newer = {sha: rewrite.path for old, rewrite in rewrites.items() for sha in (old, rewrite.previous_sha256)}
    replace_landed_copies(home, newer, frozenset(deleted))
    for stale in [rewrite.previous for rewrite in rewrites.values()] + list(deleted.values()):
        stale.unlink(missing_ok=True)


def _erase_from_proposals(home: RematchHome, household_ref: str) -> None:
    """The coordinators' proposals.csv of every round, without the household's row."""
    for path, data, drop in _proposals_naming(home, household_ref):
        replace_file(path, without_rows(data, {None: drop}, path.name))


def _proposals_naming(home: RematchHome, household_ref: str) -> list[tuple[Path, bytes, set[int]]]:
    """Every round's proposals.csv with a row of the household: its path, content and those rows' numbers."""
    found = []
    for path in sorted((home.path / "rounds").glob("*/proposals.csv")):
        data = path.read_bytes()
        if household_ref.encode() not in data:  # most rounds do not name it: no parse
            continue
        records = csv_records(data, path.name)
        if "household_ref" not in records.header:
            continue
        column = records.header.index("household_ref")
        drop = {number for number, cells in records.rows if column < len(cells) and cells[column] == household_ref}
        if drop:
            found.append((path, data, drop))
    return found


def _erase_from_reports(home: RematchHome, target: str) -> None:
    """Every round whose report.html or households.csv shows the household: the report and its spreadsheet
    files (municipalities.csv, households.csv) written again from the warehouse, whose round tables no
    longer hold it, so the files keep agreeing with the report. households.csv lists every household of the
    pool, the report only some. A round the warehouse no longer knows loses those files."""
    shown = ("report.html", *ROUND_FILES)
    folders = sorted(
        {path.parent for name in shown for path in (home.path / "rounds").glob(f"*/{name}") if target.encode() in path.read_bytes()}
    )
    if not folders:
        return
    with warehouse_connection(DuckDBResource(database=str(home.warehouse_path))) as con:
        known = {r[0] for r in con.execute("SELECT round_id FROM rounds").fetchall()}
        reports = [round_report_data(con, folder.name) for folder in folders if folder.name in known]
    for data in reports:
        write_round_report(home, data)
    for folder in folders:
        if folder.name not in known:
            for name in shown:
                (folder / name).unlink(missing_ok=True)

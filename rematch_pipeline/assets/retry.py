"""Reading logged exports again after an upgrade: files an older version refused, and files stored
with cells it withheld (`rematch ingest --retry-rejected`, `retry_exports_job`).

Ingestion never reads the same bytes twice, so without this a file refused before a reader learned its
format stays refused until its bytes change. A retry reads the archived copy with the current readers:
- a file the ledger records as `rejected` is stored if it reads now (else its new reason is recorded);
- an `ingested` file whose raw rows hold a withheld placeholder replaces its own rows, when the
  current reading withholds fewer cells.
Its rows take the place of the file's landing in ingestion order (latest-wins ties stay as they were),
pseudonyms are the same keyed values, consent is applied as at ingestion, and rows of erased households
(`erasures`, `erased_submissions`) are left out. A refused file that reads now loses from its landed and archived
copies the lines ingestion would have taken out (formats.erased.erased_lines), as a landing file does, and its rows
are read from that copy (a copy with nothing else left stays refused, as a landing file's would). Validation is a full recompute, so a rule relaxed in validation needs no retry.
"""


import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.failures import CONSOLE_LOGGER_RUN_CONFIG, reason_first
from rematch_pipeline.assets.ingest import (
    blank_stored,
    consent_withdrawals,
    differing_stored_copies,
    erased_so_far,
    exports_partitions,
    filled,
    log_rewritten_copy,
    members_arrived_while_refused,
    record_erased_unlinked,
    replace_landed_copies,
    restore_members,
    skipped_submissions,
    withdrawn_submissions,
    without_consent,
)
from rematch_pipeline.formats.canonical import ParsedTable, read_anyway_lines
from rematch_pipeline.formats.detect import read_export
from rematch_pipeline.formats.erased import ERASED_LINES, ErasedLines, erased_lines
from rematch_pipeline.formats.errors import InputFileError, Violation
from rematch_pipeline.formats.landing import pseudonyms, split_identity
from rematch_pipeline.formats.limits import check_file_size
from rematch_pipeline.formats.redact import without_rows
from rematch_pipeline.formats.writers import replace_file
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import IdentityStore, pseudonym
from rematch_pipeline.resources.warehouse import FILE_COLUMNS, compact, raw_columns, warehouse_connection
from rematch_pipeline.schemas.contract import TABLES
from rematch_pipeline.schemas.parsing import WITHHELD_VALUES, utc_now
from rematch_pipeline.wording import counted

_Split = list[tuple[str, pl.DataFrame, pl.DataFrame]]
# Per raw table, the columns that tell its rows apart: a re-read file must still hold every stored one.
_ROW_KEYS: dict[str, tuple[str, ...]] = {
    "households": ("submission_id", "household_pseudonym"),
    "members": ("submission_id", "member_pseudonym"),
    "municipalities": ("submission_id", "municipality_id"),
    "decisions": ("round_id", "household_ref_pseudonym"),
}


@dataclass(frozen=True)
class RetryOutcome:
    """What a retry did with one logged export (counts and names, no cell values)."""

    file_name: str
    sha256: str
    status: str  # ingested (refused before) | read_again | still_rejected | unchanged | not_retried
    rows: int = 0
    withheld_before: int = 0
    withheld_after: int = 0
    erased_rows: int = 0  # rows of erased households (and their members) left out
    reason: str = ""  # still_rejected: the current reader's error; not_retried: why
    warnings: tuple[str, ...] = ()  # stored again: what the reading read anyway (hidden rows or columns, readers' warnings)

    @property
    def stored(self) -> bool:
        """Whether the retry changed what the warehouse holds for this file."""
        return self.status in ("ingested", "read_again")

    def line(self) -> str:
        """One line for the command line and the run log."""
        if self.status == "still_rejected":
            return f"still rejected: {self.reason}"
        if self.status == "not_retried":
            return f"not retried: {self.file_name}: {self.reason}"
        if self.status == "unchanged":
            return f"unchanged: {self.file_name}: {counted(self.withheld_after, 'cell')} still withheld by the current rules"
        what = "ingested" if self.status == "ingested" else "read again,"
        text = f"retried: {self.file_name}: {what} {counted(self.rows, 'row')}"
        text += " (refused before)" if self.status == "ingested" else f" (withheld cells {self.withheld_before} -> {self.withheld_after})"
        if self.erased_rows:
            text += f"; {counted(self.erased_rows, 'row')} of erased households left out"
        return text


_PLACEHOLDERS = ", ".join(f"'{v}'" for v in WITHHELD_VALUES)


def _withheld_count(table: str) -> str:
    """SQL: the withheld placeholders among a raw table's cells (an aggregate)."""
    columns = [c for c in raw_columns(table) if c not in FILE_COLUMNS]
    # count_if over a column that is empty throughout is NULL, not 0.
    return " + ".join(f"coalesce(count_if({c} IN ({_PLACEHOLDERS})), 0)" for c in columns)


def stored_withheld(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Withheld cells per file sha256, over every raw table (files without any are absent)."""
    counts: dict[str, int] = {}
    for table in TABLES:
        for sha, n in con.execute(f"SELECT file_sha256, {_withheld_count(table)} AS n FROM raw_{table} GROUP BY file_sha256 HAVING n > 0").fetchall():
            counts[sha] = counts.get(sha, 0) + int(n)
    return counts


def exports_to_retry(warehouse: DuckDBResource) -> list[tuple[str, str, str | None, str, dt.datetime]]:
    """(sha256, file name, archived copy, status, landed at) of every logged export a retry reads again:
    rejected ones, and ingested ones with withheld cells; in the order they landed."""
    with warehouse_connection(warehouse) as con:
        withheld = stored_withheld(con)
        logged = con.execute(
            "SELECT file_sha256, file_name, archived_as, status, ingested_at FROM ingestion_log"
            " WHERE status IN ('rejected', 'ingested') ORDER BY ingested_at, file_name"
        ).fetchall()
    return [row for row in logged if row[3] == "rejected" or row[0] in withheld]


def _count_withheld(split: _Split) -> int:
    """Withheld placeholders among the raw rows of a file as read now."""
    total = 0
    for table, raw, _ in split:
        columns = [c for c in raw_columns(table) if c not in FILE_COLUMNS and c in raw.columns]
        total += sum(raw[c].is_in(list(WITHHELD_VALUES)).sum() for c in columns)
    return int(total)


def erased_submissions_in(split: _Split, secret: bytes, erased: set[str]) -> set[str]:
    """Keyed pseudonyms of the submissions of erased households among a file's household rows."""
    found: set[str] = set()
    for table, raw, _ in split:
        if table == "households":
            rows = raw.filter(pl.col("household_pseudonym").is_in(sorted(erased)))
            found |= set(pseudonyms(secret, "submission", rows["submission_id"]).drop_nulls())
    return found


def _unlinked(column: str, is_erased: Callable[[str], bool]) -> pl.Expr:
    """A space-separated link list without the erased households' tokens (empty: null)."""
    return pl.col(column).map_elements(
        lambda refs: " ".join(r for r in refs.split() if not is_erased(r)) or None, return_dtype=pl.Utf8, skip_nulls=True
    )


def _without_lines(parsed: list[ParsedTable], split: _Split, lines: ErasedLines | None) -> tuple[_Split, int]:
    """A file's rows without the lines erased_lines names (per sheet, by file_row); returns the rows left out.
    `split` holds the tables of `parsed` in its order (split_identity per table)."""
    if lines is None:
        return split, 0
    result: _Split = []
    dropped = 0
    for table, (name, raw, identity_rows) in zip(parsed, split):
        gone = sorted(lines.rows.get(table.sheet, set()))
        if gone and name != "municipalities":
            keep = ~pl.col("file_row").cast(pl.Int64).is_in(gone)
            dropped += raw.height - raw.filter(keep).height
            raw, identity_rows = raw.filter(keep), identity_rows.filter(keep)
        result.append((name, raw, identity_rows))
    return result, dropped


def without_erased(split: _Split, secret: bytes, erased: set[str], submissions: set[str]) -> tuple[_Split, int]:
    """A file's rows without those of erased households (by pseudonym) and of their submissions (their
    members), and without erased households in link lists; returns the rows left out."""
    result: _Split = []
    dropped = 0
    erased_list = sorted(erased)

    def gone(frame: pl.DataFrame) -> pl.Series:
        out = pl.Series([False] * frame.height)
        if "submission_id" in frame.columns:
            out = out | pseudonyms(secret, "submission", frame["submission_id"]).is_in(sorted(submissions)).fill_null(False)
        for column in ("household_pseudonym", "household_ref_pseudonym"):
            if column in frame.columns:
                out = out | frame[column].is_in(erased_list).fill_null(False)
        return out

    for table, raw, identity_rows in split:
        if table == "municipalities":
            result.append((table, raw, identity_rows))
            continue
        raw_gone, identity_gone = gone(raw), gone(identity_rows)
        dropped += int(raw_gone.sum())
        raw, identity_rows = raw.filter(~raw_gone), identity_rows.filter(~identity_gone)
        if table == "households":
            raw = raw.with_columns(_unlinked("linked_household_pseudonyms", lambda token: token in erased))
            identity_rows = identity_rows.with_columns(
                _unlinked("linked_household_refs", lambda ref: pseudonym(secret, "household", ref) in erased)
            )
        result.append((table, raw, identity_rows))
    return result, dropped


def _lost_rows(con: duckdb.DuckDBPyConnection, sha: str, split: _Split) -> int:
    """Stored rows of the file that its reading now does not hold (beyond erased ones): a copy
    that lacks them must not replace them."""
    lost = 0
    read = {table: raw for table, raw, _ in split}
    for table, keys in _ROW_KEYS.items():
        stored = con.execute(f"SELECT {', '.join(keys)} FROM raw_{table} WHERE file_sha256 = ?", [sha]).pl()
        if stored.is_empty():
            continue
        now = read.get(table, pl.DataFrame(schema={k: pl.Utf8 for k in keys})).select(keys).cast({k: pl.Utf8 for k in keys})
        lost += stored.cast({k: pl.Utf8 for k in keys}).join(now.unique(), on=list(keys), how="anti", nulls_equal=True).height
    return lost


def _anchor(con: duckdb.DuckDBPyConnection, table: str, sha: str, landed_at: dt.datetime) -> int:
    """The rowid after which the file's rows go in raw_<table>: where its rows are, else after the rows
    of the files that landed before it (-1: first)."""
    first = con.execute(f"SELECT min(rowid) FROM raw_{table} WHERE file_sha256 = ?", [sha]).fetchone()[0]
    if first is not None:
        return con.execute(f"SELECT coalesce(max(rowid), -1) FROM raw_{table} WHERE rowid < ?", [first]).fetchone()[0]
    return con.execute(
        f"SELECT coalesce(max(r.rowid), -1) FROM raw_{table} r JOIN ingestion_log l ON l.file_sha256 = r.file_sha256"
        " WHERE l.ingested_at <= ? AND r.file_sha256 <> ?",
        [landed_at, sha],
    ).fetchone()[0]


def _place(con: duckdb.DuckDBPyConnection, table: str, sha: str, raw: pl.DataFrame | None, anchor: int) -> None:
    """raw_<table> with the file's rows replaced by `raw`, in its place: validation and consent read
    raw rows in stored order as ingestion order (in the caller's transaction)."""
    if (raw is None or raw.is_empty()) and not con.execute(f"SELECT 1 FROM raw_{table} WHERE file_sha256 = ? LIMIT 1", [sha]).fetchone():
        return  # nothing of the file in this table, before or now
    columns = raw_columns(table)
    listed = ", ".join(columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE placed AS SELECT {listed}, rowid AS _pos, 0 AS _sub FROM raw_{table} WHERE file_sha256 <> ?", [sha])
    if raw is not None and raw.height:
        con.register("incoming", raw.select(columns).with_row_index("_sub", offset=1).to_arrow())
        con.execute(f"INSERT INTO placed ({listed}, _pos, _sub) SELECT {listed}, ?, _sub FROM incoming", [anchor])
        con.unregister("incoming")
    con.execute(f"DELETE FROM raw_{table}")
    con.execute(f"INSERT INTO raw_{table} ({listed}) SELECT {listed} FROM placed ORDER BY _pos, _sub")
    con.execute("DROP TABLE placed")


def _fixed_copy(warehouse: DuckDBResource, sha: str, name: str) -> str:
    """Where a file of the refused file's name landed later in the same folder and was ingested (the data engineer's
    fixed copy, or the tool's next export), the words that say so: the refused copy stays refused, and the retry
    reads it again each time (after an upgrade it may read), so the line must not suggest that nothing was stored."""
    with warehouse_connection(warehouse) as con:
        later = con.execute(
            "SELECT max(l.ingested_at) FROM ingestion_log r JOIN ingestion_log l ON l.file_name = r.file_name AND l.landing_kind = r.landing_kind"
            " WHERE r.file_sha256 = ? AND l.status = 'ingested' AND l.ingested_at > r.ingested_at",
            [sha],
        ).fetchone()[0]
    if later is None:
        return ""
    return f" (a later {name} was ingested on {later:%Y-%m-%d %H:%M} UTC: if it is the fixed copy, nothing more to do)"


@dataclass(frozen=True)
class _Copy:
    """A refused file's archived copy (`old`, its content `old_sha256`) rewritten without erased lines (`new`)."""

    old: Path
    old_sha256: str
    new: Path
    sha256: str


def _copy_without(home: RematchHome, archived_as: str, lines: ErasedLines, name: str) -> _Copy:
    """The archived copy without `lines` (formats.redact.without_rows, as ingestion and erasure rewrite), written beside
    it owner-only under its content's sha256; the old copy stays until the rows read from the new one are stored."""
    old = home.archive / archived_as
    data = old.read_bytes()
    new_data = without_rows(data, lines.rows, name, lines.unlink)
    new_sha = hashlib.sha256(new_data).hexdigest()
    new = old.with_name(f"{new_sha}{old.suffix}")
    replace_file(new, new_data, 0o600)  # an archived export stays owner-only
    return _Copy(old, hashlib.sha256(data).hexdigest(), new, new_sha)


def _replace_landed(home: RematchHome, copy: _Copy) -> None:
    """Once stored: landed files with the old copy's content get the new one (as erasure does), the old copy goes."""
    replace_landed_copies(home, {copy.old_sha256: copy.new})
    if copy.old != copy.new:
        copy.old.unlink(missing_ok=True)


def _read_again(home: RematchHome, name: str, archived_as: str | None, sha: str) -> tuple[list[ParsedTable], _Split] | InputFileError | None:
    """The archived copy read by the current readers (errors name the landed file), or None when it is gone."""
    archived = home.archive / archived_as if archived_as else None
    if archived is None or not archived.exists():
        return None
    try:
        check_file_size(archived.stat().st_size, name)
        parsed = read_export(Path(name), archived.read_bytes())
        return parsed, [(p.table, *split_identity(p, home.secret(), sha, name)) for p in parsed]
    except InputFileError as exc:
        return exc


def retry_exports(home: RematchHome, identity: IdentityStore, warehouse: DuckDBResource) -> list[RetryOutcome]:
    """Read every export an older version refused or stored with withheld cells again (module docstring)."""
    candidates = exports_to_retry(warehouse)
    if not candidates:
        return []
    secret = home.secret()
    with warehouse_connection(warehouse) as con:
        erased = {r[0] for r in con.execute("SELECT household_pseudonym FROM erasures").fetchall()}
        erased_submissions = {r[0] for r in con.execute("SELECT submission_pseudonym FROM erased_submissions").fetchall()}
        withheld = stored_withheld(con)
    readings = {sha: _read_again(home, name, archived_as, sha) for sha, name, archived_as, _, _ in candidates}
    # A household erased before it ever loaded is known by pseudonym only: its submissions are those
    # of its rows in these files, so that a members file of it read in the same pass leaves them out too.
    for reading in readings.values():
        if isinstance(reading, tuple):
            erased_submissions |= erased_submissions_in(reading[1], secret, erased)
    # What erased_lines compares a file with: the erasures (with the submissions above), and as stored the household
    # rows of every file of this pass too (a members file read before its households file is not an orphan).
    read_submissions = {
        s
        for r in readings.values()
        if isinstance(r, tuple)
        for t, raw, _ in r[1]
        if t == "households"
        for s in raw.filter(~pl.col("household_pseudonym").is_in(sorted(erased)).fill_null(False))["submission_id"].drop_nulls()
    }
    so_far = erased_so_far(warehouse)
    known = dataclasses.replace(so_far, submissions=frozenset(erased_submissions), stored_submissions=so_far.stored_submissions | read_submissions)
    outcomes: list[RetryOutcome] = []
    now = utc_now()
    for sha, name, archived_as, status, landed_at in candidates:
        reading = readings[sha]
        if reading is None:
            outcomes.append(RetryOutcome(name, sha, "not_retried", reason="no archived copy (erased or removed); land a new export"))
            continue
        if isinstance(reading, InputFileError) and status == "ingested":
            # Stored by an older version, refused by the current readers (a newer rule): its rows stay as stored and
            # its ledger entry stays `ingested`; "still rejected" would say it was never stored.
            outcomes.append(RetryOutcome(name, sha, "not_retried", reason=f"its stored rows stay as ingested; the current readers refuse its archived copy ({reading})"))
            continue
        if isinstance(reading, InputFileError):
            with warehouse_connection(warehouse) as con:
                con.execute(
                    "UPDATE ingestion_log SET error = ?, tables = ?, retried_at = ? WHERE file_sha256 = ?",
                    [str(reading), reading.violation.table or "", now, sha],
                )
            outcomes.append(RetryOutcome(name, sha, "still_rejected", reason=str(reading) + _fixed_copy(warehouse, sha, name)))
            continue
        parsed, split = reading
        # The lines ingestion would have taken out of the file (erased submissions' members, unlinked member rows that
        # may be an erased household's person): one definition (formats.erased), left out here by row.
        lines = erased_lines(parsed, secret, known)
        copy: _Copy | None = None
        split, taken = _without_lines(parsed, split, lines)  # counted as rows of the tables, as before
        if status == "rejected" and lines is not None:
            # A refused file's copies kept what only its columns tell (empty-link member lines, an erased reference in a
            # partner's link list, LimeSurvey's lines: formats.erased.refused_file_lines): now that it reads, its copies
            # lose them as a landing file's do, and its rows are read from the new copy (numbered as its lines).
            copy = _copy_without(home, archived_as, lines, name)
            again = _read_again(home, name, copy.new.name, sha)
            if isinstance(again, InputFileError):
                # Nothing but erased lines (a header left: "no data rows"): refused as ingestion refuses such a landing
                # file's copy, and its copies still lose the lines; the other files are retried.
                with warehouse_connection(warehouse) as con:
                    con.execute("BEGIN TRANSACTION")
                    log_rewritten_copy(con, sha, copy.old.name, copy.sha256, copy.new.name, now)
                    con.execute(
                        "UPDATE ingestion_log SET error = ?, tables = ?, retried_at = ?, skipped = ? WHERE file_sha256 = ?",
                        [str(again), again.violation.table or "", now, _skipped_after_retry(con, sha, "", lines.count), sha],
                    )
                    con.execute("COMMIT")
                _replace_landed(home, copy)
                outcomes.append(RetryOutcome(name, sha, "still_rejected", reason=str(again) + _fixed_copy(warehouse, sha, name)))
                continue
            if again is None:  # the copy just written is gone: removed meanwhile
                raise FileNotFoundError(copy.new.name)
            parsed, split = again
        split, erased_rows = without_erased(split, secret, erased, erased_submissions)
        erased_rows += taken
        after = _count_withheld(split)
        if status == "ingested":
            before = withheld.get(sha, 0)
            if after >= before:
                outcomes.append(RetryOutcome(name, sha, "unchanged", withheld_before=before, withheld_after=after))
                continue
            with warehouse_connection(warehouse) as con:
                lost = _lost_rows(con, sha, split)
            if lost:
                outcomes.append(
                    RetryOutcome(name, sha, "not_retried", reason=f"its archived copy lacks {counted(lost, 'stored row')}, the stored rows stay (check the archive)")
                )
                continue
        else:
            before = 0
        warnings = tuple(read_anyway_lines(name, parsed))
        rows, warnings = _store_again(home, identity, warehouse, sha, name, landed_at, parsed, split, warnings, now, lines, copy)
        if copy is not None:
            _replace_landed(home, copy)
        outcomes.append(
            RetryOutcome(name, sha, "ingested" if status == "rejected" else "read_again", rows, before, after, erased_rows, warnings=warnings)
        )
    if any(o.stored for o in outcomes):
        # Replaced rows and blanked values keep their bytes in the DuckDB file until it is rewritten.
        compact(home.warehouse_path)
    return outcomes


def _store_again(
    home: RematchHome,
    identity: IdentityStore,
    warehouse: DuckDBResource,
    sha: str,
    name: str,
    landed_at: dt.datetime,
    parsed: list[ParsedTable],
    split: _Split,
    warnings: tuple[str, ...],
    now: dt.datetime,
    erased: ErasedLines | None = None,
    copy: _Copy | None = None,
) -> tuple[int, tuple[str, ...]]:
    """Store a file read again in its place, consent applied as ingestion applies it, with what its reading read
    anyway (`warnings`) and its submissions stored from other files with other answers in the ingestion log, and the
    unlinked member lines left out with an erased household's (`erased`) recorded as ingestion records them; the rows
    stored and the warning lines."""
    with warehouse_connection(warehouse) as con:
        consent = consent_withdrawals(con, split, replacing=sha, after_row=_anchor(con, "households", sha, landed_at))
        # As ingestion says it (ingest.differing_stored_copies): a refused file read now may hold another copy of a
        # submission stored since from another file, and the ledger's warnings of a file read again are replaced.
        withdrawn = withdrawn_submissions(con, split, consent)
        warnings += tuple(
            Violation(name, None, None, rule, sheet=p.sheet).describe()
            for p, (table, raw, identity_rows) in zip(parsed, split)
            if table == "households"
            and (rule := differing_stored_copies(con, identity, raw, identity_rows, sha, landed_at, withdrawn)) is not None
        )
        carried = {s for table, raw, _ in split if table == "members" for s in raw["submission_id"].drop_nulls()}
        restored_members, restored_identity = members_arrived_while_refused(con, home, consent.restored, carried)
    split = without_consent(split, consent)
    # Identity rows first, as at ingestion: if the warehouse write fails, the file still qualifies and a
    # retry replaces them again.
    identity.replace_file(sha, [(table, identity_rows) for table, _, identity_rows in split])
    identity.store("members", restored_identity)
    forgotten = identity.forget_refused(consent.refused)
    read = {table: pl.concat([raw for t, raw, _ in split if t == table], how="diagonal_relaxed") for table in {t for t, _, _ in split}}
    rows = sum(raw.height for raw in read.values())
    with warehouse_connection(warehouse) as con:
        con.execute("BEGIN TRANSACTION")
        for table in TABLES:
            _place(con, table, sha, read.get(table), _anchor(con, table, sha, landed_at))
        blank_stored(con, consent, sha)
        restore_members(con, restored_members)
        if erased is not None:
            record_erased_unlinked(con, sha, name, erased, now)
        taken = erased.count if copy is not None and erased is not None else 0
        skipped = _skipped_after_retry(con, sha, skipped_submissions(parsed), taken)
        if copy is not None:
            # As ingestion logs a landing file's copy (ingest._log_copy): landing the new content again is a no-op.
            log_rewritten_copy(con, sha, copy.old.name, copy.sha256, copy.new.name, now)
        con.execute(
            "UPDATE ingestion_log SET status = 'ingested', tables = ?, rows_ingested = ?, error = NULL, skipped = ?, warnings = ?,"
            " retried_at = ? WHERE file_sha256 = ?",
            [" ".join(sorted(read)), rows, skipped or None, "\n".join(warnings) or None, now, sha],
        )
        con.execute("COMMIT")
    if forgotten:
        compact(home.identity_path)
    return rows, warnings


def _skipped_after_retry(con: duckdb.DuckDBPyConnection, sha: str, skipped: str, taken: int) -> str | None:
    """The ledger's `skipped` of a file read again: what its reading leaves out (`skipped`), and the lines of erased
    submissions taken out of its copies, at ingestion or an earlier retry (the ledger's count, which a reading of the
    copy without them cannot see again) and by this retry (`taken`)."""
    (before,) = con.execute("SELECT skipped FROM ingestion_log WHERE file_sha256 = ?", [sha]).fetchone() or (None,)
    prefix = f"{ERASED_LINES}: "
    earlier = sum(int(part[len(prefix):]) for part in (before or "").split("; ") if part.startswith(prefix) and part[len(prefix):].isdigit())
    total = earlier + taken
    return "; ".join(filter(None, [skipped, f"{prefix}{total}" if total else ""])) or None


@dg.op(pool="duckdb")
@reason_first
def retry_rejected_exports(context: dg.OpExecutionContext, home: RematchHome, identity: IdentityStore, warehouse: DuckDBResource) -> list[str]:
    """Read again the exports an older version refused or stored with withheld cells; one line per file."""
    home.prepare()
    outcomes = retry_exports(home, identity, warehouse)
    known = set(context.instance.get_dynamic_partitions(exports_partitions.name))
    missing = sorted({o.sha256 for o in outcomes} - known)
    if missing:  # files logged before the partitions existed
        context.instance.add_dynamic_partitions(exports_partitions.name, missing)
    for outcome in outcomes:
        (context.log.info if outcome.stored or outcome.status == "unchanged" else context.log.warning)(outcome.line())
        for line in outcome.warnings:
            context.log.warning(line)
        if outcome.status in ("ingested", "read_again", "still_rejected"):
            context.log_event(
                dg.AssetMaterialization(
                    asset_key="landed_export",
                    partition=outcome.sha256,
                    metadata=filled(
                        {
                            "dagster/row_count": outcome.rows,
                            "file_name": outcome.file_name,
                            "status": "rejected" if outcome.status == "still_rejected" else "ingested",
                            "retried": True,
                            "withheld_cells": outcome.withheld_after,
                            "erased_rows_left_out": outcome.erased_rows,
                            "error": outcome.reason if outcome.status == "still_rejected" else "",
                        }
                    ),
                )
            )
    stored = sum(o.stored for o in outcomes)
    context.log.info(f"{counted(stored, 'file')} retried, {len(outcomes) - stored} not stored again" if outcomes else "nothing to retry")
    return [o.line() for o in outcomes]


@dg.job(config=CONSOLE_LOGGER_RUN_CONFIG, description="Read again the exports an older version refused or stored with withheld cells (then validate_job runs).")
def retry_exports_job() -> None:
    retry_rejected_exports()

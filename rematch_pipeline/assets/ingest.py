"""landing/ → archive (by sha256), identity store and raw warehouse tables, with an ingestion log."""


import datetime as dt
import hashlib
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.failures import reason_first, stated
from rematch_pipeline.formats.canonical import COPIES_NAMED, LEFT_OUT_COLUMN, ParsedTable, read_anyway_lines
from rematch_pipeline.formats.detect import read_export
from rematch_pipeline.formats.erased import ERASED_LINES, Erased, ErasedLines, erased_lines, refused_file_lines
from rematch_pipeline.formats.redact import without_rows
from rematch_pipeline.formats.writers import replace_file
from rematch_pipeline.formats.limits import check_path_size
from rematch_pipeline.formats.errors import InputFileError, Violation
from rematch_pipeline.formats.landing import blank_where, blanked_without_consent, split_identity
from rematch_pipeline.resources.home import LANDING_KINDS, RematchHome, owner_only_files
from rematch_pipeline.resources.identity import IdentityStore, answers_hash
from rematch_pipeline.resources.warehouse import ERASURE_COPY, FILE_COLUMNS, INGESTION_LOG_COLUMNS, compact, warehouse_connection
from rematch_pipeline.schemas.parsing import parse_timestamp, utc_now
from rematch_pipeline.schemas.consent import refused_submissions, refuses, withdrawn_copies
from rematch_pipeline.wording import counted

# Editors and copy tools leave these while a file is still being written.
_PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")
# Windows Explorer writes these into a folder (a landing/ on a shared drive): no export.
_SYSTEM_FILES = frozenset({"desktop.ini", "thumbs.db"})


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
    skipped: str = ""  # submissions left out on purpose, e.g. "incomplete LimeSurvey responses: 2"
    warnings: tuple[str, ...] = ()  # what was read anyway, one line per sheet and kind (hidden rows or columns, a reader's warning), naming the file


_LOG_COLUMNS = ", ".join(INGESTION_LOG_COLUMNS)


def skipped_submissions(parsed: list[ParsedTable]) -> str:
    """What the readers left out on purpose, summed by reason over a file's tables ("" if nothing)."""
    counts: Counter[str] = Counter()
    for table in parsed:
        counts.update(table.skipped)
    return "; ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))


def _readable(path: Path) -> bool:
    """A complete file a person put there: not hidden, not an Office lock file, not a download in progress, not
    a file the operating system keeps."""
    return not path.name.startswith((".", "~$")) and not path.name.endswith(_PARTIAL_SUFFIXES) and path.name.lower() not in _SYSTEM_FILES


def landed_files(home: RematchHome) -> list[tuple[str, Path]]:
    """(landing kind, path) of every complete file in landing/, in a stable order."""
    found = []
    for kind in LANDING_KINDS:
        folder = home.landing(kind)
        if not folder.exists():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and _readable(path):
                found.append((kind, path))
    return found


def misplaced_files(home: RematchHome) -> list[str]:
    """One line per file in landing/ that ingestion does not read because of where it lies: directly in landing/
    (the kind folder says what a file holds) or in a folder below a kind folder. Paths are relative to the
    data home; file names are the operator's, not a household's."""
    landing = home.path / "landing"
    kinds = ", ".join(f"landing/{k}/" for k in LANDING_KINDS)
    lines = []
    if landing.exists():
        for path in sorted(landing.iterdir()):
            if path.is_file() and _readable(path):
                lines.append(f"landing/{path.name} is not read: it lies directly in landing/; move it into {kinds} by what it holds")
    for kind in LANDING_KINDS:
        folder = home.landing(kind)
        for sub in sorted(folder.iterdir()) if folder.exists() else []:
            if sub.is_dir() and not sub.name.startswith("."):
                inside = sum(1 for p in sub.rglob("*") if p.is_file() and _readable(p))
                if inside:
                    lines.append(
                        f"landing/{kind}/{sub.name}/: {counted(inside, 'file')} not read: ingestion reads the files in landing/{kind}/, not folders"
                        " in it (an ODK Central export goes in as its .zip); move them up"
                    )
    return lines


@dataclass(frozen=True)
class ConsentWithdrawals:
    """What refusals of consent withdraw, for the submissions one file touches (no cell values)."""

    refused: list[str]  # submission ids all of whose household copies a refusal withdraws: their members are blanked
    stored_copies: pl.DataFrame  # (file_sha256, sheet, file_row) of stored household rows a refusal withdraws
    incoming_copies: pl.Series  # per household row of the file: withdrawn (blank it before storing)
    # (submission_id, file_sha256) of submissions this file's consenting copy brings back after a refusal,
    # with each stored refusing household row (same submission or household) that had withdrawn them
    restored: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"submission_id": pl.Utf8, "file_sha256": pl.Utf8}))


_KEY_SCHEMA = {"file_sha256": pl.Utf8, "sheet": pl.Utf8, "file_row": pl.Int32}


def _related_household_rows(con: duckdb.DuckDBPyConnection, submission_ids: set[str], pseudonyms: set[str]) -> pl.DataFrame:
    """Stored household rows of these submissions or households, in ingestion order, and of every
    submission and household those rows name in turn: a refusal withdraws by either key, and a
    submission's every copy is needed to tell whether all of them are withdrawn."""
    columns = "submission_id, household_pseudonym, submitted_at, consent_processing, file_sha256, sheet, file_row, rowid AS row_id"
    while True:
        con.register("touched", pl.DataFrame({"s": sorted(submission_ids)}, schema={"s": pl.Utf8}).to_arrow())
        con.register("touched_households", pl.DataFrame({"p": sorted(pseudonyms)}, schema={"p": pl.Utf8}).to_arrow())
        # rowid order is ingestion order, as validation reads raw tables.
        stored = con.execute(
            f"SELECT {columns} FROM raw_households WHERE submission_id IN (SELECT s FROM touched)"
            " OR household_pseudonym IN (SELECT p FROM touched_households) ORDER BY rowid"
        ).pl()
        con.unregister("touched")
        con.unregister("touched_households")
        more_ids = set(stored["submission_id"].drop_nulls()) - submission_ids
        more_pseudonyms = set(stored["household_pseudonym"].drop_nulls()) - pseudonyms
        if not more_ids and not more_pseudonyms:
            return stored
        submission_ids |= more_ids
        pseudonyms |= more_pseudonyms


def consent_withdrawals(
    con: duckdb.DuckDBPyConnection,
    split: list[tuple[str, pl.DataFrame, pl.DataFrame]],
    replacing: str | None = None,
    after_row: int | None = None,
) -> ConsentWithdrawals:
    """Refusals among the stored household rows related to this file's rows and the file's own.

    Members may land in a file before or after their household (separate CSVs), a later copy
    of a submission (an edit) may refuse or consent again, and a household may refuse in a new
    questionnaire (another submission id), so the rule (schemas.consent) is applied to every stored
    copy of the submissions and households this file names, with the file's rows as the latest ingested.
    A file read again (retry) is placed where its rows go: its own earlier rows (`replacing`, its
    sha256) are left aside, and its rows come after the stored rows up to `after_row` (a rowid).
    """
    ids = {s for table, raw, _ in split if table in ("households", "members") for s in raw["submission_id"].drop_nulls()}
    incoming = pl.concat(
        [raw for table, raw, _ in split if table == "households"]
        or [pl.DataFrame(schema={"submission_id": pl.Utf8, "household_pseudonym": pl.Utf8})],
        how="diagonal",
    )
    if not ids:
        return ConsentWithdrawals([], pl.DataFrame(schema=_KEY_SCHEMA), pl.Series("withdrawn", [False] * incoming.height))
    stored = _related_household_rows(con, ids, set(incoming["household_pseudonym"].drop_nulls()))
    if replacing is not None:
        stored = stored.filter(pl.col("file_sha256") != replacing)
    # Rows are in rowid order: the file's rows go after those up to after_row (by default after all).
    at = stored.height if after_row is None else stored.filter(pl.col("row_id") <= after_row).height
    columns = ["submission_id", "household_pseudonym", "submitted_at", "consent_processing"]
    parts = [stored.head(at), incoming, stored.slice(at)] if incoming.height else [stored]
    rows = pl.concat([part.select(columns) for part in parts])
    withdrawn = withdrawn_copies(rows)
    refused = refused_submissions(rows, withdrawn).to_list()
    stored_withdrawn = pl.concat([withdrawn.head(at), withdrawn.slice(at + incoming.height)])
    # Refused before this file, not after: its consenting copy is here (an edit back to yes).
    before = stored.select(columns)
    back = set(refused_submissions(before, withdrawn_copies(before))) - set(refused)
    return ConsentWithdrawals(
        refused=refused,
        stored_copies=stored.filter(stored_withdrawn).select(list(_KEY_SCHEMA)).cast(_KEY_SCHEMA),
        incoming_copies=withdrawn.slice(at, incoming.height),
        restored=_refusals_of(stored, sorted(back)),
    )


def _refusals_of(stored: pl.DataFrame, submission_ids: list[str]) -> pl.DataFrame:
    """(submission_id, file_sha256) of the stored refusing household rows that withdrew each of
    these submissions: of the submission itself or of a household any copy of it belongs to."""
    refusing = stored.filter(refuses()).select("submission_id", "household_pseudonym", "file_sha256")
    copies = stored.filter(pl.col("submission_id").is_in(submission_ids)).select("submission_id", "household_pseudonym")
    by_household = copies.join(refusing.drop("submission_id"), on="household_pseudonym").drop("household_pseudonym")
    by_submission = refusing.filter(pl.col("submission_id").is_in(submission_ids)).drop("household_pseudonym")
    return pl.concat([by_submission, by_household]).unique().sort(["submission_id", "file_sha256"])


def members_arrived_while_refused(
    con: duckdb.DuckDBPyConnection, home: RematchHome, restored: pl.DataFrame, carried: set[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Member rows that were blanked on arrival only because their household's refusal stood then,
    read again from their archived export, for the submissions this file brings back: raw rows
    (with the stored file_sha256, sheet and file_row) and identity rows.

    Only the members validation will use are read again: those of the submission's latest members
    file, when it was ingested after the last refusing copy and carries no household copy of the
    submission itself (such a file's members belong to that withdrawn copy) - typically the members
    CSV of a Kobo or Central edit that landed before its households CSV. Submissions whose members
    this file carries (`carried`) take those. Every other blanked member row stays blank.
    """
    empty = pl.DataFrame(schema={"submission_id": pl.Utf8})
    restored = restored.filter(~pl.col("submission_id").is_in(sorted(carried)))
    if restored.is_empty():
        return empty, empty
    con.register("refusals", restored.to_arrow())
    files = con.execute(
        "WITH cut AS (SELECT r.submission_id, max(l.ingested_at) AS refused_at FROM refusals r"
        " JOIN ingestion_log l ON l.file_sha256 = r.file_sha256 GROUP BY r.submission_id),"
        " latest AS (SELECT m.submission_id, arg_max(m.file_sha256, l.ingested_at) AS file_sha256, max(l.ingested_at) AS at"
        " FROM raw_members m JOIN ingestion_log l ON l.file_sha256 = m.file_sha256"
        " WHERE m.submission_id IN (SELECT submission_id FROM cut) GROUP BY m.submission_id)"
        " SELECT t.file_sha256, any_value(l.file_name), any_value(l.archived_as), list(t.submission_id ORDER BY t.submission_id)"
        " FROM latest t JOIN cut ON t.submission_id = cut.submission_id JOIN ingestion_log l ON l.file_sha256 = t.file_sha256"
        " WHERE t.at > cut.refused_at AND NOT EXISTS (SELECT 1 FROM raw_households h"
        " WHERE h.file_sha256 = t.file_sha256 AND h.submission_id = t.submission_id)"
        " GROUP BY t.file_sha256 ORDER BY t.file_sha256"
    ).fetchall()
    con.unregister("refusals")
    raws, identities = [], []
    for sha, name, archived_as, submissions in files:
        archived = home.archive / archived_as if archived_as else None
        if archived is None or not archived.exists():  # removed by an operator: nothing to read again
            continue
        try:
            parsed = read_export(archived, archived.read_bytes(), as_landed=True)  # as it was read when it landed
        except InputFileError:  # it was read when it landed; an unreadable copy restores nothing
            continue
        for table in parsed:
            if table.table != "members":
                continue
            raw, identity_rows = split_identity(table, home.secret(), sha, name)
            wanted = pl.col("submission_id").is_in(submissions)
            # Matched by pseudonym (submission and position), which erasure's rewrite of the file
            # does not change; the row numbers the warehouse and identity store know are kept.
            stored = con.execute(
                "SELECT member_pseudonym, sheet, file_row FROM raw_members WHERE file_sha256 = ?", [sha]
            ).pl()
            raw = raw.filter(wanted).drop("sheet", "file_row").join(stored, on="member_pseudonym")
            identity_rows = identity_rows.filter(wanted).drop("file_row").join(stored.drop("sheet"), on="member_pseudonym")
            raws.append(raw)
            identities.append(identity_rows.select(sorted(identity_rows.columns)))
    if not raws:
        return empty, empty
    return pl.concat(raws), pl.concat(identities)


def without_consent(split: list[tuple[str, pl.DataFrame, pl.DataFrame]], consent: ConsentWithdrawals) -> list[tuple[str, pl.DataFrame, pl.DataFrame]]:
    """The file's rows with what a refusal withdraws blanked, and no identity rows of a refusing household or its members."""
    refused = pl.Series(consent.refused, dtype=pl.Utf8).implode()
    result = []
    offset = 0
    for table, raw, identity_rows in split:
        if table == "households":
            raw = blank_where(table, raw, consent.incoming_copies.slice(offset, raw.height))
            offset += raw.height
        elif table == "members":
            raw = blank_where(table, raw, pl.col("submission_id").is_in(refused))
        if table in ("households", "members"):
            identity_rows = identity_rows.filter(~pl.col("submission_id").is_in(refused).fill_null(False))
        result.append((table, raw, identity_rows))
    return result


def withdrawn_submissions(con: duckdb.DuckDBPyConnection, split: list[tuple[str, pl.DataFrame, pl.DataFrame]], consent: ConsentWithdrawals) -> frozenset[str]:
    """Submission ids of which a copy, this file's or a stored one, a refusal withdraws (blanked or to be blanked)."""
    incoming = [raw["submission_id"] for table, raw, _ in split if table == "households"]
    ids = set(pl.concat(incoming).filter(consent.incoming_copies).drop_nulls()) if incoming and consent.incoming_copies.len() else set()
    if consent.stored_copies.height:
        con.register("withdrawn_keys", consent.stored_copies.to_arrow())
        ids |= {r[0] for r in con.execute(
            "SELECT DISTINCT h.submission_id FROM raw_households h JOIN withdrawn_keys w ON h.file_sha256 = w.file_sha256"
            " AND h.sheet IS NOT DISTINCT FROM w.sheet AND h.file_row = w.file_row WHERE h.submission_id IS NOT NULL"
        ).fetchall()}
        con.unregister("withdrawn_keys")
    return frozenset(ids)


def blank_stored(con: duckdb.DuckDBPyConnection, consent: ConsentWithdrawals, sha: str) -> int:
    """Blank stored rows that a refusal in this file withdraws (in the caller's transaction); the rows changed."""
    changed = 0
    if consent.stored_copies.height:
        columns = blanked_without_consent("households")
        con.register("withdrawn_copies", consent.stored_copies.to_arrow())
        changed += len(con.execute(
            f"UPDATE raw_households h SET {', '.join(f'{c} = NULL' for c in columns)} FROM withdrawn_copies w"
            " WHERE h.file_sha256 = w.file_sha256 AND h.sheet IS NOT DISTINCT FROM w.sheet AND h.file_row = w.file_row"
            f" AND h.file_sha256 <> ? AND ({' OR '.join(f'h.{c} IS NOT NULL' for c in columns)}) RETURNING 1",
            [sha],
        ).fetchall())
        con.unregister("withdrawn_copies")
    if consent.refused:
        columns = blanked_without_consent("members")
        con.register("refused", pl.DataFrame({"s": consent.refused}, schema={"s": pl.Utf8}).to_arrow())
        changed += len(con.execute(
            f"UPDATE raw_members SET {', '.join(f'{c} = NULL' for c in columns)}"
            " WHERE submission_id IN (SELECT s FROM refused) AND file_sha256 <> ?"
            f" AND ({' OR '.join(f'{c} IS NOT NULL' for c in columns)}) RETURNING 1",
            [sha],
        ).fetchall())
        con.unregister("refused")
    return changed


def restore_members(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> None:
    """Fill the analytic fields of stored member rows again (members_arrived_while_refused), in the caller's transaction."""
    if rows.is_empty():
        return
    columns = blanked_without_consent("members")
    con.register("restored_members", rows.select("file_sha256", "member_pseudonym", *columns).to_arrow())
    con.execute(
        f"UPDATE raw_members m SET {', '.join(f'{c} = r.{c}' for c in columns)} FROM restored_members r"
        " WHERE m.file_sha256 = r.file_sha256 AND m.member_pseudonym = r.member_pseudonym"
    )
    con.unregister("restored_members")


def ingest_file(kind: str, path: Path, home: RematchHome, identity: IdentityStore, warehouse: DuckDBResource) -> FileOutcome:
    """Archive one landed file and load it; the same bytes are never loaded twice.

    What a refusal of consent withdraws is blanked here, whichever file came first: the file's
    rows before they are stored, rows stored earlier in the same transaction (then the DuckDB
    files are compacted), and the refusing households' member names and birth dates are deleted.
    """
    sha = sha256_of(path)
    copy_sha: str | None = None  # of the landed file's content without the lines of erased submissions
    with warehouse_connection(warehouse) as con:
        if con.execute("SELECT 1 FROM ingestion_log WHERE file_sha256 = ?", [sha]).fetchone():
            return FileOutcome(path.name, kind, sha, "already_ingested")
    archived = home.archive / f"{sha}{path.suffix.lower()}"
    if not archived.exists():
        # The archived export holds every identifying cell of the file: owner only, like the identity store.
        with owner_only_files():
            shutil.copyfile(path, archived)
        archived.chmod(0o600)
    now = utc_now()
    erased: ErasedLines | None = None
    try:
        check_path_size(path)  # before reading: an oversized file is never loaded into memory
        data = path.read_bytes()
        so_far = erased_so_far(warehouse)
        try:
            parsed = read_export(path, data)
        except InputFileError:
            # A refused file's copies must not keep an erased household's lines until a reader reads it: its lines
            # naming an erased submission are found in its cells and taken out the same way (None: keep the refusal).
            erased = refused_file_lines(data, path.name, home.secret(), so_far)
            if erased is None:
                raise
        else:
            erased = erased_lines(parsed, home.secret(), so_far)
        if erased is not None:
            archived, copy_sha = _without_erased_lines(path, archived, erased, warehouse)
            if copy_sha is None:  # that content is stored: its record and count still hold for this file
                return _content_stored(path, kind, sha, archived, erased, warehouse, now)
            # Read from the copy (now also the landed file): stored rows and a refusal name the copy's row numbers.
            parsed = read_export(path, archived.read_bytes())
        split = [(p.table, *split_identity(p, home.secret(), sha, path.name)) for p in parsed]
    except InputFileError as exc:
        outcome = FileOutcome(path.name, kind, sha, "rejected", error=str(exc))
        taken = f"{ERASED_LINES}: {erased.count}" if copy_sha is not None and erased is not None and erased.count else None
        with warehouse_connection(warehouse) as con:
            con.execute(
                f"INSERT INTO ingestion_log ({_LOG_COLUMNS}) VALUES (?, ?, ?, ?, 'rejected', ?, 0, ?, ?, ?)",
                [sha, path.name, kind, archived.name, exc.violation.table or "", outcome.error, now, taken],
            )
            if copy_sha is not None:  # the landed copy without the erased lines is refused for the same reason
                _log_copy(con, copy_sha, path.name, kind, archived.name, now)
        return outcome
    with warehouse_connection(warehouse) as con:
        consent = consent_withdrawals(con, split)
        # Submissions stored before from another file with other answers: said once per households table.
        withdrawn = withdrawn_submissions(con, split, consent)
        stored_copies = [
            Violation(path.name, None, None, rule, sheet=p.sheet).describe()
            for p, (table, raw, identity_rows) in zip(parsed, split)
            if table == "households" and (rule := differing_stored_copies(con, identity, raw, identity_rows, sha, withdrawn=withdrawn)) is not None
        ]
        carried = {s for table, raw, _ in split if table == "members" for s in raw["submission_id"].drop_nulls()}
        restored_members, restored_identity = members_arrived_while_refused(con, home, consent.restored, carried)
    split = without_consent(split, consent)
    # Identity rows first: if the warehouse write fails, a retry re-inserts the same keys harmlessly.
    for table, _, identity_rows in split:
        identity.store(table, identity_rows)
    identity.store("members", restored_identity)
    forgotten = identity.forget_refused(consent.refused)
    rows = sum(raw.height for _, raw, _ in split)
    tables = " ".join(sorted({t for t, _, _ in split}))
    skipped = "; ".join(filter(None, [skipped_submissions(parsed), f"{ERASED_LINES}: {erased.count}" if copy_sha is not None and erased.count else ""]))
    warnings = [*read_anyway_lines(path.name, parsed), *stored_copies]
    with warehouse_connection(warehouse) as con:
        con.execute("BEGIN TRANSACTION")
        for table, raw, _ in split:
            con.register("incoming", raw.to_arrow())
            con.execute(f"INSERT INTO raw_{table} ({', '.join(raw.columns)}) SELECT * FROM incoming")
            con.unregister("incoming")
        if copy_sha is not None and erased is not None:
            record_erased_unlinked(con, sha, path.name, erased, now)
        # Members (and earlier copies) stored before the refusal are blanked in the same transaction.
        blanked = blank_stored(con, consent, sha)
        restore_members(con, restored_members)
        con.execute(
            f"INSERT INTO ingestion_log ({_LOG_COLUMNS}) VALUES (?, ?, ?, ?, 'ingested', ?, ?, NULL, ?, ?)",
            [sha, path.name, kind, archived.name, tables, rows, now, skipped or None],
        )
        if warnings:
            con.execute("UPDATE ingestion_log SET warnings = ? WHERE file_sha256 = ?", ["\n".join(warnings), sha])
        if copy_sha is not None:
            _log_copy(con, copy_sha, path.name, kind, archived.name, now)
        con.execute("COMMIT")
    # DuckDB keeps the bytes of updated and deleted values in the file: rewrite it, as erasure does.
    if blanked:
        compact(Path(warehouse.database))
    if forgotten:
        compact(home.identity_path)
    return FileOutcome(path.name, kind, sha, "ingested", rows, tables, skipped=skipped, warnings=tuple(warnings))


# Said once per landing households file (ingestion_log.warnings, `rematch ingest`'s warning: lines) where submissions
# of it were stored before from another file with other answers: a later export with an edited answer, or another form
# with the same ids. One id in two files is a re-export (identical: silent). Never a value: counts, rows, file names.
STORED_COPIES_DIFFER = (
    "{ids} (column submission_id, rows {rows}{more}) stored before from {others} with different answers; one submission"
    " id is one submission (contract), so validation uses one copy: the one with the latest submitted_at (to the"
    " minute), of copies submitted in the same minute the one ingested last; here this file's for {ours},"
    " {whose} for {theirs}"
)
# How many other files the line names (the count of ids covers all of them).
_FILES_NAMED = 3


def differing_stored_copies(
    con: duckdb.DuckDBPyConnection,
    identity: IdentityStore,
    raw: pl.DataFrame,
    identity_rows: pl.DataFrame,
    sha: str,
    landed_at: dt.datetime | None = None,
    withdrawn: frozenset[str] = frozenset(),
) -> str | None:
    """The rule (STORED_COPIES_DIFFER) where submissions of a landing households table (its raw rows and identity
    rows, as split_identity gives them) were stored from other files with other answers; None where there are none
    or every stored copy is the same. Compared are every raw column but the file's own (provenance, the left-out
    reason) and the identifying cells, both as stored, so a re-export of the same answers is silent in any format
    that reads them alike, as is a copy equal to one stored from another file (the next export after an edit). Rows a tool marks as not to be used are not compared (as canonical.with_differing_copies),
    nor refusing copies (a refusal withdraws the submission whichever copy is latest). Compared inside each DuckDB
    file by a hash of the answers, which returns only the stored copies that differ: fetching every stored copy of a
    re-export into Python cost 6 % of its ingestion (docs/decisions.md, thirty-fifth session). `landed_at`: a file
    read again in its place (assets.retry), for which the copies of files that landed after it win a tie. `withdrawn`
    (withdrawn_submissions): submissions a refusal withdraws, not compared: their copies are blanked, and whichever
    copy is latest the refusal decides (a re-export of the answers a refusal blanked was said to differ)."""
    # A refusing copy is no answer to compare: it withdraws the submission whichever copy is latest (schemas.consent).
    new = raw.filter(
        pl.col("submission_id").is_not_null() & pl.col(LEFT_OUT_COLUMN).is_null() & ~refuses() & ~pl.col("submission_id").is_in(sorted(withdrawn))
    )
    if new.is_empty():
        return None
    answers = [c for c in raw.columns if c not in (*FILE_COLUMNS, LEFT_OUT_COLUMN)]
    cells = [c for c in identity_rows.columns if c not in ("household_pseudonym", "submission_id", *FILE_COLUMNS)]
    con.register("landing_rows", new.select(answers).to_arrow())
    # Stored rows of these submissions from other files that no row of this file equals, answer by answer (a hash
    # join on DuckDB's hash of every answer: a collision would only leave a difference unsaid).
    keys = con.execute(
        "SELECT r.submission_id, r.file_sha256, r.file_row FROM raw_households r"
        f" ANTI JOIN (SELECT {answers_hash('n', answers)} AS h FROM landing_rows n) n ON n.h = {answers_hash('r', answers)}"
        " WHERE r.submission_id IN (SELECT submission_id FROM landing_rows) AND r.file_sha256 <> ?",
        [sha],
    ).pl()
    # The same for the identifying cells, in the identity store.
    landed = new.select("submission_id", "file_row").join(identity_rows.select("file_row", *cells), on="file_row", how="left").drop("file_row")
    keys = pl.concat([keys, identity.differing_household_copies(landed, sha)]).unique()
    con.unregister("landing_rows")
    if keys.is_empty():
        return None
    con.register("differing_keys", keys.to_arrow())
    # A submission of which another file's stored copy equals this file's (in both stores) is left out: the tools
    # export every submission each time, so an edited copy comes again with every later export, and it changes
    # nothing validation uses (its submitted_at is that stored copy's). The first file's copies were said each week.
    differing = con.execute(
        "SELECT r.submission_id, r.submitted_at, r.consent_processing, r.file_name, l.ingested_at FROM raw_households r"
        " JOIN differing_keys USING (submission_id, file_sha256, file_row)"
        " LEFT JOIN (SELECT file_sha256, min(ingested_at) AS ingested_at FROM ingestion_log WHERE status = 'ingested' GROUP BY ALL) l"
        " USING (file_sha256) WHERE r.left_out IS NULL AND r.submission_id NOT IN ("
        "SELECT s.submission_id FROM raw_households s ANTI JOIN differing_keys d"
        " ON d.submission_id = s.submission_id AND d.file_sha256 = s.file_sha256 AND d.file_row = s.file_row"
        " WHERE s.submission_id IN (SELECT submission_id FROM differing_keys) AND s.file_sha256 <> ? AND s.left_out IS NULL)",
        [sha],
    ).pl().filter(~refuses())
    con.unregister("differing_keys")
    if differing.is_empty():
        return None
    ours = new.filter(pl.col("submission_id").is_in(differing["submission_id"].implode())).sort("file_row")
    ids = ours["submission_id"].unique(maintain_order=True)
    firsts = ours.group_by("submission_id", maintain_order=True).agg(pl.col("file_row").cast(pl.Int64))
    rows = "; ".join(", ".join(str(r) for r in numbers) for numbers in firsts["file_row"].head(COPIES_NAMED).to_list())
    files = differing.group_by("file_name", "ingested_at").len().sort("ingested_at", "file_name", nulls_last=True)
    named = [f"{name} (ingested {at:%Y-%m-%d %H:%M} UTC)" if at is not None else name for name, at, _ in files.head(_FILES_NAMED).iter_rows()]
    if files.height > _FILES_NAMED:
        named.append(f"{counted(files.height - _FILES_NAMED, 'other file')}")
    this_file = sum(_this_copy_used(text, differing.filter(pl.col("submission_id") == submission), landed_at) for submission, text in (
        ours.unique("submission_id", keep="last", maintain_order=True).select("submission_id", "submitted_at").iter_rows()
    ))
    return STORED_COPIES_DIFFER.format(
        ids=counted(ids.len(), "submission id"),
        rows=rows,
        more=" …" if ids.len() > COPIES_NAMED else "",
        others=", ".join(named),
        ours=this_file,
        theirs=ids.len() - this_file,
        whose="an earlier file's" if landed_at is None else "another file's",  # a file read again: others landed after it too
    )


def _this_copy_used(ours: str | None, theirs: pl.DataFrame, landed_at: dt.datetime | None = None) -> bool:
    """Whether validation (validation._latest) uses the landing file's copy over stored ones that differ (`theirs`:
    submitted_at, ingested_at): the latest submitted_at to the minute, a tie to the file ingested last (this one; for
    a file read again in its place, landed at `landed_at`, a file that landed after it), as is a time it cannot read
    on this copy (placed after what was ingested before it). Stored copies equal to it have its time and change nothing."""
    def minute(text: str | None) -> dt.datetime | None:
        moment = parse_timestamp(text)
        return moment.replace(second=0, microsecond=0) if moment is not None else None

    own = minute(ours)
    for text, ingested_at in theirs.select("submitted_at", "ingested_at").iter_rows():
        other = minute(text)
        after = landed_at is not None and ingested_at is not None and ingested_at > landed_at
        if other is None:
            continue
        if (own is None and after) or (own is not None and (other > own or (other == own and after))):
            return False
    return True


def record_erased_unlinked(con: duckdb.DuckDBPyConnection, sha: str, name: str, erased: ErasedLines, now: dt.datetime) -> None:
    """Per members sheet, the count of unlinked member lines taken out with an erased household's (erased_unlinked_members,
    no value): the sheet's households stay held out, as the row may have been one of theirs. Ingestion and a retry
    (assets.retry) record alike, in the caller's transaction."""
    for sheet, count in sorted(erased.unlinked.items(), key=lambda item: item[0] or ""):
        con.execute("INSERT INTO erased_unlinked_members VALUES (?, ?, ?, ?, ?)", [sha, name, sheet, count, now])


def _content_stored(
    path: Path, kind: str, sha: str, archived: Path, erased: ErasedLines, warehouse: DuckDBResource, now: dt.datetime
) -> FileOutcome:
    """A landed file whose content without its erased lines was logged before (archived as `archived`): nothing new
    to store, but what was taken out is said (`left out: …`) and recorded as for a file ingested: the unlinked member
    lines (erased_unlinked_members) against the stored file of that content, whose households they may belong to.
    The file's own sha256 is logged (an erasure copy: landing those bytes again is a no-op, not a second record)."""
    skipped = f"{ERASED_LINES}: {erased.count}" if erased.count else None
    with warehouse_connection(warehouse) as con:
        con.execute("BEGIN TRANSACTION")
        stored = con.execute(
            "SELECT file_sha256 FROM ingestion_log WHERE archived_as = ? AND status = 'ingested' ORDER BY file_sha256", [archived.name]
        ).fetchall()
        for (stored_sha,) in stored:
            record_erased_unlinked(con, stored_sha, path.name, erased, now)
        _log_copy(con, sha, path.name, kind, archived.name, now, skipped)
        con.execute("COMMIT")
    return FileOutcome(path.name, kind, sha, "already_ingested", skipped=skipped or "")


def erased_so_far(warehouse: DuckDBResource) -> Erased:
    """The erasures recorded (keyed pseudonyms), and the households and submissions stored."""
    with warehouse_connection(warehouse) as con:
        households = frozenset(r[0] for r in con.execute("SELECT household_pseudonym FROM erasures").fetchall())
        submissions = frozenset(r[0] for r in con.execute("SELECT submission_pseudonym FROM erased_submissions").fetchall())
        if not households and not submissions:
            return Erased(households, submissions, frozenset(), frozenset())
        stored = con.execute("SELECT DISTINCT household_pseudonym, submission_id FROM raw_households").fetchall()
    return Erased(households, submissions, frozenset(h for h, _ in stored if h), frozenset(s for _, s in stored if s))


def _log_copy(
    con: duckdb.DuckDBPyConnection, sha: str, name: str, kind: str, archived_as: str, now: dt.datetime, skipped: str | None = None
) -> None:
    """Log the landed file's new content (without the lines of erased submissions), or a landed file whose content
    without them was stored before: landing it again is a no-op. skipped: what was left out of it."""
    con.execute(
        f"INSERT INTO ingestion_log ({_LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, '', 0, NULL, ?, ?)",
        [sha, name, kind, archived_as, ERASURE_COPY, now, skipped],
    )


def log_rewritten_copy(con: duckdb.DuckDBPyConnection, file_sha256: str, previous_name: str, copy_sha256: str, copy_name: str, now: dt.datetime) -> None:
    """In the caller's transaction: the ledger entries of a file (`file_sha256`) or of its replaced archived copy
    (`previous_name`) name the rewritten copy, whose content is logged as an erasure copy (landing it again is a
    no-op). Erasure and a retried refused file rewrite copies this way."""
    con.execute("UPDATE ingestion_log SET archived_as = ? WHERE archived_as = ? OR file_sha256 = ?", [copy_name, previous_name, file_sha256])
    con.execute(
        f"INSERT INTO ingestion_log ({_LOG_COLUMNS}) SELECT ?, file_name, landing_kind, ?, ?, '', 0, NULL, ?, NULL"
        " FROM ingestion_log WHERE file_sha256 = ? AND NOT EXISTS (SELECT 1 FROM ingestion_log WHERE file_sha256 = ?)",
        [copy_sha256, copy_name, ERASURE_COPY, now, file_sha256, copy_sha256],
    )


def replace_landed_copies(home: RematchHome, newer: dict[str, Path], deleted: frozenset[str] = frozenset()) -> None:
    """One pass over landing/: a landed file whose content (sha256) has a rewritten copy in `newer` gets its bytes, one
    whose content is in `deleted` goes."""
    for _, path in landed_files(home):
        old = sha256_of(path)
        if old in newer:
            replace_file(path, newer[old].read_bytes())
        elif old in deleted:
            path.unlink(missing_ok=True)


def _without_erased_lines(path: Path, archived: Path, erased: ErasedLines, warehouse: DuckDBResource) -> tuple[Path, str | None]:
    """The landed file and its archived copy without the lines of erased submissions: the new
    archived copy and its sha256 (None: that content was logged before, nothing to store). Its
    rows are then read from it, so they are numbered like the rows of a file erasure rewrote."""
    data = without_rows(path.read_bytes(), erased.rows, path.name, erased.unlink)
    copy_sha = hashlib.sha256(data).hexdigest()
    with warehouse_connection(warehouse) as con:
        logged = con.execute("SELECT 1 FROM ingestion_log WHERE file_sha256 = ?", [copy_sha]).fetchone() is not None
    copy = archived.with_name(f"{copy_sha}{path.suffix.lower()}")
    if not logged:
        replace_file(copy, data, 0o600)  # an archived export stays owner-only
    replace_file(path, data)
    archived.unlink(missing_ok=True)  # the original held the erased lines
    return copy, None if logged else copy_sha


exports_partitions = dg.DynamicPartitionsDefinition(name="exports")


class LandedFileConfig(dg.Config):
    """Which landed file a partition (its sha256) came from; empty = search landing/ for it."""

    path: str = ""
    kind: str = ""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_landed(home: RematchHome, sha: str, config: LandedFileConfig) -> tuple[str, Path]:
    """The landed file with this content; fails clearly when it is gone or changed."""
    if config.path:
        path = Path(config.path)
        if path.exists() and sha256_of(path) == sha:
            return config.kind or path.parent.name, path
    for kind, path in landed_files(home):
        if sha256_of(path) == sha:
            return kind, path
    raise dg.Failure(f"no file in landing/ has content {sha[:12]}…; it was moved or changed after it was detected")


@dg.asset(group_name="ingest", pool="duckdb", kinds={"duckdb"}, partitions_def=exports_partitions)
@reason_first
def landed_export(
    context: dg.AssetExecutionContext,
    config: LandedFileConfig,
    home: RematchHome,
    identity: IdentityStore,
    warehouse: DuckDBResource,
) -> dg.MaterializeResult:
    """One landed export (partition = its sha256): archived unchanged, PII to the identity store, the rest to raw tables."""
    home.prepare()
    kind, path = find_landed(home, context.partition_key, config)
    outcome = ingest_file(kind, path, home, identity, warehouse)
    if outcome.status == "rejected":
        # The run fails: a refused file ran green in the Runs list and its partition showed materialized like a
        # stored one, the reason only in one log line. Its failure's first red line is the reason (file, row,
        # column, rule); the ledger (ingestion_log) records it, and the same bytes are not read again.
        raise stated(
            f"rejected {outcome.error}; nothing of this file is stored: fix it and land it again",
            {"file_name": path.name, "landing_folder": kind, "status": outcome.status},
        )
    skipped = f"; left out: {outcome.skipped}" if outcome.skipped else ""
    context.log.info(f"{path.name}: {outcome.status}, {counted(outcome.rows, 'row')} into {outcome.tables or '-'}{skipped}")
    for line in outcome.warnings:
        context.log.warning(line)
    return dg.MaterializeResult(
        metadata=filled(
            {
                "dagster/row_count": outcome.rows,
                "file_name": path.name,
                "landing_folder": kind,
                "status": outcome.status,
                "tables": outcome.tables,
                "error": outcome.error,
                "skipped": outcome.skipped,
            }
        )
    )


def filled(metadata: dict[str, object]) -> dict[str, object]:
    """Metadata without its empty text entries: the UI listed `error` and `skipped` with nothing beside them for
    every file ingested whole, as if something had gone wrong unsaid (counts stay, 0 says something)."""
    return {key: value for key, value in metadata.items() if value != ""}


def pending_exports(home: RematchHome, known: set[str], settle_seconds: float = 0.0) -> list[tuple[str, Path, str]]:
    """(kind, path, sha256) of landed files whose content is not in `known`, one per content.

    Files modified less than `settle_seconds` ago may still be being written and wait for the next look.
    """
    import time

    pending: dict[str, tuple[str, Path, str]] = {}
    now = time.time()
    for kind, path in landed_files(home):
        if now - path.stat().st_mtime < settle_seconds:
            continue
        sha = sha256_of(path)
        if sha not in known and sha not in pending:
            pending[sha] = (kind, path, sha)
    return list(pending.values())


def ingested_hashes(warehouse: DuckDBResource) -> set[str]:
    """sha256 of every file already in the ingestion log (ingested or rejected)."""
    with warehouse_connection(warehouse) as con:
        return {r[0] for r in con.execute("SELECT file_sha256 FROM ingestion_log").fetchall()}


def rejected_hashes(warehouse: DuckDBResource) -> set[str]:
    """sha256 of every file the ingestion log records as rejected."""
    with warehouse_connection(warehouse) as con:
        return {r[0] for r in con.execute("SELECT file_sha256 FROM ingestion_log WHERE status = 'rejected'").fetchall()}


def _logged_since(warehouse: DuckDBResource, column: str, since: dt.datetime | None) -> list[tuple[str, str]]:
    """(file name, the ingestion log's column) where it is set, for files ingested (or retried) since then, oldest first."""
    with warehouse_connection(warehouse) as con:
        return con.execute(
            f"SELECT file_name, {column} FROM ingestion_log WHERE {column} IS NOT NULL"
            " AND (? IS NULL OR ingested_at >= ? OR retried_at >= ?) ORDER BY ingested_at, file_name",
            [since, since, since],
        ).fetchall()


def files_with_skipped(warehouse: DuckDBResource, since: dt.datetime | None = None) -> list[str]:
    """"file: what its readers left out" for files ingested (or retried) since then, oldest first."""
    return [f"{name}: {skipped}" for name, skipped in _logged_since(warehouse, "skipped", since)]


def files_with_warnings(warehouse: DuckDBResource, since: dt.datetime | None = None) -> list[str]:
    """The lines of what files ingested (or retried) since then had read anyway (hidden rows or columns, a reader's warnings), oldest first."""
    return [line for _, text in _logged_since(warehouse, "warnings", since) for line in text.splitlines()]


def rejected_files(warehouse: DuckDBResource, since: dt.datetime | None = None) -> pl.DataFrame:
    """Files rejected at ingestion (name and error), newest first."""
    with warehouse_connection(warehouse) as con:
        return con.execute(
            "SELECT file_name, error, ingested_at FROM ingestion_log WHERE status = 'rejected'"
            " AND (? IS NULL OR ingested_at >= ?) ORDER BY ingested_at DESC",
            [since, since],
        ).pl()

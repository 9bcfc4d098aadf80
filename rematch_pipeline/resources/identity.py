"""The identity store: the only place where identifying fields (PII) are kept.

It is a DuckDB file of its own, separate from the warehouse. Analytic tables carry keyed
pseudonyms (HMAC-SHA256 with a secret that lives neither in the repo nor in the warehouse).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

import dagster as dg

from rematch_pipeline.resources.home import RematchHome, owner_only_files
from rematch_pipeline.schemas.parsing import utc_now

_DDL = """
CREATE TABLE IF NOT EXISTS household_identity (
    household_pseudonym VARCHAR, submission_id VARCHAR, household_ref VARCHAR,
    contact_name VARCHAR, contact_phone VARCHAR, contact_email VARCHAR, current_address VARCHAR,
    linked_household_refs VARCHAR, file_sha256 VARCHAR, file_row INTEGER,
    PRIMARY KEY (submission_id, file_sha256, file_row)
);
CREATE TABLE IF NOT EXISTS member_identity (
    member_pseudonym VARCHAR, submission_id VARCHAR, member_name VARCHAR, date_of_birth VARCHAR,
    file_sha256 VARCHAR, file_row INTEGER,
    PRIMARY KEY (file_sha256, file_row, member_pseudonym)
);
CREATE TABLE IF NOT EXISTS municipality_contacts (
    municipality_id VARCHAR, submission_id VARCHAR, contact_name VARCHAR, contact_email VARCHAR,
    contact_phone VARCHAR, notes VARCHAR, file_sha256 VARCHAR, file_row INTEGER,
    PRIMARY KEY (file_sha256, file_row)
);
CREATE TABLE IF NOT EXISTS decision_identity (
    household_pseudonym VARCHAR, household_ref VARCHAR, file_sha256 VARCHAR, file_row INTEGER,
    PRIMARY KEY (file_sha256, file_row)
);
CREATE TABLE IF NOT EXISTS erasures (
    household_pseudonym VARCHAR, erased_at TIMESTAMP
);
"""

IDENTITY_TABLES: dict[str, str] = {
    "households": "household_identity",
    "members": "member_identity",
    "municipalities": "municipality_contacts",
    "decisions": "decision_identity",
}


def answers_hash(alias: str, columns: list[str]) -> str:
    """SQL: DuckDB's hash of a row's columns (of table `alias`), the same for equal answers in any DuckDB file (nulls
    alike): two copies of a submission are compared by it (ingest.differing_stored_copies)."""
    return "hash(" + ", ".join(f'{alias}."{c}"' for c in columns) + ")"


def pseudonym(secret: bytes, kind: str, value: str) -> str:
    """Keyed pseudonym of one identifying value; `kind` keeps namespaces apart (H- households, P- persons)."""
    digest = hmac.new(secret, f"{kind}\x1f{value.strip()}".encode(), hashlib.sha256).hexdigest()
    return f"{kind[0].upper()}-{digest[:20]}"


def lists_token_sql(column: str) -> str:
    """SQL: whether a column of whitespace-separated values (linked household references or
    their pseudonyms) lists the parameter $token."""
    return f"list_contains(regexp_split_to_array(trim({column}), '\\s+'), $token)"


def without_token_sql(column: str) -> str:
    """SQL: that column without $token, the other values joined by one space (NULL when none is left)."""
    return f"NULLIF(array_to_string(list_filter(regexp_split_to_array(trim({column}), '\\s+'), lambda v: v <> $token), ' '), '')"


def _owner_only(path: Path) -> None:
    """Mode 0600 for a file of identity data, as for secret.key and proposals.csv: DuckDB creates files
    with the process umask (usually 0644), which let every local user read every name and birth date."""
    if path.exists() and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


def _migrate_member_key(con: duckdb.DuckDBPyConnection) -> None:
    """member_identity keyed by file and row alone (before 2026-12-05) kept one person per line: the members
    of a LimeSurvey response or a legacy Kobo CSV row share their household's line and replaced each other.
    Such a store gets the key with member_pseudonym; what it lost comes back with `rematch ingest --retry-rejected`
    only for withheld files, so such exports are to be landed again (docs/decisions.md)."""
    key = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints()"
        " WHERE table_name = 'member_identity' AND constraint_type = 'PRIMARY KEY'"
    ).fetchone()
    if key is None or "member_pseudonym" in key[0]:
        return
    con.execute("BEGIN TRANSACTION")
    con.execute("ALTER TABLE member_identity RENAME TO member_identity_old")
    con.execute(_DDL)
    con.execute("INSERT INTO member_identity SELECT * FROM member_identity_old")
    con.execute("DROP TABLE member_identity_old")
    con.execute("COMMIT")


class IdentityStore(dg.ConfigurableResource):
    """The identity store of the data home (identity.duckdb: names, contacts, birth dates, references), kept apart
    from every other table, and the key of the pseudonyms. Nothing to set here."""

    # The docstring is the resource's description in the Launchpad; for code: PII storage and the pseudonymiser.

    home: RematchHome

    def pseudonymise(self, kind: str, values: pl.Series) -> pl.Series:
        """Pseudonyms for a column of identifying values; empty values stay empty."""
        secret = self.home.secret()
        return values.map_elements(
            lambda v: pseudonym(secret, kind, v) if v and v.strip() else None, return_dtype=pl.Utf8
        )

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the identity store with its tables created."""
        self.home.path.mkdir(parents=True, exist_ok=True)
        # The store and its write-ahead log are created owner-only; a store made before is fixed below.
        with owner_only_files():
            con = duckdb.connect(str(self.home.identity_path))
            try:
                _owner_only(self.home.identity_path)
                con.execute(_DDL)
                _migrate_member_key(con)
                yield con
            finally:
                con.close()

    def store(self, table: str, rows: pl.DataFrame) -> None:
        """Insert identity rows of a questionnaire table (idempotent per file and row)."""
        if rows.is_empty():
            return
        target = IDENTITY_TABLES[table]
        with self.connect() as con:
            con.register("incoming", rows.to_arrow())
            columns = ", ".join(rows.columns)
            con.execute(f"INSERT OR REPLACE INTO {target} ({columns}) SELECT {columns} FROM incoming")
            con.unregister("incoming")

    def replace_file(self, file_sha256: str, rows: list[tuple[str, pl.DataFrame]]) -> None:
        """The identity rows of one file read again (retry): its earlier rows go and these take their
        place, in one transaction (row numbers may differ from the earlier reading's)."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            for target in IDENTITY_TABLES.values():
                con.execute(f"DELETE FROM {target} WHERE file_sha256 = ?", [file_sha256])
            for table, frame in rows:
                if frame.is_empty():
                    continue
                con.register("incoming", frame.to_arrow())
                columns = ", ".join(frame.columns)
                con.execute(f"INSERT OR REPLACE INTO {IDENTITY_TABLES[table]} ({columns}) SELECT {columns} FROM incoming")
                con.unregister("incoming")
            con.execute("COMMIT")

    def renumber_rows(self, dropped: dict[str, pl.DataFrame]) -> None:
        """Identity rows follow their lines into an export rewritten without some lines (erasure): per
        questionnaire table, (file_sha256, file_row) of the lines gone; rows that pointed at one go,
        rows below one move up. In one transaction."""
        dropped = {table: lines for table, lines in dropped.items() if not lines.is_empty()}
        if not dropped:
            return
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            for table, lines in dropped.items():
                target = IDENTITY_TABLES[table]
                con.register("dropped_lines", lines.to_arrow())
                con.execute(
                    f"DELETE FROM {target} t WHERE EXISTS (SELECT 1 FROM dropped_lines d WHERE d.file_sha256 = t.file_sha256 AND d.file_row = t.file_row)"
                )
                # Moved by delete and insert: file_row is part of the primary key, which an UPDATE may not shift in place.
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE moved AS SELECT * REPLACE (file_row - (SELECT count(*) FROM dropped_lines d"
                    f" WHERE d.file_sha256 = t.file_sha256 AND d.file_row < t.file_row) AS file_row) FROM {target} t"
                    " WHERE t.file_sha256 IN (SELECT file_sha256 FROM dropped_lines)"
                )
                con.execute(f"DELETE FROM {target} WHERE file_sha256 IN (SELECT file_sha256 FROM dropped_lines)")
                con.execute(f"INSERT INTO {target} SELECT * FROM moved")
                con.execute("DROP TABLE moved")
                con.unregister("dropped_lines")
            con.execute("COMMIT")

    def forget_refused(self, submission_ids: list[str]) -> int:
        """Delete the identifying rows of these submissions, the household's (reference, contacts,
        address) and its members' (names, birth dates): their household refused consent, so nothing
        about it is processed, only counted (by pseudonym). Returns the rows deleted."""
        if not submission_ids:
            return 0
        deleted = 0
        with self.connect() as con:
            con.register("refused", pl.DataFrame({"s": submission_ids}, schema={"s": pl.Utf8}).to_arrow())
            for table in ("household_identity", "member_identity"):
                deleted += len(con.execute(f"DELETE FROM {table} WHERE submission_id IN (SELECT s FROM refused) RETURNING 1").fetchall())
            con.unregister("refused")
        return deleted

    def differing_household_copies(self, landed: pl.DataFrame, besides_file: str) -> pl.DataFrame:
        """Keys (submission_id, file_sha256, file_row) of the households rows stored for the submissions of `landed`
        (submission_id and identifying cells of a landing file's rows) from other files than `besides_file` whose
        identifying cells no row of `landed` has alike: compared here, so that no cell leaves the store."""
        with self.connect() as con:
            con.register("landed", landed.to_arrow())
            rows = con.execute(
                "SELECT h.submission_id, h.file_sha256, h.file_row FROM household_identity h"
                f" ANTI JOIN (SELECT {answers_hash('n', landed.columns)} AS c FROM landed n) n ON n.c = {answers_hash('h', landed.columns)}"
                " WHERE h.submission_id IN (SELECT submission_id FROM landed) AND h.file_sha256 <> ?",
                [besides_file],
            ).pl()
            con.unregister("landed")
        return rows

    def household_refs(self, pseudonyms: list[str]) -> dict[str, str]:
        """household_ref per household pseudonym, for the coordinators' restricted export."""
        with self.connect() as con:
            con.register("wanted", pl.DataFrame({"p": pseudonyms}).to_arrow())
            rows = con.execute(
                "SELECT DISTINCT household_pseudonym, household_ref FROM household_identity"
                " WHERE household_pseudonym IN (SELECT p FROM wanted)"
            ).fetchall()
        return dict(rows)

    def birth_dates(self) -> pl.DataFrame:
        """file_sha256, file_row, member_pseudonym, date_of_birth (text) — read only to derive ages; never copied out."""
        with self.connect() as con:
            return con.execute(
                "SELECT file_sha256, file_row, member_pseudonym, date_of_birth FROM member_identity"
            ).pl()

    def names_household(self, household_pseudonym: str, household_ref: str) -> bool:
        """Whether a row of the store is the household's, or names it as linked (what erase_household removes)."""
        with self.connect() as con:
            found = con.execute(
                "SELECT 1 FROM household_identity WHERE household_pseudonym = $pseudonym"
                f" OR {lists_token_sql('linked_household_refs')}"
                " UNION ALL SELECT 1 FROM decision_identity WHERE household_pseudonym = $pseudonym LIMIT 1",
                {"pseudonym": household_pseudonym, "token": household_ref.strip()},
            ).fetchone()
        return found is not None

    def erase_member_rows(self, rows: pl.DataFrame) -> int:
        """Delete the member rows (file_sha256, file_row, member_pseudonym: the key) whatever submission they name:
        erasure takes the rows without a household's link that may be the erased household's persons. Returns the
        rows deleted."""
        if rows.is_empty():
            return 0
        with self.connect() as con:
            con.register("erased_rows", rows.select("file_sha256", "file_row", "member_pseudonym").to_arrow())
            deleted = con.execute(
                "DELETE FROM member_identity t WHERE EXISTS (SELECT 1 FROM erased_rows e WHERE e.file_sha256 = t.file_sha256"
                " AND e.file_row = t.file_row AND e.member_pseudonym = t.member_pseudonym) RETURNING 1"
            ).fetchall()
            con.unregister("erased_rows")
        return len(deleted)

    def erase_household(self, household_pseudonym: str, household_ref: str) -> int:
        """Delete every identity row of one household, and its reference from the households that
        named it as linked; the erasure is recorded by pseudonym only."""
        with self.connect() as con:
            con.execute(
                f"UPDATE household_identity SET linked_household_refs = {without_token_sql('linked_household_refs')} "
                f"WHERE {lists_token_sql('linked_household_refs')}",
                {"token": household_ref.strip()},
            )
            subs = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT submission_id FROM household_identity WHERE household_pseudonym = ?",
                    [household_pseudonym],
                ).fetchall()
            ]
            deleted = 0
            for sub in subs:
                deleted += len(
                    con.execute(
                        "DELETE FROM member_identity WHERE submission_id = ? RETURNING 1", [sub]
                    ).fetchall()
                )
            deleted += len(
                con.execute(
                    "DELETE FROM household_identity WHERE household_pseudonym = ? RETURNING 1",
                    [household_pseudonym],
                ).fetchall()
            )
            deleted += len(
                con.execute(
                    "DELETE FROM decision_identity WHERE household_pseudonym = ? RETURNING 1",
                    [household_pseudonym],
                ).fetchall()
            )
            con.execute("INSERT INTO erasures VALUES (?, ?)", [household_pseudonym, utc_now()])
        return deleted

"""The data home: every file the pipeline writes lives under REMATCH_HOME."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from rematch_pipeline.errors import UserFacingError

LANDING_KINDS: tuple[str, ...] = ("municipalities", "households", "decisions")

# Dagster's "Join the Dagster community" window (a newsletter sign-up asking for an e-mail address) greets each
# new browser profile on the first page it opens; coordinators have nothing to do with it.
_NUX_BLOCK = """\
nux:
  enabled: false
"""

_DAGSTER_YAML = """\
# Written by rematch: local Dagster instance of this data home.
# Every step that writes the warehouse DuckDB file runs in pool "duckdb";
# DuckDB allows one writing process at a time, so the pool limit is 1.
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
""" + _NUX_BLOCK


# What every data home holds (prepare() makes landing/ and dagster/; the databases came first in old homes).
_LAYOUT_MARKS: tuple[str, ...] = ("landing", "dagster", "warehouse.duckdb", "identity.duckdb")


_umask_lock = threading.Lock()
_private_depth = 0
_saved_umask = 0


@contextmanager
def owner_only_files() -> Iterator[None]:
    """Every file created meanwhile is readable by its owner only (umask 077 over the process's own).

    For files of identity data that a library creates itself: DuckDB makes a database, its write-ahead
    log (`.wal`, which stays behind when a process dies) and a compaction copy with the process umask,
    so a chmod afterwards leaves a window, and the log was never chmod-ed at all. The umask is process
    wide: nested and concurrent users share one change (counted), and the first umask comes back last.
    """
    global _private_depth, _saved_umask
    with _umask_lock:
        if _private_depth == 0:
            _saved_umask = os.umask(0o077)
            os.umask(_saved_umask | 0o077)
        _private_depth += 1
    try:
        yield
    finally:
        with _umask_lock:
            _private_depth -= 1
            if _private_depth == 0:
                os.umask(_saved_umask)


def default_home() -> Path:
    """REMATCH_HOME from the environment, or ./.rematch."""
    return Path(os.environ.get("REMATCH_HOME") or ".rematch").resolve()


class RematchHome(dg.ConfigurableResource):
    """The data home (REMATCH_HOME) the UI was started on: every file of the pipeline lives under `root`. Leave it
    as scaffolded (or delete the block): another path reads and writes another data home."""

    # The docstring is the resource's description in the Launchpad, for coordinators. For code: the paths of
    # one data home; `prepare()` creates the folders, the Dagster instance and the key file.

    root: str

    @property
    def path(self) -> Path:
        """The data home's folder (REMATCH_HOME)."""
        return Path(self.root)

    def landing(self, kind: str) -> Path:
        """landing/<kind>/ (LANDING_KINDS): where the exports of one kind are dropped to be ingested."""
        return self.path / "landing" / kind

    @property
    def archive(self) -> Path:
        """archive/: each ingested export as it landed, named by its sha256 (an erasure rewrites it without the household)."""
        return self.path / "archive"

    @property
    def warehouse_path(self) -> Path:
        """warehouse.duckdb: raw, validated, feature and round tables, by pseudonym only."""
        return self.path / "warehouse.duckdb"

    @property
    def identity_path(self) -> Path:
        """identity.duckdb: the identity store (names, contacts, birth dates, references), owner-only."""
        return self.path / "identity.duckdb"

    @property
    def dagster_home(self) -> Path:
        """dagster/: this data home's Dagster instance (DAGSTER_HOME)."""
        return self.path / "dagster"

    @property
    def key_file(self) -> Path:
        """secret.key: the pseudonyms' HMAC key where REMATCH_SECRET is not set (mode 0600)."""
        return self.path / "secret.key"

    def round_dir(self, round_id: str) -> Path:
        """rounds/<round_id>/, created; a round id that would lead elsewhere ("..", "a/b") is refused."""
        # Last guard: round_candidates checks the id first, but nothing may write outside rounds/.
        if not round_id or round_id in (".", "..") or Path(round_id).name != round_id or "\\" in round_id:
            raise ValueError("round id: must not be empty, '.' or '..', nor hold a path separator")
        directory = self.path / "rounds" / round_id
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def exists(self) -> bool:
        """Whether a data home is here already: prepare() (any command that makes a home) or an older version's
        ingestion left its layout. A mistyped REMATCH_HOME names a folder that is missing or holds none of it."""
        return any((self.path / name).exists() for name in _LAYOUT_MARKS)

    def prepare(self) -> None:
        """Create the folder layout and the Dagster instance config (idempotent)."""
        for kind in LANDING_KINDS:
            self.landing(kind).mkdir(parents=True, exist_ok=True)
        self.archive.mkdir(parents=True, exist_ok=True)
        (self.path / "rounds").mkdir(parents=True, exist_ok=True)
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        dagster_yaml = self.dagster_home / "dagster.yaml"
        if not dagster_yaml.exists():
            dagster_yaml.write_text(_DAGSTER_YAML)
        else:
            # A data home made before the window was switched off gets it off too, if the file is still rematch's.
            text = dagster_yaml.read_text()
            if text.startswith("# Written by rematch") and "\nnux:" not in text:
                dagster_yaml.write_text(text.rstrip("\n") + "\n" + _NUX_BLOCK)

    def secret(self) -> bytes:
        """The HMAC key for pseudonyms: REMATCH_SECRET, else a key file created once with mode 0600."""
        from_env = os.environ.get("REMATCH_SECRET")
        if from_env:
            return from_env.encode()
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            # O_EXCL: two processes starting at once must not overwrite each other's key.
            try:
                fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
        mode = self.key_file.stat().st_mode & 0o777
        if mode & 0o077:
            raise UserFacingError(
                f"{self.key_file} is readable by others (mode {mode:o}); run chmod 600 on it",
                {"file": str(self.key_file), "rule": "owner only (mode 600): it keys every pseudonym"},
            )
        return self.key_file.read_text().strip().encode()

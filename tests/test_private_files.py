"""Files that hold identifying data are readable by their owner only, like secret.key and proposals.csv."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.ingest import ingest_file
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import IdentityStore
from rematch_pipeline.resources.warehouse import compact
from rematch_pipeline.sample import generate_round


def test_identity_store_and_archived_exports_are_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual default: new files 0644
    try:
        home = RematchHome(root=str(tmp_path / "home"))
        home.prepare()
        path = home.landing("households") / "households.csv"
        generate_round(5, 2, seed=1).households.write_csv(path)
        identity = IdentityStore(home=home)
        outcome = ingest_file("households", path, home, identity, DuckDBResource(database=str(home.warehouse_path)))
    finally:
        os.umask(old_umask)
    assert outcome.status == "ingested"
    assert home.identity_path.stat().st_mode & 0o777 == 0o600
    archived = list(home.archive.iterdir())
    assert archived and all(p.stat().st_mode & 0o777 == 0o600 for p in archived)
    assert pl.read_csv(archived[0]).height == 5


def test_every_file_of_the_identity_store_is_owner_only_while_it_is_written(tmp_path: Path) -> None:
    """DuckDB writes a write-ahead log (identity.duckdb.wal) beside the store while a connection
    writes, and leaves it there when the process dies; it holds the rows just written (names,
    phones), so it must be as private as the store. So must compaction's copy (.compact)."""
    old_umask = os.umask(0o022)
    try:
        home = RematchHome(root=str(tmp_path / "home"))
        home.prepare()
        identity = IdentityStore(home=home)
        with identity.connect() as con:
            con.execute("INSERT INTO member_identity VALUES ('P-1', 's-1', 'Zzyzx Quuxley', '1990-01-01', 'f', 2)")
            written = {p.name: p.stat().st_mode & 0o777 for p in home.path.glob("identity.duckdb*")}
        assert "identity.duckdb.wal" in written  # else this test checks nothing
        assert written == {name: 0o600 for name in written}
        # The compaction copy is created by DuckDB too; watch its mode from inside the copy.
        seen: dict[str, int] = {}
        original_chmod = os.chmod

        def spy(path, mode, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - os.chmod's signature
            if str(path).endswith(".compact"):
                seen["before_chmod"] = Path(path).stat().st_mode & 0o777
            return original_chmod(path, mode, *args, **kwargs)

        os.chmod = spy
        try:
            compact(home.identity_path)
        finally:
            os.chmod = original_chmod
        assert seen == {"before_chmod": 0o600}
        assert os.umask(0o022) == 0o022  # the process umask is given back
    finally:
        os.umask(old_umask)
    assert home.identity_path.stat().st_mode & 0o777 == 0o600

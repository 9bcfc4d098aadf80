"""Files that hold identifying data are readable by their owner only, like secret.key and proposals.csv."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
from dagster_duckdb import DuckDBResource

from rematch_pipeline.assets.ingest import ingest_file
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import IdentityStore
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

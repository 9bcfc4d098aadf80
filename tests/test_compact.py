"""Compacting a DuckDB file after an erasure: deleted rows' bytes go, everything live stays."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pytest

from rematch_pipeline.resources.warehouse import compact


def test_a_compacted_file_keeps_live_rows_keys_and_mode_but_not_deleted_bytes(tmp_path: Path) -> None:
    path = tmp_path / "identity.duckdb"
    values = [str(uuid.uuid4()) for _ in range(40)]
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (ref VARCHAR PRIMARY KEY, note VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [[v, "x"] for v in values])
        con.execute("CHECKPOINT")
        con.execute("DELETE FROM t WHERE ref = ?", [values[7]])
        con.execute("CHECKPOINT")
    path.chmod(0o600)
    assert values[7].encode() in path.read_bytes(), "DuckDB keeps a deleted row's bytes: the reason for compact"

    compact(path)

    data = path.read_bytes()
    assert values[7].encode() not in data and values[8].encode() in data
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(tmp_path.iterdir()) == [path]
    with duckdb.connect(str(path)) as con:
        assert sorted(r[0] for r in con.execute("SELECT ref FROM t").fetchall()) == sorted(values[:7] + values[8:])
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO t VALUES (?, 'y')", [values[8]])

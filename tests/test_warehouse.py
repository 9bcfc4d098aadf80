"""The warehouse's base tables on a data home made by an older release."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource

from rematch_pipeline.resources.warehouse import warehouse_connection


def test_an_ingestion_log_from_before_the_skipped_column_gains_the_later_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:  # the table as the first releases created it
        con.execute(
            "CREATE TABLE ingestion_log (file_sha256 VARCHAR PRIMARY KEY, file_name VARCHAR, landing_kind VARCHAR,"
            " archived_as VARCHAR, status VARCHAR, tables VARCHAR, rows_ingested INTEGER, error VARCHAR, ingested_at TIMESTAMP)"
        )
        con.execute("INSERT INTO ingestion_log VALUES ('a1', 'old.csv', 'households', 'a1.csv', 'ingested', 'households', 3, NULL, ?)", [dt.datetime(2026, 7, 1)])
    with warehouse_connection(DuckDBResource(database=str(path))) as con:
        columns = [r[0] for r in con.execute("DESCRIBE ingestion_log").fetchall()]
        assert columns[-3:] == ["skipped", "retried_at", "warnings"]  # each added by the release that introduced it
        assert con.execute("SELECT file_name, rows_ingested, skipped, retried_at, warnings FROM ingestion_log").fetchall() == [("old.csv", 3, None, None, None)]
    with warehouse_connection(DuckDBResource(database=str(path))) as con:  # a second opening changes nothing
        assert [r[0] for r in con.execute("DESCRIBE ingestion_log").fetchall()] == columns


def test_a_name_an_older_release_stored_as_a_decisions_round_id_is_withheld(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with warehouse_connection(DuckDBResource(database=str(path))) as con:
        columns = [r[0] for r in con.execute("DESCRIBE raw_decisions").fetchall()]
        rows = [("Zzyzx Kowalczyk", 2), ("round-7", 3), ("#withheld", 4), (None, 5)]
        # As the releases before the round id's check stored them: the name as typed.
        con.executemany("INSERT INTO raw_decisions (round_id, file_row, file_name) VALUES (?, ?, 'decisions.csv')", rows)
    with warehouse_connection(DuckDBResource(database=str(path))) as con:
        assert con.execute("SELECT round_id, file_row FROM raw_decisions ORDER BY file_row").fetchall() == [
            ("#withheld", 2), ("round-7", 3), ("#withheld", 4), (None, 5)
        ]
        assert [r[0] for r in con.execute("DESCRIBE raw_decisions").fetchall()] == columns


def _hold_the_write_lock(path: str, ready, done) -> None:  # noqa: ANN001 - multiprocessing events
    """Another process writing the file (a run the UI launched), until told to stop."""
    with duckdb.connect(path):
        ready.set()
        done.wait(30)


def test_a_warehouse_another_process_writes_is_said_in_words_after_the_retries(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """DuckDB takes one writer at a time: after waiting, the error says so, not DuckDB's IOException (which a
    step's wrapper would report as a bug)."""
    import multiprocessing

    import pytest

    from rematch_pipeline.errors import UserFacingError
    from rematch_pipeline.resources import warehouse

    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=_hold_the_write_lock, args=(str(path), ready, done))
    holder.start()
    try:
        assert ready.wait(60)
        monkeypatch.setattr(warehouse, "_LOCK_RETRIES", 2)
        with pytest.raises(UserFacingError) as refused:
            with warehouse_connection(DuckDBResource(database=str(path))):
                pass
    finally:
        done.set()
        holder.join(30)
    assert str(refused.value).startswith("warehouse.duckdb: another process is writing it (DuckDB allows one writer at a time)")
    assert refused.value.details == {"file": "warehouse.duckdb", "rule": "one writer at a time"}
    with warehouse_connection(DuckDBResource(database=str(path))) as con:  # free again once the other has finished
        assert con.execute("SELECT 1").fetchone() == (1,)

"""A legacy Kobo CSV holds a household's members on the household's line (flattened repeat slots)."""

from __future__ import annotations

import duckdb
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
from tests.formats.fixtures.exports import HOUSEHOLDS, kobo_legacy_households_csv


def test_every_member_of_a_line_keeps_its_own_name_and_birth_date(
    home: RematchHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home.landing("households") / "legacy_households.csv").write_bytes(kobo_legacy_households_csv())
    monkeypatch.setenv("REMATCH_HOME", str(home.path))
    assert main(["ingest"]) == 0
    expected = sorted((m["member_name"], m["date_of_birth"]) for h in HOUSEHOLDS for m in h["members"])
    assert len(expected) > len(HOUSEHOLDS)  # some lines hold several persons
    with duckdb.connect(str(home.identity_path), read_only=True) as con:
        stored = sorted(con.execute("SELECT member_name, date_of_birth FROM member_identity").fetchall())
        lines = con.execute("SELECT count(DISTINCT (file_sha256, file_row)) FROM member_identity").fetchone()
    assert stored == expected
    assert lines == (len(HOUSEHOLDS),)

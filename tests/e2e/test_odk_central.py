"""An ODK Central CSV zip of the household form through ingestion and erasure, as a coordinator would use it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import duckdb
import polars as pl
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.formats import tool_exports
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.sample import generate_round, write_round
from tests.formats.fixtures.exports import CENTRAL_FORM_ID

ZIP_NAME = "submissions.csv.zip"


def _central_zip(households: pl.DataFrame, members: pl.DataFrame, review: dict[str, str] | None = None) -> bytes:
    """The canonical tables as Central's CSV zip of our household form (tool_exports); review: ReviewState
    by submission id."""
    states = [(review or {}).get(s, "") for s in households["submission_id"].to_list()]
    frame = households.with_columns(pl.Series("ReviewState", states, dtype=pl.Utf8))
    return tool_exports.csv_zip(tool_exports.odk_central_csvs(frame, tool_exports.central_form("households"), CENTRAL_FORM_ID, members))


def _inflated(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return b"".join(archive.read(name) for name in archive.namelist())


def _count(home: RematchHome, sql: str) -> int:
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_a_central_zip_loads_as_the_templates_do_and_erasure_edits_it(
    home: RematchHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sample = generate_round(60, 8, seed=9)
    out = tmp_path / "sample"
    write_round(sample, out)
    templates = RematchHome(root=str(tmp_path / "templates"))
    templates.prepare()
    for kind in ("municipalities", "households"):
        for path in sorted((out / kind).iterdir()):
            (templates.landing(kind) / path.name).write_bytes(path.read_bytes())
            if kind == "municipalities":
                (home.landing(kind) / path.name).write_bytes(path.read_bytes())
    (home.landing("households") / ZIP_NAME).write_bytes(_central_zip(sample.households, sample.members))

    # The same round from the canonical templates first, in a data home of its own.
    monkeypatch.setenv("REMATCH_HOME", str(templates.path))
    assert main(["ingest"]) == 0
    expected = {t: _count(templates, f"SELECT count(*) FROM {t}") for t in ("households", "members", "quarantine")}
    monkeypatch.setenv("REMATCH_HOME", str(home.path))
    assert main(["ingest"]) == 0
    central = {t: _count(home, f"SELECT count(*) FROM {t}") for t in ("households", "members", "quarantine")}
    assert central == expected and central["households"] > 40

    # Erase a household that names no partner: its rows leave both CSVs inside the zip, in landing/ and archive/.
    linked = {r for refs in sample.households["linked_household_refs"].drop_nulls() for r in refs.split()}
    row = next(r for r in sample.households.iter_rows(named=True) if r["consent_processing"] == "yes" and r["household_ref"] not in linked and not r["linked_household_refs"])
    target = row["household_ref"].encode()
    member_names = [n.encode() for n in sample.members.filter(pl.col("submission_id") == row["submission_id"])["member_name"]]
    assert member_names and target in _inflated(home.landing("households") / ZIP_NAME)
    capsys.readouterr()
    assert main(["erase", row["household_ref"]]) == 0
    zips = [home.landing("households") / ZIP_NAME, *home.archive.glob("*.zip")]
    assert len(zips) == 2
    for path in zips:
        content = _inflated(path)
        assert target not in content and not any(name in content for name in member_names), path
    assert _count(home, "SELECT count(*) FROM households") == expected["households"] - 1
    # The edited zip is known: ingesting again loads nothing new.
    assert main(["ingest"]) == 0
    assert _count(home, "SELECT count(*) FROM raw_households") == sample.households.height - 1


def test_a_submission_rejected_in_a_later_central_export_is_withdrawn_until_approved_again(
    home: RematchHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sample = generate_round(30, 4, seed=5)
    write_round(sample, tmp_path / "sample")
    for path in sorted((tmp_path / "sample" / "municipalities").iterdir()):
        (home.landing("municipalities") / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("REMATCH_HOME", str(home.path))

    def export(name: str, state: str) -> str:
        """Land Central's weekly full export with one submission's review state; ingest; what ingest printed."""
        zip_bytes = _central_zip(sample.households, sample.members, {target: state})
        (home.landing("households") / name).write_bytes(zip_bytes)
        capsys.readouterr()
        assert main(["ingest"]) == 0
        return capsys.readouterr().out

    target = ""
    assert "left out" not in export("week1.csv.zip", "")
    loaded = {t: _count(home, f"SELECT count(*) FROM {t}") for t in ("households", "members")}
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        target, its_members = con.execute(
            "SELECT h.submission_id, count(*) FROM households h JOIN members m USING (submission_id) GROUP BY 1 ORDER BY 1 LIMIT 1"
        ).fetchone()

    # Week 2: a reviewer rejected it in Central. The export still holds it; it leaves the round's tables with its members.
    assert "left out: week2.csv.zip: submissions rejected in ODK Central: 1" in export("week2.csv.zip", "rejected")
    assert _count(home, "SELECT count(*) FROM households") == loaded["households"] - 1
    assert _count(home, "SELECT count(*) FROM members") == loaded["members"] - its_members
    assert _count(home, f"SELECT count(*) FROM households WHERE submission_id = '{target}'") == 0
    rules = _count(home, "SELECT count(*) FROM superseded_submissions WHERE rule = 'left out: submissions rejected in ODK Central'")
    assert rules == 2  # week 1's copy and week 2's
    assert _count(home, "SELECT count(*) FROM ingestion_log WHERE skipped = 'submissions rejected in ODK Central: 1'") == 1
    assert _count(home, "SELECT value FROM intake_counts WHERE name = 'households_left_out'") == 1

    # Week 3: approved after all. The latest export decides: it is back.
    assert "left out" not in export("week3.csv.zip", "approved")
    assert {t: _count(home, f"SELECT count(*) FROM {t}") for t in ("households", "members")} == loaded

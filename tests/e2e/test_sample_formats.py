"""`rematch sample --format F` for each tool format F: the sample round as the survey tools export
it lands, ingests and validates to the same tables as the canonical templates of the same round."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.formats.canonical import FIRST_SUBMITTED_ON_COLUMN
from rematch_pipeline.formats.detect import detect_format
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.sample import DEVICE_ZONE
from tests.conftest import land

TOOL_FORMATS = (
    "kobo-xlsx", "kobo-csv", "kobo-labels", "kobo-legacy", "odk-central", "limesurvey-csv", "limesurvey-xlsx", "limesurvey-texts", "limesurvey-vv",
)
SAMPLE = ["--households", "60", "--municipalities", "8", "--seed", "5"]
# Provenance and keys made from the tool's submission id (LimeSurvey's is ls-<id>-<seed>) differ by design.
NOT_COMPARED = {"submission_id", "member_pseudonym", "file_sha256", "file_name", "sheet", "file_row"}
KEYS = {"municipalities": ["municipality_id"], "households": ["household_pseudonym"]}


def _tables(home: RematchHome) -> dict[str, pl.DataFrame]:
    """The validated tables and the identity store's households, comparable across formats: households by
    pseudonym, municipalities by AGS, members by their household's pseudonym and their own values."""
    out: dict[str, pl.DataFrame] = {}
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        for table in ("municipalities", "households"):
            frame = con.execute(f"SELECT * FROM {table}").pl()
            out[table] = frame.drop([c for c in frame.columns if c in NOT_COMPARED]).sort(KEYS[table])
        members = con.execute(
            "SELECT h.household_pseudonym, m.* FROM members m JOIN households h USING (submission_id)"
        ).pl()
        members = members.drop([c for c in members.columns if c in NOT_COMPARED])
        out["members"] = members.sort(members.columns)
        out["quarantine"] = con.execute("SELECT count(*) AS n FROM quarantine").pl()
    with duckdb.connect(str(home.identity_path), read_only=True) as con:
        identity = con.execute("SELECT * EXCLUDE (submission_id, file_sha256, file_row) FROM household_identity").pl()
        out["household_identity"] = identity.sort("household_pseudonym")
        names = con.execute("SELECT member_name, date_of_birth FROM member_identity").pl()
        out["member_identity"] = names.sort(names.columns)
    return out


def _ingested(fmt: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, pl.DataFrame]:
    """Write the sample in fmt with `rematch sample`, land it as the docs say, `rematch ingest` into a fresh home."""
    out = root / f"sample-{fmt}"
    assert main(["sample", *SAMPLE, "--out", str(out), "--format", fmt]) == 0
    home = RematchHome(root=str(root / f"home-{fmt}"))
    monkeypatch.setenv("REMATCH_HOME", home.root)
    monkeypatch.setenv("DAGSTER_HOME", str(home.path / "dagster"))
    home.prepare()
    landed = land(home, out)
    if fmt != "csv":
        expected = {
            "kobo-xlsx": {"kobo-xlsx"},
            "kobo-csv": {"kobo-csv", "kobo-xlsx"},
            "kobo-labels": {"kobo-csv", "kobo-xlsx"},
            "kobo-legacy": {"kobo-csv"},
            "limesurvey-csv": {"limesurvey-csv"},
            "odk-central": {"csv-zip"},
            "limesurvey-xlsx": {"limesurvey-xlsx"},
            "limesurvey-texts": {"limesurvey-csv"},
            "limesurvey-vv": {"limesurvey-vv"},
        }[fmt]
        assert {detect_format(p, p.read_bytes()) for p in landed} == expected
    assert main(["ingest"]) == 0
    return _tables(home)


@pytest.fixture(scope="module")
def canonical(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("REMATCH_SECRET", "sample-formats-test-key")  # the same pseudonyms in every home
        return _ingested("csv", tmp_path_factory.mktemp("canonical"), monkeypatch)


@pytest.mark.parametrize("fmt", TOOL_FORMATS)
def test_a_tool_format_sample_validates_to_the_canonical_tables(
    fmt: str, canonical: dict[str, pl.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMATCH_SECRET", "sample-formats-test-key")
    tables = _ingested(fmt, tmp_path, monkeypatch)
    assert canonical["households"].height > 50 and canonical["members"].height > 100
    assert canonical["quarantine"]["n"].item() == 0
    for name, expected in canonical.items():
        if name == "households" and fmt.startswith(("kobo", "odk")):
            # The canonical sample writes UTC times without offset (dated as they read), a device its own clock with the
            # offset (DEVICE_ZONE): after 22:00 UTC in summer the submitter's date is the next day's (docs/formats.md).
            # One copy per household here, so its first submission's date (the period's) is that date too.
            local = pl.col("submitted_at").dt.replace_time_zone("UTC").dt.convert_time_zone(DEVICE_ZONE).dt.date()
            expected = expected.with_columns(local.alias("submitted_on"), local.alias(FIRST_SUBMITTED_ON_COLUMN))
        assert tables[name].columns == expected.columns, name
        assert tables[name].equals(expected), f"{fmt}: {name} differs from the canonical sample's"


def test_an_identity_store_keyed_by_line_alone_gets_the_person_key(home: RematchHome) -> None:
    """A store made before keeps its rows, and two persons of one line (LimeSurvey slots) no longer replace each other."""
    from rematch_pipeline.resources.identity import IdentityStore

    with duckdb.connect(str(home.identity_path)) as con:
        con.execute(
            "CREATE TABLE member_identity (member_pseudonym VARCHAR, submission_id VARCHAR, member_name VARCHAR,"
            " date_of_birth VARCHAR, file_sha256 VARCHAR, file_row INTEGER, PRIMARY KEY (file_sha256, file_row))"
        )
        con.execute("INSERT INTO member_identity VALUES ('P-1', 's1', 'A', '1990-01-01', 'f', 2)")
    store = IdentityStore(home=home)
    store.store("members", pl.DataFrame({
        "member_pseudonym": ["P-2", "P-3"], "submission_id": ["s2", "s2"], "member_name": ["B", "C"],
        "date_of_birth": ["2010-01-01", "2012-01-01"], "file_sha256": ["f", "f"], "file_row": [3, 3],
    }))
    assert store.birth_dates().sort("member_pseudonym")["member_pseudonym"].to_list() == ["P-1", "P-2", "P-3"]

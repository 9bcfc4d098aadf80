"""`rematch ingest` with nothing new does not validate again, unless something validation reads has changed."""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from rematch_pipeline.assets import validate
from rematch_pipeline.definitions import build_definitions
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.runs import ingest_landing
from rematch_pipeline.sample import generate_round, write_round
from tests.conftest import land


def _validated(home: RematchHome, instance: dg.DagsterInstance) -> bool:
    """Whether an ingestion pass ran validate_job (its last run)."""
    summary = ingest_landing(build_definitions(home), instance, home)
    ran = bool(summary.results) and summary.results[-1].dagster_run.job_name == "validate_job"
    assert ran != bool(summary.validated_before)
    return ran


def test_a_pass_with_nothing_new_validates_again_only_after_a_change(home: RematchHome, tmp_path: Path) -> None:
    write_round(generate_round(12, 3, seed=5), tmp_path / "sample")
    land(home, tmp_path / "sample")
    with dg.instance_for_test(temp_dir=str(home.dagster_home)) as instance:
        assert _validated(home, instance)
        assert not _validated(home, instance)  # nothing landed, nothing changed: the stored tables stand
        # A stored row changed outside ingestion (as an erasure changes them): validated again, once.
        with duckdb.connect(str(home.warehouse_path)) as con:
            con.execute("DELETE FROM raw_members WHERE file_row = (SELECT max(file_row) FROM raw_members)")
        assert _validated(home, instance)
        assert not _validated(home, instance)
        with duckdb.connect(str(home.warehouse_path)) as con:
            con.execute("DROP TABLE household_features")  # a validated table dropped by hand is made again
        assert _validated(home, instance)
        # The run that validated was deleted (as after an erasure, to replace its materialisations): validated again.
        last = instance.get_runs(dg.RunsFilter(job_name="validate_job"), limit=1)[0]
        instance.delete_run(last.run_id)
        assert _validated(home, instance)


def test_the_digest_changes_with_the_package_files_and_the_identity_store(home: RematchHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade (a rule or a reference list of the package changed) validates again, as does a changed identity
    store (birth dates give members' ages)."""
    package = tmp_path / "rematch_pipeline"
    reference = Path(validate.__file__).resolve().parents[1] / "reference"
    shutil.copytree(reference, package / "reference")
    (package / "assets").mkdir()
    monkeypatch.setattr(validate, "__file__", str(package / "assets" / "validate.py"))
    warehouse = validate.DuckDBResource(database=str(home.warehouse_path))
    first = validate.validation_inputs_digest(home, warehouse)
    assert validate.validation_inputs_digest(home, warehouse) == first
    with (package / "reference" / "kreise_2020_derived.csv").open("a") as handle:
        handle.write("\n")
    upgraded = validate.validation_inputs_digest(home, warehouse)
    assert upgraded != first
    with validate.IdentityStore(home=home).connect() as con:
        con.execute("INSERT INTO member_identity (file_sha256, file_row, member_pseudonym) VALUES ('f', 2, 'M-x')")
    assert validate.validation_inputs_digest(home, warehouse) != upgraded


def test_every_table_the_validation_reads_is_in_its_digest() -> None:
    module = inspect.getsource(validate)
    source = module[module.index("def canonical_tables("):module.index("def _pandera_check(")]
    read = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)", source)) - {"raw_"}
    assert read, "the FROM clauses moved: read them where canonical_tables reads now"
    listed = set(validate.VALIDATION_INPUTS)
    assert read <= listed
    assert {f"raw_{t}" for t in validate.TABLES} <= listed

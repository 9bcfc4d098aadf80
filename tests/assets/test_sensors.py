"""The landing sensor: one run per new content, none for a repeat, one for a corrected file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from rematch_pipeline.assets.ingest import exports_partitions
from rematch_pipeline.assets.sensors import hourly_ingestion, landing_sensor
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.sample import generate_round, write_round


@pytest.fixture
def instance(home: RematchHome):
    with dg.instance_for_test(temp_dir=str(home.dagster_home)) as instance:
        yield instance


def _settled(path: Path) -> Path:
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def _tick(instance: dg.DagsterInstance, home: RematchHome) -> dg.SensorResult:
    """One evaluation of the landing sensor, its context entered and closed as the daemon does."""
    with dg.build_sensor_context(instance=instance, resources={"home": home}) as context:
        return landing_sensor(context)


def _evaluate(instance: dg.DagsterInstance, home: RematchHome) -> list[dg.RunRequest]:
    """Evaluate the sensor once and apply its partition requests, as the daemon would."""
    result = _tick(instance, home)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return list(result.run_requests or [])


def test_one_run_per_new_content_none_for_a_repeat_one_for_a_correction(home: RematchHome, instance, tmp_path: Path) -> None:
    sample = tmp_path / "s"
    files = write_round(generate_round(10, 3, seed=2), sample)
    municipalities = next(p for p in files if p.parent.name == "municipalities")
    landed = home.landing("municipalities") / "offers.csv"
    landed.write_bytes(municipalities.read_bytes())
    _settled(landed)

    first = _evaluate(instance, home)
    assert len(first) == 1
    assert first[0].partition_key == first[0].run_key
    assert first[0].run_config["ops"]["landed_export"]["config"]["path"] == str(landed)
    assert instance.get_dynamic_partitions(exports_partitions.name) == [first[0].partition_key]

    # The same bytes again, under another name: no run.
    (home.landing("municipalities") / "offers-copy.csv").write_bytes(landed.read_bytes())
    _settled(home.landing("municipalities") / "offers-copy.csv")
    assert _evaluate(instance, home) == []

    # A corrected file under the same name: one run for the new content.
    landed.write_bytes(landed.read_bytes().replace(b"yes", b"no", 1))
    _settled(landed)
    corrected = _evaluate(instance, home)
    assert len(corrected) == 1 and corrected[0].partition_key != first[0].partition_key


def test_files_still_being_written_wait(home: RematchHome, instance) -> None:
    (home.landing("households") / "fresh.csv").write_text("submission_id\n")  # modified just now
    (home.landing("households") / "upload.csv.part").write_text("x")
    _settled(home.landing("households") / "upload.csv.part")
    assert _evaluate(instance, home) == []
    _settled(home.landing("households") / "fresh.csv")
    assert len(_evaluate(instance, home)) == 1


def test_files_that_are_no_exports_are_not_ingested(home: RematchHome, instance) -> None:
    """What Excel and Windows Explorer leave in a shared folder: a lock file while a workbook is open, hidden
    and system files. Each would be a refused file (exit 1) at every pass."""
    folder = home.landing("households")
    for name in ("~$households.xlsx", ".DS_Store", "desktop.ini", "Thumbs.db"):
        (folder / name).write_bytes(b"\x00not an export")
        _settled(folder / name)
    assert _evaluate(instance, home) == []


def test_hourly_schedule_requests_the_same_runs(home: RematchHome, instance) -> None:
    path = home.landing("decisions") / "d.csv"
    path.write_text("round_id,household_ref,municipality_id,decision,reason\n")
    _settled(path)
    # Entered, so the instance each context opens from the ref is closed here: left to the garbage collector, its
    # exit reset Dagster's current defs-state storage to a disposed instance's during a later test.
    with dg.build_schedule_context(instance=instance, resources={"home": home}) as context:
        requests = list(hourly_ingestion(context))
    assert len(requests) == 1
    assert instance.get_dynamic_partitions(exports_partitions.name) == [requests[0].partition_key]
    with dg.build_schedule_context(instance=instance, resources={"home": home}) as context:
        assert isinstance(hourly_ingestion(context), dg.SkipReason)


def test_files_where_ingestion_does_not_look_are_named_in_the_tick(home: RematchHome, instance) -> None:
    """A file dropped into landing/ itself, or into a folder below a kind folder, starts no run: the tick's
    skip reason says where it lies and where it belongs, so the UI shows why nothing happened."""
    (home.landing("households").parent / "export.xlsx").write_bytes(b"PK")
    week = home.landing("households") / "week-49"
    week.mkdir()
    (week / "households.csv").write_text("submission_id\n")
    (week / ".hidden").write_text("x")
    result = _tick(instance, home)
    assert not result.run_requests
    reason = result.skip_reason.skip_message
    assert "landing/export.xlsx is not read" in reason and "landing/households/" in reason
    assert "landing/households/week-49/: 1 file not read" in reason
    # Once the file lies where it belongs, it is ingested and the tick names nothing.
    (week / "households.csv").rename(home.landing("households") / "households.csv")
    _settled(home.landing("households") / "households.csv")
    (home.landing("households").parent / "export.xlsx").unlink()
    result = _tick(instance, home)
    assert len(result.run_requests) == 1 and result.skip_reason is None

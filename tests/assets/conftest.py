"""Fixtures of the asset tests: a data home with a small validated round."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.definitions import ROUND_ASSETS, build_definitions, build_resources
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.runs import RunFailed, execute
from rematch_pipeline.sample import generate_round, write_round
from tests.conftest import land


@pytest.fixture
def ingested(home: RematchHome, tmp_path: Path) -> RematchHome:
    """A data home with a small validated round (period 2026-07, 30 households with one link group of two,
    4 municipalities; exports in tmp_path/sample) and its Dagster instance on disk."""
    write_round(generate_round(30, 4, seed=2), tmp_path / "sample")
    land(home, tmp_path / "sample")
    assert main(["ingest"]) == 0
    return home


def refused_round(home: RematchHome, round_id: str, config: dict) -> str:
    """Launch round_job for a new partition as the Launchpad does; the one-line reason it fails with."""
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("rounds", [round_id])
        with pytest.raises(RunFailed) as failed:
            execute(build_definitions(home), instance, "round_job", partition_key=round_id,
                    run_config={"ops": {"round_candidates": {"config": config}}})
    return str(failed.value)


def materialized_round(home: RematchHome, round_id: str, config: dict) -> dg.ExecuteInProcessResult:
    """The round's assets materialised for a new partition of `rounds` as the Launchpad runs them (config: the
    round_candidates op's), asserted successful."""
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("rounds", [round_id])
        result = dg.materialize(
            ROUND_ASSETS, partition_key=round_id, resources=build_resources(home), instance=instance,
            run_config={"ops": {"round_candidates": {"config": config}}},
        )
    assert result.success
    return result

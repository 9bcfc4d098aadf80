"""Fixtures of the asset tests: a data home with a small validated round."""

from __future__ import annotations

from pathlib import Path

import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
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

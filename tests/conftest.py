"""Shared fixtures: a temporary data home with real DuckDB files and a real Dagster instance."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from absl import logging as absl_logging
from dagster._core.storage.defs_state.base import DefsStateStorage

from rematch_pipeline.resources.home import RematchHome

# Every Dagster run starts with logging.config.dictConfig, which closes every logging handler in the process.
# absl's handler (made when OR-Tools is imported) then closes its stream unless it is sys.stderr at that moment:
# made at collection its stream is pytest's capture file, and a run in a capsys test closed it, killing pytest.
# The process's own stderr is one absl never closes (tests/test_capture_streams.py).
absl_logging.get_absl_handler().python_handler.setStream(sys.__stderr__)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test must close every Dagster instance it enters (a context from `build_schedule_context` opens one).
    One kept alive by a reference cycle resets Dagster's current defs-state storage to a disposed instance's
    whenever the garbage collector gets to it, and a later test then failed to resolve a job ("undefined
    DagsterInstance weakref"), now and then. Here the leaking test fails instead, every time."""
    before = DefsStateStorage.get()
    result = yield
    assert DefsStateStorage.get() is before, "a Dagster instance entered by this test is still open: enter its context with `with`"
    return result


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RematchHome:
    """A fresh REMATCH_HOME (and DAGSTER_HOME inside it) for one test."""
    root = tmp_path / "home"
    monkeypatch.setenv("REMATCH_HOME", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster"))
    monkeypatch.delenv("REMATCH_SECRET", raising=False)
    home = RematchHome(root=str(root))
    home.prepare()
    # Pseudonyms (and so every pseudonym order) come from the home's random key: REMATCH_TEST_KEY pins it, to
    # repeat a run's order or try many (a selection by pseudonym order failed in CI with one key in N).
    pinned = os.environ.get("REMATCH_TEST_KEY")
    if pinned:
        fd = os.open(home.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(pinned)
    return home


def land(home: RematchHome, sample_dir: Path) -> list[Path]:
    """Copy a written sample round (municipalities/, households/) into landing/."""
    landed = []
    for kind in ("municipalities", "households", "decisions"):
        folder = sample_dir / kind
        if folder.exists():
            for path in sorted(folder.iterdir()):
                landed.append(Path(shutil.copyfile(path, home.landing(kind) / path.name)))
    return landed

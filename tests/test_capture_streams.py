"""A Dagster run inside a test that captures output leaves pytest's own streams open.

Dagster calls `logging.config.dictConfig` at the start of every run when the instance has settings (ours
always has: `dagster/dagster.yaml`), and dictConfig closes every logging handler in the process. absl's
handler, created when OR-Tools is imported, closes its stream unless that stream is `sys.stderr` at that
moment. A test module importing the engine at collection bound it to pytest's capture file; the first run in
a `capsys` test then closed that file and pytest died ("I/O operation on closed file", "lost sys.stderr"):
`tests/e2e/test_retry.py` alone, or `tests/formats/test_detect.py` with `tests/e2e/test_limesurvey.py`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

import rematch_pipeline.engine  # noqa: F401  -- imports OR-Tools, hence absl's handler, at collection
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.runs import execute

REPO = Path(__file__).resolve().parents[1]


@dg.op
def _nothing() -> None:
    """A step that does nothing: the run's start is what touches logging."""


@dg.job
def nothing_job() -> None:
    _nothing()


def test_a_dagster_run_under_capsys_keeps_stderr_usable(home: RematchHome, capsys: pytest.CaptureFixture) -> None:
    assert "absl.logging" in sys.modules  # the condition: absl's handler exists before the run
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        execute(dg.Definitions(jobs=[nothing_job]), instance, "nothing_job")
    print("after the run", file=sys.stderr)
    assert capsys.readouterr().err.endswith("after the run\n")


def test_the_first_run_of_a_fresh_pytest_process_under_capsys_does_not_kill_it() -> None:
    """In its own process the run above is the first one, with absl imported at collection (fails before the fix)."""
    node = f"{Path(__file__).relative_to(REPO)}::test_a_dagster_run_under_capsys_keeps_stderr_usable"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", node],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout

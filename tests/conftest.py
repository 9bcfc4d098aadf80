"""Shared fixtures: a temporary data home with real DuckDB files and a real Dagster instance."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rematch_pipeline.resources.home import RematchHome


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RematchHome:
    """A fresh REMATCH_HOME (and DAGSTER_HOME inside it) for one test."""
    root = tmp_path / "home"
    monkeypatch.setenv("REMATCH_HOME", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster"))
    monkeypatch.delenv("REMATCH_SECRET", raising=False)
    home = RematchHome(root=str(root))
    home.prepare()
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

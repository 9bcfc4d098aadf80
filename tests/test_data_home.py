"""A mistyped REMATCH_HOME: the commands that only use a data home refuse it, creating nothing; set-up makes one."""

from __future__ import annotations

from pathlib import Path

import pytest

from rematch_pipeline.cli import main


@pytest.fixture
def typo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """REMATCH_HOME pointing where no data home is (a real one beside it, as a coordinator's typo would)."""
    target = tmp_path / "rematch-hom"
    monkeypatch.setenv("REMATCH_HOME", str(target))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("REMATCH_SECRET", raising=False)
    return target


@pytest.mark.parametrize(
    "argv",
    [["pseudonym", "RM-0001"], ["erase", "RM-0001"], ["round", "r1"], ["round", "r1", "--period", "2026-07"]],
    ids=["pseudonym", "erase", "round", "round-with-period"],
)
@pytest.mark.parametrize("folder", ["missing", "empty folder"])
def test_a_command_that_uses_a_data_home_refuses_a_path_that_holds_none_and_creates_nothing(
    typo: Path, argv: list[str], folder: str, capsys: pytest.CaptureFixture
) -> None:
    if folder == "empty folder":
        typo.mkdir()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert f"no data home at {typo} (REMATCH_HOME)" in err
    assert "nothing was created" in err and "rematch ingest" in err
    assert "RM-0001" not in err  # never the reference typed
    # Nothing made: no folder, no key, no Dagster instance.
    assert (list(typo.iterdir()) if typo.exists() else None) == ([] if folder == "empty folder" else None)


def test_without_rematch_home_the_refusal_says_which_folder_it_looked_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("REMATCH_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["pseudonym", "RM-0001"]) == 1
    assert f"no data home at {tmp_path / '.rematch'} (REMATCH_HOME is not set: ./.rematch of this folder)" in capsys.readouterr().err
    assert not (tmp_path / ".rematch").exists()


def test_a_first_ingest_makes_the_data_home_and_then_the_other_commands_use_it(
    typo: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["ingest"]) == 0  # the README's first use on a fresh machine
    out = capsys.readouterr().out
    assert f"into {typo / 'landing' / 'households'}" in out
    assert (typo / "landing" / "households").is_dir() and (typo / "dagster" / "dagster.yaml").is_file()
    # Now a data home: pseudonym looks the reference up (none stored yet) instead of refusing the home.
    assert main(["pseudonym", "RM-0001"]) == 1
    err = capsys.readouterr().err
    assert "no data home" not in err and "reference 1: no household of the identity store" in err

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


def test_rematch_ui_starts_dagster_without_its_supersession_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rematch ui`'s terminal opened with `SupersessionWarning: Function dev_command is superseded … Use 'dg dev'
    instead.` (Dagster 1.13; `dg` is not installed): noise to a coordinator. The command `rematch ui` executes is
    captured, and the warning Dagster's `@superseded` gives on a call of `dev_command` is raised under the environment
    it would run with; other warnings are not silenced."""
    import os
    import subprocess
    import sys

    from rematch_pipeline import cli

    monkeypatch.setenv("REMATCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    monkeypatch.setenv("PYTHONWARNINGS", "default")  # an operator's own filter is kept
    started: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: started.append((path, argv, dict(os.environ))))
    assert main(["ui", "--port", "3999"]) == 0
    (path, argv, env) = started[0]
    assert path.endswith("dagster") and argv[1:2] == ["dev"] and argv[-2:] == ["-p", "3999"]
    raise_it = (
        "import warnings\n"
        "from dagster._annotations import superseded\n"
        "@superseded(additional_warn_text=\"Use 'dg dev' instead.\", emit_runtime_warning=True)\n"
        "def dev_command(): pass\n"
        "dev_command()\n"
        "warnings.warn('another warning', UserWarning)\n"
    )
    def stderr_under(environment: dict[str, str]) -> str:
        return subprocess.run([sys.executable, "-c", raise_it], env=environment, capture_output=True, text=True, check=True).stderr
    assert "is superseded" in stderr_under({**env, "PYTHONWARNINGS": "default"}), "the warning is raised here as by dagster dev"
    quiet = stderr_under(env)
    assert "superseded" not in quiet and "dg dev" not in quiet
    assert "another warning" in quiet

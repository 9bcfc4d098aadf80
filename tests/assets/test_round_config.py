"""A round launched from the Launchpad with the run config a person types: every mistake is refused
before the round reads or writes anything, naming the field and the rule, never the value typed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.wording import counted
from tests.assets.conftest import materialized_round, refused_round

WEIGHTS = ("jobs", "schools_childcare", "medical_care", "community", "big_city", "quiet_rural", "family_nearby", "wishes")



def _round_rows(home: RematchHome) -> int:
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        return con.execute("SELECT count(*) FROM rounds").fetchone()[0]


MISTAKES: list[tuple[dict, str]] = [
    ({"period": "July 2026"}, "period: format: YYYY-MM"),
    ({"period": "2026-13"}, "period: format: YYYY-MM"),
    ({"period": "2026-07", "time_limit_seconds": -5}, "time_limit_seconds: a number of seconds above 0"),
    ({"period": "2026-07", "relative_gap": 5}, "relative_gap: a fraction"),
    ({"period": "2026-07", "wall_limit_seconds": -1}, "wall_limit_seconds: a number of seconds above 0"),  # 0 is not set
    # No upper bound before: 1e12 s was taken, shown as `time limit 1e+12 s`, and a hard round would never stop.
    ({"period": "2026-07", "time_limit_seconds": 1e12}, "time_limit_seconds: a number of seconds above 0 (e.g. 60) and at most 86400 (24 hours)"),
    ({"period": "2026-07", "wall_limit_seconds": 1e9}, "wall_limit_seconds: a number of seconds above 0 and at most 172800 (48 hours)"),
    ({"period": "2026-07", "weight_jobs": -3}, "weight_jobs: a number from 0 to 1000"),
    ({"period": "2026-07", "weight_wishes": float("nan")}, "weight_wishes: a number from 0 to 1000"),
    ({"period": "2026-07", "weight_community": 1e300}, "weight_community: a number from 0 to 1000"),
    ({"period": "2026-07", **{f"weight_{w}": 0 for w in WEIGHTS}}, "weight_*: every weight is 0"),
]
# objective and backend are choices Dagster checks before a run exists: tests/assets/test_ui.py.


def test_a_mistyped_round_config_is_refused_naming_the_field_before_anything_is_stored(ingested: RematchHome) -> None:
    # One data home for all cases: ingestion is the slow part, and a refused round must leave it as it was.
    for config, expected in MISTAKES:
        reason = refused_round(ingested, "r1", config)
        assert "round not started, fix the run config: " in reason and expected in reason, (config, reason)
        assert not [v for v in config.values() if isinstance(v, str) and v in reason], "the value typed is not echoed"
        assert _round_rows(ingested) == 0, "a refused round stores nothing"


def test_a_well_formed_but_unknown_period_names_the_field_and_the_known_periods(ingested: RematchHome) -> None:
    assert "period: intake period 2026-08 has no validated municipality offers (known: 2026-07)" in refused_round(
        ingested, "r1", {"period": "2026-08"}
    )


def test_a_round_id_that_is_a_path_or_a_sentence_is_refused_and_nothing_is_written_outside_rounds(ingested: RematchHome) -> None:
    # The UI adds any partition key; before, "../escaped" wrote the re-identified proposals.csv outside rounds/.
    for round_id in ("../escaped", "Round 2 for the Ivanenko family"):
        reason = refused_round(ingested, round_id, {"period": "2026-07", "time_limit_seconds": 5})
        assert "round id (the partition of `rounds`): 1-64 letters" in reason and "Ivanenko" not in reason
    assert not (ingested.path / "escaped").exists()
    assert sorted(p.name for p in (ingested.path / "rounds").iterdir()) == []
    assert _round_rows(ingested) == 0
    with pytest.raises(ValueError, match="round id"):
        ingested.round_dir("../escaped")


def test_a_value_of_the_wrong_type_fails_in_one_line_naming_the_field_without_the_value(
    ingested: RematchHome, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Dagster's own config check quotes the value; `rematch round --config` printed it in a traceback."""
    config = tmp_path / "round.yaml"
    config.write_text('period: "2026-07"\ntime_limit_seconds: "sixty"\nweight_housing: 2\nbackend: CBC\n')
    capsys.readouterr()
    assert main(["round", "r1", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sixty" not in err
    assert err.startswith("rematch: round_job not started, fix the run config: ")
    assert "ops.round_candidates.config.time_limit_seconds: expected a number" in err
    assert "ops.round_candidates.config: unknown field weight_housing" in err
    # A choice of the Launchpad's list typed otherwise (it was text, checked only once the round had started).
    assert "ops.round_candidates.config.backend: code: not one of scip, cbc, highs, cp_sat" in err and "CBC" not in err


def test_a_yes_no_or_a_list_written_otherwise_says_what_to_write(home: RematchHome, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`place_every_household: ja` said Dagster's `expected Bool`, and locked_pairs written as a mapping (one entry
    without its "- ") said `expected array`; now they say `true or false` and show the list form, with placeholder
    words for the entry's fields (never the values typed)."""
    import yaml

    config = tmp_path / "round.yaml"
    config.write_text(
        'period: "2026-07"\nplace_every_household: ja\nlocked_pairs:\n  household_pseudonym: H-0123456789abcdef0123\n  municipality_id: "05112"\n'
    )
    capsys.readouterr()
    assert main(["round", "r1", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "H-0123456789abcdef0123" not in err and "05112" not in err
    assert "ops.round_candidates.config.place_every_household: expected true or false" in err
    said = 'ops.round_candidates.config.locked_pairs: expected a list, one entry per line starting with "- ", or in one line: '
    assert said in err
    example = err.split(said)[1].split(";")[0]
    assert example == 'locked_pairs: [{household_pseudonym: "<household_pseudonym>", municipality_id: "<municipality_id>"}]'
    # The form shown is YAML that gives the list Dagster wants.
    assert yaml.safe_load(example) == {"locked_pairs": [{"household_pseudonym": "<household_pseudonym>", "municipality_id": "<municipality_id>"}]}


def test_a_round_can_leave_out_the_deferred_acceptance_comparison(ingested: RematchHome, tmp_path: Path) -> None:
    # At 50,000 households the comparison adds about a minute; an authority may leave it out.
    config = tmp_path / "round.yaml"
    config.write_text('period: "2026-07"\ntime_limit_seconds: 5\ncompare_mechanisms: false\n')
    assert main(["round", "r1", "--config", str(config)]) == 0
    round_dir = ingested.path / "rounds" / "r1"
    assert json.loads((round_dir / "solver.json").read_text())["mechanisms"] == {}
    assert "No comparison was computed for this round" in (round_dir / "report.html").read_text()


def test_the_cli_takes_a_run_config_saved_from_the_launchpad(ingested: RematchHome, tmp_path: Path) -> None:
    """A coordinator who saved the Launchpad's YAML (ops: round_candidates: config: …) can run it with `rematch
    round --config`; it was refused with `ops.round_candidates.config: unknown field ops`."""
    config = tmp_path / "launchpad.yaml"
    config.write_text('ops:\n  round_candidates:\n    config:\n      period: "2026-07"\n      time_limit_seconds: 10\n      weight_wishes: 3\n'
                      "      objective: maximin\n")
    assert main(["round", "lp", "--config", str(config)]) == 0
    with duckdb.connect(str(ingested.warehouse_path), read_only=True) as con:
        recorded = json.loads(con.execute("SELECT config_json FROM rounds WHERE round_id = 'lp'").fetchone()[0])
    assert recorded["weight_wishes"] == 3 and recorded["time_limit_seconds"] == 10
    # A choice of the Launchpad's list is recorded, and reaches the solver, as the text it is.
    assert recorded["objective"] == "maximin" and recorded["backend"] == "cbc"
    params = json.loads((ingested.round_dir("lp") / "solver.json").read_text())["params"]
    assert (params["objective"], params["backend"]) == ("maximin", "cbc")
    # Another job's run config is not a round's: said in one line, nothing run.
    config.write_text("ops:\n  record_decisions:\n    config:\n      round_id: lp\n")
    assert main(["round", "lp2", "--config", str(config)]) == 1
    assert _round_rows(ingested) == 1


def test_place_every_household_fails_naming_who_has_no_place_and_stores_nothing(ingested: RematchHome, tmp_path: Path) -> None:
    """Exactly one municipality per household (`place_every_household`): when the hard rules leave a household
    none, the round fails before solving, counting them and naming them by pseudonym only; nothing is proposed.
    Without it the same round places the most persons and says why each of them stays out."""
    config = tmp_path / "round.yaml"
    config.write_text('period: "2026-07"\ntime_limit_seconds: 5\n')
    assert main(["round", "free", "--config", str(config)]) == 0
    with duckdb.connect(str(ingested.warehouse_path), read_only=True) as con:
        placeless = con.execute(
            "SELECT count(DISTINCT h.link_group) FROM round_outcomes o JOIN round_households h USING (round_id, household_pseudonym)"
            " WHERE round_id = 'free'"
            " AND (o.unplaced_reason LIKE 'no compatible municipality%' OR o.unplaced_reason LIKE 'no municipality compatible%')"
        ).fetchone()[0]
    assert placeless > 0, "the sample round has households the hard rules leave no municipality"

    reason = refused_round(ingested, "every", {"period": "2026-07", "time_limit_seconds": 5, "place_every_household": True})
    assert f"place_every_household: {counted(placeless, 'household or link group has', 'households or link groups have')} no compatible municipality" in reason
    assert "H-" in reason and "nothing was proposed or stored" in reason
    with duckdb.connect(str(ingested.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM proposals WHERE round_id = 'every'").fetchone()[0] == 0
    assert not (ingested.path / "rounds" / "every" / "proposals.csv").exists()


def test_a_round_without_a_time_limit_gets_one_by_its_size_and_the_report_names_it(ingested: RematchHome, tmp_path: Path) -> None:
    from rematch_pipeline.engine.problem import time_limit_for

    config = tmp_path / "round.yaml"
    config.write_text('period: "2026-07"\ncompare_mechanisms: false\n')
    assert main(["round", "auto", "--config", str(config)]) == 0
    round_dir = ingested.path / "rounds" / "auto"
    solver = json.loads((round_dir / "solver.json").read_text())
    with duckdb.connect(str(ingested.warehouse_path), read_only=True) as con:
        pairs = con.execute("SELECT count(*) FROM round_candidates WHERE round_id = 'auto'").fetchone()[0]
        recorded = json.loads(con.execute("SELECT config_json FROM rounds WHERE round_id = 'auto'").fetchone()[0])
    assert pairs > 0 and solver["params"]["time_limit_seconds"] == time_limit_for(pairs) == 60.0
    assert recorded["time_limit_seconds"] is None  # as launched: a repeat again takes the limit by its size
    report = (round_dir / "report.html").read_text()
    label = report.index("Time limit per round, all solver stages (seconds)")
    assert "<td>60</td>" in report[label : label + 200].replace(" ", "")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('period: "2026-07"\nlocked_pairs: [{household_pseudonym: Olena Kovalenko, municipality_id: "09162"\n', "line 3, column 1"),
        ('period: "2026-07"\n  weight_wishes: Olena Kovalenko\n', "line 2, column 3"),
        ("period: !Olena 2026-07\n", "line 1, column 9"),
        ('period: "2026-07\ntime_limit_seconds: 30 # Olena Kovalenko\n', "line 3, column 1"),
    ],
)
def test_a_config_file_that_is_not_yaml_fails_in_one_line_naming_file_line_and_column(
    home: RematchHome, tmp_path: Path, capsys: pytest.CaptureFixture, text: str, where: str
) -> None:
    """A YAML syntax error (an unclosed bracket or quote, a stray indent) printed PyYAML's traceback, with the
    file's line quoted in it (here a name typed into the file)."""
    config = tmp_path / "round.yaml"
    config.write_text(text)
    capsys.readouterr()
    assert main(["round", "r1", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Olena" not in err and "Traceback" not in err
    assert err.startswith(f"rematch: {config}, {where}: not valid YAML")
    assert _round_rows_if_any(home) == 0


def test_a_key_given_twice_or_a_tab_indent_fails_naming_the_lines(home: RematchHome, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """PyYAML keeps the last of a key given twice: `period` twice ran the second period, a weight twice took the
    second weight, both without a word. A tab said only `while scanning for the next token`."""
    config = tmp_path / "round.yaml"
    config.write_text('period: "2026-07"\nweight_wishes: 2\ntime_limit_seconds: 30\nweight_wishes: 20\n')
    capsys.readouterr()
    assert main(["round", "r1", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"rematch: {config}, line 4, column 1: a key given twice (first on line 2); keep one, the round would take only the last"
    # Inside an entry too (never the key: a name typed as a key is not repeated).
    config.write_text('period: "2026-07"\nlocked_pairs:\n  - {Olena: H-0123456789abcdef0123, Olena: "05315"}\n')
    assert main(["round", "r1", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rematch: {config}, line 3, column ") and "a key given twice (first on line 3)" in err and "Olena" not in err
    config.write_text('period: "2026-07"\n\ttime_limit_seconds: 30\n')
    assert main(["round", "r1", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rematch: {config}, line 2, column 1: not valid YAML") and "a tab character there: indent with spaces" in err
    assert _round_rows_if_any(home) == 0


def test_a_round_id_run_again_says_it_replaces_the_earlier_answer(ingested: RematchHome) -> None:
    """A round id reused replaced the round's proposals.csv, report and files without a word, though the
    proposals may have gone out already; the run now warns, naming the earlier run's period and start."""
    import dagster as dg

    def warnings(result: dg.ExecuteInProcessResult) -> list[str]:
        with dg.DagsterInstance.get() as instance:
            return [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING and "was run before" in e.user_message]

    config = {"period": "2026-07", "time_limit_seconds": 5, "compare_mechanisms": False}
    assert warnings(materialized_round(ingested, "r1", config)) == []
    again = warnings(materialized_round(ingested, "r1", config))
    assert len(again) == 1 and again[0].startswith("round r1 was run before (period 2026-07, started ")
    assert "this run replaces its proposals, report and files in rounds/r1/; to keep them, launch a new round id" in again[0]


def test_a_config_file_that_is_not_utf8_fails_naming_the_file(home: RematchHome, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A file saved as Windows-1252 (an umlaut in a comment) said `UnicodeDecodeError: 'utf-8' codec …` without the file."""
    config = tmp_path / "round.yaml"
    config.write_bytes('period: "2026-07"  # Runde für Köln\n'.encode("cp1252"))
    capsys.readouterr()
    assert main(["round", "r1", "--config", str(config)]) == 1
    assert capsys.readouterr().err.strip() == f"rematch: {config}: encoding: not UTF-8; save the file as UTF-8"


def test_a_config_file_that_is_not_there_is_named_without_python_words(home: RematchHome, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A mistyped --config path said `rematch: FileNotFoundError: [Errno 2] No such file or directory: …`."""
    capsys.readouterr()
    for path, said in ((tmp_path / "rund.yaml", "no such file"), (tmp_path, "a folder, not a file")):
        assert main(["round", "r1", "--config", str(path)]) == 1
        assert capsys.readouterr().err.strip() == f"rematch: {path}: {said}; give the path of the round's YAML file"


def _round_rows_if_any(home: RematchHome) -> int:
    """Rounds stored so far (0 when no warehouse was made)."""
    return _round_rows(home) if home.warehouse_path.exists() else 0


def test_a_number_in_exponent_form_is_a_number_as_in_the_launchpad(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) read `relative_gap: 1e-4` as text, so `rematch round` refused a run config the Launchpad's
    editor (YAML 1.2) had taken, with `relative_gap: expected a number`."""
    from rematch_pipeline.cli import read_yaml

    config = tmp_path / "round.yaml"
    config.write_text('relative_gap: 1e-4\nweight_jobs: 2E+1\ntime_limit_seconds: 6.0e1\nperiod: "1e3"\nwall_limit_seconds: .5\n')
    assert read_yaml(str(config)) == {"relative_gap": 1e-4, "weight_jobs": 20.0, "time_limit_seconds": 60.0, "period": "1e3", "wall_limit_seconds": 0.5}


def test_a_round_launched_without_a_round_id_says_to_choose_one(home: RematchHome) -> None:
    """The Launchpad lets round_job start without a partition of `rounds`: the run failed with Dagster's
    `DagsterInvariantViolationError: Cannot access partition_key for a non-partitioned run`."""
    import dagster as dg

    from rematch_pipeline.definitions import build_definitions
    from rematch_pipeline.runs import RunFailed, execute

    with dg.DagsterInstance.get() as instance, pytest.raises(RunFailed) as failed:
        execute(build_definitions(home), instance, "round_job", run_config={"ops": {"round_candidates": {"config": {"period": "2026-07"}}}})
    reason = str(failed.value).split("): ", 1)[1]
    assert reason.startswith("round not started: no round id; choose a partition of `rounds` (add one, e.g. r1, with Add partition)")
    assert "Dagster" not in reason and not list(home.path.glob("rounds/*"))

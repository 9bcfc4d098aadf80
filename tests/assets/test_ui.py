"""What a coordinator sees in the Dagster UI: the Launchpad's field descriptions, the Automation page's sensors and
schedule, the asset pages' descriptions and metadata, and the run failures of record_decisions_job."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Iterator

import dagster as dg
import duckdb
import numpy as np
import pytest
from dagster._config import ConfigType, ConfigTypeKind

from rematch_pipeline.assets import matching
from rematch_pipeline.assets.matching import BACKENDS, OBJECTIVES
from rematch_pipeline.definitions import build_definitions
from rematch_pipeline.engine.problem import AssignmentProblem, SolverParams
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.runs import RunFailed, execute
from tests.assets.conftest import materialized_round


@pytest.fixture(autouse=True)
def _entered_instance() -> Iterator[None]:
    """Definitions resolve against the state storage of the instance last entered (a context variable Dagster
    sets on `with instance`). An instance entered and never closed (a schedule context left to the garbage
    collector, fixed in test_sensors) resets that variable to a disposed instance's storage whenever it is
    collected, and resolving a job then failed ("undefined DagsterInstance weakref"), in the full suite only.
    The UI resolves them within its own instance; so do these tests."""
    with dg.DagsterInstance.ephemeral():
        yield


def _fields(config_type: ConfigType, path: str = "") -> dict[str, str | None]:
    """Every field below a config type (list entries and optional fields included), by path -> its description,
    as the Launchpad's config panel lists them."""
    out: dict[str, str | None] = {}
    if config_type.kind in (ConfigTypeKind.ARRAY, ConfigTypeKind.NONEABLE):
        return _fields(config_type.inner_type, path + ("[]" if config_type.kind == ConfigTypeKind.ARRAY else ""))
    for name, field in (getattr(config_type, "fields", None) or {}).items():
        out[f"{path}.{name}".lstrip(".")] = field.description
        out.update(_fields(field.config_type, f"{path}.{name}"))
    return out


def _op_config_fields(home: RematchHome, job: str, op: str) -> dict[str, str | None]:
    root = build_definitions(home).resolve_job_def(job).run_config_schema.config_type
    return _fields(root.fields["ops"].config_type.fields[op].config_type.fields["config"].config_type)


def test_the_launchpad_describes_every_field_of_a_round_and_of_recorded_decisions(home: RematchHome) -> None:
    """The weights showed with no description (the Launchpad said `weight_quiet_rural: Float` and nothing else), and
    record_decisions_job's round_id, decisions and each entry's fields neither."""
    round_fields = _op_config_fields(home, "round_job", "round_candidates")
    assert {"period", "weight_wishes", "locked_pairs[].household_pseudonym", "place_every_household"} <= set(round_fields)
    assert [name for name, text in round_fields.items() if not text] == []
    assert "relative to the other weights" in round_fields["weight_quiet_rural"].lower()
    assert "0 switches it off" in round_fields["weight_jobs"] and "1000" in round_fields["weight_jobs"]
    # A demo-sized round said `reproducible: false` in its metadata with the option on: the option covers large rounds only.
    assert "smaller round" in round_fields["reproducible"] and "time_limit_seconds" in round_fields["reproducible"]

    decision_fields = _op_config_fields(home, "record_decisions_job", "record_decisions")
    assert set(decision_fields) == {
        "round_id", "decisions", "decisions[].household_pseudonym", "decisions[].municipality_id", "decisions[].decision", "decisions[].reason",
    }
    assert [name for name, text in decision_fields.items() if not text] == []
    assert "accept or decline" in decision_fields["decisions[].decision"]
    assert "never a name" in decision_fields["decisions[].household_pseudonym"]
    # proposals.csv, the coordinators' list, shows the household reference: the fields said "as the proposals show it".
    for text in (decision_fields["decisions[].household_pseudonym"], round_fields["locked_pairs[].household_pseudonym"]):
        assert "report.html and households.csv show it" in text and "not the household reference of proposals.csv" in text


def test_the_sensors_and_the_schedule_say_what_they_do_and_whether_they_are_on(home: RematchHome) -> None:
    """The Automation page showed landing_sensor, validate_after_ingestion and hourly_ingestion without a word."""
    defs = build_definitions(home)
    automations = {s.name: s for s in [*defs.sensors, *defs.schedules]}
    assert set(automations) == {"landing_sensor", "validate_after_ingestion", "hourly_ingestion"}
    for name, automation in automations.items():
        running = automation.default_status.value == "RUNNING"
        assert automation.description, name
        assert automation.description.startswith("On by default" if running else "Off by default"), name
    assert "landing/decisions/" in automations["landing_sensor"].description
    assert "validate_job" in automations["validate_after_ingestion"].description


def test_each_validated_table_has_a_description_of_its_own(home: RematchHome) -> None:
    """canonical_tables makes five assets; each showed the step's docstring, so `members` and `quarantine` read the same."""
    graph = build_definitions(home).resolve_asset_graph()
    tables = ("municipalities", "households", "members", "decisions", "quarantine")
    texts = {t: graph.get(dg.AssetKey(t)).description for t in tables}
    assert all(texts.values()) and len(set(texts.values())) == len(tables), texts
    assert "identity store" in texts["members"] and "never the value" in texts["quarantine"]



def test_the_round_assets_say_which_file_names_households_how(home: RematchHome) -> None:
    """round_proposals' page read `Solve the assignment; write proposals (pseudonymised), proposals.csv (restricted,
    re-identified) and solver.json`: a developer's to-do, silent on which file holds the pseudonym the Launchpad wants."""
    graph = build_definitions(home).resolve_asset_graph()
    proposals = graph.get(dg.AssetKey("round_proposals")).description
    report = graph.get(dg.AssetKey("round_report")).description
    assert proposals.startswith("The round's proposals") and "household_ref" in proposals and "not by pseudonym" in proposals
    assert report.startswith("The round's report") and "by pseudonym" in report


def test_the_launchpad_offers_objective_and_backend_as_choices_with_their_defaults(home: RematchHome) -> None:
    """Both were free text: the Launchpad took `CBC` or `fair` and the run failed only once the round started."""
    schema = build_definitions(home).resolve_job_def("round_job").run_config_schema.config_type
    fields = schema.fields["ops"].config_type.fields["round_candidates"].config_type.fields["config"].config_type.fields
    for name, codes, default in (("objective", OBJECTIVES, "lexicographic"), ("backend", BACKENDS, "cbc")):
        field = fields[name]
        # A field with a default may be left empty (null takes the default), so the choice list sits inside NONEABLE.
        choice = field.config_type.inner_type if field.config_type.kind == ConfigTypeKind.NONEABLE else field.config_type
        assert choice.kind == ConfigTypeKind.ENUM, name
        assert [v.config_value for v in choice.enum_values] == list(codes)
        assert field.default_value == default


def test_a_rounds_objective_or_backend_outside_the_choices_is_refused_before_a_run_exists(ingested: RematchHome) -> None:
    with dg.DagsterInstance.get() as instance:
        runs = len(instance.get_run_records())
        instance.add_dynamic_partitions("rounds", ["r1"])
        with pytest.raises(RunFailed) as failed:
            execute(build_definitions(ingested), instance, "round_job", partition_key="r1",
                    run_config={"ops": {"round_candidates": {"config": {"objective": "fair", "backend": "CBC"}}}})
        assert len(instance.get_run_records()) == runs, "no run was made"
    reason = str(failed.value)
    assert reason.startswith("round_job not started, fix the run config: ")
    assert "ops.round_candidates.config.objective: code: not one of lexicographic, maximin" in reason
    assert "ops.round_candidates.config.backend: code: not one of scip, cbc, highs, cp_sat" in reason
    assert "fair" not in reason and "CBC" not in reason


def test_landed_exports_metadata_leaves_out_what_is_empty(home: RematchHome) -> None:
    """Every file ingested whole showed `error` and `skipped` with nothing beside them, as if something had gone
    wrong unsaid; a rejected file an empty `tables`."""
    from rematch_pipeline.cli import main
    from tests.formats.fixtures.exports import limesurvey_csv

    (home.landing("households") / "results-survey123456.csv").write_bytes(limesurvey_csv())  # one incomplete response
    (home.landing("municipalities") / "broken.csv").write_text("municipality_id;capacity_persons\n01001;5\n")
    main(["ingest"])
    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(dg.AssetKey("landed_export"), limit=10).records
    shown = {r.asset_materialization.metadata["file_name"].value: {k: v.value for k, v in r.asset_materialization.metadata.items()}
             for r in records}
    # A refused file records no materialization (its run fails, next test), so only the stored one is here.
    assert set(shown) == {"results-survey123456.csv"}
    assert [(name, k) for name, meta in shown.items() for k, v in meta.items() if v == ""] == []
    ingested = shown["results-survey123456.csv"]
    assert ingested["status"] == "ingested" and "error" not in ingested
    assert ingested["skipped"] == "incomplete LimeSurvey responses: 1"


def test_a_refused_file_fails_its_run_with_the_reason_first_and_the_others_are_stored(home: RematchHome, capsys) -> None:
    """Walked in a browser: a refused export's ingest_file_job run was green (Success) in the Runs list and its
    landed_export partition green like a stored file's; the reason was one ERROR line inside the run."""
    from rematch_pipeline.cli import main
    from tests.formats.fixtures.exports import limesurvey_csv

    (home.landing("households") / "results-survey123456.csv").write_bytes(limesurvey_csv())
    (home.landing("municipalities") / "broken.csv").write_text("municipality_id;capacity_persons\n01001;5\n")
    assert main(["ingest"]) == 1  # `rematch ingest` goes on past the failed run and names the file, as before
    assert "rejected: broken.csv, row 1: header: missing columns" in capsys.readouterr().err
    with dg.DagsterInstance.get() as instance:
        runs = {r.tags["rematch/file"]: r for r in instance.get_runs() if r.job_name == "ingest_file_job"}
        assert runs["results-survey123456.csv"].status == dg.DagsterRunStatus.SUCCESS
        refused = runs["broken.csv"]
        assert refused.status == dg.DagsterRunStatus.FAILURE
        [step] = [e.dagster_event for e in instance.all_logs(refused.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
        # The run view's first red line: the reason alone (file, row, column, rule), then what to do.
        first_line = step.step_failure_data.error.message.splitlines()[0]
        assert first_line.startswith("rejected broken.csv, row 1: header: missing columns"), first_line
        assert first_line.endswith("nothing of this file is stored: fix it and land it again")
        metadata = {k: v.value for k, v in step.step_failure_data.user_failure_data.metadata.items()}
        assert metadata == {"file_name": "broken.csv", "landing_folder": "municipalities", "status": "rejected"}
        # Its partition is not shown as materialized; validation ran once, after the stored file.
        assert not instance.get_materialized_partitions(dg.AssetKey("landed_export")) >= {refused.tags["dagster/partition"]}
        assert [r.status for r in instance.get_runs() if r.job_name == "validate_job"] == [dg.DagsterRunStatus.SUCCESS]


def _record(home: RematchHome, config: dict) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.get() as instance:
        return execute(build_definitions(home), instance, "record_decisions_job", run_config={"ops": {"record_decisions": {"config": config}}})


def test_an_unknown_round_id_or_no_decisions_fail_naming_the_field_without_the_value(home: RematchHome) -> None:
    """round_id is free text in the Launchpad: a name typed there was repeated in the run's failure
    (`round Familie Shevchuk has no proposals`); no entries said `no decisions given`, naming no field."""
    entry = {"household_pseudonym": "H-0123456789abcdef0123", "municipality_id": "01001", "decision": "accept"}
    with pytest.raises(RunFailed) as failed:
        _record(home, {"round_id": "Familie Shevchuk", "decisions": [entry]})
    reason = str(failed.value)
    assert reason.endswith("nothing recorded: round_id: reference: no round with this id has proposals (run the round first,"
                           " or check the id: its partition of `rounds`)"), reason
    assert "Shevchuk" not in reason
    with pytest.raises(RunFailed) as failed:
        _record(home, {"round_id": "r1", "decisions": []})
    assert str(failed.value).endswith("nothing recorded: decisions: empty: add one entry per household answered"
                                      " (household_pseudonym, municipality_id, decision)")
    assert list(home.landing("decisions").iterdir()) == []


@pytest.fixture
def round_r1(ingested: RematchHome) -> tuple[RematchHome, dg.ExecuteInProcessResult]:
    """The ingested data home with round r1 run as the Launchpad runs it (only the period set)."""
    return ingested, materialized_round(ingested, "r1", {"period": "2026-07", "time_limit_seconds": 10})


def test_a_rounds_metadata_reads_as_the_log_and_the_report_say_it(round_r1: tuple[RematchHome, dg.ExecuteInProcessResult]) -> None:
    """The gap showed as a fraction with 19 digits (0.0010745971878382493) where the log said `gap 0.1075%`;
    solver seconds and the mean score with 15 decimals."""
    home, result = round_r1
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    solver = json.loads((home.round_dir("r1") / "solver.json").read_text())
    proposals = meta["round_proposals"]
    assert "gap" not in proposals
    gap = proposals["gap_percent"].value
    assert gap == "unproven" if solver["gap"] is None else gap == round(100 * solver["gap"], 4)
    # The status in the log's words ("feasible" read as "it worked"), the solver's own word beside it as solver.json keeps it.
    assert proposals["solver_status"].value == solver["status"] in ("optimal", "feasible")
    assert proposals["status"].value == {"optimal": "optimal (proven best within relative_gap)",
                                         "feasible": "best found within the time limit (not proven best)"}[solver["status"]]
    assert proposals["solver_seconds"].value == round(proposals["solver_seconds"].value, 1)
    mean = meta["round_candidates"]["mean_score_of_compatible_pairs"].value
    assert 0 < mean <= 100 and mean == round(mean, 2)
    # Files as paths (the UI offers to copy them), each one the round wrote.
    report = meta["round_report"]
    for name in ("report", "municipalities_csv", "households_csv"):
        assert isinstance(report[name], dg.PathMetadataValue) and (home.round_dir("r1") / report[name].value.split("/")[-1]).exists()
    assert isinstance(proposals["proposals_csv"], dg.PathMetadataValue)


def test_a_rounds_log_says_what_it_solves_and_how_well_in_a_coordinators_words(
    round_r1: tuple[RematchHome, dg.ExecuteInProcessResult],
) -> None:
    """The run view said `solving 29 units × 4 places, 96 pairs` and `feasible: 62 persons placed, gap 0.1075%`:
    "units" is the engine's word, and "feasible" read as "it works" where it means "not proven best"."""
    home, result = round_r1
    with dg.DagsterInstance.get() as instance:
        lines = [r.user_message for r in instance.all_logs(result.run_id) if r.level == logging.INFO and r.step_key == "round_proposals"]
        candidates = [r.user_message for r in instance.all_logs(result.run_id) if r.level == logging.INFO and r.step_key == "round_candidates"]
    # Walked in a browser: every round said `… compatible pairs (0 forbidden by the coordinator left out, 0 locked); scoring`.
    assert any(re.fullmatch(r"\d+ compatible pairs; scoring", line) for line in candidates), candidates
    solving = [line for line in lines if line.startswith("solving ")]
    assert len(solving) == 1 and re.fullmatch(
        r"solving \d+ placement units \(households; linked ones as one\) × 4 municipalities, \d+ compatible pairs \(cbc, time limit 10 s\)",
        solving[0],
    ), solving
    solved = [line for line in lines if " persons placed, score gap " in line]
    assert len(solved) == 1 and re.match(
        r"(optimal \(proven best within relative_gap\)|best found within the time limit \(not proven best\)): \d+ persons placed", solved[0]
    ), solved
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert solved[0].startswith(meta["round_proposals"]["status"].value + ": "), "the log and the metadata say it alike"


def test_a_solve_without_a_score_bound_says_the_gap_is_unproven_not_inf(ingested: RematchHome, monkeypatch: pytest.MonkeyPatch) -> None:
    """A round launched from the Launchpad with `time_limit_seconds: 20` on the demo data (2026-12-07) logged
    `best found within the time limit (not proven best): 937 persons placed, score gap inf%, 19.4 s`: the score stage
    had found no answer, so no bound. The metadata said `gap_percent: unproven`; the log now says it alike. The score
    stage is skipped for real here (no stage begins with less than MIN_STAGE_SECONDS left)."""
    from rematch_pipeline.engine import assignment

    monkeypatch.setattr(assignment, "MIN_STAGE_SECONDS", 1e9)
    result = materialized_round(ingested, "r1", {"period": "2026-07", "time_limit_seconds": 10})
    with dg.DagsterInstance.get() as instance:
        lines = [r.user_message for r in instance.all_logs(result.run_id) if r.step_key == "round_proposals" and r.level >= logging.INFO]
    solved = [line for line in lines if " persons placed, score gap " in line]
    assert len(solved) == 1 and re.search(r"persons placed, score gap unproven \(no bound\), \d+\.\d s$", solved[0]), solved
    assert any("found any answer for stage score" in line for line in lines), lines
    assert not [line for line in lines if "inf%" in line or "nan%" in line], lines


def _linked_pair(home: RematchHome) -> list[tuple[str, str]]:
    """The proposals of r1's link group of two (household pseudonym, municipality)."""
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        return con.execute(
            "SELECT p.household_pseudonym, p.municipality_id FROM proposals p JOIN round_households h USING (round_id, household_pseudonym)"
            " WHERE round_id = 'r1' AND h.link_group IN (SELECT link_group FROM round_households WHERE round_id = 'r1'"
            " GROUP BY 1 HAVING count(*) > 1) ORDER BY 1"
        ).fetchall()


def test_linked_households_answered_otherwise_are_refused_and_answered_in_part_are_warned_about(
    round_r1: tuple[RematchHome, dg.ExecuteInProcessResult],
) -> None:
    """Validation counts a link group's decisions only once all of them are answered alike. The job said it had
    written two decisions and the run succeeded; the decline was then quarantined in a validate_job run the
    coordinator never opened, and the next round proposed the declined pair again."""
    home, _ = round_r1
    pair = _linked_pair(home)
    assert len(pair) == 2, "the sample's link group of two is proposed"
    (first, m_first), (second, m_second) = pair
    with pytest.raises(RunFailed) as failed:
        _record(home, {"round_id": "r1", "decisions": [
            {"household_pseudonym": first, "municipality_id": m_first, "decision": "accept"},
            {"household_pseudonym": second, "municipality_id": m_second, "decision": "decline"},
        ]})
    assert str(failed.value).endswith(
        "nothing recorded: decisions[1].decision: linked households: answered otherwise than its linked household in decisions[0]"
    )
    assert list(home.landing("decisions").iterdir()) == []

    result = _record(home, {"round_id": "r1", "decisions": [{"household_pseudonym": first, "municipality_id": m_first, "decision": "decline"}]})
    with dg.DagsterInstance.get() as instance:
        warnings = [r.user_message for r in instance.all_logs(result.run_id) if r.level == logging.WARNING]
    assert f"decisions[0]: linked with {second} in this round; the decision counts once every household of the group is answered alike" \
        " (in this run or another)" in warnings
    assert len(list(home.landing("decisions").iterdir())) == 1, "written all the same: the partner may be answered in another run"


def test_a_household_reference_typed_as_a_pseudonym_is_named_as_such(round_r1: tuple[RematchHome, dg.ExecuteInProcessResult]) -> None:
    """proposals.csv lists households by reference (household_ref), the Launchpad wants pseudonyms: a reference copied
    from there was refused as `reference: that round proposed nothing to this household (mistyped, …)`."""
    home, _ = round_r1
    reference = (home.round_dir("r1") / "proposals.csv").read_text(encoding="utf-8-sig").splitlines()[1].split(",")[0]
    municipality = (home.round_dir("r1") / "proposals.csv").read_text(encoding="utf-8-sig").splitlines()[1].split(",")[1]
    with pytest.raises(RunFailed) as failed:
        _record(home, {"round_id": "r1", "decisions": [{"household_pseudonym": reference, "municipality_id": municipality, "decision": "accept"}]})
    assert str(failed.value).endswith(
        "nothing recorded: decisions[0].household_pseudonym: format: a household pseudonym (H- and 20 hex digits) as report.html"
        " and households.csv show it; not the household reference of proposals.csv, never a name"
    ), failed.value
    assert reference not in str(failed.value)
    assert list(home.landing("decisions").iterdir()) == []


def test_a_field_left_empty_in_the_launchpad_takes_its_default(ingested: RematchHome, tmp_path) -> None:  # noqa: ANN001
    """`period:` with nothing after it is null in YAML; the Launchpad says "empty = the latest". The round failed with
    pydantic's `ValidationError: 1 validation error for RoundConfig` and its traceback; the same for a weight, a
    switch or the pair lists left empty."""
    from rematch_pipeline.cli import main

    config = tmp_path / "round.yaml"
    config.write_text("ops:\n  round_candidates:\n    config:\n      period:\n      weight_jobs:\n      place_every_household:\n"
                      "      locked_pairs:\n      objective:\n      backend:\n      time_limit_seconds: 10\n      wall_limit_seconds: 0\n")
    assert main(["round", "r1", "--config", str(config)]) == 0
    with duckdb.connect(str(ingested.warehouse_path), read_only=True) as con:
        period, recorded = con.execute("SELECT period, config_json FROM rounds WHERE round_id = 'r1'").fetchone()
    recorded = json.loads(recorded)
    assert period == "2026-07" and recorded["period"] == "" and recorded["weight_jobs"] == 1.0
    assert recorded["place_every_household"] is False and recorded["time_limit_seconds"] == 10
    assert recorded["wall_limit_seconds"] is None, "0, as the scaffold shows it, is not set (twice the time limit), recorded as before"
    # The choices are recorded as the text they are, and reach the solver as such (solver.json's params).
    assert (recorded["objective"], recorded["backend"]) == ("lexicographic", "cbc")
    params = json.loads((ingested.round_dir("r1") / "solver.json").read_text())["params"]
    assert (params["objective"], params["backend"]) == ("lexicographic", "cbc")


def _scaffolded_round_config(home: RematchHome) -> dict:
    """The round's config as the Launchpad's *Scaffold all default config* fills it in (the webserver's
    rootDefaultYaml, made from the job's config schema snapshot)."""
    import yaml
    from dagster._core.snap.snap_to_yaml import default_values_yaml_from_type_snap

    snap = build_definitions(home).resolve_job_def("round_job").get_job_snapshot()
    schema = snap.config_schema_snapshot
    scaffold = default_values_yaml_from_type_snap(schema, schema.get_config_snap(snap.mode_def_snaps[0].root_config_key))
    return yaml.safe_load(scaffold)["ops"]["round_candidates"]["config"]


def test_the_scaffolded_round_config_shows_every_field_the_time_limits_as_0_by_the_rounds_size(home: RematchHome) -> None:
    """time_limit_seconds and wall_limit_seconds defaulted to null, which Dagster leaves out of the scaffolded
    config: a coordinator scaffolding the round's config did not see that the time limit can be set."""
    from rematch_pipeline.assets.matching import RoundConfig
    from rematch_pipeline.engine.problem import time_limit_for

    scaffold = _scaffolded_round_config(home)
    assert set(scaffold) == set(RoundConfig.model_fields)
    assert (scaffold["time_limit_seconds"], scaffold["wall_limit_seconds"]) == (0, 0)
    fields = _op_config_fields(home, "round_job", "round_candidates")
    assert "0 or empty = by the round's size" in fields["time_limit_seconds"]
    assert "0 or empty = twice the time limit" in fields["wall_limit_seconds"]
    # 0 is "not set", as empty and as left out: the same limit, recorded as before (null).
    for config in (RoundConfig(time_limit_seconds=0, wall_limit_seconds=0), RoundConfig(), RoundConfig(time_limit_seconds=None)):
        assert config.problems() == []
        assert config.recorded()["time_limit_seconds"] is None and config.recorded()["wall_limit_seconds"] is None
        assert config.solver_params(2_000_000).time_limit_seconds == time_limit_for(2_000_000)
    assert RoundConfig(time_limit_seconds=-1).problems()[0].startswith("time_limit_seconds: a number of seconds above 0")


def _solving_lines(home: RematchHome, monkeypatch: pytest.MonkeyPatch, time_limit_seconds: int) -> tuple[list[str], list[str]]:
    """A round's round_proposals INFO lines and its `still solving` lines among them (at least one). The solve is the
    real one, followed by a pause of several beats (the beat shortened to fit), so that a line is due whatever the
    solve took."""
    real_solve = matching.solve
    beat = 0.05

    def solve_then_pause(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = real_solve(*args, **kwargs)
        time.sleep(6 * beat)
        return result

    monkeypatch.setattr(matching, "STILL_WORKING_EVERY_SECONDS", beat, raising=False)  # raising: the old code had none
    monkeypatch.setattr(matching, "solve", solve_then_pause)
    result = materialized_round(home, "r1", {"period": "2026-07", "time_limit_seconds": time_limit_seconds})
    with dg.DagsterInstance.get() as instance:
        lines = [r.user_message for r in instance.all_logs(result.run_id) if r.level == logging.INFO and r.step_key == "round_proposals"]
    still = [line for line in lines if line.startswith("still solving")]
    assert still, lines
    return lines, still


def test_a_long_solve_says_it_is_alive_while_it_solves(ingested: RematchHome, monkeypatch: pytest.MonkeyPatch) -> None:
    """A national round's run view and terminal said `solving 47800 placement units … (cbc, time limit 293 s …)` and
    then nothing for 6-10 minutes until the answer (evaluated 2026-12-06): whoever waited could not tell a working
    round from a hung one. Now a line every STILL_WORKING_EVERY_SECONDS says how long it has solved and its limit.
    The solve here is the real one, followed by a pause so that a line is due (the beat is shortened to fit)."""
    lines, still = _solving_lines(ingested, monkeypatch, time_limit_seconds=10)
    assert all(re.fullmatch(r"still solving, \d+ s so far \(time limit 10 s\)", line) for line in still), still
    solved = next(i for i, line in enumerate(lines) if " persons placed, score gap " in line)
    assert max(lines.index(line) for line in still) < solved, "no line after the answer"
    # The comparison with deferred acceptance that follows says it is running too.
    assert "comparing the proposals with deferred acceptance and the fixed distribution key (compare_mechanisms)" in lines[solved:]


def test_a_large_solve_says_the_counted_work_done_while_it_solves(ingested: RematchHome, monkeypatch: pytest.MonkeyPatch) -> None:
    """A national round on a loaded machine (2026-12-07) said `still solving, 5 min 30 s so far (time limit 176 s of
    counted work, 5 min 52 s at the latest)`: the wall clock had passed the limit, and nothing said how much of the
    counted work (the limit's own measure) was done, so how long was left. Now the line says it. The solve is the
    real large path (this small round sent there, reproducible budgets), followed by a pause so that a line is due."""
    real_params = matching.RoundConfig.solver_params

    def large(config: matching.RoundConfig, n_pairs: int) -> SolverParams:
        return dataclasses.replace(real_params(config, n_pairs), max_model_pairs=0)

    monkeypatch.setattr(matching.RoundConfig, "solver_params", large)
    _, still = _solving_lines(ingested, monkeypatch, time_limit_seconds=2)
    # A beat before the large method's clock starts (the units put in data order first) has no work to say yet.
    pattern = r"still solving, \d+ s so far(?:, (\d+\.\d) s of counted work done)? \(time limit 2 s of counted work, 4 s at the latest\)"
    done = [re.fullmatch(pattern, line) for line in still]
    assert all(done), still
    work = [m.group(1) for m in done]
    first = next((i for i, w in enumerate(work) if w is not None), len(work))
    assert work[first:] and None not in work[first:], still  # once said, said in every line after
    said = [float(w) for w in work[first:]]
    assert said == sorted(said) and said[-1] <= 4, "the solve's counted work: it only grows, within twice its limit"


def test_a_round_says_it_is_alive_while_it_scores_stores_and_loads_its_pairs(ingested: RematchHome, monkeypatch: pytest.MonkeyPatch) -> None:
    """A national round said `… compatible pairs …; scoring` and then nothing for up to 40 s until `solving …`
    (scoring and storing 15 M pairs, loading them back and building the problem; evaluated 2026-12-06). Now both
    steps say what they do, and still_working's line comes while they run. The work here is the real one, each step
    followed by a pause so that a line is due (the beat is shortened to fit)."""
    beat = 0.05
    real_exclusions, real_build = matching.exclusion_tables, matching.build_problem

    def exclusions_then_pause(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        tables = real_exclusions(*args, **kwargs)
        time.sleep(6 * beat)
        return tables

    def build_then_pause(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        problem = real_build(*args, **kwargs)
        time.sleep(6 * beat)
        return problem

    monkeypatch.setattr(matching, "STILL_WORKING_EVERY_SECONDS", beat)
    monkeypatch.setattr(matching, "exclusion_tables", exclusions_then_pause)
    monkeypatch.setattr(matching, "build_problem", build_then_pause)
    result = materialized_round(ingested, "r1", {"period": "2026-07", "time_limit_seconds": 10})
    with dg.DagsterInstance.get() as instance:
        logs = [r for r in instance.all_logs(result.run_id) if r.level == logging.INFO]
    candidates = [r.user_message for r in logs if r.step_key == "round_candidates"]
    pairs = next(int(line.split()[0]) for line in candidates if line.endswith(" compatible pairs; scoring"))
    still = [line for line in candidates if line.startswith("still scoring")]
    assert still and all(re.fullmatch(rf"still scoring and storing {pairs} compatible pairs, \d+ s so far", line) for line in still), candidates
    stored = candidates.index(f"{pairs} compatible pairs scored and stored")
    assert max(candidates.index(line) for line in still) < stored
    proposals = [r.user_message for r in logs if r.step_key == "round_proposals"]
    loading = proposals.index("round r1: loading the candidate pairs and building the problem")
    solving = next(i for i, line in enumerate(proposals) if line.startswith("solving "))
    still = [i for i, line in enumerate(proposals) if line.startswith("still loading")]
    assert still and loading < min(still) and max(still) < solving, proposals
    assert all(re.fullmatch(r"still loading the candidate pairs and building the problem, \d+ s so far", proposals[i]) for i in still)


def test_still_working_says_it_while_the_block_runs_and_not_after() -> None:
    said: list[str] = []
    two = threading.Event()

    def say(line: str) -> None:
        said.append(line)
        if len(said) >= 2:
            two.set()

    with matching.still_working(say, "still solving", "time limit 293 s of counted work", every=0.01):
        assert two.wait(30), "two lines while the block runs"
    after = len(said)
    time.sleep(0.05)
    assert len(said) == after, "nothing once the block is done"
    assert said[0] == "still solving, 0 s so far (time limit 293 s of counted work)"


def test_a_large_rounds_log_names_the_large_round_method_not_the_backend() -> None:
    """The national round's log said `(cbc, time limit 293 s by the round size)`: CBC plays no part in a round
    that large, and its limit is counted work with a wall-clock stop at twice it."""
    problem = AssignmentProblem(
        unit_ids=["u0", "u1"], place_ids=["09162", "09163"], resources=["persons"],
        usage=np.array([[2], [3]]), capacity=np.array([[5], [5]]), min_intake=np.array([0, 0]),
        pair_unit=np.array([0, 0, 1]), pair_place=np.array([0, 1, 1]), pair_score=np.full(3, 50.0),
    )
    large = SolverParams(time_limit_seconds=293, max_model_pairs=2)
    assert matching.solve_limit_words(problem, large, by_size=True) == (
        "large-round method, time limit 293 s of counted work by the round size, 9 min 46 s at the latest"
    )
    assert matching.solve_limit_words(problem, large, by_size=False, short=True) == "time limit 293 s of counted work, 9 min 46 s at the latest"
    exact = SolverParams(time_limit_seconds=60, backend="cbc")
    assert matching.solve_limit_words(problem, exact, by_size=False) == "cbc, time limit 60 s"


def test_a_wall_clock_cut_of_the_large_path_is_said_once_in_the_rounds_log(
    ingested: RematchHome, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The national round's terminal showed the engine's `the wall-clock limit stopped this solve …` as a bare line
    without the run's prefix, and the run view did not have it (evaluated 2026-12-06). Now the round's log says it,
    once, naming the setting to lengthen, and the generic `the time limit cut this solve short` is not said beside it.
    The solve is the real large path (this small round sent there), on a machine made slow past its wall limit."""
    from rematch_pipeline.engine import large_scale
    from rematch_pipeline.engine.large_scale import pricing, search

    real_solve, insert = matching.solve, search._insert_unplaced

    def large(problem: AssignmentProblem, params: SolverParams, **kwargs):  # noqa: ANN003, ANN202
        return real_solve(problem, dataclasses.replace(params, max_model_pairs=0), **kwargs)

    def slow_insert(lag: pricing._Lagrangian, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        time.sleep(lag.clock.wall_left() + 0.1)  # a slow machine in the answer step: past the wall-clock limit
        return insert(lag, *args, **kwargs)

    monkeypatch.setattr(matching, "solve", large)
    monkeypatch.setattr(search, "_insert_unplaced", slow_insert)
    with caplog.at_level(logging.WARNING, logger=large_scale.__name__):
        result = materialized_round(ingested, "r1", {"period": "2026-07", "time_limit_seconds": 2, "wall_limit_seconds": 3})
    assert not [r for r in caplog.records if r.name.startswith(large_scale.__name__)], "no bare engine line"
    with dg.DagsterInstance.get() as instance:
        warned = [r.user_message for r in instance.all_logs(result.run_id) if r.level == logging.WARNING and r.step_key == "round_proposals"]
    cut = [line for line in warned if "wall-clock limit stopped this solve" in line]
    assert len(cut) == 1 and "wall_limit_seconds" in cut[0], warned
    assert not [line for line in warned if line.startswith("the time limit cut this solve short")], warned
    assert json.loads((ingested.round_dir("r1") / "solver.json").read_text())["reproducible"] is False


def test_the_launchpad_describes_the_resources_block_in_a_coordinators_words(home: RematchHome) -> None:
    """Walked in a browser: the round's Launchpad scaffolds a `resources:` block, and its panel described
    `warehouse` with dagster_duckdb's docstring (a Python example, `.. code-block:: python`) and `home` as
    "`prepare()` creates the folders"; round_job's page has no Launchpad tab (an asset job), nor said where it is."""
    job = build_definitions(home).resolve_job_def("round_job")
    resources = job.run_config_schema.config_type.fields["resources"].config_type.fields
    texts = {name: " ".join((resources[name].description or "").split()) for name in ("home", "identity", "warehouse")}
    assert all(texts.values()), texts
    for name, text in texts.items():
        assert "code-block" not in text and "prepare()" not in text and "DuckDBResource" not in text, (name, text)
    assert "Leave it as scaffolded" in texts["home"] and "Leave it as scaffolded" in texts["warehouse"]
    assert "Nothing to set here" in texts["identity"]
    assert "*Open launchpad*" in job.description and "*Add new partition*" in job.description


def test_the_data_homes_dagster_instance_shows_no_newsletter_window(home: RematchHome, tmp_path) -> None:
    """Walked in a browser: the first page a coordinator opened was covered by Dagster's "Join the Dagster
    community" window asking for an e-mail address. A data home made before gets it switched off too."""
    with dg.DagsterInstance.get() as instance:
        assert instance.nux_enabled is False
    older = RematchHome(root=str(tmp_path / "older"))
    older.dagster_home.mkdir(parents=True)
    written = "# Written by rematch: local Dagster instance of this data home.\ntelemetry:\n  enabled: false\n"
    (older.dagster_home / "dagster.yaml").write_text(written)
    older.prepare()
    older.prepare()  # once
    assert (older.dagster_home / "dagster.yaml").read_text() == written + "nux:\n  enabled: false\n"
    with dg.DagsterInstance.from_config(str(older.dagster_home)) as instance:
        assert instance.nux_enabled is False


def test_the_launchpads_decision_is_read_as_a_files_in_any_case_and_a_word_not_a_code_is_refused(
    round_r1: tuple[RematchHome, dg.ExecuteInProcessResult],
) -> None:
    """A decisions file's `Accept` counts (parsing.code_spelled); the Launchpad refused the same word as `code: not one
    of accept, decline`. Now the job reads its entries through the file reader's code path: the codes and the German
    words of contract D's list in lower case, Capitalised or UPPER CASE; written as the code list spells them.
    A word off that list was refused only once the run existed, its config (the word) kept in Dagster's run storage:
    now Dagster's config check refuses it (an enum, DecisionWord) and no run is made."""
    home, _ = round_r1
    linked = {h for h, _ in _linked_pair(home)}
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        proposals = [p for p in con.execute("SELECT household_pseudonym, municipality_id FROM proposals WHERE round_id = 'r1' ORDER BY 1").fetchall()
                     if p[0] not in linked][:3]
    typed = ["Accept", "DECLINE", "Zusage"]
    entries = [{"household_pseudonym": h, "municipality_id": m, "decision": d} for (h, m), d in zip(proposals, typed)]
    with dg.DagsterInstance.get() as instance:
        runs = len(instance.get_runs())
    with pytest.raises(RunFailed) as failed:
        _record(home, {"round_id": "r1", "decisions": [*entries, {**entries[0], "decision": "vielleicht"}]})
    assert str(failed.value) == (
        "record_decisions_job not started, fix the run config: ops.record_decisions.config.decisions[3].decision: code: not one of"
        " accept, decline, annehmen, angenommen, zusage, ablehnen, abgelehnt, absage (lower case, Capitalised or UPPER CASE)"
    )
    assert list(home.landing("decisions").iterdir()) == []
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == runs, "refused before a run (and its config) exists"

    _record(home, {"round_id": "r1", "decisions": entries})
    (written,) = home.landing("decisions").iterdir()
    with written.open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["household_pseudonym"], r["decision"]) for r in rows] == [
        (proposals[0][0], "accept"), (proposals[1][0], "decline"), (proposals[2][0], "accept")]

"""A step that fails on bad input or bad configuration ends with the one-line reason, as a dg.Failure whose
description is that reason and whose metadata says where (config field and rule), without a chain of
exceptions or our internal frames in front of it: `dagster job execute` and the UI show the reason first."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from rematch_pipeline.definitions import build_definitions
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.sample import generate_round, write_round
from tests.conftest import land


def _failed_events(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> tuple[dg.DagsterEvent, dg.DagsterEvent]:
    """The step failure and the run failure as the instance stored them (what the UI and the CLI show)."""
    step = next(e for e in result.all_events if e.is_step_failure)
    run = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0].dagster_event
    return step, run


def _our_frames(error) -> list[str]:
    """Frames of rematch_pipeline in an error's stack, but the one that raises the step's Failure."""
    return [f for f in error.stack if "rematch_pipeline" in f and "assets/failures.py" not in f]


def test_a_round_config_mistake_fails_with_the_reason_and_the_field_as_metadata_without_our_frames(home: RematchHome) -> None:
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("rounds", ["r1"])
        result = build_definitions(home).resolve_job_def("round_job").execute_in_process(
            instance=instance, partition_key="r1", raise_on_error=False,
            run_config={"ops": {"round_candidates": {"config": {"period": "July", "time_limit_seconds": -5}}}},
        )
        step, run = _failed_events(instance, result)
    data = step.step_failure_data
    assert data.user_failure_data is not None
    assert data.user_failure_data.description.startswith("round not started, fix the run config: period: format: YYYY-MM")
    shown = {k: v.value for k, v in data.user_failure_data.metadata.items()}
    assert shown["period"].startswith("format: YYYY-MM") and shown["time_limit_seconds"].startswith("a number of seconds above 0")
    assert "July" not in str(shown), "never the value typed"
    assert _our_frames(data.error) == [], data.error.stack
    assert data.error.cause is None and data.error.context is None
    assert run.event_specific_data.error.message.startswith("round not started")


def _launched(home: RematchHome, job: str, config: dict, partition: str | None = None) -> tuple[str, str, str]:
    """A run of the job as the Launchpad launches it, failed: its failure's description, and the error messages of the
    step failure and of the run failure as the instance stored them (the UI's run view shows each in red)."""
    with dg.DagsterInstance.get() as instance:
        if partition:
            instance.add_dynamic_partitions("rounds", [partition])
        result = build_definitions(home).resolve_job_def(job).execute_in_process(
            instance=instance, partition_key=partition, raise_on_error=False, run_config={"ops": config},
        )
        step, run = _failed_events(instance, result)
    return step.step_failure_data.user_failure_data.description, step.step_failure_data.error.message, run.event_specific_data.error.message


def test_the_run_view_shows_an_expected_failure_as_its_reason_alone(home: RematchHome) -> None:
    """The step failure and the run failure each showed `dagster._core.definitions.events.Failure: <reason>` in the
    run view: a developer's class name before the coordinator's reason. Bad config, a round with no data to
    match, a decision for a round that has none."""
    cases = [
        ("round_job", {"round_candidates": {"config": {"period": "July"}}}, "r1", "round not started, fix the run config: period: format"),
        ("round_job", {"round_candidates": {"config": {}}}, "r2", "no validated municipality offers yet"),
        ("record_decisions_job", {"record_decisions": {"config": {"round_id": "r9", "decisions": [
            {"household_pseudonym": "H-0123456789abcdef0123", "municipality_id": "01001", "decision": "accept"}]}}}, None,
         "nothing recorded: round_id: reference:"),
    ]
    for job, config, partition, reason in cases:
        description, step_message, run_message = _launched(home, job, config, partition)
        assert description.startswith(reason), description
        assert step_message == run_message == description + "\n", (step_message, description)


def test_an_unsafe_key_file_fails_ingestion_with_the_reason_first_not_a_traceback(home: RematchHome, tmp_path: Path) -> None:
    """Before, the PermissionError left the step as a user-code error: the run failure printed Dagster's
    stack first and the reason after it, under 'The above exception was caused by'."""
    write_round(generate_round(6, 2, seed=3), tmp_path / "sample")
    landed = land(home, tmp_path / "sample")
    home.secret()
    home.key_file.chmod(0o644)
    with dg.DagsterInstance.get() as instance:
        from rematch_pipeline.assets.sensors import export_run_requests

        requests, keys = export_run_requests(home, set(), settle_seconds=0.0)
        instance.add_dynamic_partitions("exports", keys)
        first = requests[0]
        result = build_definitions(home).resolve_job_def("ingest_file_job").execute_in_process(
            instance=instance, partition_key=first.partition_key, run_config=first.run_config, tags=first.tags, raise_on_error=False,
        )
        step, run = _failed_events(instance, result)
    assert landed
    data = step.step_failure_data
    assert data.user_failure_data is not None
    assert "secret.key is readable by others (mode 644); run chmod 600 on it" in data.user_failure_data.description
    assert data.user_failure_data.metadata["file"].value.endswith("secret.key")
    assert _our_frames(data.error) == []
    assert "readable by others" in run.event_specific_data.error.message.splitlines()[0]


def test_a_bug_in_a_step_is_named_by_its_exception_on_the_command_line_its_message_withheld(home: RematchHome, monkeypatch) -> None:
    """Not a failure on input: `rematch round` printed Dagster's wrapper line ("Error occurred while executing
    op …:") and not the exception. A bug's message may quote a cell value (`invalid literal for int(): '…'`), and
    Dagster stores it in the event log the UI shows: the class is named, the message withheld, the frames kept."""
    import pytest

    from rematch_pipeline.runs import RunFailed, execute

    secret = "Zzyzx-Kowalczyk"

    def broken(*args, **kwargs):
        int(secret)

    monkeypatch.setattr("rematch_pipeline.assets.matching.RoundConfig.problems", broken)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("rounds", ["r1"])
        with pytest.raises(RunFailed) as failed:
            execute(build_definitions(home), instance, "round_job", partition_key="r1",
                    run_config={"ops": {"round_candidates": {"config": {"period": "2026-07"}}}})
        [run] = instance.get_runs(limit=1)
        [record] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        stored = " ".join(str(e.user_message) + str(e.dagster_event) for e in instance.all_logs(run.run_id))
    assert "ValueError (a bug: its message is withheld, as it may quote a cell value" in str(failed.value), failed.value
    assert secret not in str(failed.value) and secret not in stored
    error = record.dagster_event.step_failure_data.error.cause  # Dagster's wrapper, then ours
    assert any("test_step_failures.py" in frame for frame in error.stack), error.stack  # where the bug is

    # A developer reproducing it on test data sees the message.
    monkeypatch.setenv("REMATCH_KEEP_ERROR_MESSAGES", "1")
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("rounds", ["r2"])
        with pytest.raises(RunFailed) as failed:
            execute(build_definitions(home), instance, "round_job", partition_key="r2",
                    run_config={"ops": {"round_candidates": {"config": {"period": "2026-07"}}}})
    assert str(failed.value).endswith(f"ValueError: invalid literal for int() with base 10: '{secret}'"), failed.value


def test_a_round_before_any_ingestion_says_to_ingest_first(home: RematchHome) -> None:
    """A new user's first try: before, DuckDB's `Table with name decisions does not exist!`."""
    import pytest

    from rematch_pipeline.runs import RunFailed, execute

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("rounds", ["r1"])
        with pytest.raises(RunFailed) as failed:
            execute(build_definitions(home), instance, "round_job", partition_key="r1", run_config={})
    assert str(failed.value).endswith("no validated municipality offers yet: ingest municipality questionnaires first")


def test_a_refused_round_prints_its_reason_on_the_console_without_a_stack_trace(home: RematchHome, tmp_path: Path, capfd) -> None:  # noqa: ANN001 - pytest fixture
    """Trying the round's paths as a new coordinator: `rematch round` with a config mistake printed the reason
    twice (step and run failure), each followed by about 25 lines of Dagster's frames ending in our wrapper's
    `raise failure from None`, which read as a crash. An expected failure now ends at its reason there; the
    event log (the UI) keeps the error whole, and a bug keeps its stack on the console (the test above)."""
    from rematch_pipeline.cli import main

    config = tmp_path / "round.yaml"
    config.write_text('period: "2026-07"\nrelative_gap: 5\n')
    capfd.readouterr()
    assert main(["round", "r1", "--period", "2026-07", "--config", str(config)]) == 1
    out, err = capfd.readouterr()
    shown = out + err
    # rematch's own line only: the step and run failure lines said it too, three times in all.
    assert shown.count("relative_gap: a fraction") == 1, shown
    assert shown.splitlines()[-1].startswith("rematch: round_job failed (run ") and "relative_gap: a fraction" in shown.splitlines()[-1]
    assert 'STEP_FAILURE - Execution of step "round_candidates" failed.' in shown, shown
    assert "Stack Trace" not in shown and "failures.py" not in shown, shown


def test_a_round_on_an_empty_data_home_says_its_refusal_once_and_the_run_keeps_it_for_the_ui(home: RematchHome, capfd) -> None:  # noqa: ANN001 - pytest fixture
    """A round launched on a data home without households: Dagster's STEP_FAILURE and RUN_FAILURE lines repeated
    the project's refusal above rematch's line. The terminal says it once; the run's stored events (what the UI's
    run view shows in red) keep it, and a console outside rematch (`rematch ui`'s) still prints it."""
    from rematch_pipeline.assets.matching import NO_OFFERS_YET
    from rematch_pipeline.cli import main

    capfd.readouterr()
    assert main(["round", "r1"]) == 1
    out, err = capfd.readouterr()
    assert (out + err).count(NO_OFFERS_YET) == 1, out + err
    assert err.splitlines()[-1].endswith(NO_OFFERS_YET)
    run_id = err.splitlines()[-1].split("(run ", 1)[1][:8]
    with dg.DagsterInstance.get() as instance:
        run = next(r for r in instance.get_runs() if r.run_id.startswith(run_id))
        step = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)[0]
        failed = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0]
        assert step.dagster_event.step_failure_data.error.message.startswith(NO_OFFERS_YET)
        assert failed.dagster_event.event_specific_data.error.message.startswith(NO_OFFERS_YET)
        # Launched otherwise (the UI, dagster job execute), the console line keeps the reason.
        instance.add_dynamic_partitions("rounds", ["r2"])
        result = build_definitions(home).resolve_job_def("round_job").execute_in_process(
            instance=instance, partition_key="r2", raise_on_error=False)
    assert not result.success
    out, err = capfd.readouterr()
    assert (out + err).count(NO_OFFERS_YET) >= 2, out + err  # step failure and run failure
    # Without a `loggers:` section (a partition's config, which the Launchpad loads), Dagster logged through its
    # default console logger, not the jobs' own: each failure line ended in ~25 lines of stack on `rematch ui`'s terminal.
    assert "Stack Trace" not in out + err and "failures.py" not in out + err, out + err


def test_every_job_names_its_console_logger_when_its_run_config_does_not(home: RematchHome) -> None:
    """Dagster uses a job's loggers only when the run config names them (dagster-io/dagster#20084): a run launched
    from the Launchpad, a sensor or the schedule fell back to Dagster's default console logger, which keeps an
    expected failure's stack. Each job's default config (a round's partition config), or its run request, names it."""
    from dagster._core.system_config.objects import ResolvedRunConfig

    from rematch_pipeline.assets.sensors import export_run_requests

    defs = build_definitions(home)
    for job in ("validate_job", "retry_exports_job", "record_decisions_job"):
        assert "console" in ResolvedRunConfig.build(defs.resolve_job_def(job), {}).loggers, job
    assert defs.resolve_job_def("round_job").partitioned_config.get_run_config_for_partition_key("r1")["loggers"] == {"console": {}}
    (home.landing("municipalities") / "municipalities.csv").write_text("municipality_id\n")
    [request], _ = export_run_requests(home, set(), settle_seconds=0.0)
    job = defs.resolve_job_def("ingest_file_job")
    assert "console" in ResolvedRunConfig.build(job, request.run_config).loggers


def test_a_refused_decisions_launch_prints_no_stack_trace(home: RematchHome, capfd) -> None:  # noqa: ANN001 - pytest fixture
    """record_decisions_job launched as the Launchpad does (its op config, no `loggers:` section): a refusal printed
    Dagster's stack on `rematch ui`'s terminal (thirty-eighth session: its required op config left it without the
    default config naming our console logger). Its default config names it now, the op's fields empty."""
    from rematch_pipeline.assets.decisions import RECORD_DECISIONS_DEFAULT_CONFIG

    entry = {"household_pseudonym": "H-0123456789abcdef0123", "municipality_id": "01001", "decision": "decline"}
    job = build_definitions(home).resolve_job_def("record_decisions_job")
    capfd.readouterr()
    with dg.DagsterInstance.get() as instance:
        for run_config in ({"ops": {"record_decisions": {"config": {"round_id": "r9", "decisions": [entry]}}}}, RECORD_DECISIONS_DEFAULT_CONFIG):
            assert not job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False).success
    out, err = capfd.readouterr()
    assert "nothing recorded: round_id:" in out + err and "nothing recorded: decisions: empty" in out + err, out + err
    assert "Stack Trace" not in out + err and "failures.py" not in out + err, out + err


def test_a_bug_keeps_its_stack_trace_on_the_console(home: RematchHome, monkeypatch, capfd) -> None:  # noqa: ANN001 - pytest fixture
    import pytest

    from rematch_pipeline.runs import RunFailed, execute

    def broken(*args, **kwargs):
        raise KeyError("top_title")

    monkeypatch.setattr("rematch_pipeline.assets.matching.RoundConfig.problems", broken)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("rounds", ["r1"])
        with pytest.raises(RunFailed):
            execute(build_definitions(home), instance, "round_job", partition_key="r1",
                    run_config={"ops": {"round_candidates": {"config": {"period": "2026-07"}}}})
    out, err = capfd.readouterr()
    assert "Stack Trace" in out + err and "matching.py" in out + err


def test_a_step_that_yields_its_results_fails_with_the_reason_too(home: RematchHome) -> None:
    """canonical_tables yields one MaterializeResult per table: its body runs while Dagster iterates, after
    the wrapper had returned the generator, so an expected failure there escaped reason_first as a bug
    (Dagster's 'Error occurred while executing' and our frames, no description, no metadata)."""
    from rematch_pipeline.assets.failures import reason_first
    from rematch_pipeline.errors import UserFacingError

    @dg.multi_asset(specs=[dg.AssetSpec("first"), dg.AssetSpec("second")])
    @reason_first
    def two_tables():  # noqa: ANN202 - a generator, as canonical_tables
        yield dg.MaterializeResult(asset_key="first")
        raise UserFacingError("second: stopped for a reason", {"rule": "the rule"})

    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([two_tables], instance=instance, raise_on_error=False)
        step, run = _failed_events(instance, result)
    data = step.step_failure_data
    assert data.user_failure_data is not None, data.error.message
    assert data.user_failure_data.description == "second: stopped for a reason"
    assert {k: v.value for k, v in data.user_failure_data.metadata.items()} == {"rule": "the rule"}
    assert _our_frames(data.error) == [], data.error.stack
    assert run.event_specific_data.error.message.startswith("second: stopped for a reason")

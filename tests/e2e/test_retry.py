"""Files an older version refused, or stored with withheld cells, are read again after an upgrade
(`rematch ingest --retry-rejected`, `retry_exports_job`): stored once, in their place, erasures kept."""

from __future__ import annotations

import datetime as dt
import io
import logging
import shutil
from pathlib import Path

import dagster as dg
import multiprocessing
import duckdb
import polars as pl
import pytest

from rematch_pipeline.cli import main
from rematch_pipeline.definitions import build_definitions
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.resources.identity import pseudonym
from rematch_pipeline.resources.warehouse import INGESTION_LOG_COLUMNS
from rematch_pipeline.sample import SampleRound, generate_round
from rematch_pipeline.wording import counted

SECRET_VALUE = "Zzyzx-Kowalczyk"  # a name typed into the refused file: never in a log line or metadata


def _query(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _csv(frame: pl.DataFrame, sep: str = ",") -> bytes:
    out = io.StringIO()
    frame.write_csv(out, separator=sep)
    return out.getvalue().encode()


def _excel_padded(frame: pl.DataFrame) -> bytes:
    """The template as a German Excel saves it with cells beside the table once formatted: every line ends
    in ';;' (what the version before d87eb81 refused with 'header: unexpected columns')."""
    lines = _csv(frame, sep=";").decode().splitlines()
    return ("\r\n".join(line + ";;" for line in lines) + "\r\n").encode("utf-8-sig")  # "CSV UTF-8"


def _refused_by_an_older_version(home: RematchHome, path: Path, rule: str) -> str:
    """What ingestion of an older version left for a file its readers refused: the archived copy
    (owner-only) and a `rejected` ledger entry naming file and rule, as `ingest_file` writes them."""
    import hashlib

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    archived = home.archive / f"{sha}{path.suffix.lower()}"
    shutil.copyfile(path, archived)
    archived.chmod(0o600)
    with duckdb.connect(str(home.warehouse_path)) as con:
        from rematch_pipeline.resources.warehouse import WAREHOUSE_DDL

        con.execute(WAREHOUSE_DDL)
        con.execute(
            f"INSERT INTO ingestion_log ({', '.join(INGESTION_LOG_COLUMNS)}) VALUES (?, ?, ?, ?, 'rejected', ?, 0, ?, ?, NULL)",
            [sha, path.name, path.parent.name, archived.name, "households", f"{path.name}, {rule}", dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)],
        )
    return sha


def _land(home: RematchHome, kind: str, name: str, data: bytes) -> Path:
    path = home.landing(kind) / name
    path.write_bytes(data)
    return path


def _ingest(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["ingest", *args])
    out = capsys.readouterr()
    return status, out.out + out.err


def _alone(sample: SampleRound) -> pl.DataFrame:
    """Consenting households that neither name nor are named by a linked household."""
    linked = {r for refs in sample.households["linked_household_refs"].drop_nulls() for r in refs.split()}
    return sample.households.filter(
        (pl.col("linked_household_refs").fill_null("") == "") & ~pl.col("household_ref").is_in(list(linked)) & (pl.col("consent_processing") == "yes")
    )


@pytest.fixture(scope="module")
def sample() -> SampleRound:
    return generate_round(24, 3, seed=31)


def test_a_file_an_older_version_refused_is_stored_once_on_retry(home: RematchHome, sample: SampleRound, capsys) -> None:
    _land(home, "municipalities", "municipalities.csv", _csv(sample.municipalities))
    _land(home, "households", "members.csv", _csv(sample.members))
    households = sample.households.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(SECRET_VALUE)).otherwise(pl.col("contact_name")).alias("contact_name")
    )
    refused = _land(home, "households", "households.csv", _excel_padded(households))
    sha = _refused_by_an_older_version(home, refused, "header: unexpected columns , ; duplicated columns")

    # The ordinary pass never reads the same bytes twice: the refused file stays refused.
    status, out = _ingest(capsys)
    assert status == 0 and "2 new files ingested" in out, out
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == [(0,)]

    status, out = _ingest(capsys, "--retry-rejected")
    assert status == 0, out
    assert f"retried: households.csv: ingested {sample.households.height} rows (refused before)" in out
    assert "1 file retried" in out
    assert SECRET_VALUE not in out
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == [(sample.households.height,)]
    assert _query(home.warehouse_path, "SELECT status, error, tables, rows_ingested FROM ingestion_log WHERE file_sha256 = ?", [sha]) == [
        ("ingested", None, "households", sample.households.height)
    ]
    households_valid = _query(home.warehouse_path, "SELECT count(*) FROM households")[0][0]
    assert households_valid > 0
    # Pseudonyms as any ingestion gives them; the reference and the name only in the identity store.
    first = sample.households.row(0, named=True)
    ref_pseudonym = pseudonym(home.secret(), "household", first["household_ref"])
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households WHERE household_pseudonym = ?", [ref_pseudonym]) == [(1,)]
    assert _query(home.identity_path, "SELECT contact_name FROM household_identity WHERE household_pseudonym = ?", [ref_pseudonym]) == [(SECRET_VALUE,)]

    # Twice: nothing left to retry, nothing stored twice.
    status, out = _ingest(capsys, "--retry-rejected")
    assert status == 0 and "nothing to retry" in out
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == [(sample.households.height,)]
    assert _query(home.identity_path, "SELECT count(*) FROM household_identity") == [(sample.households.height,)]
    assert _query(home.warehouse_path, "SELECT count(*) FROM households") == [(households_valid,)]


def test_a_file_still_refused_stays_refused_and_says_why(home: RematchHome, sample: SampleRound, capsys) -> None:
    broken = _csv(sample.households).replace(b"household_ref", b"household_reference", 1)
    path = _land(home, "households", "households.csv", broken)
    status, out = _ingest(capsys)
    assert status == 1 and "rejected: households.csv" in out
    status, out = _ingest(capsys, "--retry-rejected")
    assert status == 0, out
    assert "still rejected: households.csv, row 1: header" in out
    assert _query(home.warehouse_path, "SELECT status, retried_at IS NOT NULL FROM ingestion_log WHERE file_name = ?", [path.name]) == [("rejected", True)]
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == [(0,)]


def test_an_ingested_file_the_current_readers_refuse_is_not_called_rejected(home: RematchHome, sample: SampleRound, capsys) -> None:
    """A file an older version stored with a withheld cell, whose archived copy the current readers refuse (a CSV
    cut inside a quoted cell of its last row: `unterminated quote`), keeps its rows: the retry says so, not
    `still rejected`, and its ledger entry stays `ingested` without an error."""
    import csv

    out = io.StringIO()
    sample.households.to_pandas().to_csv(out, index=False, quoting=csv.QUOTE_ALL)  # KPI and LimeSurvey quote every cell
    data = out.getvalue().encode()
    path = _land(home, "households", "households.csv", data)
    _land(home, "households", "members.csv", _csv(sample.members))
    assert _ingest(capsys)[0] == 0
    with duckdb.connect(str(home.warehouse_path)) as con:  # what the older version stored: one cell withheld
        con.execute("UPDATE raw_households SET pets = '#withheld' WHERE file_row = 2 AND file_name = ?", [path.name])
        archived = con.execute("SELECT archived_as FROM ingestion_log WHERE file_name = ?", [path.name]).fetchone()[0]
    # Its archived copy as that version read it: cut inside the last row's quoted cell, refused now.
    (home.archive / archived).write_bytes(data[: data.rstrip().rfind(b'","') + 3])

    status, out = _ingest(capsys, "--retry-rejected")
    assert status == 0, out
    assert "still rejected" not in out
    assert (
        "not retried: households.csv: its stored rows stay as ingested; the current readers refuse its archived copy"
        f" (households.csv, row {sample.households.height + 1}: csv: malformed or truncated" in out
    ), out
    assert _query(home.warehouse_path, "SELECT status, error FROM ingestion_log WHERE file_name = ?", [path.name]) == [("ingested", None)]
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == [(sample.households.height,)]


def test_a_refused_file_whose_fixed_copy_was_ingested_says_so_on_retry(home: RematchHome, sample: SampleRound, capsys) -> None:
    """The data engineer fixes a refused file as the message says and lands it under the same name: the fixed copy
    is ingested, and each later retry of the refused copy says that a later file of its name was ingested."""
    broken = _csv(sample.households).replace(b"household_ref", b"household_reference", 1)
    path = _land(home, "households", "households.csv", broken)
    _land(home, "households", "members.csv", _csv(sample.members))
    assert _ingest(capsys)[0] == 1
    path.write_bytes(_csv(sample.households))
    status, out = _ingest(capsys, "--retry-rejected")
    assert status == 0, out
    assert "1 new file ingested" in out
    assert "still rejected: households.csv, row 1: header" in out
    assert "(a later households.csv was ingested on " in out and "if it is the fixed copy, nothing more to do)" in out, out


def test_a_retried_file_holding_another_copy_of_a_stored_submission_says_so(home: RematchHome, sample: SampleRound, capsys) -> None:
    """A file an older version refused holds a submission that a file landed after it stored with another answer (an
    edit in the tool, same submitted_at): the retry says it as ingestion does, once per file, and that validation
    uses the later file's copy (a tie goes to the file that landed last: the retried file keeps its place); no value."""
    _land(home, "households", "members.csv", _csv(sample.members))
    refused = _land(home, "households", "households.csv", _excel_padded(sample.households))
    _refused_by_an_older_version(home, refused, "header: unexpected columns , ; duplicated columns")
    first = sample.households.row(0, named=True)
    edited = sample.households.head(1).with_columns(pl.lit("no" if first["pets"] == "yes" else "yes").alias("pets"))
    _land(home, "households", "edited.csv", _csv(edited))
    assert _ingest(capsys)[0] == 0

    status, out = _ingest(capsys, "--retry-rejected")
    assert status == 0, out
    assert f"retried: households.csv: ingested {sample.households.height} rows (refused before)" in out
    [line] = [line for line in out.splitlines() if line.startswith("warning: ") and "stored before" in line]
    assert line.startswith("warning: households.csv: 1 submission id (column submission_id, rows 2) stored before from edited.csv (ingested "), line
    assert line.endswith("here this file's for 0, another file's for 1"), line
    assert first["submission_id"] not in line and first["pets"] not in line.split("ingested ")[0]
    assert _query(home.warehouse_path, "SELECT warnings LIKE '%stored before from edited.csv%' FROM ingestion_log WHERE file_name = 'households.csv'") == [(True,)]
    # What validation uses is the edit, as the line says.
    ref = pseudonym(home.secret(), "household", first["household_ref"])
    assert _query(home.warehouse_path, "SELECT file_name FROM households WHERE household_pseudonym = ?", [ref]) == [("edited.csv",)]


def test_withheld_intake_periods_are_read_again_in_place_and_the_later_edit_still_wins(home: RematchHome, sample: SampleRound, capsys) -> None:
    """Before 8a8bb1e, an intake period Excel had turned into a date ('Jul 26') was withheld at ingestion:
    the raw cell held the placeholder and the offer was held out. A retry reads the archived file again;
    its rows keep their place in ingestion order, so a later edit of the same submission (same
    submission id and date, as Kobo and Central keep them) still wins."""
    municipalities = sample.municipalities
    saved = municipalities.with_columns(pl.lit("Jul 26").alias("intake_period"))
    first = _land(home, "municipalities", "saved_by_excel.csv", _csv(saved, sep=";").decode().replace("\n", "\r\n").encode("cp1252"))
    _land(home, "households", "households.csv", _csv(sample.households))
    _land(home, "households", "members.csv", _csv(sample.members))
    assert _ingest(capsys)[0] == 0
    # What the older version stored for that file: the cell withheld.
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("UPDATE raw_municipalities SET intake_period = '#withheld' WHERE file_name = ?", [first.name])
    # The edit lands later: same submission and date, another capacity for the first municipality.
    edited = municipalities.head(1).with_columns(pl.lit("999").alias("capacity_persons"))
    _land(home, "municipalities", "edit.csv", _csv(edited))
    status, out = _ingest(capsys)
    assert status == 0
    target = municipalities["municipality_id"][0]
    assert _query(home.warehouse_path, "SELECT count(*) FROM municipalities") == [(1,)]  # the others held out

    status, out = _ingest(capsys, "--retry-rejected")
    assert status == 0, out
    assert f"retried: saved_by_excel.csv: read again, {municipalities.height} rows (withheld cells {municipalities.height} -> 0)" in out
    assert _query(home.warehouse_path, "SELECT intake_period FROM raw_municipalities WHERE file_name = ? ORDER BY file_row", [first.name]) == [
        ("Jul 26",)
    ] * municipalities.height
    assert _query(home.warehouse_path, "SELECT count(*) FROM municipalities WHERE intake_period = '2026-07'") == [(municipalities.height,)]
    # The retried rows are still before the edit's: the edit's capacity stands.
    assert _query(home.warehouse_path, "SELECT capacity_persons FROM municipalities WHERE municipality_id = ?", [target]) == [(999,)]
    order = [r[0] for r in _query(home.warehouse_path, "SELECT file_name FROM raw_municipalities ORDER BY rowid")]
    assert order == [first.name] * municipalities.height + ["edit.csv"]
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_municipalities") == [(municipalities.height + 1,)]

    status, out = _ingest(capsys, "--retry-rejected")
    assert "nothing to retry" in out
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_municipalities") == [(municipalities.height + 1,)]


def test_an_erased_household_does_not_come_back_from_a_retried_file(home: RematchHome, sample: SampleRound, capsys) -> None:
    alone = _alone(sample)
    erased, kept = alone.row(0, named=True), alone.row(1, named=True)
    others = sample.households.filter(pl.col("submission_id") != kept["submission_id"])
    _land(home, "municipalities", "municipalities.csv", _csv(sample.municipalities))
    _land(home, "households", "households.csv", _csv(others))
    _land(home, "households", "members.csv", _csv(sample.members))
    assert _ingest(capsys)[0] == 0
    erased_pseudonym = pseudonym(home.secret(), "household", erased["household_ref"])

    # A file refused before the erasure that names the household: erasure deletes it (it loaded no rows).
    both = sample.households.filter(pl.col("submission_id").is_in([erased["submission_id"], kept["submission_id"]]))
    before = _land(home, "households", "copy_before.csv", _excel_padded(both))
    _refused_by_an_older_version(home, before, "header: unexpected columns , ; duplicated columns")
    assert main(["erase", erased["household_ref"]]) == 0
    assert not before.exists()

    # A file that landed after the erasure, refused then: its other household is read, the erased one left out,
    # with its members that the file carries.
    members = sample.members.filter(pl.col("submission_id").is_in([erased["submission_id"], kept["submission_id"]]))
    after = _land(home, "households", "copy_after.csv", _excel_padded(both.reverse()))
    members_after = _land(home, "households", "members_after.csv", _excel_padded(members))
    _refused_by_an_older_version(home, after, "header: unexpected columns , ; duplicated columns")
    _refused_by_an_older_version(home, members_after, "header: unexpected columns , ; duplicated columns")

    status, out = _ingest(capsys, "--retry-rejected")
    assert status == 0, out
    assert "retried: copy_after.csv: ingested 1 row (refused before); 1 row of erased households left out" in out
    kept_members = members.filter(pl.col("submission_id") == kept["submission_id"]).height
    assert f"retried: members_after.csv: ingested {counted(kept_members, 'row')} (refused before); {counted(members.height - kept_members, 'row')} of erased households left out" in out
    assert "not retried: copy_before.csv: no archived copy" in out
    assert erased["household_ref"] not in out and erased_pseudonym not in out
    kept_pseudonym = pseudonym(home.secret(), "household", kept["household_ref"])
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households WHERE household_pseudonym = ?", [kept_pseudonym]) == [(1,)]
    assert _query(home.warehouse_path, "SELECT count(*) FROM households WHERE household_pseudonym = ?", [kept_pseudonym]) == [(1,)]
    for table, column in (("raw_households", "household_pseudonym"), ("households", "household_pseudonym")):
        assert _query(home.warehouse_path, f"SELECT count(*) FROM {table} WHERE {column} = ?", [erased_pseudonym]) == [(0,)]
    for table in ("raw_members", "members"):
        assert _query(home.warehouse_path, f"SELECT count(*) FROM {table} WHERE submission_id = ?", [erased["submission_id"]]) == [(0,)]
    for table in ("household_identity", "member_identity"):
        assert _query(home.identity_path, f"SELECT count(*) FROM {table} WHERE submission_id = ?", [erased["submission_id"]]) == [(0,)]
    assert _query(home.identity_path, "SELECT count(*) FROM household_identity WHERE household_ref = ?", [erased["household_ref"]]) == [(0,)]


def test_a_retried_file_keeps_its_place_for_consent_a_later_refusal_withdraws_it(home: RematchHome, sample: SampleRound, capsys) -> None:
    """A file refused before, read again now, is older than an edit that refuses consent (same submission
    and date): the edit is the latest copy, so the retried copy is withdrawn as ingestion withdraws one."""
    target = _alone(sample).row(0, named=True)
    _land(home, "municipalities", "municipalities.csv", _csv(sample.municipalities))
    _land(home, "households", "members.csv", _csv(sample.members))
    older = _land(home, "households", "households.csv", _excel_padded(sample.households))
    _refused_by_an_older_version(home, older, "header: unexpected columns , ; duplicated columns")
    refusal = sample.households.filter(pl.col("submission_id") == target["submission_id"]).with_columns(pl.lit("no").alias("consent_processing"))
    _land(home, "households", "edit.csv", _csv(refusal))
    assert _ingest(capsys)[0] == 0

    status, out = _ingest(capsys, "--retry-rejected")
    assert status == 0, out
    rows = _query(
        home.warehouse_path, "SELECT file_name, consent_processing, pets FROM raw_households WHERE submission_id = ? ORDER BY rowid", [target["submission_id"]]
    )
    assert rows == [("households.csv", "yes", None), ("edit.csv", "no", None)]  # blanked: withdrawn by the later refusal
    for table in ("household_identity", "member_identity"):
        assert _query(home.identity_path, f"SELECT count(*) FROM {table} WHERE submission_id = ?", [target["submission_id"]]) == [(0,)]
    assert _query(home.warehouse_path, "SELECT count(*) FROM households WHERE submission_id = ?", [target["submission_id"]]) == [(0,)]
    assert _query(home.warehouse_path, "SELECT value FROM intake_counts WHERE name = 'households_without_consent'") == [(1,)]
    others = _query(home.warehouse_path, "SELECT count(*) FROM raw_households WHERE file_name = 'households.csv' AND pets IS NOT NULL")[0][0]
    assert others == sample.households.height - 1


def test_retry_job_in_dagster_reports_counts_and_file_names_never_values(home: RematchHome, sample: SampleRound) -> None:
    (home.landing("municipalities") / "municipalities.csv").write_bytes(_csv(sample.municipalities))
    (home.landing("households") / "members.csv").write_bytes(_csv(sample.members))
    households = sample.households.with_columns(pl.lit(SECRET_VALUE).alias("contact_name"))
    refused = _land(home, "households", "households.csv", _excel_padded(households))
    sha = _refused_by_an_older_version(home, refused, "header: unexpected columns , ; duplicated columns")
    defs = build_definitions(home)
    with dg.instance_for_test(temp_dir=str(home.dagster_home)) as instance:
        result = defs.resolve_job_def("retry_exports_job").execute_in_process(instance=instance)
        assert result.success
        logs = " ".join(str(e.user_message) + str(e.dagster_event) for e in instance.all_logs(result.run_id))
        materialized = instance.fetch_materializations(dg.AssetKey("landed_export"), limit=10).records
    assert "households.csv: ingested" in logs and SECRET_VALUE not in logs
    [record] = [r for r in materialized if r.partition_key == sha]
    metadata = record.asset_materialization.metadata
    assert metadata["status"].value == "ingested" and metadata["retried"].value is True
    assert metadata["dagster/row_count"].value == sample.households.height
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == [(sample.households.height,)]



def test_a_retried_workbook_with_hidden_rows_says_so_in_the_run_log(home: RematchHome, sample: SampleRound) -> None:
    """Rows a workbook hides are read and said once per sheet at ingestion; a file read again by the retry says it
    too (run log and ingestion log), naming file, sheet and rows, never a value."""
    import xlsxwriter

    from tests.e2e.test_bad_inputs import _write_frame

    (home.landing("municipalities") / "municipalities.csv").write_bytes(_csv(sample.municipalities))
    (home.landing("households") / "members.csv").write_bytes(_csv(sample.members))
    book_bytes = io.BytesIO()
    with xlsxwriter.Workbook(book_bytes) as book:
        sheet = book.add_worksheet("Haushalte")
        _write_frame(sheet, sample.households)
        for row in (3, 4):  # as numbered in the workbook
            sheet.set_row(row - 1, None, None, {"hidden": True})
    refused = _land(home, "households", "households.xlsx", book_bytes.getvalue())
    sha = _refused_by_an_older_version(home, refused, "header: unexpected columns")
    defs = build_definitions(home)
    with dg.instance_for_test(temp_dir=str(home.dagster_home)) as instance:
        result = defs.resolve_job_def("retry_exports_job").execute_in_process(instance=instance)
        assert result.success
        warned = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    line = "households.xlsx [sheet Haushalte]: 2 rows 3, 4 hidden or filtered out in the workbook, read as data like the others"
    assert [m for m in warned if line in m], warned
    [(stored,)] = _query(home.warehouse_path, "SELECT warnings FROM ingestion_log WHERE file_sha256 = ?", [sha])
    assert stored is not None and stored.startswith(line)
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == [(sample.households.height,)]


def _run(job: str, partition_key: str | None, run_config: dict, out: multiprocessing.Queue) -> None:
    """One job run in its own process on the data home's instance (as the daemon starts each run in a
    process of its own)."""
    import os

    home = RematchHome(root=os.environ["REMATCH_HOME"])
    with dg.DagsterInstance.get() as instance:
        result = build_definitions(home).resolve_job_def(job).execute_in_process(
            instance=instance, partition_key=partition_key, run_config=run_config, raise_on_error=False
        )
        steps = [e for e in instance.all_logs(result.run_id) if e.dagster_event and e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")]
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    out.put((job, result.success, [s.timestamp for s in steps], messages))


def test_a_retry_and_a_new_file_at_the_same_moment_take_turns_in_the_duckdb_pool(home: RematchHome, sample: SampleRound) -> None:
    """The retry writes the warehouse, so it runs in the pool `duckdb` (limit 1) like ingestion: while the
    pool's slot is taken both wait and say so, then they take turns, and both files are stored."""
    import time

    from rematch_pipeline.assets.sensors import export_run_requests

    _land(home, "municipalities", "municipalities.csv", _csv(sample.municipalities))
    refused = _land(home, "households", "households.csv", _excel_padded(sample.households))
    _refused_by_an_older_version(home, refused, "header: unexpected columns , ; duplicated columns")
    [request], keys = export_run_requests(home, {r[0] for r in _query(home.warehouse_path, "SELECT file_sha256 FROM ingestion_log")}, 0.0)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    runs = [
        context.Process(target=_run, args=("ingest_file_job", request.partition_key, request.run_config, out)),
        context.Process(target=_run, args=("retry_exports_job", None, {}, out)),
    ]
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("exports", keys)
        # A third writer holds the slot until both runs queue for it, so they meet whatever the machine's
        # load (started "together", one could finish before the other had asked).
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default("duckdb")  # as a run's first step in the pool does
        assert storage.claim_concurrency_slot("duckdb", "holder-run", "holder-step").is_claimed
        for run in runs:
            run.start()
        deadline = time.time() + 180
        while len(storage.get_concurrency_info("duckdb").pending_steps) < 3 and time.time() < deadline:
            time.sleep(0.2)
        waiting = len(storage.get_concurrency_info("duckdb").pending_steps) - 1
        storage.free_concurrency_slot_for_step("holder-run", "holder-step")
    assert waiting == 2
    results = {job: (ok, times, messages) for job, ok, times, messages in (out.get(timeout=180) for _ in runs)}
    for run in runs:
        run.join()
    assert all(ok for ok, _, _ in results.values())
    (first_start, first_end), (second_start, second_end) = sorted(times for _, times, _ in results.values())
    # One after the other: the slot is freed as the first step's work ends, a moment before its success
    # event is stored (0.2 s seen under load), so the events may overlap by that much, not by a step.
    assert second_start >= first_end - 1.0 and second_end > first_end
    assert all(any("blocked by limit for pool duckdb" in (m or "") for m in messages) for _, _, messages in results.values())
    assert _query(home.warehouse_path, "SELECT file_name, status FROM ingestion_log ORDER BY file_name") == [
        ("households.csv", "ingested"), ("municipalities.csv", "ingested")
    ]
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_households") == [(sample.households.height,)]
    assert _query(home.warehouse_path, "SELECT count(*) FROM raw_municipalities") == [(sample.municipalities.height,)]

"""Great Expectations asset checks on a real data home: pass on good data, name each corruption, leak no value."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from rematch_pipeline.assets.expectations import expectation_checks
from rematch_pipeline.assets.features import household_features, municipality_features
from rematch_pipeline.assets.validate import canonical_tables
from rematch_pipeline.definitions import build_definitions, build_resources
from rematch_pipeline.resources.home import RematchHome
from rematch_pipeline.runs import ingest_landing
from rematch_pipeline.sample import generate_round, write_round
from rematch_pipeline.schemas import expectations as suites
from rematch_pipeline.schemas.contract import TABLES, Kind
from tests.conftest import land

VALIDATE_STAGE = [canonical_tables, household_features, municipality_features]

# Cell values planted by the corruptions; none may show up in metadata, logs or Data Docs.
SENTINELS = ("orphan-7f3c9e", "klingon-5d1a", "tlh-8b2e", "voodoo-41aa", "perhaps-3c4d", "77.7177717")

CORRUPTIONS: list[str] = [
    # municipalities: out-of-range value, accessible > housing, unknown code in a list, no capacity, duplicate row
    "UPDATE municipalities SET latitude = 77.7177717 WHERE municipality_id = (SELECT min(municipality_id) FROM municipalities)",
    "UPDATE municipalities SET accessible_units = housing_units + 1 WHERE municipality_id = (SELECT max(municipality_id) FROM municipalities)",
    "UPDATE municipalities SET medical_care = ['general', 'voodoo-41aa'] WHERE municipality_id = (SELECT max(municipality_id) FROM municipalities)",
    "UPDATE municipalities SET capacity_persons = 0, min_persons = 0",
    "INSERT INTO municipalities SELECT * FROM municipalities WHERE municipality_id = (SELECT max(municipality_id) FROM municipalities)",
    # households: duplicate row, out-of-range importance, malformed AGS in a list
    "INSERT INTO households SELECT * FROM households WHERE submission_id = (SELECT min(submission_id) FROM households)",
    "UPDATE households SET imp_jobs = 9 WHERE submission_id = (SELECT max(submission_id) FROM households)",
    "UPDATE households SET preferred_municipality_ids = ['12ab'] WHERE submission_id = (SELECT max(submission_id) FROM households)",
    # members: orphan, unknown code, unknown code in a list, impossible age
    "UPDATE members SET submission_id = 'orphan-7f3c9e' WHERE member_pseudonym = (SELECT min(member_pseudonym) FROM members)",
    "UPDATE members SET german_level = 'klingon-5d1a' WHERE member_pseudonym = (SELECT max(member_pseudonym) FROM members)",
    "UPDATE members SET languages = ['uk', 'tlh-8b2e'] WHERE member_pseudonym = (SELECT max(member_pseudonym) FROM members)",
    "UPDATE members SET age_years = 121 WHERE member_pseudonym = (SELECT max(member_pseudonym) FROM members)",
    # decisions: unknown decision code
    "INSERT INTO decisions (round_id, household_pseudonym, municipality_id, decision) VALUES ('t0', 'H-x', '05513', 'perhaps-3c4d')",
]

# (frame, expectation, column) that must report them — and nothing else may fail.
EXPECTED_FAILURES: dict[str, set[tuple[str, str, str]]] = {
    "municipalities": {
        ("municipalities", "expect_column_values_to_be_between", "latitude"),
        ("municipalities", "expect_column_pair_values_a_to_be_greater_than_b", "housing_units, accessible_units"),
        ("municipalities", "expect_compound_columns_to_be_unique", "municipality_id, intake_period"),
        ("municipalities_codes", "expect_column_values_to_be_in_set", "medical_care"),
        ("municipality_periods", "expect_column_values_to_be_between", "capacity_persons"),
    },
    "households": {
        ("households", "expect_column_values_to_be_unique", "submission_id"),
        ("households", "expect_column_values_to_be_unique", "household_pseudonym"),
        ("households", "expect_column_values_to_be_between", "imp_jobs"),
        ("households_lists", "expect_column_values_to_match_regex", "preferred_municipality_ids"),
    },
    "members": {
        ("members", "expect_column_values_to_be_in_set", "submission_id"),
        ("members", "expect_column_values_to_be_in_set", "german_level"),
        ("members", "expect_column_values_to_be_between", "age_years"),
        ("members_codes", "expect_column_values_to_be_in_set", "languages"),
    },
    "decisions": {("decisions", "expect_column_values_to_be_in_set", "decision")},
}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home with a small sample round ingested once for the module (ingestion is the slow part)."""
    root = tmp_path_factory.mktemp("expectations") / "home"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REMATCH_HOME", str(root))
        env.setenv("DAGSTER_HOME", str(root / "dagster"))
        env.delenv("REMATCH_SECRET", raising=False)
        home = RematchHome(root=str(root))
        home.prepare()
        sample = root.parent / "sample"
        write_round(generate_round(60, 8, seed=11), sample)
        land(home, sample)
        with dg.instance_for_test(temp_dir=str(home.dagster_home)) as instance:
            ingest_landing(build_definitions(home), instance, home)
    return root


@pytest.fixture
def data_home(ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RematchHome:
    """A private copy of the ingested home, without Dagster history or Data Docs."""
    root = tmp_path / "home"
    shutil.copytree(ingested, root, ignore=shutil.ignore_patterns("dagster", "gx"))
    monkeypatch.setenv("REMATCH_HOME", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster"))
    monkeypatch.delenv("REMATCH_SECRET", raising=False)
    home = RematchHome(root=str(root))
    home.prepare()
    return home


@pytest.fixture
def instance(data_home: RematchHome) -> dg.DagsterInstance:
    with dg.instance_for_test(temp_dir=str(data_home.dagster_home)) as instance:
        yield instance


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    names = {f"{t}_meet_expectations" for t in suites.CHECKED_TABLES}
    return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations() if e.check_name in names}


def _failed_rows(evaluation: dg.AssetCheckEvaluation) -> set[tuple[str, str, str]]:
    """(frame, expectation, column) of the failed rows of the check's markdown table."""
    text = evaluation.metadata["expectations"].value
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()[2:]]
    return {(frame, expectation, column) for frame, expectation, column, _rule, result, _n in rows if result != "passed"}


def _gx_text(home: RematchHome) -> str:
    """Everything GX wrote under the data home (stores, validation results, Data Docs)."""
    return "\n".join(p.read_text(errors="ignore") for p in (home.path / "gx").rglob("*") if p.is_file())


def _stored_keys(home: RematchHome) -> set[str]:
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        rows = con.execute(
            "SELECT submission_id FROM households UNION SELECT household_pseudonym FROM households"
            " UNION SELECT member_pseudonym FROM members"
        ).fetchall()
    return {r[0] for r in rows if r[0]}


def test_suites_pass_on_good_data_and_write_data_docs(data_home, instance) -> None:
    result = dg.materialize([*VALIDATE_STAGE, *expectation_checks], resources=build_resources(data_home), instance=instance)
    assert result.success
    evaluations = _evaluations(result)
    assert set(evaluations) == set(suites.CHECKED_TABLES)
    for table, evaluation in evaluations.items():
        assert evaluation.passed, f"{table}: {_failed_rows(evaluation)}"
        assert evaluation.metadata["expectations_failed"].value == 0
        assert evaluation.metadata["expectations_evaluated"].value > 0
        assert Path(evaluation.metadata["data_docs"].value) == suites.data_docs_index(data_home.path)
    index = data_home.path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert index.exists()
    page = Path(evaluations["members"].metadata["data_docs_page"].value)
    assert page.exists() and page.is_relative_to(index.parent)
    # Downstream features still materialise behind the blocking checks.
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"household_features", "municipality_features"} <= materialised


def test_each_corruption_is_reported_by_its_expectation_without_values(data_home, instance) -> None:
    with duckdb.connect(str(data_home.warehouse_path)) as con:
        for statement in CORRUPTIONS:
            con.execute(statement)
    keys = _stored_keys(data_home)
    # Only the checks (and one downstream asset): re-materialising the tables would repair them.
    result = dg.materialize(
        [*VALIDATE_STAGE, *expectation_checks],
        selection=dg.AssetSelection.checks(*expectation_checks) | dg.AssetSelection.assets(municipality_features),
        resources=build_resources(data_home),
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    evaluations = _evaluations(result)
    for table, expected in EXPECTED_FAILURES.items():
        assert not evaluations[table].passed
        assert _failed_rows(evaluations[table]) == expected, table
        assert evaluations[table].metadata["expectations_failed"].value == len(expected)
    # A blocking failure on municipalities keeps its downstream feature table from being rebuilt.
    assert "municipality_features" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not any(e.step_key == "municipality_features" and e.is_step_success for e in result.all_events)
    # No cell value in check metadata, run logs or anything GX stored (results, Data Docs).
    metadata = str([e.metadata for e in evaluations.values()])
    logs = "\n".join(str(e.message) for e in result.all_events)
    stored = _gx_text(data_home)
    for value in (*SENTINELS, *keys):
        assert value not in metadata, value
        assert value not in logs, value
        assert value not in stored, value


def test_every_contract_rule_has_an_expectation() -> None:
    for table, fields in TABLES.items():
        expectations = [
            e for spec in suites.FRAMES[table] for e in suites.build_suite(table, spec.name).expectations
        ]

        def has(kind: str, column: str, **kwargs: object) -> bool:
            return any(
                e.expectation_type == kind and getattr(e, "column", None) == column and all(getattr(e, k) == v for k, v in kwargs.items())
                for e in expectations
            )

        for field in (f for f in fields if not f.pii):
            if field.kind in (Kind.CODE, Kind.CODES):
                assert has("expect_column_values_to_be_in_set", field.name, value_set=list(field.codes)), field.name
            if field.kind in (Kind.INT, Kind.DECIMAL) and field.minimum is not None:
                assert has("expect_column_values_to_be_between", field.name, min_value=field.minimum, max_value=field.maximum), field.name
            if field.required and field.kind not in (Kind.CODES, Kind.AGS_LIST):
                assert has("expect_column_values_to_not_be_null", field.name), field.name
            if field.max_items:
                assert has("expect_column_values_to_be_between", suites.items_column(field), max_value=field.max_items), field.name


def test_old_validation_results_and_their_pages_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suites, "KEEP_RESULTS", 2)
    columns = [f.name for f in TABLES["decisions"] if not f.pii] + ["household_pseudonym"]
    tables = {"decisions": pl.DataFrame(schema={c: pl.Utf8 for c in columns})}
    for n in range(3):
        outcome = suites.validate_table(tmp_path, "decisions", tables, run_name=f"run-{n}")
        assert outcome.success
    gx_dir = tmp_path / "gx" / "uncommitted"
    assert len(list((gx_dir / "validations" / "decisions").rglob("*.json"))) == 2
    pages = list((gx_dir / "data_docs" / "local_site" / "validations" / "decisions").rglob("*.html"))
    assert sorted(p.parent.parent.name for p in pages) == ["run-1", "run-2"]
    assert "run-0" not in suites.data_docs_index(tmp_path).read_text()


def test_an_expectation_gx_cannot_evaluate_fails_by_exception_class_only(tmp_path: Path) -> None:
    # municipality_id is missing: GX catches the error; only its class may reach the report.
    frame = pl.DataFrame({"round_id": ["r1"], "household_pseudonym": ["H-1"], "decision": ["accept"], "reason": [None]})
    outcome = suites.validate_table(tmp_path, "decisions", {"decisions": frame.cast({"reason": pl.Utf8})}, run_name="broken")
    assert not outcome.success
    errors = {(o.column, o.error) for o in outcome.failed}
    assert errors == {("municipality_id", "MetricResolutionError")}
    assert "does not exist" not in suites.outcome_markdown(outcome)


def _empty_decisions() -> dict[str, pl.DataFrame]:
    columns = [f.name for f in TABLES["decisions"] if not f.pii] + ["household_pseudonym"]
    return {"decisions": pl.DataFrame(schema={c: pl.Utf8 for c in columns})}


def _registered_files(home: Path) -> list[Path]:
    root = suites.gx_root(home)
    return [root / "expectations" / "decisions.json", root / "validation_definitions" / "decisions.json",
            root / "checkpoints" / "rematch_decisions.json"]


def test_a_second_check_in_the_same_process_keeps_the_stored_suite_and_adds_a_result(tmp_path: Path) -> None:
    first = suites.validate_table(tmp_path, "decisions", _empty_decisions(), run_name="run-a")
    written = {p: p.stat().st_mtime_ns for p in _registered_files(tmp_path)}
    second = suites.validate_table(tmp_path, "decisions", _empty_decisions(), run_name="run-b")
    # The suite, validation definition and checkpoint come from the code: not rewritten when unchanged.
    assert {p: p.stat().st_mtime_ns for p in _registered_files(tmp_path)} == written
    assert second.outcomes == first.outcomes
    results = suites.gx_root(tmp_path) / "uncommitted" / "validations" / "decisions"
    assert sorted(p.name for p in results.iterdir()) == ["run-a", "run-b"]
    assert "run-b" in suites.data_docs_index(tmp_path).read_text()


def test_a_suite_changed_in_the_same_process_is_stored_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suites.validate_table(tmp_path, "decisions", _empty_decisions(), run_name="run-a")
    built = suites.build_suite

    def with_a_new_rule(table: str, frame: str):  # type: ignore[no-untyped-def]
        suite = built(table, frame)
        suite.expectations.append(suites._E.ExpectTableRowCountToBeBetween(min_value=1, meta={"rule": "rows: new rule"}))
        return suite

    monkeypatch.setattr(suites, "build_suite", with_a_new_rule)
    outcome = suites.validate_table(tmp_path, "decisions", _empty_decisions(), run_name="run-b")
    assert [o.rule for o in outcome.failed] == ["rows: new rule"]
    assert "rows: new rule" in (suites.gx_root(tmp_path) / "expectations" / "decisions.json").read_text()


def test_each_data_home_has_its_own_context_and_a_removed_one_is_made_again(tmp_path: Path) -> None:
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    home_a.mkdir(), home_b.mkdir()
    suites.validate_table(home_a, "decisions", _empty_decisions(), run_name="run-a")
    suites.validate_table(home_b, "decisions", _empty_decisions(), run_name="run-b")
    for home, run in ((home_a, "run-a"), (home_b, "run-b")):
        results = suites.gx_root(home) / "uncommitted" / "validations" / "decisions"
        assert [p.name for p in results.iterdir()] == [run]
    shutil.rmtree(suites.gx_root(home_a))
    outcome = suites.validate_table(home_a, "decisions", _empty_decisions(), run_name="run-c")
    assert outcome.success and all(p.exists() for p in _registered_files(home_a))
    assert "run-c" in suites.data_docs_index(home_a).read_text()


def test_data_docs_views_compile_each_template_once_per_process(tmp_path: Path) -> None:
    from great_expectations.render.view import DefaultJinjaPageView

    from rematch_pipeline.schemas.gx_views import SharedJinjaIndexPageView, SharedJinjaPageView

    suites.validate_table(tmp_path, "decisions", _empty_decisions(), run_name="run-a")
    variables = suites.open_context(tmp_path).variables
    # No config variables file: GX would parse it again on every read of a setting.
    assert variables.config_variables_file_path is None
    site = variables.data_docs_sites[suites.SITE_NAME]
    assert site["site_index_builder"]["view"]["class_name"] == "SharedJinjaIndexPageView"
    assert {s["view"]["class_name"] for s in site["site_section_builders"].values()} == {"SharedJinjaPageView"}
    assert SharedJinjaPageView().env is SharedJinjaPageView().env
    assert SharedJinjaIndexPageView().env is not SharedJinjaPageView().env
    # A page rendered with the shared environment (twice) is GX's own page, up to render times and element ids.
    from great_expectations.render.renderer import ValidationResultsPageRenderer

    store = suites.open_context(tmp_path).validation_results_store
    key = store.list_keys()[0]
    volatile = re.compile(r"\d{8}T\d{6}\.\d+Z|\d{4}-\d\d-\d\d[ T][\d:.]+|[0-9a-f]{8}-[0-9a-f-]{27}")

    def page(view: DefaultJinjaPageView) -> str:  # a new document each time: rendering changes it
        return volatile.sub("", view.render(ValidationResultsPageRenderer().render(store.get(key))))

    own = page(DefaultJinjaPageView())
    assert "decisions" in own and all(page(SharedJinjaPageView()) == own for _ in range(2))

"""Great Expectations suites on the validated warehouse tables, generated from the data contract.

Plain GX (no Dagster): the asset checks in `rematch_pipeline.assets.expectations` read the tables and
call `validate_table`. Every suite is built from `contract.py`, so a new field, range or code there
is checked here without an edit.

Each table is validated as one or more *frames* (a GX data asset, suite and validation definition
each): the table itself with list columns replaced by item counts, and derived frames for what a
row-wise expectation cannot see — the exploded codes of multi-select columns and per-period totals.

Privacy: results are requested with `partial_unexpected_count: 0`, so neither the returned results,
the stored validation results nor Data Docs carry a cell value; outcomes name frame, expectation,
column, rule and a row count only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Usage analytics off, before GX is imported (GX 1.x releases that still ship analytics read it);
# `open_context` also writes analytics_enabled: false into the project config.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402
from filelock import FileLock  # noqa: E402  (a dependency of dagster)
from great_expectations.core import ExpectationSuiteValidationResult  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier  # noqa: E402
from great_expectations.expectations import Expectation  # noqa: E402

from rematch_pipeline.schemas.contract import TABLES, Field, Kind  # noqa: E402
from rematch_pipeline.schemas.gx_views import VIEWS_MODULE  # noqa: E402
from rematch_pipeline.schemas.models import PERIOD_PATTERN  # noqa: E402
from rematch_pipeline.schemas.parsing import AGS_PATTERN  # noqa: E402

CHECKED_TABLES: tuple[str, ...] = ("municipalities", "households", "members", "decisions")

# Columns of other tables a table's suite needs (referential integrity); the caller reads them too.
REFERENCED_COLUMNS: dict[str, dict[str, list[str]]] = {"members": {"households": ["submission_id"]}}

DATA_SOURCE = "rematch_warehouse"
BATCH_DEFINITION = "whole_table"
SITE_NAME = "local_site"
GX_FOLDER = "gx"
# Counts of failing rows but never their values (GX's default would list up to 20 of them).
RESULT_FORMAT: dict[str, object] = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
# Validation results kept per suite; older ones (and their Data Docs pages) are removed.
KEEP_RESULTS = 20
LOCK_TIMEOUT_SECONDS = 600

_LIST_KINDS = (Kind.CODES, Kind.AGS_LIST)


def _non_capturing(pattern: str) -> str:
    """The same pattern with (?:...) groups: pandas warns on every match with capturing groups."""
    return re.sub(r"(?<!\\)\((?!\?)", "(?:", pattern)


_AGS = _non_capturing(AGS_PATTERN)
_PERIOD = _non_capturing(PERIOD_PATTERN)
_E = gx.expectations


EMPTY_TABLE_RULE = "rows: at least one"


@dataclass(frozen=True)
class ExpectationOutcome:
    """One evaluated expectation, without any cell value."""

    frame: str
    expectation: str
    column: str
    rule: str
    success: bool
    unexpected_rows: int | None
    error: str | None = None  # exception class name when GX could not evaluate it


@dataclass(frozen=True)
class TableOutcome:
    """Every expectation evaluated for one table, and where Data Docs are."""

    table: str
    outcomes: list[ExpectationOutcome]
    data_docs_index: Path
    data_docs_pages: dict[str, Path]  # frame -> its validation result page

    @property
    def success(self) -> bool:
        """Whether every expectation of the table held."""
        return all(o.success for o in self.outcomes)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        """The expectations that did not hold."""
        return [o for o in self.outcomes if not o.success]


# ---------------------------------------------------------------- suites


def _meta(rule: str, column: str | None = None) -> dict[str, str]:
    """Our rule text (and the contract column, where the checked column is derived) for reports."""
    return {"rule": rule, **({"column": column} if column else {})}


def items_column(field: Field) -> str:
    """Name of the derived item-count column of a list field in a table's main frame."""
    return f"{field.name}_items"


def _needs_items(field: Field) -> bool:
    return field.kind in _LIST_KINDS and (field.max_items is not None or (field.required and field.kind is Kind.CODES))


def _field_expectations(field: Field) -> list[Expectation]:
    """Row-wise expectations of one contract field in its table's main frame."""
    name = field.name
    out: list[Expectation] = []
    if field.required and field.kind not in _LIST_KINDS:
        out.append(_E.ExpectColumnValuesToNotBeNull(column=name, meta=_meta("required: a value is needed")))
    if field.kind in (Kind.INT, Kind.DECIMAL) and (field.minimum is not None or field.maximum is not None):
        low = "" if field.minimum is None else f"{field.minimum:g}"
        high = "" if field.maximum is None else f"{field.maximum:g}"
        out.append(
            _E.ExpectColumnValuesToBeBetween(
                column=name, min_value=field.minimum, max_value=field.maximum, meta=_meta(f"range: {low}..{high}")
            )
        )
    if field.kind is Kind.CODE:
        out.append(_E.ExpectColumnValuesToBeInSet(column=name, value_set=list(field.codes), meta=_meta("code list")))
    if field.kind is Kind.AGS:
        out.append(_E.ExpectColumnValuesToMatchRegex(column=name, regex=_AGS, meta=_meta("format: AGS of 5 or 8 digits")))
    if name == "intake_period":
        out.append(_E.ExpectColumnValuesToMatchRegex(column=name, regex=_PERIOD, meta=_meta("format: YYYY-MM")))
    if _needs_items(field):
        low = 1 if field.required and field.kind is Kind.CODES else None
        rule = "list: " + ", ".join(
            p for p in ("at least one item" if low else "", f"at most {field.max_items} items" if field.max_items else "") if p
        )
        out.append(
            _E.ExpectColumnValuesToBeBetween(
                column=items_column(field), min_value=low, max_value=field.max_items, meta=_meta(rule, field.name)
            )
        )
    return out


def _contract_fields(table: str) -> list[Field]:
    """Contract fields stored in the validated table (identifying fields never are)."""
    return [f for f in TABLES[table] if not f.pii]


def _list_fields(table: str) -> list[Field]:
    return [f for f in _contract_fields(table) if f.kind in _LIST_KINDS]


def _main_suite(table: str) -> list[Expectation]:
    """Expectations on the table's own rows: contract fields plus the table's keys and cross-column rules."""
    out: list[Expectation] = []
    if table in ("municipalities", "households"):
        out.append(_E.ExpectTableRowCountToBeBetween(min_value=1, meta=_meta(EMPTY_TABLE_RULE)))
    for field in _contract_fields(table):
        out += _field_expectations(field)
    if table == "municipalities":
        out += [
            _E.ExpectCompoundColumnsToBeUnique(
                column_list=["municipality_id", "intake_period"], meta=_meta("unique: one offer per municipality and period")
            ),
            # (municipality_id, intake_period) is unique, so a row is one municipality's offer for one period.
            _E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="housing_units", column_B="accessible_units", or_equal=True,
                meta=_meta("capacity: accessible_units <= housing_units"),
            ),
            _E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="capacity_persons", column_B="min_persons", or_equal=True,
                meta=_meta("capacity: min_persons <= capacity_persons"),
            ),
        ]
    if table == "households":
        out += [
            _E.ExpectColumnValuesToNotBeNull(column="household_pseudonym", meta=_meta("required: a value is needed")),
            _E.ExpectColumnValuesToBeUnique(column="household_pseudonym", meta=_meta("unique: one row per household")),
            _E.ExpectColumnValuesToBeUnique(column="submission_id", meta=_meta("unique: one row per submission")),
            # Without consent a household is only counted, never stored (contract B).
            _E.ExpectColumnValuesToBeInSet(
                column="consent_processing", value_set=[True], meta=_meta("consent: only households that consented")
            ),
        ]
    if table == "members":
        out += [
            _E.ExpectColumnValuesToNotBeNull(column="member_pseudonym", meta=_meta("required: a value is needed")),
            _E.ExpectColumnValuesToBeUnique(column="member_pseudonym", meta=_meta("unique: one row per person")),
            _E.ExpectColumnValuesToNotBeNull(column="age_years", meta=_meta("required: a value is needed")),
            _E.ExpectColumnValuesToBeBetween(column="age_years", min_value=0, max_value=120, meta=_meta("range: 0..120")),
            _E.ExpectColumnValuesToBeInSet(
                column="submission_id_in_households", value_set=[True],
                meta=_meta("reference: every member belongs to a stored household", "submission_id"),
            ),
        ]
    if table == "decisions":
        out.append(
            _E.ExpectCompoundColumnsToBeUnique(
                column_list=["round_id", "household_pseudonym"], meta=_meta("unique: one answer per household and round")
            )
        )
    return out


def _lists_suite(table: str) -> list[Expectation]:
    """Every exploded item of a multi-select or AGS list column."""
    out: list[Expectation] = []
    for field in _list_fields(table):
        if field.kind is Kind.CODES:
            out.append(_E.ExpectColumnValuesToBeInSet(column=field.name, value_set=list(field.codes), meta=_meta("code list: every code known")))
        else:
            out.append(_E.ExpectColumnValuesToMatchRegex(column=field.name, regex=_AGS, meta=_meta("format: every item an AGS")))
    return out


def _periods_suite() -> list[Expectation]:
    return [
        _E.ExpectColumnValuesToBeBetween(
            column="capacity_persons", min_value=0, strict_min=True, meta=_meta("capacity: total capacity_persons > 0 per period")
        )
    ]


# ---------------------------------------------------------------- frames


def _main_frame(table: str, tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The table's rows with list columns replaced by item counts (and, for members, a reference flag)."""
    frame = tables[table]
    lists = [f for f in _list_fields(table) if f.name in frame.columns]
    frame = frame.with_columns(
        pl.col(f.name).list.len().fill_null(0).alias(items_column(f)) for f in lists if _needs_items(f)
    ).drop(sorted({f.name for f in lists} | {c for c, t in frame.schema.items() if isinstance(t, pl.List)}))
    if table == "members":
        households = tables["households"]["submission_id"].implode()
        frame = frame.with_columns(pl.col("submission_id").is_in(households).alias("submission_id_in_households"))
    return frame


def _lists_frame(table: str, tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """One column per list field holding all of its items; shorter columns are padded with nulls (ignored)."""
    frame = tables[table]
    columns = [
        frame.select(pl.col(f.name).explode().drop_nulls()) for f in _list_fields(table) if f.name in frame.columns
    ]
    return pl.concat(columns, how="horizontal_extend") if columns else pl.DataFrame()


def _periods_frame(table: str, tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Totals per intake period; a matching round uses the offers of one period."""
    return (
        tables[table]
        .group_by("intake_period")
        .agg(pl.col("capacity_persons").sum(), pl.len().alias("municipalities"))
        .sort("intake_period")
    )


@dataclass(frozen=True)
class FrameSpec:
    """A frame validated for a table: how it is derived and what is expected of it."""

    name: str
    build: Callable[[str, Mapping[str, pl.DataFrame]], pl.DataFrame]
    expectations: Callable[[str], list[Expectation]]


FRAMES: dict[str, tuple[FrameSpec, ...]] = {
    "municipalities": (
        FrameSpec("municipalities", _main_frame, _main_suite),
        FrameSpec("municipalities_codes", _lists_frame, _lists_suite),
        FrameSpec("municipality_periods", _periods_frame, lambda _table: _periods_suite()),
    ),
    "households": (
        FrameSpec("households", _main_frame, _main_suite),
        FrameSpec("households_lists", _lists_frame, _lists_suite),
    ),
    "members": (
        FrameSpec("members", _main_frame, _main_suite),
        FrameSpec("members_codes", _lists_frame, _lists_suite),
    ),
    "decisions": (FrameSpec("decisions", _main_frame, _main_suite),),
}


def build_suite(table: str, frame: str) -> gx.ExpectationSuite:
    """The expectation suite of one frame of a table (named like the frame)."""
    spec = next(s for s in FRAMES[table] if s.name == frame)
    return gx.ExpectationSuite(name=spec.name, expectations=spec.expectations(table), meta={"table": table})


def build_frames(table: str, tables: Mapping[str, pl.DataFrame]) -> dict[str, pd.DataFrame]:
    """The pandas frames GX validates for a table, by frame name."""
    return {spec.name: spec.build(table, tables).to_pandas() for spec in FRAMES[table]}


# ---------------------------------------------------------------- running


def gx_root(home_root: Path) -> Path:
    """The GX project folder of a data home."""
    return Path(home_root) / GX_FOLDER


def data_docs_index(home_root: Path) -> Path:
    """Where the Data Docs site's index page is written."""
    return gx_root(home_root) / "uncommitted" / "data_docs" / SITE_NAME / "index.html"


def _site_config(site: Mapping[str, object]) -> dict[str, object]:
    """The Data Docs site as we want it: no how-to buttons, a bounded index, views that cache templates."""
    page_view = {"module_name": VIEWS_MODULE, "class_name": "SharedJinjaPageView"}
    return {
        **site,
        "show_how_to_buttons": False,
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "validation_results_limit": KEEP_RESULTS * 8,
            "view": {"module_name": VIEWS_MODULE, "class_name": "SharedJinjaIndexPageView"},
        },
        # Merged by GX into its default sections; only the view changes.
        "site_section_builders": {section: {"view": dict(page_view)} for section in ("expectations", "validations", "profiling")},
    }


def open_context(home_root: Path) -> gx.data_context.FileDataContext:
    """The file context under <home>/gx, created on first use, with our settings (analytics and progress bars off,
    a bounded index, the shared views) written once."""
    context = gx.get_context(mode="file", project_root_dir=str(home_root))
    variables = context.variables
    site = dict(variables.data_docs_sites[SITE_NAME])
    wanted_site = _site_config(site)
    changed = False
    if variables.analytics_enabled is not False:
        variables.analytics_enabled = False
        changed = True
    bars = variables.progress_bars
    if not bars or bars.get("globally") is not False:
        # tqdm bars would flood the Dagster compute logs.
        variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        changed = True
    if site != wanted_site:
        variables.data_docs_sites = {**variables.data_docs_sites, SITE_NAME: wanted_site}
        changed = True
    if variables.config_variables_file_path is not None:
        # GX re-reads and parses this YAML file on every read of a setting (~100 per table);
        # we substitute no variables, and the instance id it holds only served analytics.
        variables.config_variables_file_path = None
        changed = True
    if changed:
        variables.save()
        context = gx.get_context(mode="file", project_root_dir=str(home_root))
    return context


def _config_stamp(root: Path) -> tuple[int, int, int] | None:
    """Identity and last change of great_expectations.yml (None while it does not exist)."""
    try:
        stat = (root / "great_expectations.yml").stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


@dataclass
class _OpenContext:
    """A file context kept for one data home in this process, and what it has registered."""

    context: gx.data_context.FileDataContext
    stamp: tuple[int, int, int] | None
    # frame -> (suite fingerprint, validation definition, checkpoint) written by this context
    registered: dict[str, tuple[str, gx.ValidationDefinition, gx.Checkpoint]]


# One context per data home and process: opening one costs ~0.25 s (config parse, store setup).
# Bounded: a long-lived process (a test session, a daemon) may see many homes.
_OPEN_CONTEXTS: dict[Path, _OpenContext] = {}
KEPT_CONTEXTS = 4


def _kept_context(root: Path, home_root: Path) -> _OpenContext:
    """This process's context of a data home, opened again when another writer changed its config.

    Called under the home's GX lock. Suites, validation definitions, checkpoints and results are
    read from their files on every use, so only great_expectations.yml (data sources) is held in
    memory; a context whose file changed since (or that was removed) is not reused.
    """
    key = root.resolve()
    kept = _OPEN_CONTEXTS.get(key)
    stamp = _config_stamp(root)
    if kept is None or stamp is None or kept.stamp != stamp:
        kept = _OpenContext(open_context(home_root), None, {})
        _OPEN_CONTEXTS.pop(key, None)
        while len(_OPEN_CONTEXTS) >= KEPT_CONTEXTS:
            del _OPEN_CONTEXTS[next(iter(_OPEN_CONTEXTS))]  # the home opened longest ago
        _OPEN_CONTEXTS[key] = kept
    return kept


def _suite_fingerprint(suite: gx.ExpectationSuite) -> str:
    """The suite's content (expectations, kwargs, meta) as text; fresh suites carry no ids."""
    return json.dumps(suite.to_json_dict(), sort_keys=True, default=str)


def _registered_files(root: Path, frame: str) -> list[Path]:
    """The stored suite, validation definition and checkpoint of a frame."""
    return [
        root / "expectations" / f"{frame}.json",
        root / "validation_definitions" / f"{frame}.json",
        root / "checkpoints" / f"{_checkpoint_name(frame)}.json",
    ]


def _checkpoint_name(frame: str) -> str:
    return f"rematch_{frame}"


def _checkpoint(kept: _OpenContext, root: Path, suite: gx.ExpectationSuite) -> gx.Checkpoint:
    """The frame's checkpoint, written only when this process has not yet written the same suite.

    Suites come from contract.py, so they change only with the code: rewriting the suite, the
    validation definition and the checkpoint on every run cost ~0.6 s per table. A suite whose
    content changed in this process (or whose files are gone) is written again; the checkpoint's
    run still checks that each stored copy matches the one it holds.
    """
    fingerprint = _suite_fingerprint(suite)
    known = kept.registered.get(suite.name)
    if known and known[0] == fingerprint and all(p.exists() for p in _registered_files(root, suite.name)):
        return known[2]
    definition = _validation_definition(kept.context, suite)
    checkpoint = kept.context.checkpoints.add_or_update(
        gx.Checkpoint(name=_checkpoint_name(suite.name), validation_definitions=[definition], result_format=RESULT_FORMAT)
    )
    kept.registered[suite.name] = (fingerprint, definition, checkpoint)
    return checkpoint


def _validation_definition(context: gx.data_context.FileDataContext, suite: gx.ExpectationSuite) -> gx.ValidationDefinition:
    """Register (or refresh) the data asset, suite and validation definition of one frame."""
    try:
        source = context.data_sources.get(DATA_SOURCE)
    except KeyError:
        source = context.data_sources.add_pandas(DATA_SOURCE)
    try:
        asset = source.get_asset(suite.name)
    except LookupError:
        asset = source.add_dataframe_asset(suite.name)
    try:
        batch = asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
    # The suite comes from the contract in code: refresh the stored copy every run.
    stored = context.suites.add_or_update(suite)
    return context.validation_definitions.add_or_update(gx.ValidationDefinition(name=suite.name, data=batch, suite=stored))


def _prune(context: gx.data_context.FileDataContext, suite_names: set[str]) -> None:
    """Keep the newest KEEP_RESULTS results per suite; the index build then drops their pages too."""
    store = context.validation_results_store
    by_suite: dict[str, list] = {}
    for key in store.list_keys():
        name = key.expectation_suite_identifier.name
        if name in suite_names:
            by_suite.setdefault(name, []).append(key)
    for keys in by_suite.values():
        keys.sort(key=lambda k: k.run_id.run_time)
        for key in keys[:-KEEP_RESULTS]:
            store.remove_key(key)


def _remove_empty_folders(root: Path) -> None:
    """Pruned results leave their run folders behind; remove those that are empty."""
    for base in (root / "uncommitted" / "validations", root / "uncommitted" / "data_docs" / SITE_NAME / "validations"):
        for folder in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()


def _columns(kwargs: Mapping[str, object], meta: Mapping[str, object]) -> str:
    if meta.get("column"):
        return str(meta["column"])
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_A"):
        return f"{kwargs['column_A']}, {kwargs['column_B']}"
    if kwargs.get("column_list"):
        return ", ".join(str(c) for c in kwargs["column_list"])  # type: ignore[union-attr]
    return "(table)"


def _outcomes(frame: str, result: ExpectationSuiteValidationResult) -> list[ExpectationOutcome]:
    """Names, rule and counts of each evaluated expectation; GX's result values are never copied."""
    out = []
    for evr in result.results:
        config = evr.expectation_config
        meta = config.meta or {}
        error = _raised(evr.exception_info or {})
        count = (evr.result or {}).get("unexpected_count")
        out.append(
            ExpectationOutcome(
                frame=frame,
                expectation=config.type,
                column=_columns(config.kwargs, meta),
                rule=str(meta.get("rule", "")),
                success=bool(evr.success) and error is None,
                unexpected_rows=int(count) if isinstance(count, (int, float)) else None,
                error=error,
            )
        )
    return out


def _raised(info: Mapping[str, object]) -> str | None:
    """Class name of an exception GX caught while evaluating, else None.

    Only the class: the message could quote data. GX reports either one exception or one per metric.
    """
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, Mapping)]
    for entry in entries:
        if entry.get("raised_exception"):
            trace = str(entry.get("exception_traceback") or "").strip().splitlines()
            last = trace[-1].split(":", 1)[0].strip() if trace else ""
            return last.rsplit(".", 1)[-1] or "error"
    return None


def validate_table(
    home_root: Path, table: str, tables: Mapping[str, pl.DataFrame], run_name: str | None = None
) -> TableOutcome:
    """Run every suite of a table on its frames with the file context under <home>/gx and update Data Docs.

    `tables` holds the table itself plus the columns of REFERENCED_COLUMNS[table].
    """
    frames = build_frames(table, tables)
    root = gx_root(home_root)
    root.mkdir(parents=True, exist_ok=True)
    # One writer at a time: GX rewrites great_expectations.yml and the Data Docs index on every run.
    with FileLock(str(root / ".rematch.lock"), timeout=LOCK_TIMEOUT_SECONDS):
        kept = _kept_context(root, home_root)
        context = kept.context
        run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.timezone.utc))
        outcomes: list[ExpectationOutcome] = []
        resources: list = []
        result_ids: dict[str, object] = {}
        for name, frame in frames.items():
            checkpoint = _checkpoint(kept, root, build_suite(table, name))
            result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
            for key, suite_result in result.run_results.items():
                outcomes += _outcomes(name, suite_result)
                result_ids[name] = key
                resources.append(key)
            resources.append(ExpectationSuiteIdentifier(name=name))
        _prune(context, set(frames))
        # One incremental build for all frames of the table (an UpdateDataDocsAction per checkpoint
        # would rebuild the index once per frame).
        context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=resources)
        _remove_empty_folders(root)
        pages = {}
        for name, key in result_ids.items():
            urls = context.get_docs_sites_urls(resource_identifier=key, site_name=SITE_NAME)
            if urls and urls[0].get("site_url"):
                pages[name] = Path(str(urls[0]["site_url"]).removeprefix("file://"))
        # This context's own writes (a new data asset) changed the config file; later calls may reuse it.
        kept.stamp = _config_stamp(root)
    return TableOutcome(table, outcomes, data_docs_index(home_root), pages)


def outcome_markdown(outcome: TableOutcome) -> str:
    """The evaluated expectations as a markdown table, failures first: names, rule and row counts only."""
    lines = ["| frame | expectation | column | rule | result | rows failing |", "|---|---|---|---|---|---|"]
    for o in sorted(outcome.outcomes, key=lambda o: (o.success, o.frame)):
        result = "passed" if o.success else ("error: " + o.error if o.error else "**failed**")
        rows = "" if o.unexpected_rows is None else str(o.unexpected_rows)
        lines.append(f"| {o.frame} | {o.expectation} | {o.column} | {o.rule} | {result} | {rows} |")
    return "\n".join(lines)

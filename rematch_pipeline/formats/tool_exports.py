"""Writers of the collection tools' own exports: what KoboToolbox, ODK Central and LimeSurvey hand a coordinator.

The readers of this package accept these files; these writers make them, for sample rounds
(``rematch sample --format kobo-xlsx|kobo-csv|limesurvey-csv``), the ingestion benchmark and the
format tests. Each follows the tool's exporter byte for byte where it matters to a reader, not a
convenient dialect (docs/formats.md; samples in shared/data/exports, provenance in its README):

- KoboToolbox KPI, "XML values and headers" (formpack's ``Export``): a column per question of the
  form in survey order (notes have none), named by the question (with *Include groups in headers*,
  its group path first); a select_multiple as the summary column of space-separated codes plus one
  ``question/option`` column per choice holding ``"1"``/``"0"`` (all empty where not answered);
  then KPI's metadata ``_id`` … ``meta/rootUuid``, ``_index``. The ``members`` repeat is a sheet of
  its own, joined by ``_parent_index`` with ``_submission_…`` copies of the metadata.
  CSV: ``;``, every field quoted, CRLF, UTF-8 without BOM, an HXL tag row only when the form
  carries HXL tags, and the main section only (formpack's ``to_csv`` drops repeats).
  XLSX: xlsxwriter in constant-memory mode, every answer a string cell, ``_id`` and the indexes
  numbers, the main sheet named after the form title (Excel's forbidden characters as ``_``,
  31 characters with ``...``).
- ODK Central's CSV zip (central-backend ``lib/data/briefcase.js``): ``<form id>.csv`` with
  ``SubmissionDate``, every leaf of the form's instance in order (notes too, as empty columns; groups
  joined by ``-`` unless *Remove group names*), ``meta-instanceID``, then Central's own columns
  ``KEY`` … ``FormVersion``; the ``members`` repeat as ``<form id>-members.csv`` with ``PARENT_KEY``
  and ``KEY`` (``uuid:…/members[n]``). With *Split "select multiple" choices into columns*, a
  ``field/option`` column per choice holding 1, or 0 whether answered or not. csv-stringify: ``,``,
  quotes only where needed, LF, no BOM; the zip holds the main table first.
- LimeSurvey CsvWriter, headings "Question code", answers "Answer codes": UTF-8 with BOM, ``;``,
  every field quoted, CRLF, a blank line at the end; system columns ``id``, ``submitdate``,
  ``lastpage``, ``startlanguage``, ``seed``, ``startdate``, ``datestamp``; numbers as stored
  (decimal(30,10)); yes/no ``Y``/``N``; multiple choice ``code[option]`` = ``Y`` or empty; every
  member slot of the survey, filled or not. With headings "Full question text" (or abbreviated, or
  code and text) and answers "Full answers", rendered from the survey's texts (``forms_builder.build_lss``)
  as Writer and SurveyObj::getFullAnswer render them. "Microsoft Excel": ExcelWriter (PHP_XLSXWriter),
  one sheet named after the survey title, a value that looks like a number a number cell. VV export
  (version 2): tab separated, question texts, then column codes, then the stored values escaped.

The writers take canonical frames (text, empty or null = not answered) holding what the tool
stored: converting a canonical round to that (device time with its offset for Kobo's
``submitted_at``) is the caller's business (``sample.write_round``).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import xlsxwriter

from rematch_pipeline import forms_builder
from rematch_pipeline.formats.kobo import CENTRAL_MAIN_META, CENTRAL_REPEAT_META
from rematch_pipeline.formats.text import UTF8_BOM
from rematch_pipeline.schemas.contract import TABLES, Kind
from rematch_pipeline.schemas.limesurvey_codes import (
    LIMESURVEY_MEMBER_SLOTS,
    LIMESURVEY_OPTION_CODES,
    LIMESURVEY_QUESTION_CODES,
    member_code,
)

# KPI's metadata after the form's questions (kpi/tests/test_mock_data_exports.py, current order) …
KPI_MAIN_META: tuple[str, ...] = (
    "_id",
    "_uuid",
    "_submission_time",
    "_validation_status",
    "_notes",
    "_status",
    "_submitted_by",
    "__version__",
    "_tags",
    "meta/rootUuid",
    "_index",
)
# … and on a repeat's sheet: its own index, its parent's, and the submission's metadata copied.
KPI_REPEAT_META: tuple[str, ...] = (
    "_index",
    "_parent_table_name",
    "_parent_index",
    "_submission__id",
    "_submission__uuid",
    "_submission__submission_time",
    "_submission__validation_status",
    "_submission__notes",
    "_submission__status",
    "_submission__submitted_by",
    "_submission___version__",
    "_submission__tags",
)
# Metadata a frame may give per submission (a column of that name); the others are KPI's defaults.
KPI_GIVEN_META: tuple[str, ...] = ("_submission_time", "_validation_status")
KPI_STATUS = "submitted_via_web"
# formpack.constants.EXCEL_FORBIDDEN_WORKSHEET_NAME_CHARACTERS and Excel's sheet name limit.
_XLSX_FORBIDDEN = str.maketrans({c: "_" for c in "[]:*?/\\"})
_XLSX_SHEET_CHARS = 31
LS_SYSTEM: tuple[str, ...] = ("id", "submitdate", "lastpage", "startlanguage", "seed", "startdate", "datestamp")
# A completed response's last page: the survey's groups shown one per page (format G), as in forms/*.lss.
LS_LAST_PAGE = {"municipalities": "5", "households": "13"}
LS_LANGUAGE = {"municipalities": "de", "households": "uk"}


@dataclass(frozen=True)
class KoboQuestion:
    """One question of a KoboToolbox form as the export shows it."""

    name: str
    group: str = ""  # group path ("services"), shown with "Include groups in headers"
    options: tuple[str, ...] = ()  # a select_multiple's choices: one 1/0 column each
    hxl: str = ""  # HXL tag; a form with any adds KPI's tag row under the header
    # Exported under a language: the question's label (its header) and its choices' labels by code.
    label: str = ""
    choices: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class KoboForm:
    """What KPI's export of a form depends on: its title, main questions and the members repeat."""

    title: str
    main: tuple[KoboQuestion, ...]
    repeat: tuple[KoboQuestion, ...] = ()
    repeat_name: str = forms_builder.REPEAT_NAME
    version: str = "vQv9TjZ2yBfGzKoA4mVa3L"  # __version__: the deployed version's uid
    repeat_label: str = ""  # under a language: the repeat's label, its group in headers


def survey_title(table: str) -> str:
    """The title of our form or survey of ``table`` (Kobo's first sheet, LimeSurvey's Excel sheet)."""
    return forms_builder._TITLES[table]


def kobo_form(table: str, language: int | None = None) -> KoboForm:
    """Our XLSForm of ``municipalities`` or ``households`` (forms/) as KPI exports it: no groups, no HXL tags.

    language: the index of an export language in ``forms_builder.LANGUAGES`` (KPI's default export, labels
    as headers and answers); None: "XML values and headers"."""
    rows = forms_builder.household_rows() if table == "households" else forms_builder.municipality_rows()
    fields = {f.name: f for t in TABLES.values() for f in t}
    main: list[KoboQuestion] = []
    repeat: list[KoboQuestion] = []
    repeat_label = ""
    target = main
    for row in rows:
        if row.type == "begin_repeat":
            target = repeat
            repeat_label = row.label[language] if language is not None and row.label else ""
            continue
        if row.type in ("note", "end_repeat"):
            continue  # a note holds no answer and has no column
        f = fields[row.name]
        label, choices = "", ()
        if language is not None:
            label = row.label[language] if row.label else row.name  # formpack: the name where there is no label
            if f.kind in (Kind.BOOL, Kind.CODE, Kind.CODES):
                list_ = forms_builder.list_name(f)
                codes = forms_builder.YES_NO if f.kind is Kind.BOOL else f.codes
                choices = tuple((c, forms_builder.choice_label(list_, c)[language]) for c in codes)
        target.append(KoboQuestion(row.name, options=f.codes if f.kind is Kind.CODES else (), label=label, choices=choices))
    return KoboForm(survey_title(table), tuple(main), tuple(repeat), repeat_label=repeat_label)


def _header(form: KoboForm, questions: Iterable[KoboQuestion], groups_in_headers: bool, in_repeat: bool) -> list[str]:
    header: list[str] = []
    for q in questions:
        path = [form.repeat_label or form.repeat_name] if in_repeat and groups_in_headers else []
        if groups_in_headers and q.group:
            path.append(q.group)
        name = "/".join([*path, q.label or q.name])
        header.append(name)
        labels = dict(q.choices)
        header += [f"{name}/{labels.get(option, option)}" for option in q.options]
    return header


def _answers(questions: Sequence[KoboQuestion], frame: pl.DataFrame) -> list[list[str]]:
    """Per row, the cells of the questions' columns as formpack formats them (values as text; under a
    language a choice as its label, a select_multiple's summary as its labels joined by spaces)."""
    columns: list[list[str]] = []
    for q in questions:
        values = frame[q.name].fill_null("").to_list() if q.name in frame.columns else [""] * frame.height
        if q.choices:
            labels = dict(q.choices)
            columns.append([" ".join(labels.get(c, c) for c in v.split()) for v in values])
        else:
            columns.append(values)
        for option in q.options:
            # formpack: "1"/"0" where the question was answered, empty where not.
            columns.append(["" if not v else ("1" if option in v.split() else "0") for v in values])
    return [list(cells) for cells in zip(*columns)] if columns else [[] for _ in range(frame.height)]


def _kpi_meta(frame: pl.DataFrame, version: str, first_id: int) -> list[dict[str, object]]:
    """KPI's metadata of each submission: _id counts up, _uuid is the submission id, the rest as given or KPI's default."""
    ids = frame["submission_id"].to_list()
    given = {name: frame[name].fill_null("").to_list() if name in frame.columns else None for name in KPI_GIVEN_META}
    times = given["_submission_time"] or _received(frame["submitted_at"].to_list())
    statuses = given["_validation_status"] or [""] * frame.height
    return [
        {
            "_id": first_id + i,
            "_uuid": uid,
            "_submission_time": times[i],
            "_validation_status": statuses[i],
            "_notes": "",
            "_status": KPI_STATUS,
            "_submitted_by": "",
            "__version__": version,
            "_tags": "",
            "meta/rootUuid": "uuid:" + uid,
            "_index": i + 1,
        }
        for i, uid in enumerate(ids)
    ]


def _received(submitted: Sequence[str | None]) -> list[str]:
    """_submission_time: when the server received a submission, UTC without offset (a few seconds after
    the device finalised it; the device time may carry an offset)."""
    out = []
    for value in submitted:
        if not value:
            out.append("")
            continue
        at = dt.datetime.fromisoformat(value)
        if at.tzinfo is not None:
            at = at.astimezone(dt.timezone.utc).replace(tzinfo=None)
        out.append((at.replace(microsecond=0) + dt.timedelta(seconds=7)).isoformat())
    return out


def _quoted(cells: Iterable[object]) -> str:
    return '"' + '";"'.join(str(c).replace('"', '""') for c in cells) + '"'


def kobo_kpi_csv(
    frame: pl.DataFrame, form: KoboForm, groups_in_headers: bool = False, first_id: int = 61
) -> bytes:
    """KPI's CSV export ("XML values and headers") of a form's submissions: the main section only.

    frame: one row per submission, a column per question (missing or null = not answered), and
    ``submission_id`` (KPI's ``_uuid``) and ``submitted_at``; optional ``_submission_time`` and
    ``_validation_status`` columns override KPI's metadata."""
    header = _header(form, form.main, groups_in_headers, False) + list(KPI_MAIN_META)
    lines = [_quoted(header)]
    if any(q.hxl for q in form.main):
        tags: list[str] = []
        for q in form.main:
            tags += [q.hxl] + [""] * len(q.options)
        lines.append(_quoted(tags + [""] * len(KPI_MAIN_META)))
    meta = _kpi_meta(frame, form.version, first_id)
    for cells, m in zip(_answers(form.main, frame), meta):
        lines.append(_quoted(cells + [m[name] for name in KPI_MAIN_META]))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


# The legacy (KoboCAT) CSV's metadata after the questions; _validation_status "{}" where none was set.
KOBO_LEGACY_META: tuple[str, ...] = ("meta/instanceID", "_uuid", "_submission_time", "_validation_status")
KOBO_LEGACY_GIVEN_META: tuple[str, ...] = ("_submission_time", "_validation_status")
KOBO_NOT_APPLICABLE = "n/a"


def _legacy_cells(questions: Sequence[KoboQuestion], row: Mapping[str, str | None] | None) -> list[str]:
    """One row's cells as the legacy exporter writes them: a select_multiple as True/False per choice (no
    summary), a value not given as n/a, every cell n/a for a repeat slot the submission does not fill."""
    cells: list[str] = []
    for q in questions:
        value = row.get(q.name) if row is not None else None
        if q.options:
            chosen = (value or "").split()
            cells += [KOBO_NOT_APPLICABLE if row is None else str(option in chosen) for option in q.options]
        else:
            cells.append(value if value else KOBO_NOT_APPLICABLE)
    return cells


def _legacy_header(questions: Iterable[KoboQuestion], prefix: str, groups_in_headers: bool) -> list[str]:
    header: list[str] = []
    for q in questions:
        name = prefix + (f"{q.group}/{q.name}" if groups_in_headers and q.group else q.name)
        header += [f"{name}/{option}" for option in q.options] if q.options else [name]
    return header


def kobo_legacy_csv(
    frame: pl.DataFrame,
    form: KoboForm,
    members: pl.DataFrame | None = None,
    slots: int | None = None,
    groups_in_headers: bool = True,
) -> bytes:
    """The legacy KoboCAT CSV export (onadata's CSV builder, shared/data/exports/kobo/main__csv_export__*):
    `,`, quotes only where needed, LF, UTF-8 without BOM; group paths; a select_multiple as one True/False
    column per choice; the members repeat flattened into ``members[k]/…`` slots (as many as the largest
    household has, or ``slots``) where the repeat stands in the form; ``n/a`` for what was not answered.

    frame and members as for kobo_kpi_xlsx."""
    people: dict[str, list[dict[str, str | None]]] = {}
    if form.repeat and members is not None:
        for member in members.iter_rows(named=True):
            people.setdefault(member["submission_id"], []).append(member)
    if slots is None:
        slots = max((len(p) for p in people.values()), default=0)
    header = _legacy_header(form.main, "", groups_in_headers)
    for slot in range(1, slots + 1):
        header += _legacy_header(form.repeat, f"{form.repeat_name}[{slot}]/", groups_in_headers)
    header += KOBO_LEGACY_META
    given = {name: frame[name].fill_null("").to_list() if name in frame.columns else None for name in KOBO_LEGACY_GIVEN_META}
    times = given["_submission_time"] or _received(frame["submitted_at"].to_list())
    statuses = given["_validation_status"] or [""] * frame.height
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for i, row in enumerate(frame.iter_rows(named=True)):
        household = people.get(row["submission_id"], [])
        if len(household) > slots:
            raise ValueError(f"household row {i + 1} has {len(household)} members; the export has {slots} member slots")
        cells = _legacy_cells(form.main, row)
        for slot in range(slots):
            cells += _legacy_cells(form.repeat, household[slot] if slot < len(household) else None)
        uid = row["submission_id"]
        writer.writerow([*cells, "uuid:" + uid, uid, times[i], statuses[i] or "{}"])
    return out.getvalue().encode("utf-8")


def xlsx_sheet_name(title: str) -> str:
    """formpack's unique_name_for_xls for the first sheet: forbidden characters as _, at most 31 characters."""
    name = title.translate(_XLSX_FORBIDDEN)
    return name if len(name) <= _XLSX_SHEET_CHARS else name[: _XLSX_SHEET_CHARS - 3] + "..."


def kobo_kpi_xlsx(
    path: Path,
    frame: pl.DataFrame,
    form: KoboForm,
    members: pl.DataFrame | None = None,
    groups_in_headers: bool = False,
    first_id: int = 61,
) -> Path:
    """KPI's XLSX export ("XML values and headers"): the main sheet and, for a form with the members
    repeat, a ``members`` sheet; members follow their household's order, joined by ``_parent_index``.

    frame as for kobo_kpi_csv; members: canonical member rows whose ``submission_id`` is their
    household's (a member of no household in frame is not written)."""
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    book.use_zip64()
    try:
        main = book.add_worksheet(xlsx_sheet_name(form.title))
        main.write_row(0, 0, _header(form, form.main, groups_in_headers, False) + list(KPI_MAIN_META))
        meta = _kpi_meta(frame, form.version, first_id)
        repeat = None
        by_household: dict[str, list[list[str]]] = {}
        if form.repeat and members is not None:
            repeat = book.add_worksheet(form.repeat_name)
            repeat.write_row(0, 0, _header(form, form.repeat, groups_in_headers, True) + list(KPI_REPEAT_META))
            for owner, cells in zip(members["submission_id"].to_list(), _answers(form.repeat, members)):
                by_household.setdefault(owner, []).append(cells)
        sheet_name = xlsx_sheet_name(form.title)
        member_row = 1
        for row, (cells, m) in enumerate(zip(_answers(form.main, frame), meta), start=1):
            # xlsxwriter writes "" as nothing at all, as in KPI's files.
            main.write_row(row, 0, cells + [m[name] for name in KPI_MAIN_META])
            if repeat is None:
                continue
            copied = [m[name] for name in KPI_MAIN_META[:9]]
            for member in by_household.get(str(m["_uuid"]), ()):
                repeat.write_row(member_row, 0, member + [member_row, sheet_name, m["_index"], *copied])
                member_row += 1
    finally:
        book.close()
    return path


# ---------------------------------------------------------------- ODK Central

# Metadata a frame may give per submission (a column of that name); the others are Central's defaults.
CENTRAL_GIVEN_META: tuple[str, ...] = ("SubmissionDate", "ReviewState")
# The app user whose Collect submitted (Central writes its actor id and display name) and Collect's device id.
CENTRAL_SUBMITTER = ("5", "Erfassung")
CENTRAL_DEVICE = "collect:Fq3ZkR8vTn2LmW7x"


def central_form(table: str) -> KoboForm:
    """Our XLSForm of ``municipalities`` or ``households`` as Central exports it: every question and note
    in survey order (an instance leaf each), the ``members`` repeat, and the form's version."""
    rows = forms_builder.municipality_rows() if table == "municipalities" else forms_builder.household_rows()
    fields = {f.name: f for t in TABLES.values() for f in t}
    main: list[KoboQuestion] = []
    repeat: list[KoboQuestion] = []
    target = main
    for row in rows:
        if row.type in ("begin_repeat", "end_repeat"):
            target = repeat if row.type == "begin_repeat" else main
            continue
        f = fields.get(row.name)
        target.append(KoboQuestion(row.name, options=f.codes if f is not None and f.kind is Kind.CODES else ()))
    version = forms_builder.build_xlsform(table).settings[1][2]
    return KoboForm(survey_title(table), tuple(main), tuple(repeat), version=version)


def _central_header(questions: Iterable[KoboQuestion], split: bool, group_paths: bool) -> list[str]:
    header: list[str] = []
    for q in questions:
        name = f"{q.group.replace('/', '-')}-{q.name}" if group_paths and q.group else q.name
        header.append(name)
        if split:
            header += [f"{name}/{option}" for option in q.options]
    return header


def _central_cells(questions: Sequence[KoboQuestion], frame: pl.DataFrame, split: bool) -> list[list[str]]:
    """Per row, the leaves' text as the submission's XML holds it (empty where not answered); split
    option columns are 1 where chosen and 0 otherwise, answered or not (briefcase.js generateDataFrame)."""
    columns: list[list[str]] = []
    for q in questions:
        values = frame[q.name].fill_null("").to_list() if q.name in frame.columns else [""] * frame.height
        columns.append(values)
        if split:
            for option in q.options:
                columns.append(["1" if option in v.split() else "0" for v in values])
    return [list(cells) for cells in zip(*columns)] if columns else [[] for _ in range(frame.height)]


def _csv_stringify(rows: Iterable[Sequence[object]]) -> bytes:
    """csv-stringify's defaults, as Central writes: `,`, a field quoted only where it holds `,`, `"`, CR or LF, LF."""

    def cell(value: object) -> str:
        text = str(value)
        return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\r\n') else text

    return "".join(",".join(cell(c) for c in row) + "\n" for row in rows).encode("utf-8")


def odk_central_csvs(
    frame: pl.DataFrame,
    form: KoboForm,
    form_id: str,
    members: pl.DataFrame | None = None,
    split: bool = False,
    group_paths: bool = True,
) -> dict[str, bytes]:
    """The CSVs of Central's *Download → CSV zip* of a form's submissions, by file name, main table first.

    frame: one row per submission, a column per question (missing or null = not answered), and
    ``submission_id`` (the instance id without ``uuid:``, Central's KEY) and ``submitted_at``
    (``SubmissionDate`` is a few seconds later, in UTC); optional ``SubmissionDate`` and ``ReviewState``
    columns override Central's. members: canonical member rows whose ``submission_id`` is their
    household's, for a form with the repeat. split: *Split "select multiple" choices into columns*;
    group_paths off: *Remove group names*."""
    given = {name: frame[name].fill_null("").to_list() if name in frame.columns else None for name in CENTRAL_GIVEN_META}
    dates = given["SubmissionDate"] or [t + ".000Z" if t else "" for t in _received(frame["submitted_at"].to_list())]
    states = given["ReviewState"] or [""] * frame.height
    instance_id = "meta-instanceID" if group_paths else "instanceID"
    main_rows: list[Sequence[object]] = [["SubmissionDate", *_central_header(form.main, split, group_paths), instance_id, *CENTRAL_MAIN_META]]
    by_household: dict[str, list[list[str]]] = {}
    if form.repeat and members is not None:
        for owner, cells in zip(members["submission_id"].to_list(), _central_cells(form.repeat, members, split)):
            by_household.setdefault(owner, []).append(cells)
    repeat_rows: list[Sequence[object]] = [[*_central_header(form.repeat, split, group_paths), *CENTRAL_REPEAT_META]]
    submitter, name = CENTRAL_SUBMITTER
    for i, (uid, cells) in enumerate(zip(frame["submission_id"].to_list(), _central_cells(form.main, frame, split))):
        key = "uuid:" + uid
        main_rows.append([dates[i], *cells, key, key, submitter, name, 0, 0, "", states[i], CENTRAL_DEVICE, 0, form.version])
        for n, member in enumerate(by_household.get(uid, ()), start=1):
            repeat_rows.append([*member, key, f"{key}/{form.repeat_name}[{n}]"])
    files = {f"{form_id}.csv": _csv_stringify(main_rows)}
    if form.repeat:
        files[f"{form_id}-{form.repeat_name}.csv"] = _csv_stringify(repeat_rows)
    return files


def csv_zip(files: Mapping[str, bytes]) -> bytes:
    """A zip of export files in the given order, deflated, as Central's CSV zip download is."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def central_zip_name(form_id: str) -> str:
    """The download's name: ``<form id>.csv.zip``."""
    return f"{form_id}.csv.zip"


# ---------------------------------------------------------------- LimeSurvey


def _ls_value(kind: Kind, value: str) -> str:
    """A canonical answer as LimeSurvey stores it (and exports it with "Answer codes")."""
    if kind is Kind.BOOL:
        return "Y" if value == "yes" else "N"
    if kind is Kind.CODE:
        return LIMESURVEY_OPTION_CODES[value]
    if kind is Kind.INT:
        return value + ".0000000000"  # numerical input: decimal(30,10)
    if kind is Kind.DECIMAL:
        return f"{float(value):.10f}"
    if kind is Kind.DATE:
        return value + " 00:00:00"
    return value


def _ls_header(table: str, code_of: Callable[[str], str]) -> list[str]:
    header: list[str] = []
    for f in TABLES[table]:
        if f.name in ("submission_id", "submitted_at"):
            continue
        code = code_of(f.name)
        if f.kind is Kind.CODES:
            header += [f"{code}[{LIMESURVEY_OPTION_CODES[o]}]" for o in f.codes]
        else:
            header.append(code)
    return header


def _ls_cells(table: str, row: Mapping[str, str | None] | None, convert: tuple[str, str] | None = None) -> list[str]:
    """A row's answer cells; convert: (Y, N) values of "Convert Y to" / "Convert N to" (a slot not shown, row None,
    stays empty: LimeSurvey stores NULL there, which the export does not convert)."""
    yes, no = convert if convert is not None and row is not None else ("Y", "")
    cells: list[str] = []
    for f in TABLES[table]:
        if f.name in ("submission_id", "submitted_at"):
            continue
        value = (row.get(f.name) or "") if row else ""
        if f.kind is Kind.CODES:
            chosen = value.split()
            # An option shown and not ticked is stored as '', which "Convert N to" converts too.
            cells += [yes if o in chosen else no for o in f.codes]
        elif f.kind is Kind.BOOL and value and convert is not None:
            cells.append(yes if value == "yes" else no)
        else:
            cells.append(_ls_value(f.kind, value) if value else "")
    return cells


def limesurvey_header(table: str, slots: int = LIMESURVEY_MEMBER_SLOTS) -> list[str]:
    """The header of a "Question code" export of our survey of ``table`` (households: every member slot)."""
    header = list(LS_SYSTEM) + _ls_header(table, lambda n: LIMESURVEY_QUESTION_CODES[table][n])
    if table == "households":
        for slot in range(1, slots + 1):
            header += _ls_header("members", lambda n, s=slot: member_code(s, n))
    return header


def limesurvey_csv(
    table: str,
    frame: pl.DataFrame,
    members: pl.DataFrame | None = None,
    responses: pl.DataFrame | None = None,
    slots: int = LIMESURVEY_MEMBER_SLOTS,
    incomplete: Sequence[tuple[str, str]] = (),
    convert: tuple[str, str] | None = None,
) -> bytes:
    """LimeSurvey's CSV export (CsvWriter; headings "Question code", answers "Answer codes") of our survey.

    frame: canonical rows, ``submitted_at`` as LimeSurvey stored ``submitdate``; households also
    their members (canonical member rows by household ``submission_id``), at most ``slots`` each.
    responses: LimeSurvey's ``id`` and ``seed`` per row (default: ids from 1, seeds drawn from the
    submission id); incomplete: (id, seed) of responses given up on page 2, written last (no submitdate).
    ``slots`` below the survey's 10 is an export of chosen columns. convert: the values typed at the export page's
    "Convert Y to" and "Convert N to" (preset 1 and 2) with both ticked (Writer::transformResponseValue: Y and N of
    yes/no questions, and a multiple choice's options ticked or shown and not ticked)."""
    header = limesurvey_header(table, slots)
    by_household: dict[str, list[dict]] = {}
    if table == "households" and members is not None:
        for member in members.iter_rows(named=True):
            by_household.setdefault(member["submission_id"], []).append(member)
    out = io.StringIO()
    out.write(_quoted(header) + "\r\n")
    ids = responses["id"].to_list() if responses is not None else list(range(1, frame.height + 1))
    seeds = responses["seed"].to_list() if responses is not None else None
    for i, row in enumerate(frame.iter_rows(named=True)):
        submitted = (row["submitted_at"] or "").replace("T", " ")
        seed = seeds[i] if seeds is not None else str(int(row["submission_id"].replace("-", "")[:7], 16))
        cells = [str(ids[i]), submitted, LS_LAST_PAGE[table], LS_LANGUAGE[table], str(seed), submitted, submitted]
        cells += _ls_cells(table, row, convert)
        if table == "households":
            people = by_household.get(row["submission_id"], [])
            if len(people) > slots:
                raise ValueError(f"household row {i + 1} has {len(people)} members; the LimeSurvey survey has {slots} member slots")
            for slot in range(slots):
                cells += _ls_cells("members", people[slot] if slot < len(people) else None, convert)
        out.write(_quoted(cells) + "\r\n")
    blank = [""] * (len(header) - len(LS_SYSTEM))
    for number, seed in incomplete:
        out.write(_quoted([number, "", "2", LS_LANGUAGE[table], seed, "2026-07-04 12:00:00", "2026-07-04 12:03:00", *blank]) + "\r\n")
    out.write("\r\n")
    return UTF8_BOM + out.getvalue().encode("utf-8")


def limesurvey_filename(table: str, extension: str = "csv") -> str:
    """LimeSurvey's default name of a response export: results-survey<survey id>.csv (or .xlsx)."""
    return f"results-survey{forms_builder.LS_SURVEY_IDS[table]}.{extension}"


def limesurvey_vv_filename(table: str) -> str:
    """LimeSurvey's name of a VV export: vvexport_<survey id>.csv."""
    return f"vvexport_{forms_builder.LS_SURVEY_IDS[table]}.csv"



def limesurvey_records(data: bytes) -> list[list[str]]:
    """The non-blank records (header first) of a LimeSurvey CSV export, `;` or `,` separated."""
    text = data.decode("utf-8-sig")
    delimiter = ";" if text.count(";") > text.count(",") else ","
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]


# LimeSurvey's names of its own columns in the administration language (createFieldMap's gT texts; German
# as locale/de has them, "Seed" untranslated there).
LS_SYSTEM_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "id": "Response ID",
        "submitdate": "Date submitted",
        "lastpage": "Last page",
        "startlanguage": "Start language",
        "seed": "Seed",
        "startdate": "Date started",
        "datestamp": "Date last action",
    },
    "de": {
        "id": "Antwort ID",
        "submitdate": "Datum Abgeschickt",
        "lastpage": "Letzte Seite",
        "startlanguage": "Start-Sprache",
        "seed": "Zufallswert",
        "startdate": "Datum gestartet",
        "datestamp": "Datum letzte Aktivität",
    },
}
# SurveyObj::getFullAnswer's translated "Yes"/"No"/"N/A" (de.po: Ja, Nein, Nicht zutreffend; uk.po: Так, Ні,
# its "N/A" not known here, so the English one stands in).
LS_YES_NO_TEXTS: dict[str, tuple[str, str, str]] = {
    "en": ("Yes", "No", "N/A"),
    "de": ("Ja", "Nein", "Nicht zutreffend"),
    "uk": ("Так", "Ні", "N/A"),
}
LS_HEADINGS: tuple[str, ...] = ("full", "abbreviated", "codetext", "code")


@functools.cache
def limesurvey_texts(table: str) -> tuple[dict[str, tuple[str, dict[str, str]]], dict[str, dict[str, dict[str, str]]]]:
    """From our LSS of ``table``: column code -> (question type, {language: heading}) of questions and
    multiple-choice options ("text [option text]"), and question code -> {answer code: {language: text}}."""
    root = ET.fromstring(forms_builder.build_lss(table))

    def rows(name: str) -> list[dict[str, str]]:
        return [{c.tag: c.text or "" for c in row} for row in root.find(name).find("rows")]  # type: ignore[union-attr]

    questions = {q["qid"]: q for q in rows("questions")}
    questions.update({q["qid"]: q for q in rows("subquestions")})
    texts: dict[str, dict[str, str]] = {}
    for l10n in rows("question_l10ns"):
        texts.setdefault(l10n["qid"], {})[l10n["language"]] = l10n["question"]
    headings: dict[str, tuple[str, dict[str, str]]] = {}
    for qid, q in questions.items():
        if q["parent_qid"] == "0":
            headings[q["title"]] = (q["type"], texts[qid])
    for qid, q in questions.items():
        if q["parent_qid"] != "0":
            parent = questions[q["parent_qid"]]
            headings[f"{parent['title']}[{q['title']}]"] = ("M", {
                lang: f"{text} [{texts[qid][lang]}]" for lang, text in texts[parent["qid"]].items()
            })
    answer_texts: dict[str, dict[str, str]] = {}
    for l10n in rows("answer_l10ns"):
        answer_texts.setdefault(l10n["aid"], {})[l10n["language"]] = l10n["answer"]
    answers: dict[str, dict[str, dict[str, str]]] = {}
    for a in rows("answers"):
        answers.setdefault(questions[a["qid"]]["title"], {})[a["code"]] = answer_texts[a["aid"]]
    return headings, answers


def _ellipsized(text: str, length: int = 15) -> str:
    """LimeSurvey's ellipsize() at the end: the first `length` characters and ".. " where it is longer."""
    return text if len(text) <= length else text[:length] + ".. "


def _abbreviated(heading: str) -> str:
    """Writer::getAbbreviatedHeading of a full heading: question text and the sub-question in brackets
    each ellipsized (headingTextLength 15), the sub-question after a blank."""
    match = re.match(r"^(?P<text>.*?) \[(?P<sub>[^\[\]]*)\]$", heading)
    if match is None:
        return _ellipsized(heading)
    return _ellipsized(match["text"]) + " [" + _ellipsized(match["sub"]) + "]"


def limesurvey_text_csv(
    code_csv: bytes,
    table: str,
    language: str = "de",
    headings: str = "full",
    full_answers: bool = True,
    system_texts: Mapping[str, str] = LS_SYSTEM_TEXTS["en"],
    underscores: bool = False,
) -> bytes:
    """A "Question code"/"Answer codes" export (limesurvey_csv) of our survey as LimeSurvey exports the same
    responses with other options: headings "full" (question text, LimeSurvey's default), "abbreviated",
    "codetext" or "code", answers as full texts (default) or codes, in the export ``language``; its own
    columns named in the administration language (system_texts); underscores: "Convert spaces in question
    text to underscores"."""
    if headings not in LS_HEADINGS:
        raise ValueError(f"headings must be one of {', '.join(LS_HEADINGS)}")
    lines = limesurvey_records(code_csv)
    header, body = lines[0], lines[1:]
    questions, answers = limesurvey_texts(table)
    yes, no, not_applicable = LS_YES_NO_TEXTS[language]
    new_header = []
    for code in header:
        heading = system_texts[code] if code in system_texts else questions[code][1][language]
        if headings == "abbreviated":
            heading = _abbreviated(heading)
        if underscores:
            heading = heading.replace(" ", "_")
        new_header.append({"codetext": f"{code}. {heading}", "code": code}.get(headings, heading))
    submitdate = header.index("submitdate")
    new_body = []
    for cells in body:
        new_cells = []
        for code, value in zip(header, cells):
            kind = questions[code][0] if code in questions else ""
            if full_answers and kind in ("L", "!") and value:
                value = answers[code][value][language]
            elif full_answers and kind == "Y":
                value = yes if value == "Y" else no if value == "N" else not_applicable
            elif full_answers and kind == "M":
                # An option not ticked is "No" where the question was shown, "N/A" where it was not
                # (a member slot left empty, a response given up before the question).
                slot = re.match(r"^m(\d+)", code) if table == "households" else None
                shown = cells[submitdate] != "" and (slot is None or cells[header.index(f"m{slot[1]}name")] != "")
                value = yes if value == "Y" else no if shown else not_applicable
            elif full_answers and kind == "N" and "." in value:
                value = value.rstrip("0").rstrip(".")
            new_cells.append(value)
        new_body.append(new_cells)
    out = "\r\n".join(_quoted(c) for c in [new_header, *new_body]) + "\r\n\r\n"
    return UTF8_BOM + out.encode("utf-8")


def limesurvey_vv(code_csv: bytes, table: str, language: str = "de", version: int = 2) -> bytes:
    """LimeSurvey's "Export a VV survey file" (vvexport) of a code export's responses: tab separated
    (fputcsv), row 1 the question texts in ``language`` (an option as "text (option)"), row 2 the column
    codes (version 2: question codes, an option as code_option; version 1: the database's SGQA names, made
    up here), then one line per response with the stored values: NULL as {question_not_shown}, "{",
    newline, CR and tab as {lbrace} {newline} {cr} {tab}, a leading quote as {quote}. UTF-8 without BOM, LF."""
    codes = limesurvey_records(code_csv)
    questions, _ = limesurvey_texts(table)
    texts = [LS_SYSTEM_TEXTS["en"][c] if c in LS_SYSTEM_TEXTS["en"] else questions[c][1][language] for c in codes[0]]
    texts = [re.sub(r" \[(.*)\]$", r" (\1)", t) for t in texts]
    if version == 2:
        header = [re.sub(r"\[(.*)\]$", r"_\1", c) for c in codes[0]]
    else:
        header = [c if c in LS_SYSTEM else f"{654321}X{7 + n // 20}X{100 + n}" for n, c in enumerate(codes[0])]

    def stored(value: str) -> str:
        if value == "":
            return "{question_not_shown}"
        value = value.replace("{", "{lbrace}").replace("\n", "{newline}").replace("\r", "{cr}").replace("\t", "{tab}")
        return re.sub(r'^"', "{quote}", value)

    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(texts)
    writer.writerow(header)
    for cells in codes[1:]:
        writer.writerow([stored(v) for v in cells])
    return out.getvalue().encode("utf-8")


_PHP_XLSX_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$")


def limesurvey_sheet_name(title: str) -> str:
    """ExcelWriter's sheet name: the survey title, ``*:/\\?[]`` as blanks, at most 31 characters."""
    return re.sub(r"[*:/\\?\[\]]", " ", title)[:31]


def limesurvey_xlsx(csv_data: bytes, title: str) -> bytes:
    """A LimeSurvey CSV export's content as its "Microsoft Excel" export: ExcelWriter (PHP_XLSXWriter)
    writes one sheet named after the survey title, header then rows; a value that looks like a number
    (PHP_XLSXWriter's n_auto: no leading zero) is a number cell, anything else text, empty no cell."""
    lines = limesurvey_records(csv_data)
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_numbers": False})
    sheet = book.add_worksheet(limesurvey_sheet_name(title))
    for r, cells in enumerate(lines):
        for c, value in enumerate(cells):
            if value == "":
                continue
            if r > 0 and _PHP_XLSX_NUMBER.match(value):
                sheet.write_number(r, c, float(value))
            else:
                sheet.write_string(r, c, value)
    book.close()
    return buffer.getvalue()

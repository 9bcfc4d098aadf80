"""Reader for KoboToolbox and ODK Central exports of our XLSForms (Kobo: CSV and XLSX; Central: CSV).

The XLSForms name every question with its canonical field name, so a Kobo column is a canonical
field once its group path and Kobo's own metadata are set aside:

- headers are XML paths, groups joined by ``/`` (or ``.``/``:`` when another group separator was
  chosen): ``household/pets``, ``grp_needs/medical_needs``; the last path part is the field;
- select_multiple: a summary column of space-separated codes (``medical_needs``) and/or one column
  per option (``medical_needs/dialysis``) holding 1/0, True/False (Python booleans in XLSX);
  ``n/a`` (not relevant) is empty;
- metadata (ignored, except as noted): every column whose last part starts with ``_`` (``_id``,
  ``_uuid``, ``_submission_time``, ``_validation_status``, ``_index``, ``_parent_index``,
  ``_gps_latitude``, …), everything under ``meta/`` and ``formhub/``, and the XLSForm metadata
  questions (``start``, ``end``, ``today``, ``deviceid``, …). ``submission_id`` is ``_uuid`` (else
  ``meta/instanceID`` without ``uuid:``); ``submitted_at`` is the form's own ``submitted_at``
  question if it has one, else ``_submission_time`` (UTC), and then the device's date of ``end``,
  ``start`` or ``today`` is kept as the date written (``submitted_on``, households only);
- repeat group ``members``: in XLSX a sheet of its own joined by ``_parent_index`` to the main
  sheet's ``_index`` (else by ``_submission__uuid``); in legacy CSV either indexed columns
  ``members[2]/member_name`` (one household row, member slots) or one row per member with the
  household's answers repeated (rows sharing a ``_uuid`` / ``meta/instanceID``);
- KPI's HXL tag row (second row, every cell ``#…`` or empty) is skipped;
- an export with labels (KPI's default: a language instead of "XML values and headers") is turned
  back into names and codes first, from our forms' own labels (``kobo_labels``);
- a submission a reviewer rejected (Kobo ``_validation_status`` not approved, Central ``ReviewState``
  rejected) is read with the reason in a ``left_out`` column and counted in ``ParsedTable.skipped``;
  validation leaves it out with its members, and earlier loaded copies of it;
- ODK Central (CSV, or its CSV zip read by ``detect``): groups joined by ``-`` (``meta-instanceID``),
  option columns ``field/option``; its own columns (``SubmissionDate``, ``KEY``, ``ReviewState`` …)
  are metadata, ``submission_id`` is ``KEY`` without ``uuid:``, ``submitted_at`` falls back on
  ``SubmissionDate``; the ``members`` repeat is a file of its own whose ``PARENT_KEY`` is its
  household's ``KEY``; the forms' notes (named ``*_note``) are empty columns there and are ignored.

Any other column, a missing required one or two columns for one field reject the file with an
error naming the columns, exactly like the canonical templates: a new form version must not shift
data silently.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import polars as pl

from rematch_pipeline.formats.canonical import (
    LEFT_OUT_COLUMN,
    OTHER_SHEETS,
    PERSON_FIELDS,
    SUBMITTED_ON_COLUMN,
    ParsedTable,
    canonical_table,
    check_header,
    export_header,
    holds_no_person,
    names_a_field,
    with_left_out,
)
from rematch_pipeline.formats.errors import InputFileError, Violation
from rematch_pipeline.formats.kobo_labels import names_from_labels
from rematch_pipeline.formats.limits import CsvRecords, check_row_count, csv_records, max_rows
from rematch_pipeline.formats.workbook import SheetValues, Workbook, read_workbook, refuse_merged_across, refuse_unsaved_formulas
from rematch_pipeline.schemas.contract import TABLES, Kind
from rematch_pipeline.wording import counted

# Columns only Kobo writes; one of them marks a file as a Kobo export.
KOBO_MARKERS: frozenset[str] = frozenset(
    {
        "_id",
        "_uuid",
        "_submission_time",
        "_validation_status",
        "_status",
        "_submitted_by",
        "__version__",
        "_index",
        "_parent_index",
        "_parent_table_name",
        "_submission__uuid",
        "instanceID",
        "rootUuid",
    }
)
# XLSForm metadata questions, conventionally named after their type.
XLSFORM_METADATA: frozenset[str] = frozenset(
    {"start", "end", "today", "deviceid", "subscriberid", "simserial", "phonenumber", "username", "audit", "start-geopoint"}
)
# ODK Central's own columns after the instance's leaves (lib/data/briefcase.js streamBriefcaseCsvs), in
# order, and on a repeat's table.
CENTRAL_MAIN_META: tuple[str, ...] = (
    "KEY",
    "SubmitterID",
    "SubmitterName",
    "AttachmentsPresent",
    "AttachmentsExpected",
    "Status",
    "ReviewState",
    "DeviceID",
    "Edits",
    "FormVersion",
)
CENTRAL_REPEAT_META: tuple[str, ...] = ("PARENT_KEY", "KEY")
# Those, and the meta group's leaves when group names are left out.
CENTRAL_METADATA: frozenset[str] = frozenset(
    {"SubmissionDate", *CENTRAL_MAIN_META, *CENTRAL_REPEAT_META, "instanceName", "deprecatedID"}
)
# Central columns that mark a file as a Central export (the generic ones, Status or Edits, do not).
CENTRAL_MARKERS: frozenset[str] = frozenset({"SubmissionDate", "KEY", "PARENT_KEY", "ReviewState", "FormVersion"})
METADATA_GROUPS: frozenset[str] = frozenset({"meta", "formhub"})
# Our XLSForms name every note so (tests/test_forms.py checks it); Central exports notes as empty columns.
NOTE_SUFFIX = "_note"
NOT_APPLICABLE = "n/a"
# Where a submission's id, its time and (in a repeat file) its household's id come from, first filled wins.
# Kobo's _uuid and Central's KEY are the submission's first instance id, which an edit keeps.
SUBMISSION_ID_COLUMNS: tuple[str, ...] = ("_uuid", "KEY", "instanceID")
SUBMISSION_TIME_COLUMNS: tuple[str, ...] = ("_submission_time", "SubmissionDate")
PARENT_COLUMNS: tuple[str, ...] = ("_submission__uuid", "PARENT_KEY")
# Submissions a reviewer rejected in the collection tool: read with the reason (LEFT_OUT_COLUMN), which
# validation leaves out with their repeat rows. Metadata column → (its values that mean rejected, reason).
# Kobo writes the status uid under "XML values and headers", its label under a language. The label is the
# one KPI stored with the status, in English whatever the export's language (kpi DEFAULT_VALIDATION_STATUSES).
REJECTED_STATES: dict[str, tuple[frozenset[str], str]] = {
    "_validation_status": (
        frozenset({"validation_status_not_approved", "not approved"}),
        "submissions not approved in KoboToolbox",
    ),
    "ReviewState": (frozenset({"rejected"}), "submissions rejected in ODK Central"),
}
# A submission listed twice in a workbook's main sheet (same _uuid: KoboToolbox stores a resent submission twice),
# each copy with repeat rows of its own: one copy is the submission, as validation takes one main row per id. The
# others and their members are read with this reason (stored, so erasure reaches them; validation leaves them out),
# else the household would be matched with the members of both copies.
DUPLICATE_COPY = "earlier copies of submissions listed twice in the file (same _uuid), with their members"
# A question added to a form after it was deployed from forms/, or a renamed one, is an unexpected column: how to land the rest.
QUESTIONS_ADDED = (
    "a question added or renamed after the form was deployed? export with 'XML values and headers' and without added"
    " questions ('Select questions to be exported'), or undo the change"
)
MAIN_TABLES: tuple[str, ...] = ("households", "municipalities")
REPEAT_TABLE = "members"
# Fields of a table a header must show before the file is read as that table.
MIN_DETECTING_FIELDS = 3

_SEPARATORS = re.compile(r"[/.:-]")
_REPEAT_PART = re.compile(r"^(?P<name>[A-Za-z_][\w-]*)\[(?P<index>\d+)\]$")
# A German Excel writes TRUE/FALSE back into a CSV it saves as WAHR/FALSCH (a legacy KoboCAT CSV opened there).
_OPTION_TRUE = frozenset({"1", "true", "yes", "wahr"})
_OPTION_FALSE = frozenset({"0", "false", "no", "falsch", ""})


@dataclass
class _Column:
    """What one export column is, once group prefixes are set aside."""

    position: int
    header: str
    meta: str | None = None  # metadata name (last path part) if metadata
    field: str = ""  # canonical field ("" for metadata)
    option: str | None = None  # select_multiple option code of `field`
    slot: int | None = None  # legacy repeat index "members[2]/…"
    member: bool = False  # a members field (repeat)


@dataclass
class _Layout:
    """How the columns of one header map onto one main table and, optionally, members."""

    table: str
    columns: list[_Column]
    unknown: list[str] = field(default_factory=list)
    _meta: dict[str, _Column] | None = None

    def meta(self, name: str) -> _Column | None:
        """The first metadata column of that name (last path part), if any."""
        if self._meta is None:  # built once the columns are complete
            self._meta = {}
            for c in self.columns:
                if c.meta is not None:
                    self._meta.setdefault(c.meta, c)
        return self._meta.get(name)


def _parts(header: str) -> list[str]:
    return [p for p in _SEPARATORS.split(header.strip()) if p]


def is_kobo_header(header: Iterable[str]) -> bool:
    """Whether a header row carries Kobo's or ODK Central's own metadata columns (with or without group paths)."""
    for name in header:
        parts = _parts(name)
        if parts and (parts[-1] in KOBO_MARKERS or (len(parts) > 1 and parts[0] in METADATA_GROUPS)):
            return True
    return is_central_header(header)


def is_central_header(header: Iterable[str]) -> bool:
    """Whether a header row carries ODK Central's own columns (``SubmissionDate``, ``KEY``, ``PARENT_KEY`` …)."""
    return any(name.strip() in CENTRAL_MARKERS for name in header)


def _is_metadata(parts: list[str]) -> bool:
    last = parts[-1]
    return (
        last.startswith("_")
        or parts[0] in METADATA_GROUPS
        or last in XLSFORM_METADATA
        or "-".join(parts[-2:]) in XLSFORM_METADATA  # start-geopoint
        or last in KOBO_MARKERS
        or last in CENTRAL_METADATA
        or last.endswith(NOTE_SUFFIX)
    )


def _resolve(parts: list[str], table: str) -> tuple[str, str | None] | None:
    """(field, option) of a path within `table`; the option reading wins (``languages/other``)."""
    fields = {f.name: f for f in TABLES[table]}
    if len(parts) >= 2:
        owner = fields.get(parts[-2])
        if owner is not None and owner.kind is Kind.CODES and parts[-1] in owner.codes:
            return owner.name, parts[-1]
    if parts[-1] in fields:
        return parts[-1], None
    return None


def _exclusive(table: str) -> set[str]:
    """Fields only this table has (contact_name, notes … are shared and tell nothing)."""
    others = {f.name for t in (*MAIN_TABLES, REPEAT_TABLE) if t != table for f in TABLES[t]}
    return {f.name for f in TABLES[table]} - others


def _detect(header: list[str]) -> str | None:
    """Main table (or members, for a repeat sheet) of a header: the one most of its fields belong to.

    Counting rather than requiring signature columns keeps a renamed key column reportable as
    "missing / unexpected" instead of making the whole file unrecognisable.
    """
    names: set[str] = set()
    for h in header:
        parts = _parts(h)
        if parts and not _is_metadata(parts) and not any(_REPEAT_PART.match(p) for p in parts):
            names.update(parts[-2:])
    scores = {table: len(names & _exclusive(table)) for table in MAIN_TABLES}
    best = max(scores, key=lambda t: scores[t])
    if scores[best] >= MIN_DETECTING_FIELDS and list(scores.values()).count(scores[best]) == 1:
        return best
    if len(names & _exclusive(REPEAT_TABLE)) >= MIN_DETECTING_FIELDS:
        return REPEAT_TABLE
    return None


def _layout(header: list[str], file: str, sheet: str | None) -> _Layout:
    table = _detect(header)
    if table is None:
        raise InputFileError(
            Violation(
                file,
                1,
                None,
                "header: not a KoboToolbox export of the municipalities or households form "
                "(export with 'XML values and headers', or labels of the forms in forms/)",
                sheet=sheet,
            )
        )
    layout = _Layout(table, [])
    for position, name in enumerate(header):
        parts = _parts(name)
        if not parts:
            if name.strip():
                layout.unknown.append(name)
            continue
        column = _Column(position, name)
        repeat = [i for i, p in enumerate(parts) if _REPEAT_PART.match(p)]
        if _is_metadata(parts):
            column.meta = parts[-1]
        elif repeat:
            # members[2]/member_name: one repeat level, in a households export, with a field after it.
            inner = parts[repeat[0] + 1 :]
            resolved = _resolve(inner, REPEAT_TABLE) if len(repeat) == 1 and inner and table == "households" else None
            if resolved is None:
                layout.unknown.append(name)
                continue
            column.slot = int(parts[repeat[0]].rsplit("[", 1)[1].rstrip("]"))
            column.member = True
            column.field, column.option = resolved
        else:
            resolved = _resolve(parts, table)
            if resolved is None and table == "households":
                # One row per member (legacy "flattened" repeats): member fields beside household ones.
                resolved = _resolve(parts, REPEAT_TABLE)
                column.member = resolved is not None
            if resolved is None:
                layout.unknown.append(name)
                continue
            column.field, column.option = resolved
        layout.columns.append(column)
    if any(c.member and c.slot is None for c in layout.columns) and any(c.slot is not None for c in layout.columns):
        layout.unknown += [c.header for c in layout.columns if c.member and c.slot is None]
    return layout


def _mapped_header(columns: list[_Column], extra: list[str]) -> list[str]:
    """Canonical header equivalent of some columns (export_header), then the extra names it lacks."""
    names = export_header((c.field, c.option) for c in columns if c.field)
    return names + [e for e in extra if e not in names]


def _check_layout(layout: _Layout, file: str, sheet: str | None) -> None:
    """check_header semantics on the canonical equivalent of the Kobo header (names unknown columns as given)."""
    main = [c for c in layout.columns if c.field and not c.member]
    extra = []
    if layout.table != REPEAT_TABLE:
        if any(layout.meta(name) for name in SUBMISSION_ID_COLUMNS):
            extra.append("submission_id")
        if any(layout.meta(name) for name in SUBMISSION_TIME_COLUMNS):
            extra.append("submitted_at")
    elif any(layout.meta(name) for name in ("_parent_index", *PARENT_COLUMNS)):
        extra.append("submission_id")
    check_header(layout.table, _mapped_header(main, extra) + layout.unknown, file, sheet, added=QUESTIONS_ADDED)
    members = [c for c in layout.columns if c.member]
    if members:
        slots = sorted({c.slot or 0 for c in members})
        mapped = ["submission_id"]
        for slot in slots:
            per_slot = _mapped_header([c for c in members if (c.slot or 0) == slot], [])
            mapped += [n for n in per_slot if n not in mapped or per_slot.count(n) > 1]
        check_header(REPEAT_TABLE, mapped, file, sheet)


def _cell(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value == "" or value.lower() == NOT_APPLICABLE else value


def _option_selected(value: str | None, file: str, row: int, column: _Column, table: str, sheet: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in _OPTION_TRUE:
        return True
    if text in _OPTION_FALSE or text == NOT_APPLICABLE:
        return False
    raise InputFileError(Violation(file, row, column.header, "kobo: option column is not 1/0 or True/False", table, sheet))


def _record(
    columns: list[_Column], cells: list[str | None], file: str, row: int, table: str, sheet: str | None
) -> dict[str, str | None]:
    """Canonical values of some columns of one row; a summary column beats the option columns."""
    record: dict[str, str | None] = {}
    chosen: dict[str, list[str]] = {}
    summaries = {c.field for c in columns if c.option is None}
    for c in columns:
        value = cells[c.position] if c.position < len(cells) else None
        if c.option is None:
            record[c.field] = _cell(value)
        elif c.field not in summaries:
            selected = _option_selected(value, file, row, c, table, sheet)
            chosen.setdefault(c.field, [])
            if selected:
                chosen[c.field].append(c.option)
    for name, codes in chosen.items():
        record[name] = " ".join(codes) or None
    return record


def _meta_value(layout: _Layout, cells: list[str | None], names: tuple[str, ...]) -> str | None:
    """The first filled metadata cell among names (in that order), without a ``uuid:`` prefix."""
    for name in names:
        column = layout.meta(name)
        value = _cell(cells[column.position]) if column and column.position < len(cells) else None
        if value is not None:
            return value[5:] if value.lower().startswith("uuid:") else value
    return None


# A time of day with its UTC offset at the end (`10:15:00.000+02:00`, `10:15Z`, `+0200`); a date alone has none.
_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")
# Why a device time without its offset was read otherwise (_Read.device_times), said once per sheet (ParsedTable.warnings).
SERVER_TIME_READ = (
    "submitted_at (the form's end time) without its UTC offset, as KoboToolbox's XLSX export writes it without"
    " 'Store date and number responses as text' (the device's offset dropped); read from _submission_time (server"
    " time, UTC) instead; export with that option on to keep the device's time"
)
DEVICE_TIME_AS_UTC = (
    "submitted_at (the form's end time) without its UTC offset and no _submission_time beside it: read as UTC, off by"
    " the device's offset (2 h in German summer time); export with 'Store date and number responses as text' on, or"
    " with the _submission_time column"
)


def _without_offset(text: str | None) -> bool:
    """Whether a submitted_at is a time without a UTC offset (ODK's end time always carries one)."""
    # _moment, not schemas.parsing: the readers stay free of pandera (a reading child process's memory).
    return text is not None and _OFFSET.search(text.strip()) is None and _moment(text) is not None


# XLSForm metadata questions the device fills, in the order they are taken as the date the submitter wrote where the
# form has no submitted_at question: `end` under its default name (KPI's form builder adds start and end to every
# form; the device's time when the form was finished), `start` (when it was opened), both with the device's offset (or
# its wall-clock time where KPI's XLSX dropped the offset), then `today` (the device's date when it was opened).
DEVICE_DATE_COLUMNS: tuple[str, ...] = ("end", "start", "today")


def _device_date(layout: _Layout, cells: list[str | None]) -> str | None:
    """The device's calendar date of a submission from the form's `end`, `start` or `today` (DEVICE_DATE_COLUMNS), ISO;
    None where the form has none of them or none reads as a time or date. The date as written: in the device's own offset,
    not converted to UTC (00:30+02:00 on 10 July is 10 July). Validation checks it against the server's time."""
    for name in DEVICE_DATE_COLUMNS:
        moment = _moment(_meta_value(layout, cells, (name,)))
        if moment is not None:
            return moment.date().isoformat()
    return None


def _submission(layout: _Layout, cells: list[str | None], record: dict[str, str | None], typed_end: bool = False) -> str | None:
    """Fill submission_id and submitted_at of a main record from Kobo's or Central's metadata. With ``typed_end`` (the
    form's own submitted_at as date-time cells), where such a time has no offset: the rule read (SERVER_TIME_READ,
    from _submission_time; DEVICE_TIME_AS_UTC where there is none)."""
    record["submission_id"] = _meta_value(layout, cells, SUBMISSION_ID_COLUMNS) or record.get("submission_id")
    if not record.get("submitted_at"):
        # A form without our submitted_at question: the server's UTC receipt orders; where the form has `end`, `start` or
        # `today`, the device's date dates the household (ages, intake period), as submitted_at's own date would.
        record["submitted_at"] = _meta_value(layout, cells, SUBMISSION_TIME_COLUMNS)
        if record["submitted_at"] is not None and layout.table == "households":
            record[SUBMITTED_ON_COLUMN] = _device_date(layout, cells)
        return None
    if not typed_end or not _without_offset(record["submitted_at"]):
        return None
    # KPI's XLSX export without "Store date and number responses as text" (formpack's xls_types_as_text=False) writes
    # the end time as a date-time cell: formpack parses it with its offset and xlsxwriter's remove_timezone drops the
    # offset, keeping the device's wall-clock time (docs/decisions.md). The server's receipt time is UTC.
    server = _meta_value(layout, cells, SUBMISSION_TIME_COLUMNS)
    if server is None:
        return DEVICE_TIME_AS_UTC
    # The server's UTC time orders the submissions; the date is the device's, the one the submitter wrote (at 00:30
    # on 10 July in Germany the server has 22:30 on 9 July): ages and the intake period go by it (docs/formats.md).
    device = _moment(record["submitted_at"])
    record[SUBMITTED_ON_COLUMN] = device.date().isoformat() if device is not None else None
    record["submitted_at"] = server
    return SERVER_TIME_READ


@dataclass
class _Read:
    """Records of one sheet or CSV: the main table and the members found in it."""

    table: str
    main: list[dict[str, str | None]] = field(default_factory=list)
    main_rows: list[int] = field(default_factory=list)
    members: list[dict[str, str | None]] = field(default_factory=list)
    member_rows: list[int] = field(default_factory=list)
    index: dict[str, str | None] = field(default_factory=dict)  # _index -> submission_id
    uuids: dict[str, str] = field(default_factory=dict)  # _index -> the row's own _uuid, where written
    left_out: list[str | None] = field(default_factory=list)  # per main record: why a reviewer rejected it
    keys: list[str | None] = field(default_factory=list)  # per main record: its _index
    # Main records whose submitted_at had lost its UTC offset, by the rule read (_submission).
    device_times: dict[str, int] = field(default_factory=dict)


def _rejection(layout: _Layout, cells: list[str | None]) -> str | None:
    """The reason a reviewer's status leaves this submission out, if it does."""
    for name, (values, reason) in REJECTED_STATES.items():
        column = layout.meta(name)
        value = _cell(cells[column.position]) if column and column.position < len(cells) else None
        # Legacy KoboCAT CSVs hold the whole status object: {"uid": "validation_status_not_approved", …}.
        if value is not None and (value.lower() in values or any(f'"{v}"' in value.lower() for v in values)):
            return reason
    return None


def _read_rows(layout: _Layout, rows: list[tuple[int, list[str | None]]], file: str, sheet: str | None, typed_end: bool = False) -> _Read:
    """The records of a sheet or CSV. ``typed_end``: its submitted_at column holds date-time cells, whose UTC offset
    the export dropped (_submission)."""
    out = _Read(layout.table)
    main = [c for c in layout.columns if c.field and not c.member]
    members = [c for c in layout.columns if c.member]
    slots = sorted({c.slot for c in members if c.slot is not None})
    seen: set[str] = set()
    index_col = layout.meta("_index")
    groups = [[c for c in members if c.slot == s] for s in slots] if slots else ([members] if members else [])
    # A repeat row without a person's answers (a sum row under the members sheet) is read without its option columns:
    # totals there are not 1/0, and the row is quarantined whole whatever they hold (no person, or a household's
    # member without its required answers), so refusing the file for them would store nothing.
    plain = [c for c in main if c.option is None]
    person = [c for c in plain if c.field in PERSON_FIELDS]
    for number, cells in rows:
        blank = layout.table == REPEAT_TABLE and not any(_cell(cells[c.position]) for c in person if c.position < len(cells))
        record = _record(plain if blank else main, cells, file, number, layout.table, sheet)
        if layout.table != REPEAT_TABLE and (rule := _submission(layout, cells, record, typed_end)) is not None:
            out.device_times[rule] = out.device_times.get(rule, 0) + 1
        submission = record.get("submission_id")
        key = _cell(cells[index_col.position]) if index_col is not None and index_col.position < len(cells) else None
        if key is not None:
            out.index[key] = submission
            if (uuid := _meta_value(layout, cells, ("_uuid",))) is not None:
                out.uuids[key] = uuid
        # In the one-row-per-member layout a household repeats on each of its members' rows.
        if not (members and not slots and submission is not None and submission in seen):
            out.main.append(record)
            out.main_rows.append(number)
            out.left_out.append(_rejection(layout, cells) if layout.table != REPEAT_TABLE else None)
            out.keys.append(key)
        if submission is not None:
            seen.add(submission)
        for group in groups:
            member = _record(group, cells, file, number, REPEAT_TABLE, sheet)
            if any(v is not None for v in member.values()):
                member["submission_id"] = submission
                out.members.append(member)
                out.member_rows.append(number)
    return out


def _skip_hxl(rows: list[tuple[int, list[str | None]]], header_row: int = 1) -> list[tuple[int, list[str | None]]]:
    """Drop KPI's HXL hashtag row (the row right under the header, row 2, or 3 below Excel's `sep=;` line: every
    non-empty cell starts with '#')."""
    if rows and rows[0][0] == header_row + 1:
        filled = [c.strip() for c in rows[0][1] if c is not None and c.strip()]
        if filled and all(c.startswith("#") for c in filled):
            return rows[1:]
    return rows


def _tables(read: _Read, file: str, sheet: str | None, member_sheet: str | None = None) -> list[ParsedTable]:
    main = with_left_out(canonical_table(read.table, read.main, read.main_rows, sheet), read.left_out)
    written = [record.get(SUBMITTED_ON_COLUMN) for record in read.main]
    if any(written):
        main = replace(main, frame=main.frame.with_columns(pl.Series(SUBMITTED_ON_COLUMN, written, dtype=pl.Utf8)))
    if read.device_times:
        main = replace(main, warnings=tuple(f"{counted(n, 'submission')}: {rule}" for rule, n in read.device_times.items()))
    tables = [main]
    if read.members:
        tables.append(canonical_table(REPEAT_TABLE, read.members, read.member_rows, member_sheet or sheet))
    return tables


def read_kobo_records(records: CsvRecords, file: str) -> list[ParsedTable]:
    """Canonical tables of a tokenised Kobo CSV (households with members, or municipalities)."""
    header, rows = names_from_labels(records.header, [(n, list(cells)) for n, cells in records.rows])
    layout = _layout(header, file, None)
    _check_layout(layout, file, None)
    rows = _skip_hxl(rows, records.header_row)
    if not rows:
        raise InputFileError(Violation(file, None, None, "header only: no data rows", layout.table))
    read = _read_rows(layout, rows, file, None)
    if layout.table == REPEAT_TABLE:
        # A members-only CSV (Kobo, or Central's repeat file): each row names its submission itself.
        for record, (_, cells) in zip(read.main, rows):
            record["submission_id"] = _meta_value(layout, cells, PARENT_COLUMNS) or _central_parent(layout, cells)
    return _tables(read, file, None)


# Central's repeat row KEY: its submission's KEY, then `/<repeat>[n]` (central-backend lib/data/briefcase.js).
_CENTRAL_REPEAT_KEY = re.compile(r"^(?:uuid:)?(?P<parent>[^/\s]+)/[^/\s]+\[\d+\]$", re.IGNORECASE)


def _central_parent(layout: _Layout, cells: list[str | None]) -> str | None:
    """The submission an ODK Central repeat row belongs to, read from the row's own KEY where PARENT_KEY is
    empty (a cell cleared in a spreadsheet): Central builds that KEY from the submission's, so it is the same
    link, not a guess. None where the KEY is not of that shape."""
    key = _meta_value(layout, cells, ("KEY",)) if layout.meta("PARENT_KEY") is not None else None
    match = _CENTRAL_REPEAT_KEY.match(key or "")
    return match["parent"] if match else None


def read_kobo_csv(data: bytes, file: str) -> list[ParsedTable]:
    """Read a Kobo CSV export (KPI: `;`, all quoted, CRLF, HXL row; legacy: `,`, True/False, `[n]` repeats)."""
    return read_kobo_records(csv_records(data, file), file)


def xlsx_text(value: object) -> str | None:
    """A workbook cell's value as the readers' text (None where empty): a whole float without ``.0``, a datetime at
    midnight as its date, other datetimes in ISO 8601 (with their offset where they carry one)."""
    # The common cells first, by exact type (6 M cells in a national export): text, empty, numbers (1/0 options).
    if value is None or type(value) is str:
        return value  # type: ignore[return-value]
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        # A date question read back as a datetime at midnight stays a date.
        return value.date().isoformat() if value.time() == dt.time() and value.tzinfo is None else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def sheet_rows(
    sheet: SheetValues, file: str, formulas: Mapping[tuple[int, int], str] | None = None, date_times: set[int] | None = None
) -> tuple[int, list[str], list[tuple[int, list[str | None]]]]:
    """(header row number, header, non-empty data rows) of a worksheet, under the row limit.

    Row numbers are the sheet's; cells are text (a whole float without its ``.0``, a date at
    midnight as a date), None where empty. ``formulas``: text read instead of a data cell's value, by
    (row, column from 0) (SheetValues.formula_texts); the header's cells are read as saved. ``date_times``: filled
    with the columns (from 0) where a data row holds a date-time cell (a number cell with a date format).
    """
    header: list[str] | None = None
    header_row = 0
    rows: list[tuple[int, list[str | None]]] = []
    limit = max_rows()  # read once, not per row (6 M cells in a national export)
    by_row: dict[int, list[tuple[int, str]]] = {}
    for (row, column), text in (formulas or {}).items():
        by_row.setdefault(row, []).append((column, text))
    for number, values in enumerate(sheet.rows(), start=1):
        cells = [xlsx_text(v) for v in values]
        if by_row and header is not None and number in by_row:
            for column, text in by_row[number]:
                cells.extend([None] * (column + 1 - len(cells)))
                cells[column] = text
        if not any(c is not None and c.strip() for c in cells):
            continue
        if header is None:
            header = [(c or "").strip() for c in cells]
            while header and not header[-1]:
                header.pop()
            header_row = number
            continue
        rows.append((number, cells))
        # `in` over the types runs at C speed on the rows without one.
        if date_times is not None and dt.datetime in map(type, values):
            date_times.update(c for c, v in enumerate(values) if type(v) is dt.datetime)
        if len(rows) > limit:
            check_row_count(len(rows), file, number, sheet.title)
    return header_row, header or [], rows


def header_not_in_row_1(tool: str, row: int) -> str:
    """The rule for an export whose header a row was added above (a title typed over the table)."""
    return f"{tool}: header in row {row}, not in row 1 as exported (a title or other row added above it?); delete the rows above the header"


def sheet_headers(sheet: SheetValues) -> list[list[str]]:
    """The first two non-empty rows (within the first 20) of a sheet, as text: its header, or a title row typed
    above it and then its header."""
    headers = []
    for values in sheet.rows(max_row=20):
        cells = [(xlsx_text(v) or "").strip() for v in values]
        if any(cells):
            headers.append(cells)
            if len(headers) == 2:
                break
    return headers


def book_headers(book: Workbook) -> list[list[str]]:
    """sheet_headers of every sheet of a workbook, for format detection: an export with a title row typed above its
    header is still told by its header (and then refused naming it)."""
    return [row for sheet in book.sheets for row in sheet_headers(sheet)]


def xlsx_headers(data: bytes) -> list[list[str]]:
    """The first non-empty row of every sheet (for format detection); unreadable → []."""
    try:
        return read_workbook(data, "", book_headers)
    except InputFileError:  # the chosen reader reports a broken workbook
        return []


def read_kobo_xlsx(data: bytes, file: str) -> list[ParsedTable]:
    """Read a Kobo XLSX export: the main sheet and the ``members`` repeat sheet joined to it."""
    return read_workbook(data, file, lambda book: read_kobo_book(book, file))


def read_kobo_book(book: Workbook, file: str) -> list[ParsedTable]:
    """The canonical tables of a Kobo XLSX export already opened (read_kobo_xlsx)."""
    mains: list[tuple[str, _Read]] = []
    repeats: list[tuple[str, _Layout, _Read, list[tuple[int, list[str | None]]]]] = []
    other_sheets = 0
    for sheet in book.sheets:
        # KPI's XLSX export (formpack, through xlsxwriter) writes a text answer starting with `=` as a formula saved
        # as 0, in a workbook to be recalculated when opened: such a cell is read as the answer (`=` and the formula),
        # as KPI's CSV export gives it; a text or code field is then quarantined at that row and column (the formula
        # rule), an identifying one goes to the identity store as typed, as from a CSV.
        # Date-time cells only come from openpyxl (a workbook with date cells is not read by calamine): not looked for else.
        date_times: set[int] = set()
        header_row, header, rows = sheet_rows(sheet, file, sheet.formula_texts, date_times if book.reader == "openpyxl" else None)
        if not header:
            continue
        if not is_kobo_header(header) and not names_a_field(header) and not (rows and names_a_field([c or "" for c in rows[0][1]])):
            # A notes sheet or pivot added in Excel (as beside a template): every sheet Kobo writes has its metadata columns.
            other_sheets += 1
            continue
        if not is_kobo_header(header) and rows and is_kobo_header([(c or "").strip() for c in rows[0][1]]):
            header_row = rows[0][0]  # a title row typed above Kobo's header
        if header_row != 1:
            # Row numbers of errors must match the sheet; Kobo always starts at row 1.
            raise InputFileError(Violation(file, header_row, None, header_not_in_row_1("kobo", header_row), sheet=sheet.title))
        # Still refused: a formula in or above the header, and one without a saved value in a workbook not marked to be
        # recalculated (a program changed the file).
        texts = sheet.formula_texts
        refuse_unsaved_formulas(sheet, file, header, cells=[c for c in sheet.unsaved_formulas if c[0] <= header_row or c not in texts])
        refuse_merged_across(sheet, file, header, header_row)
        header, rows = names_from_labels(header, rows)
        layout = _layout(header, file, sheet.title)
        _check_layout(layout, file, sheet.title)
        rows = _skip_hxl(rows)
        # The form's end time as date-time cells: KPI's XLSX export without "Store date and number responses as text".
        typed_end = any(c.field == "submitted_at" and c.position in date_times for c in layout.columns)
        read = _read_rows(layout, rows, file, sheet.title, typed_end)
        if layout.table == REPEAT_TABLE:
            repeats.append((sheet.title, layout, read, rows))
        else:
            if not rows:
                raise InputFileError(Violation(file, None, None, "header only: no data rows", layout.table, sheet.title))
            mains.append((sheet.title, read))
    if len(mains) > 1 or len(repeats) > 1:
        # Named by the second sheet of its kind (a sheet copied in Excel, an older export's sheet pasted in): which one
        # to delete is the user's to tell, so the first is named in the rule.
        first, second = (mains if len(mains) > 1 else repeats)[:2]
        kind = "main" if len(mains) > 1 else "repeat"
        rule = f"kobo: more than one {kind} sheet (this and sheet {first[0]}: a copied sheet, or nested repeats?); keep one"
        raise InputFileError(Violation(file, None, None, rule, sheet=second[0]))
    if not mains and not repeats:
        raise InputFileError(Violation(file, None, None, "empty workbook"))
    tables: list[ParsedTable] = []
    index: dict[str, str | None] = {}
    uuids: dict[str, str] = {}
    if mains:
        title, read = mains[0]
        tables += _tables(read, file, title)
        index, uuids = read.index, read.uuids
        if repeats and mains[0][1].table != "households":
            rule = "kobo: repeat sheet in a municipalities export"
            raise InputFileError(Violation(file, None, None, rule, sheet=repeats[0][0]))
    if repeats:
        title, layout, read, rows = repeats[0]
        parents = _join_members(layout, read, rows, index, file, title, uuids)
        if read.main:
            members = canonical_table(REPEAT_TABLE, read.main, read.main_rows, title)
            kept = _kept_copies(mains[0][1]) if mains else {}
            if kept:
                # The members of a copy not taken go with it (counted once, with the main rows).
                reasons = [DUPLICATE_COPY if key is not None and kept.get(index.get(key) or "", key) != key else None for key in parents]
                tables[0] = _without_copies(tables[0], mains[0][1], kept)
                members = replace(with_left_out(members, reasons), skipped={})
            tables.append(members)
    if other_sheets and tables:
        tables[0] = replace(tables[0], skipped={**tables[0].skipped, OTHER_SHEETS: other_sheets})
    return tables


def _kept_copies(read: _Read) -> dict[str, str]:
    """For each submission id on more than one main row with an `_index`: the `_index` of the copy taken, the
    latest submitted (the latest row where the times do not all read alike)."""
    copies: dict[str, list[tuple[int, str, str | None]]] = {}
    for order, (record, key) in enumerate(zip(read.main, read.keys)):
        submission = record.get("submission_id")
        if submission is not None and key is not None:
            copies.setdefault(submission, []).append((order, key, record.get("submitted_at")))
    kept: dict[str, str] = {}
    for submission, rows in copies.items():
        if len(rows) < 2:
            continue
        times = [_moment(text) for _, _, text in rows]
        if all(t is not None for t in times) and len({t.tzinfo is None for t in times if t is not None}) == 1:
            kept[submission] = max(zip(times, rows), key=lambda pair: (pair[0], pair[1][0]))[1][1]
        else:
            kept[submission] = rows[-1][1]
    return kept


def _moment(text: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _without_copies(table: ParsedTable, read: _Read, kept: dict[str, str]) -> ParsedTable:
    """The main table with the copies not taken marked DUPLICATE_COPY (a reviewer's reason stays)."""
    reasons = [
        reason if reason is not None or key is None or kept.get(record.get("submission_id") or "", key) == key else DUPLICATE_COPY
        for record, key, reason in zip(read.main, read.keys, read.left_out)
    ]
    return with_left_out(replace(table, frame=table.frame.drop(LEFT_OUT_COLUMN, strict=False), skipped={}), reasons)


# KoboToolbox writes a repeat row's `_parent_index` (its main row's `_index`) and `_submission__uuid` (that row's
# `_uuid`) from one submission: where they name different main rows, the workbook was edited (a sheet sorted, a
# cell changed) and whose person the row is cannot be told. Compared with the main row's own `_uuid` cell, not its
# submission_id (a form's own submission_id question may differ from it where `_uuid` is missing).
PARENT_MISMATCH_RULE = (
    "kobo: repeat row's _parent_index and _submission__uuid name different submissions (a sheet sorted or edited?):"
    " export the workbook again from KoboToolbox"
)


def _join_members(
    layout: _Layout,
    read: _Read,
    rows: list[tuple[int, list[str | None]]],
    index: dict[str, str | None],
    file: str,
    sheet: str,
    uuids: dict[str, str],
) -> list[str | None]:
    """Give each repeat row its household's submission_id: `_parent_index` → main `_index`, else `_submission__uuid`
    (also where `_parent_index` is empty and `_submission__uuid` names one main row). Returns each repeat row's `_parent_index` (None where joined by `_submission__uuid`).

    `uuids` (main `_index` -> its `_uuid`): a repeat row whose `_parent_index` names a main row with another `_uuid` than
    its own `_submission__uuid` stops the file (PARENT_MISMATCH_RULE): KoboToolbox writes both from one submission.
    A row naming no main row stops it too where it holds a person (canonical.holds_no_person); one holding none (a
    sum row added under the sheet) is read without a link, for validation to name once (NO_PERSON_RULE)."""
    parent = layout.meta("_parent_index")
    fallback = layout.meta("_submission__uuid")
    if (parent is None or not index) and fallback is None:
        raise InputFileError(
            Violation(
                file, 1, None, "kobo: repeat sheet cannot be joined (no _parent_index/_index or _submission__uuid)", REPEAT_TABLE, sheet
            )
        )
    # Each main row's _index by its submission id: `_submission__uuid` restores an empty `_parent_index` where it
    # names one main row (the two are the same link, written by KoboToolbox; a row order is not).
    rows_of: dict[str, list[str]] = {}
    for key, submission in index.items():
        if submission is not None:
            rows_of.setdefault(submission, []).append(key)
    parents: list[str | None] = []
    for record, (number, cells) in zip(read.main, rows):
        if parent is not None and index:
            key = _cell(cells[parent.position]) if parent.position < len(cells) else None
            uuid = _meta_value(layout, cells, ("_submission__uuid",)) if key is None and fallback is not None else None
            if uuid is not None and len(rows_of.get(uuid, ())) == 1:
                key = rows_of[uuid][0]
            # A row holding no person whose `_parent_index` names a main row but whose `_submission__uuid` is empty,
            # where that main row has a `_uuid`: KoboToolbox writes both on every repeat row, so this is a row added by
            # hand (AutoSum's total under `_parent_index` that happens to equal a main row's `_index`). Joined, it held
            # that household out for a member without answers; read without a link as any sum row.
            added = (
                key is not None and fallback is not None and key in uuids and holds_no_person(record)
                and _meta_value(layout, cells, ("_submission__uuid",)) is None
            )
            if key is None or key not in index or added:
                if holds_no_person(record):
                    # A sum or note row under the members sheet is no one's line: read without a link, validation says
                    # it once (NO_PERSON_RULE) and holds no household out for it; the rest of the file is stored.
                    record["submission_id"] = None
                    parents.append(None)
                    continue
                # A household with members missing would be matched on the wrong needs: stop the file.
                rule = "kobo: repeat row refers to no row of the main sheet"
                raise InputFileError(Violation(file, number, parent.header, rule, REPEAT_TABLE, sheet))
            written = _meta_value(layout, cells, ("_submission__uuid",)) if fallback is not None else None
            if written is not None and key in uuids and uuids[key] != written:
                # Which of the two is right cannot be told (a sheet sorted or a cell edited): stop the file, as above.
                raise InputFileError(Violation(file, number, parent.header, PARENT_MISMATCH_RULE, REPEAT_TABLE, sheet))
            record["submission_id"] = index[key]
            parents.append(key)
        elif fallback is not None:
            record["submission_id"] = _cell(cells[fallback.position]) if fallback.position < len(cells) else None
            parents.append(None)
    return parents

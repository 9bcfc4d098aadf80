"""Reader for the canonical templates (CSV or XLSX) of the data contract.

Every cell is read as text; typing and value rules belong to validation. The table a file
(or sheet) holds is recognised by its header, not by the file name.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
from openpyxl.utils.datetime import from_excel

from rematch_pipeline.formats.errors import InputFileError, Violation, table_place
from rematch_pipeline.formats.limits import CsvRecords, csv_records
from rematch_pipeline.formats.workbook import Workbook, read_workbook, refuse_merged_across, refuse_unsaved_formulas
from rematch_pipeline.schemas.contract import DECISION_COLUMN_ALIASES, PROPOSALS_ONLY_COLUMNS, TABLES, Field, Kind, field_names
from rematch_pipeline.wording import counted, first_rows, number_runs

# Excel's serial day 2958465 is 9999-12-31, its last date; a larger number in a date column is no date.
SERIAL_DATE_LIMIT = 2958466
# Columns that identify a table by its header.
SIGNATURES: dict[str, frozenset[str]] = {
    "municipalities": frozenset({"municipality_id", "capacity_persons"}),
    "households": frozenset({"household_ref", "consent_processing"}),
    "members": frozenset({"member_name", "relation"}),
    "decisions": frozenset({"round_id", "decision"}),
}


# Column of a main table's frame (and raw table): why the collection tool marks a submission as not to be
# used (a reviewer rejected it, or it was never completed); validation leaves such submissions out.
LEFT_OUT_COLUMN = "left_out"
# The date the submitter wrote, where a reader takes submitted_at from another column than the one it was written in
# (a KoboToolbox XLSX end time that lost its UTC offset: the server's UTC time orders, the device's date dates;
# formats.kobo). Elsewhere null: the date is submitted_at's own as written (schemas.parsing.written_date).
SUBMITTED_ON_COLUMN = "submitted_on"
# Validated households only: the date the household first submitted (the earliest of its copies), which dates its
# intake period (features.submitted_period), while its latest copy's answers and date are used (docs/decisions.md,
# thirty-sixth session).
FIRST_SUBMITTED_ON_COLUMN = "first_submitted_on"
# The member answers that say a row is a person's: without any of them (birth date, sex, relation) a member row is a
# sum, total or note row added under the table (validation.NO_PERSON_RULE), no one's line. The name does not count:
# KoboToolbox's members sheet starts with it, so a label typed into column A lands there.
PERSON_FIELDS: tuple[str, ...] = ("date_of_birth", "sex", "relation")


def holds_no_person(record: Mapping[str, str | None]) -> bool:
    """Whether a member record (canonical field -> text, None where empty) has none of PERSON_FIELDS."""
    return all(record.get(name) is None for name in PERSON_FIELDS)


@dataclass(frozen=True)
class ParsedTable:
    """Text cells of one canonical table read from a file or sheet."""

    table: str
    frame: pl.DataFrame  # canonical columns, all Utf8, plus file_row (1-based row in the file)
    sheet: str | None = None
    # Submissions the tool marks as not to be used, by reason (e.g. "incomplete LimeSurvey responses": 2).
    skipped: Mapping[str, int] = field(default_factory=dict)
    # Of the rows read (file_row), those hidden in the workbook (by hand or filtered out by an autofilter): read as
    # data like the others, and said at ingestion (read_anyway_lines).
    hidden_rows: tuple[int, ...] = ()
    # The headings of the sheet's columns hidden in the workbook, and whether the sheet hides every row it does not
    # set visible (zeroHeight): read like the others, and said at ingestion too.
    hidden_columns: tuple[str, ...] = ()
    rows_hidden_by_default: bool = False
    # What the reader read otherwise than the file says, one rule each (no file name, never a value): said at
    # ingestion beside the hidden rows, naming the file and sheet.
    warnings: tuple[str, ...] = ()


HIDDEN_ROWS = "hidden or filtered out in the workbook, read as data like the others; to leave rows out, delete them, not hide them"
HIDDEN_COLUMNS = "hidden in the workbook, read as data like the others; to leave answers out, clear them, not hide the column"
HIDDEN_SHEET = "the sheet is hidden in the workbook; its rows are read as data like the others; to leave a sheet out, delete it, not hide it"
ROWS_HIDDEN_BY_DEFAULT = (
    "the sheet hides its rows by default (only rows set visible show in the workbook); every row is read as data,"
    " hidden or not; to leave rows out, delete them, not hide them"
)


def read_anyway_lines(file: str, tables: Sequence[ParsedTable]) -> list[str]:
    """What the file's reading read anyway, one line per sheet and kind, naming file and sheet, never a value: the
    rows read that the workbook hides (as runs: `14-17, 30`), a sheet that hides its rows by default, the headings of
    hidden columns, and the readers' warnings (ParsedTable.warnings)."""
    rows: dict[str | None, set[int]] = {}
    by_default: dict[str | None, None] = {}
    columns: dict[str | None, dict[str, None]] = {}
    warnings: dict[tuple[str | None, str], None] = {}
    for table in tables:
        if table.hidden_rows:
            rows.setdefault(table.sheet, set()).update(table.hidden_rows)
        if table.rows_hidden_by_default:
            by_default[table.sheet] = None
        if table.hidden_columns:
            columns.setdefault(table.sheet, {}).update(dict.fromkeys(table.hidden_columns))
        warnings.update(dict.fromkeys((table.sheet, rule) for rule in table.warnings))
    lines = [
        Violation(file, None, None, f"{counted(len(numbers), 'row')} {number_runs(sorted(numbers))} {HIDDEN_ROWS}", sheet=sheet).describe()
        for sheet, numbers in rows.items()
    ]
    lines += [Violation(file, None, None, ROWS_HIDDEN_BY_DEFAULT, sheet=sheet).describe() for sheet in by_default]
    lines += [
        Violation(file, None, None, f"{counted(len(names), 'column')} {', '.join(names)} {HIDDEN_COLUMNS}", sheet=sheet).describe()
        for sheet, names in columns.items()
    ]
    lines += [Violation(file, None, None, rule, sheet=sheet).describe() for sheet, rule in warnings]
    return lines


# How many ids a warning about differing copies names the rows of (the count names them all).
COPIES_NAMED = 3
# Which copy validation uses (validation._latest: the latest submitted_at to the minute, then the latest ingested,
# which within one file is the row lower down).
DIFFERING_COPIES = (
    "listed more than once in the file with different answers; one submission id is one submission (contract), so"
    " one copy is used: the one with the latest submitted_at, of copies submitted in the same minute (or without a"
    " readable time) the one lowest in the file; keep one row per submission_id"
)


def with_differing_copies(table: ParsedTable) -> ParsedTable:
    """A households table with a warning (ParsedTable.warnings) where one submission_id is on several rows whose
    answers differ: validation uses one copy without a word otherwise. Identical copies (a row pasted twice) stay
    silent; rows a tool marks as not to be used (LEFT_OUT_COLUMN, e.g. Kobo's copies of a resent submission) are
    not compared. Names the count of ids and the file rows of the first few, never a value."""
    frame = table.frame
    if table.table != "households" or "submission_id" not in frame.columns or frame.height < 2:
        return table
    if LEFT_OUT_COLUMN in frame.columns:
        frame = frame.filter(pl.col(LEFT_OUT_COLUMN).is_null())
    answers = [c for c in frame.columns if c not in ("file_row", LEFT_OUT_COLUMN)]
    copies = (
        frame.filter(pl.col("submission_id").is_not_null())
        .group_by("submission_id", maintain_order=True)
        .agg(pl.col("file_row"), pl.struct(answers).n_unique().alias("_versions"))
        .filter(pl.col("_versions") > 1)
    )
    if copies.is_empty():
        return table
    rows = "; ".join(", ".join(str(r) for r in sorted(numbers)) for numbers in copies["file_row"].head(COPIES_NAMED).to_list())
    more = " …" if copies.height > COPIES_NAMED else ""
    rule = f"{counted(copies.height, 'submission id')} (column submission_id, rows {rows}{more}) {DIFFERING_COPIES}"
    return replace(table, warnings=(*table.warnings, rule))


DIFFERING_COPIES_ACROSS = (
    "with different answers; one submission id is one submission (contract), so one copy is used: the one with the"
    " latest submitted_at, of copies submitted in the same minute (or without a readable time) the one read last;"
    " keep one row per submission_id"
)


def with_differing_copies_across(tables: list[ParsedTable]) -> list[ParsedTable]:
    """The tables with a warning on each households table (a workbook's second households sheet, a Central zip's second
    main CSV) whose submissions an earlier households table of the same file holds with other answers: validation uses
    the copy read last without a word otherwise (with_differing_copies compares inside one table). Copies equal to an
    earlier one stay silent; rows a tool marks as not to be used are not compared. Never a value."""
    earlier: list[tuple[str | None, pl.DataFrame]] = []
    out = []
    for table in tables:
        frame = table.frame
        if table.table != "households" or "submission_id" not in frame.columns:
            out.append(table)
            continue
        if LEFT_OUT_COLUMN in frame.columns:
            frame = frame.filter(pl.col(LEFT_OUT_COLUMN).is_null())
        frame = frame.filter(pl.col("submission_id").is_not_null())
        answers = [c for c in frame.columns if c not in ("file_row", LEFT_OUT_COLUMN)]
        for sheet, before in earlier:
            common = [c for c in answers if c in before.columns]
            shared = frame.join(before.select("submission_id").unique(), on="submission_id", how="semi")
            differ = shared.join(before.select(common).unique(), on=common, how="anti", nulls_equal=True)
            if not differ.is_empty():
                ids = differ.group_by("submission_id", maintain_order=True).agg(pl.col("file_row").min())
                rows = ", ".join(str(r) for r in ids["file_row"].head(COPIES_NAMED).to_list())
                more = " …" if ids.height > COPIES_NAMED else ""
                where = table_place(sheet) if sheet else "another table"
                rule = f"{counted(ids.height, 'submission id')} (column submission_id, rows {rows}{more}) also in {where} of this file {DIFFERING_COPIES_ACROSS}"
                table = replace(table, warnings=(*table.warnings, rule))
        earlier.append((table.sheet, frame))
        out.append(table)
    return out


# A save in Windows-1252 (a German Excel's "CSV (Trennzeichen-getrennt)", LibreOffice's default for CSV) writes each
# letter the code page lacks as "?": a Ukrainian name in Cyrillic as "????? ??????", a Polish "ł" as "?", Gdańsk as
# "Gda?sk". They are lost for good; read as they are, the identity store kept them so without a word. No name or
# address holds a "?".
REPLACED_LETTERS = (
    "with '?' in a name or address, as a save in Windows-1252 (Excel's CSV (Trennzeichen-getrennt)) writes each letter it lacks"
    " (Cyrillic, Polish ł …); stored as read: save or export the file as CSV UTF-8 (or XLSX) and land it again"
)
_NAME_COLUMNS = ("member_name", "contact_name", "current_address")


def with_replaced_letters(table: ParsedTable) -> ParsedTable:
    """The table with a warning (ParsedTable.warnings) per name or address column where a cell holds "?": letters a Windows-1252
    save replaced (REPLACED_LETTERS). Names the count and the first rows, never a value."""
    warnings = []
    for column in (c for c in _NAME_COLUMNS if c in table.frame.columns):
        rows = table.frame.filter(pl.col(column).str.contains("?", literal=True).fill_null(False))["file_row"]
        if rows.len():
            warnings.append(f"{counted(rows.len(), 'row')} (column {column}, {first_rows(rows.to_list(), COPIES_NAMED)}) {REPLACED_LETTERS}")
    return replace(table, warnings=(*table.warnings, *warnings)) if warnings else table


# What a person types into a template's cell for "no answer" (a German coordinator: `k.A.`, keine Angabe): a closed
# list, compared trimmed, in any case and with spaces between words collapsed (docs/formats.md). None is a code, yes/no
# word, number, date, AGS or round id anywhere (`none` and `n` are codes, so they are not in it). Templates only: the
# survey tools' exports have their own "not answered" (Kobo's and LimeSurvey's N/A), read by their readers.
NO_ANSWER_MARKS: frozenset[str] = frozenset(
    {"-", "--", "–", "—", "/", "n/a", "n.a.", "n.a", "n. a.", "k.a.", "k.a", "k. a.", "keine angabe", "keine angaben", "entfällt"}
)
NO_ANSWER_READ = (
    "with only a no-answer mark (-, n/a, k.A., keine Angabe …) in an optional column; read as empty (not answered)"
)


def _no_answer_read(table: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """The frame with each cell holding only a no-answer mark (NO_ANSWER_MARKS) empty, and a warning per optional
    column naming its rows, never a value. An optional field's mark is no answer, so the row is read (it was held out
    as a broken code, number or AGS). A required field's mark is emptied without a word: validation then fails the row
    as `required` (no answer), not by a type rule whose hint (leading zeros lost?) does not fit. Required free text
    (names, references, round ids) keeps what is written, as before: it is no code a mark could fail."""
    warnings = []
    emptied = []
    for f in TABLES[table]:
        if f.required and f.kind is Kind.TEXT:
            continue
        marked = pl.col(f.name).str.to_lowercase().str.replace_all(r"\s+", " ").is_in(list(NO_ANSWER_MARKS)).fill_null(False)
        rows = frame.filter(marked)["file_row"]
        if rows.is_empty():
            continue
        emptied.append(pl.when(marked).then(None).otherwise(pl.col(f.name)).alias(f.name))
        if not f.required:
            warnings.append(f"{counted(rows.len(), 'row')} (column {f.name}, {first_rows(rows.to_list(), COPIES_NAMED)}) {NO_ANSWER_READ}")
    return (frame.with_columns(emptied) if emptied else frame), tuple(warnings)


def with_left_out(table: ParsedTable, reasons: list[str | None]) -> ParsedTable:
    """The table with each row's left-out reason (LEFT_OUT_COLUMN) and their counts by reason
    (skipped); unchanged when no row has one."""
    counts = Counter(reason for reason in reasons if reason is not None)
    if not counts:
        return table
    frame = table.frame.with_columns(pl.Series(LEFT_OUT_COLUMN, reasons, dtype=pl.Utf8))
    return replace(table, frame=frame, skipped=dict(counts))


# Every column name of the canonical tables, and the left-out reason for workbook sheets without any.
_FIELD_NAMES: frozenset[str] = frozenset(f.name for fields in TABLES.values() for f in fields)
OTHER_SHEETS = "sheets without template columns (instructions, code lists)"


def _heading(cell: str) -> str:
    """A heading as headings are compared: case, spaces around and between words and hyphens do not matter."""
    return re.sub(r"[\s-]+", "_", cell.strip()).lower()


_GERMAN_HEADINGS: dict[str, str] = {_heading(name): field for name, field in DECISION_COLUMN_ALIASES.items()}


def _plain_header(cells: list[str]) -> list[str]:
    names = []
    for cell in cells:
        spelled = _heading(cell)
        names.append(spelled if spelled in _FIELD_NAMES else cell.strip())
    return names


def _with_decision_aliases(names: list[str]) -> list[str]:
    """A header with contract D's German headings (DECISION_COLUMN_ALIASES: Runde, Haushalt, AGS …) as our names."""
    return [name if name in _FIELD_NAMES else _GERMAN_HEADINGS.get(_heading(name), name) for name in names]


def template_header(cells: list[str]) -> list[str]:
    """A template's header with each of our field names as we spell it: people retype or tidy the header
    in Excel ("Household Ref", "CAPACITY_PERSONS ", "kita-places"). Other names stay as written, so an
    unknown column is named as the file has it. A decisions file's German headings (Runde, Haushalt,
    Entscheidung …: contract.DECISION_COLUMN_ALIASES) are our names where they make the header a decisions
    header and it is no other table's: another table keeps a column `Gemeinde` as written."""
    names = _plain_header(cells)
    aliased = _with_decision_aliases(names)
    if aliased != names and SIGNATURES["decisions"] <= set(aliased) and not any(
        sig <= set(names) for table, sig in SIGNATURES.items() if table != "decisions"
    ):
        return aliased
    return names


def _matching_tables(header: list[str]) -> list[str]:
    names = set(template_header(header))
    return [table for table, sig in SIGNATURES.items() if sig <= names]


def _nearest_table(header: list[str]) -> str:
    """", nearest: <table> (no column <signature columns it lacks>)" for the table whose identifying
    columns the header has most of, or "" if it has none of any. A tie goes to the table more of whose
    columns the header has: a decisions file has household_ref too, as households do. Contract D's German
    headings count for decisions, and a header nearest to decisions is told what a decisions file holds."""
    names = set(template_header(header))
    found = {table: len(sig & names) for table, sig in SIGNATURES.items()}
    fields = {table: len(names & set(field_names(table))) for table in SIGNATURES}
    german = set(_with_decision_aliases(list(names)))
    found["decisions"], fields["decisions"] = len(SIGNATURES["decisions"] & german), len(german & set(field_names("decisions")))
    table = max(found, key=lambda t: (found[t], fields[t], t == "households"))
    if not found[table] or found[table] == len(SIGNATURES[table]):
        return ""
    lacking = sorted(SIGNATURES[table] - (german if table == "decisions" else names))
    if table == "decisions" and german != names:
        # A header in German is told the missing column in German too: `round_id` alone is no word it knows.
        lacking = [f"{name}, in German {' or '.join(_german_headings(name))}" for name in lacking]
    hint = f" ({DECISIONS_COLUMNS})" if table == "decisions" else ""
    return f"; nearest: {table} (no column {'; '.join(lacking)}){hint}"


def _german_headings(name: str) -> list[str]:
    """Contract D's German headings of one of its columns (DECISION_COLUMN_ALIASES), as docs/formats.md lists them."""
    return [heading for heading, field in DECISION_COLUMN_ALIASES.items() if field == name]


# The columns that tell a decisions table from a code list: a code-list sheet beside the template lists decisions,
# reasons or municipalities (`Entscheidung`, `Grund`, `Gemeinde`), never rounds or households.
_DECISIONS_ROWS_COLUMNS = frozenset({"round_id", "household_ref", "household_pseudonym"})


def _german_decisions_header(cells: list[str]) -> bool:
    """Whether a row is a decisions header in German that lacks a column (Haushalt and Entscheidung, no Runde): two
    or more of contract D's columns under their German headings, a round or household column among them."""
    named = {_GERMAN_HEADINGS[h] for h in map(_heading, cells) if h in _GERMAN_HEADINGS}
    return len(named) >= 2 and bool(named & _DECISIONS_ROWS_COLUMNS)


def detect_table(header: list[str], file: str, sheet: str | None = None, next_row: list[str] | None = None) -> str:
    """Which canonical table a header belongs to; a header in row 2 (merged title row above) is named as such."""
    matches = _matching_tables(header)
    if len(matches) != 1:
        below = _matching_tables(next_row) if next_row is not None else []
        # A title above a header that lacks a column: told both, the nearest table's missing column named.
        lacking_below = _nearest_table(next_row) if next_row is not None and not below and not matches else ""
        if len(below) == 1 or (lacking_below and not _nearest_table(header)):
            rule = "header: two header rows (merged title row?); the field names must be in row 1 alone"
            raise InputFileError(Violation(file, 1, None, rule + lacking_below, sheet=sheet))
        rule = "header: not a municipalities, households, members or decisions template"
        raise InputFileError(Violation(file, 1, None, rule + ("" if matches else _nearest_table(header)), sheet=sheet))
    return matches[0]


def export_header(columns: Iterable[tuple[str, str | None]]) -> list[str]:
    """The canonical header equivalent of an export's columns given as (field, option): a
    field's summary and option columns count once, and one option column twice counts the
    field twice, so that check_header names it as duplicated (two copies may disagree)."""
    columns = list(columns)
    names = [f for f, option in columns if option is None]
    seen: set[tuple[str, str]] = set()
    for f, option in columns:
        if option is None:
            continue
        if f not in names or (f, option) in seen:
            names.append(f)
        seen.add((f, option))
    return names


# What a decisions file may hold, said where it holds other columns (a notes column, a column of names).
DECISIONS_COLUMNS = (
    "a decisions file holds round_id, household_ref or household_pseudonym, municipality_id, decision and reason,"
    " and may keep the other columns of proposals.csv; delete the rest; in German: Runde, Haushalt or Pseudonym,"
    " AGS, Entscheidung and Grund"
)


def check_header(table: str, header: list[str], file: str, sheet: str | None = None, added: str | None = None) -> None:
    """Reject a header with unknown, duplicated or missing required columns (a form version change). `added`
    says, where the only problem is unexpected columns, how a collection tool's export can leave them out."""
    fields: tuple[Field, ...] = TABLES[table]
    known = {f.name for f in fields}
    duplicated = sorted({h for h in header if header.count(h) > 1})
    unknown = [h for h in header if h not in known]
    if table == "decisions":
        # proposals.csv with round_id and decision added is a decisions file: its other columns are read past.
        unknown = [h for h in unknown if _heading(h) not in PROPOSALS_ONLY_COLUMNS]
        added = added or DECISIONS_COLUMNS
    missing = [f.name for f in fields if f.required and f.name not in header]
    if table == "decisions" and not {"household_ref", "household_pseudonym"} & set(header):
        missing.append("household_ref or household_pseudonym")
    problems = []
    if missing:
        problems.append("missing columns " + _names(missing))
    if unknown:
        problems.append("unexpected columns " + _names(unknown))
    if duplicated:
        problems.append("duplicated columns " + _names(duplicated))
        german = [f"{', '.join(n for n, f in DECISION_COLUMN_ALIASES.items() if f == name)} all name {name}" for name in duplicated
                  if table == "decisions" and name in DECISION_COLUMN_ALIASES.values()]
        problems[-1] += f" (in German, {'; '.join(german)}: keep one)" if german else ""
    if unknown and added and not missing and not duplicated:
        problems[-1] += f" ({added})"
    if problems:
        raise InputFileError(Violation(file, 1, None, "header: " + "; ".join(problems), table=table, sheet=sheet))


# Column names a header error lists before it counts the rest: a file of another survey or saved with
# another separator has dozens, and one screen of names hides the rule.
NAMES_LISTED = 12


def _names(columns: list[str]) -> str:
    """Column names for a header error, the first NAMES_LISTED of them and how many more."""
    if len(columns) <= NAMES_LISTED:
        return ", ".join(columns)
    return ", ".join(columns[:NAMES_LISTED]) + f" and {len(columns) - NAMES_LISTED} more"


def canonical_table(
    table: str, records: list[dict[str, str | None]], file_rows: list[int], sheet: str | None = None
) -> ParsedTable:
    """A ParsedTable with exactly the canonical columns of ``table`` (Utf8, blank → null) plus file_row."""
    names = [f.name for f in TABLES[table]]
    columns: dict[str, list[str | None]] = {name: [] for name in names}
    for record in records:
        for name in names:
            value = record.get(name)
            value = value.strip() if value is not None else None
            columns[name].append(value or None)
    frame = pl.DataFrame(columns, schema={name: pl.Utf8 for name in names}).with_columns(
        pl.Series("file_row", file_rows, dtype=pl.Int32)
    )
    return ParsedTable(table, frame, sheet)


# Rows that repeat the header (two exports pasted into one file) are left out and counted: otherwise each
# would be a quarantine line per column.
REPEATED_HEADER = "header rows repeated inside the file"


def _frame(table: str, header: list[str], rows: list[tuple[int, list[str]]], file: str, sheet: str | None) -> ParsedTable:
    check_header(table, header, file, sheet)
    width = len(header)
    columns: dict[str, list[str | None]] = {name: [] for name in header}
    file_rows: list[int] = []
    repeated = {number for number, cells in rows if template_header(cells[:width]) == header}
    rows = [(number, cells) for number, cells in rows if number not in repeated]
    if not rows:
        raise InputFileError(Violation(file, None, None, "header only: no data rows", table, sheet))
    for number, cells in rows:
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            raise InputFileError(Violation(file, number, None, f"row has {len(cells)} cells, header has {width}", table, sheet))
        cells = cells + [""] * (width - len(cells))
        for name, value in zip(header, cells):
            value = value.strip()
            columns[name].append(value if value != "" else None)
        file_rows.append(number)
    frame = pl.DataFrame(columns, schema={name: pl.Utf8 for name in header})
    for f in TABLES[table]:
        if f.name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(f.name))
    frame = frame.select([f.name for f in TABLES[table]]).with_columns(
        pl.Series("file_row", file_rows, dtype=pl.Int32)
    )
    frame, warnings = _no_answer_read(table, frame)
    return ParsedTable(table, frame, sheet, skipped={REPEATED_HEADER: len(repeated)} if repeated else {}, warnings=warnings)


def read_csv(data: bytes, file: str) -> list[ParsedTable]:
    """Read a canonical CSV (UTF-8 with or without BOM or Windows-1252; `,` `;` or tab separated)."""
    return read_canonical_records(csv_records(data, file), file)


# Excel opens a comma-separated file by double-click with its own list separator (`;` in Germany): each line lands
# in one cell, and columns added beside it are saved with `;`. The header then mixes two separators.
_SEPARATOR_NAMES = {",": "','", ";": "';'", "\t": "tab"}
MIXED_SEPARATORS = (
    "header: separators mixed ({first} and {second}): the file was opened in Excel by double-click, which put each line"
    " into one cell; open the original with Data → From Text/CSV (comma as separator), add the columns there, and save it again"
)


def refuse_mixed_separators(header: list[str], delimiter: str, file: str) -> None:
    """Stop a CSV whose header holds our columns only once its cells are split by a second separator as well."""
    if _matching_tables(header):
        return
    for other in _SEPARATOR_NAMES:
        if other == delimiter or not any(other in cell for cell in header):
            continue
        split = [part for cell in header for part in cell.split(other)]
        if _matching_tables(split):
            first, second = sorted((_SEPARATOR_NAMES.get(delimiter, repr(delimiter)), _SEPARATOR_NAMES[other]))
            raise InputFileError(Violation(file, 1, None, MIXED_SEPARATORS.format(first=first, second=second)))


def read_canonical_records(records: CsvRecords, file: str) -> list[ParsedTable]:
    """The canonical table of a CSV already split into records."""
    refuse_mixed_separators(records.header, records.delimiter, file)
    rows, header = records.rows, template_header(records.header)
    table = detect_table(header, file, next_row=rows[0][1] if rows else None)
    if not rows:
        raise InputFileError(Violation(file, None, None, "header only: no data rows", table))
    return [_frame(table, header, rows, file, None)]


def _cell_text(value: object) -> str:
    if type(value) is str:  # most cells, first by exact type
        return value  # type: ignore[return-value]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def read_xlsx(data: bytes, file: str) -> list[ParsedTable]:
    """Read every sheet of a canonical XLSX workbook (its bytes) that holds a template. Sheets naming no
    canonical column in their first two rows (instructions, code lists) are left out and
    counted; any other sheet must be a template."""
    return read_workbook(data, file, lambda book: read_template_book(book, file))


def read_template_book(book: Workbook, file: str) -> list[ParsedTable]:
    """The canonical tables of a template workbook already opened (read_xlsx)."""
    tables: list[ParsedTable] = []
    other_sheets = 0
    for sheet in book.sheets:
        texts = ((n, [_cell_text(v) for v in values], values) for n, values in enumerate(sheet.rows(), start=1))
        filled = [(number, cells, values) for number, cells, values in texts if any(c.strip() for c in cells)]
        if not filled:
            continue
        header = template_header(filled[0][1])
        while header and not header[-1]:
            header.pop()
        if not names_a_field(header) and not (len(filled) > 1 and names_a_field(filled[1][1])):
            # An instructions or code-list sheet beside the template (authorities add them): no
            # column of ours in its first rows, so nothing of it could be a template with a typo.
            other_sheets += 1
            continue
        # Before the header's own checks: a header cell whose formula has no saved value reads as empty.
        refuse_unsaved_formulas(sheet, file, filled[0][1])
        refuse_merged_across(sheet, file, filled[0][1], filled[0][0])
        table = detect_table(header, file, sheet.title, next_row=filled[1][1] if len(filled) > 1 else None)
        dated = _date_positions(table, header)
        rows = [
            (number, [_serial_date(values[i], book.epoch) if i in dated else c for i, c in enumerate(cells[: len(header)])])
            for number, cells, values in filled[1:]
        ]
        if not rows:
            raise InputFileError(Violation(file, None, None, "header only: no data rows", table, sheet.title))
        tables.append(_frame(table, header, rows, file, sheet.title))
    if not tables:
        rule = "no sheet with a template header" if other_sheets else "empty workbook"
        raise InputFileError(Violation(file, None, None, rule))
    if other_sheets:
        tables[0] = replace(tables[0], skipped={**tables[0].skipped, OTHER_SHEETS: other_sheets})
    return tables


def _date_positions(table: str, header: list[str]) -> set[int]:
    """Positions of the header's date and timestamp columns, and of intake_period (Excel makes a date of
    a month typed as 2026-07; validation reads it back, parsing.restore_periods)."""
    kinds = {f.name: f.kind for f in TABLES[table]}
    return {i for i, name in enumerate(header) if kinds.get(name) in (Kind.DATE, Kind.TIMESTAMP) or name == "intake_period"}


def _serial_date(value: object, epoch: dt.datetime) -> str:
    """A date column's cell as text; a number there is an Excel serial date (a date cell whose format was
    set to General or Number shows and stores it so), read in the workbook's date system (1900 or 1904)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < SERIAL_DATE_LIMIT:
        moment = from_excel(value, epoch)
        return moment.date().isoformat() if moment.time() == dt.time() else moment.isoformat()
    return _cell_text(value)


def names_a_field(cells: list[str]) -> bool:
    """Whether a row names any column of any canonical table, or is a decisions header in German lacking a column
    (else a workbook's sheet of instructions, notes or code lists, left out and counted as OTHER_SHEETS). The
    latter is a template with a column missing, to be told which, not a sheet to leave out."""
    return any(c in _FIELD_NAMES for c in template_header(cells)) or _german_decisions_header(cells)


def read_canonical(path: Path, data: bytes) -> list[ParsedTable]:
    """Read a canonical template file; XLSX is recognised by its zip signature, anything else is CSV."""
    if data[:4] == b"PK\x03\x04":
        # The bytes the caller hashed and archived, not the path again: the landed file may have changed since.
        return read_xlsx(data, path.name)
    return read_csv(data, path.name)

"""Reader for LimeSurvey response exports (CSV; headings question codes or texts, answers codes or full).

The format as LimeSurvey's CsvWriter writes it: UTF-8 with BOM, `;` (or `,`) separated, every
field quoted, CRLF, a blank line at the end. Columns: LimeSurvey's own (``id``, ``submitdate``,
``lastpage``, ``startlanguage``, ``seed``, ``startdate``, ``datestamp``, ``ipaddr``, ``refurl``,
``token``, timings …; ignored except ``id``/``seed``/``submitdate``), then one column per question
code, and ``code[option]`` per option of a multiple-choice question (``Y`` or empty). Older
versions write ``code [option]`` and label some system columns ("Completed", "Last page seen"):
both are accepted.

The export page's defaults, headings "Full question text" and answers "Full answers", are read too
(``limesurvey_texts.py``), as are "Question code & question text" and "Abbreviated question text"
headings (cut to 15 characters and ".."; questions sharing a cut text are told apart by their order).

The question codes are those of ``schemas/limesurvey_codes.py``; members come from member slots
``m<k><field>``. Values are turned into the canonical encoding: answer codes → canonical codes,
``Y``/``N`` → yes/no, multiple-choice columns → space-separated codes, LimeSurvey's padded
numbers (``3.0000000000``) → ``3``, a date question's ``1990-05-01 00:00:00`` → ``1990-05-01``.

Decisions:
- ``submission_id`` = ``ls-<id>-<seed>`` (``ls-<id>`` without a seed column): LimeSurvey numbers
  responses per survey from 1 and starts again when a survey is re-activated, so a bare id could
  merge two households; the random per-response seed keeps re-exports of one response stable.
- Incomplete responses (empty ``submitdate``) are read with the reason in ``left_out`` and counted
  (``ParsedTable.skipped``); validation leaves them out: they never reached the submit page, may
  be resumed later, and would otherwise flood the quarantine with "required" errors. Stored, they
  stay within erasure's reach. A file with none complete is rejected.
- A ``submitdate`` of 1980-01-01 00:00:00 is LimeSurvey's placeholder when the survey records no
  date stamps; the file is rejected, because ages and "latest submission wins" depend on it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from rematch_pipeline.formats.canonical import ParsedTable, canonical_table, check_header, export_header, with_left_out
from rematch_pipeline.formats.errors import InputFileError, Violation
from rematch_pipeline.formats.kobo import header_not_in_row_1, sheet_rows
from rematch_pipeline.formats.limesurvey_texts import (
    NO_TEXTS,
    NOT_APPLICABLE_TEXTS,
    YES_TEXTS,
    AmbiguousAbbreviation,
    UnevenMemberSlots,
    answer_codes,
    code_headings,
    flat_text,
)
from rematch_pipeline.formats.limits import CsvRecords, csv_records
from rematch_pipeline.formats.workbook import Workbook, refuse_merged_across, refuse_unsaved_formulas
from rematch_pipeline.schemas.contract import TABLES, Field, Kind
from rematch_pipeline.schemas.limesurvey_codes import (
    LIMESURVEY_MEMBER_PREFIX,
    LIMESURVEY_QUESTION_CODES,
    option_codes,
)

# LimeSurvey's own response columns (lower case); token attributes hold PII and are not read either.
SYSTEM_COLUMNS: frozenset[str] = frozenset(
    {
        "id",
        "submitdate",
        "lastpage",
        "startlanguage",
        "seed",
        "startdate",
        "datestamp",
        "ipaddr",
        "refurl",
        "token",
        "interviewtime",
        "tid",
        "participant_id",
        "firstname",
        "lastname",
        "email",
        "emailstatus",
        "language",
        "optout",
        "completed",
        "usesleft",
        "validfrom",
        "validuntil",
        "sent",
        "remindersent",
        "remindercount",
        "blacklisted",
        "mpid",
    }
)
# Names LimeSurvey gives its own columns under text headings (and older versions even under codes),
# in the administration language: English, and German as locale/de/LC_MESSAGES/de.po has them.
# Compared without case, blanks and punctuation ("Antwort-ID" = "Antwort ID").
SYSTEM_LABELS: dict[str, str] = {
    "response id": "id",
    "completed": "submitdate",
    "date submitted": "submitdate",
    "last page": "lastpage",
    "last page seen": "lastpage",
    "start language": "startlanguage",
    "seed": "seed",
    "random seed": "seed",
    "date started": "startdate",
    "date last action": "datestamp",
    "ip address": "ipaddr",
    "referrer url": "refurl",
    "referring url": "refurl",
    "total time": "interviewtime",
    "access code": "token",
    "antwort id": "id",
    "datum abgeschickt": "submitdate",
    "letzte seite": "lastpage",
    "start-sprache": "startlanguage",
    "datum gestartet": "startdate",
    "datum letzte aktivität": "datestamp",
    "ip-adresse": "ipaddr",
    "weiterleitungs-url": "refurl",
    "referrer-url": "refurl",
    "gesamtzeit": "interviewtime",
    "zugangsschlüssel": "token",
    "schlüsselwort": "token",
}
# Participant columns (a survey with a participant table, "Participant control" on the export page) under "Full
# question text" headings: Writer::getHeadingText writes a participant field's description, which for the three
# fields the export page offers besides the attributes is getTokenFieldsAndNames' gT('First name'), gT('Last name'),
# gT('Email address') (LimeSurvey's Token::attributeLabels has the same words) in the administration language: the
# English words, and German's from LimeSurvey's own locale/de/LC_MESSAGES/de.po (and de-informal.po): "Vorname",
# "Nachname", "E-Mail-Adresse". An attribute's description is the survey's own text. Compared as flat_text (case,
# blanks and the "spaces to underscores" option do not matter), not squashed: "E-mail address" is our English
# question. "E-Mail-Adresse" is our German one too (contact_email): there the first such heading is the question and
# a second one, after it, the participant's (participant columns follow every response column; _headings).
PARTICIPANT_LABELS: dict[str, str] = {
    "first name": "firstname",
    "last name": "lastname",
    "email address": "email",
    "vorname": "firstname",
    "nachname": "lastname",
    "e-mail-adresse": "email",
}
# LimeSurvey's first columns, in the order its field map puts them (createFieldMap) for our surveys
# (date stamps on, no participant table, no IP address or referrer). Where their headings are in a
# language not known here, they are recognised by this position and their values.
LEADING_SYSTEM_COLUMNS: tuple[str, ...] = ("id", "submitdate", "lastpage", "startlanguage", "seed", "startdate", "datestamp")
_SYSTEM_PATTERNS = (re.compile(r"^attribute_\d+$"), re.compile(r"^grouptime\d+$"), re.compile(r"^\d+x\d+(x\d+)?time$"))
DETECTING_COLUMNS: frozenset[str] = frozenset({"submitdate", "lastpage", "startlanguage"})
PLACEHOLDER_DATE = "1980-01-01"
SURVEY_TABLES: tuple[str, ...] = ("households", "municipalities")
# Question codes of one survey a header must show before the file is read as that survey.
MIN_DETECTING_CODES = 3

_HEADING = re.compile(r"^(?P<code>[A-Za-z][A-Za-z0-9]*)(?:\[(?P<sub>[^\]]*)\])?$")
# "Question code & question text" headings: the code, a separator (". " by default), the text.
# A participant attribute's code (attribute_1) has an underscore, which question codes cannot have.
_CODE_AND_TEXT = re.compile(r"^(?P<heading>attribute_\d+|[A-Za-z][A-Za-z0-9]*(?:\[[^\]]*\])?)\s*[^\w\s\[].*$")
_SLOT = re.compile(rf"^{LIMESURVEY_MEMBER_PREFIX}(?P<slot>\d+)(?P<suffix>[a-z]+)$")
_YES = frozenset({"y", "1"})
_NO = frozenset({"n", "0"})
# The export page's "Convert N to:" (Writer::transformResponseValue) with its default value: a yes/no answer N and a
# multiple-choice option shown but not ticked are written as "2" ("Convert Y to:" gives 1, read above).
CONVERTED_NO = "2"
_PADDED_INT = re.compile(r"^([+-]?\d+)\.0*$")
_PADDED_DECIMAL = re.compile(r"^([+-]?\d+\.\d*?)0+$")
_MIDNIGHT_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T]00:00(:00(\.0+)?)?$")


# Reason (ParsedTable.skipped, raw left_out) for responses that never reached the submit page.
INCOMPLETE = "incomplete LimeSurvey responses"


def _squashed(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


_SYSTEM_BY_LABEL: dict[str, str] = {_squashed(label): name for label, name in SYSTEM_LABELS.items()}


def _normal(header: str) -> str:
    """Heading as LimeSurvey codes it.

    No blanks before `[` (older `2 [SQ001]`), system labels mapped to their column names, and of a
    "code & text" heading the code.
    """
    text = re.sub(r"\s+\[", "[", header.strip())
    if (system := _SYSTEM_BY_LABEL.get(_squashed(text))) is not None:
        return system
    if (participant := PARTICIPANT_LABELS.get(flat_text(text))) is not None:
        return participant
    # "Question code & question text": a participant column's code is its field name (Writer::getHeadingCode).
    if not _HEADING.match(text) and (match := _CODE_AND_TEXT.match(text)) and (_is_system(match["heading"]) or _is_ours(match["heading"])):
        return match["heading"]
    return text


def _is_ours(heading: str) -> bool:
    """A code heading of one of our questions, or a LimeSurvey column name."""
    match = _HEADING.match(heading)
    if match is None:
        return False
    code = match["code"]
    return _is_system(code) or code.lower() in _KNOWN_CODES or _member_field(code) is not None


def _headings(header: list[str], file: str) -> list[str]:
    """Every heading of a code, text or code-and-text export as a code export has it."""
    try:
        coded = code_headings(header)
    except UnevenMemberSlots as exc:
        rule = "limesurvey: a member question's heading is there for fewer persons than the others (export every member column)"
        raise InputFileError(Violation(file, 1, exc.heading, rule)) from exc
    except AmbiguousAbbreviation as exc:
        rule = (
            "limesurvey: abbreviated heading starts several questions and their columns cannot be told apart"
            " (export every column, or with headings 'question code' or 'full question text')"
        )
        raise InputFileError(Violation(file, 1, exc.heading, rule)) from exc
    names, texts = [], set()
    for original, code in zip(header, coded):
        text = flat_text(original)
        participant = PARTICIPANT_LABELS.get(text)
        # A participant label that is also our question's text (German "E-Mail-Adresse") is the question the first
        # time; the same heading again is the participant column, which LimeSurvey puts after every answer.
        names.append(participant if participant is not None and text in texts else _normal(code))
        texts.add(text)
    return names


def _is_system(name: str) -> bool:
    lower = name.lower()
    return lower in SYSTEM_COLUMNS or any(p.match(lower) for p in _SYSTEM_PATTERNS)


_KNOWN_CODES: frozenset[str] = frozenset(
    c.lower() for table in SURVEY_TABLES for c in LIMESURVEY_QUESTION_CODES[table].values()
)


def is_limesurvey_header(header: Iterable[str]) -> bool:
    """Our surveys' question texts, or an ``id`` column plus LimeSurvey's own columns or three of our codes.

    Checked after Kobo's and Central's markers: a Kobo export in labels shows our question texts too.
    """
    original = list(header)
    try:
        coded = code_headings(original)
    except (UnevenMemberSlots, AmbiguousAbbreviation):  # our texts, columns left out: the reader says which
        return True
    if sum(1 for h, c in zip(original, coded) if h != c) >= MIN_DETECTING_CODES:
        return True
    names = [_normal(h) for h in coded]
    lower = {n.lower() for n in names}
    if "id" not in lower:
        return False
    if lower & DETECTING_COLUMNS:
        return True
    return sum(1 for name in names if not _is_system(name) and _is_ours(name)) >= MIN_DETECTING_CODES


_MEMBER_BY_SUFFIX: dict[str, str] = {suffix: name for name, suffix in LIMESURVEY_QUESTION_CODES["members"].items()}


def _member_field(code: str) -> tuple[int, str] | None:
    match = _SLOT.match(code.lower())
    if match and match["suffix"] in _MEMBER_BY_SUFFIX and int(match["slot"]) >= 1:
        return int(match["slot"]), _MEMBER_BY_SUFFIX[match["suffix"]]
    return None


@dataclass
class _Column:
    position: int
    header: str
    field: str
    option: str | None = None  # canonical option of a multiple-choice column
    slot: int | None = None  # member slot


@dataclass
class _Layout:
    table: str
    columns: list[_Column] = field(default_factory=list)
    system: dict[str, int] = field(default_factory=dict)  # system column -> position
    unknown: list[str] = field(default_factory=list)
    # Headings are question texts (not codes) and every unknown one follows every answer column: where LimeSurvey's
    # export puts participant fields (_check_layout's rule names them so).
    unknown_after_answers: bool = False


def _detect(names: list[str]) -> str | None:
    """The survey (households or municipalities) most of the question codes belong to."""
    codes = set()
    for name in names:
        match = _HEADING.match(name)
        if match:
            codes.add(match["code"].lower())
    mine = {t: {c.lower() for c in LIMESURVEY_QUESTION_CODES[t].values()} for t in SURVEY_TABLES}
    scores = {t: len(codes & (mine[t] - set().union(*(mine[o] for o in SURVEY_TABLES if o != t)))) for t in SURVEY_TABLES}
    best = max(scores, key=lambda t: scores[t])
    if scores[best] >= MIN_DETECTING_CODES and list(scores.values()).count(scores[best]) == 1:
        return best
    return None


def _resolve(table: str, code: str, sub: str | None) -> tuple[str, str | None] | None:
    """(canonical field, canonical option) of a heading within one table, or None."""
    fields: dict[str, Field] = {f.name: f for f in TABLES[table]}
    by_code = {c.lower(): name for name, c in LIMESURVEY_QUESTION_CODES[table].items()}
    name = by_code.get(code.lower()) if table != "members" else code
    if name is None or name not in fields:
        return None
    if sub is None:
        return name, None
    if fields[name].kind is not Kind.CODES:
        return None
    option = _answer_map(fields[name].codes).get(sub.lower())
    return (name, option) if option is not None else None


def _layout(header: list[str], names: list[str], file: str) -> _Layout:
    """Where each question's answers are; ``names`` are the headings as a code export has them."""
    table = _detect(names)
    if table is None:
        raise InputFileError(
            Violation(
                file,
                1,
                None,
                "header: not a LimeSurvey export of the municipalities or households survey "
                "(export with headings 'question code' or 'full question text' of the surveys in forms/)",
            )
        )
    layout = _Layout(table)
    unknown_positions: list[int] = []
    for position, (original, name) in enumerate(zip(header, names)):
        if not name:
            continue
        if _is_system(name):
            layout.system.setdefault(name.lower(), position)
            continue
        match = _HEADING.match(name)
        resolved = None
        slot = None
        if match:
            member = _member_field(match["code"]) if table == "households" else None
            if member is not None:
                slot, member_name = member
                resolved = _resolve("members", member_name, match["sub"])
            else:
                resolved = _resolve(table, match["code"], match["sub"])
        if resolved is None:
            layout.unknown.append(original)
            unknown_positions.append(position)
            continue
        layout.columns.append(_Column(position, original, resolved[0], resolved[1], slot))
    texts = sum(1 for c in layout.columns if c.header.strip() != names[c.position]) >= MIN_DETECTING_CODES
    last_answer = max((c.position for c in layout.columns), default=-1)
    layout.unknown_after_answers = texts and bool(unknown_positions) and min(unknown_positions) > last_answer
    return layout


# A question added to a survey after it was imported from forms/, or a reworded one, is an unexpected column: how to land the rest.
# So are participant columns that are not recognised (PARTICIPANT_LABELS, code-and-text headings): under full text
# headings an attribute's own description, or names in an administration language other than English.
QUESTIONS_ADDED = (
    "a question added or reworded after the survey was imported, or participant columns (Participant control)? export"
    " with 'Question code' headings and without added questions (Columns control), or undo the change"
)


# Unknown text headings after every answer column, where the export page puts participant fields ("Participant control";
# the twenty-eighth session read it in LimeSurvey's export controller): under full question text an attribute is
# headed by its own description, the names and e-mail by the administration language's words, known here in English
# and German only (PARTICIPANT_LABELS). Neither can be told from a question added at the end of the survey, so the file
# is refused, naming them, and the rule says how to export them as LimeSurvey's field names, which are left out.
PARTICIPANT_FIELDS_AFTER_ANSWERS = (
    "after every answer, where LimeSurvey puts participant fields (Participant control): under full question text it"
    " heads an attribute with its own description and names and e-mail in the administration language, which cannot be"
    " told from a question added at the end of the survey; export with 'Question code' or 'Question code & question"
    " text' headings (participant fields are then left out), or without participant fields and added questions"
)


def _check_layout(layout: _Layout, file: str) -> None:
    """check_header semantics on the canonical equivalent of the LimeSurvey header."""
    extra = [name for name, source in (("submission_id", "id"), ("submitted_at", "submitdate")) if source in layout.system]
    main = export_header((c.field, c.option) for c in layout.columns if c.slot is None)
    added = PARTICIPANT_FIELDS_AFTER_ANSWERS if layout.unknown_after_answers else QUESTIONS_ADDED
    check_header(layout.table, main + [e for e in extra if e not in main] + layout.unknown, file, added=added)
    members = [c for c in layout.columns if c.slot is not None]
    if members:
        mapped = ["submission_id"]
        for slot in sorted({c.slot for c in members if c.slot is not None}):
            per_slot = export_header((c.field, c.option) for c in members if c.slot == slot)
            mapped += [n for n in per_slot if n not in mapped or per_slot.count(n) > 1]
        check_header("members", mapped, file)


@lru_cache(maxsize=None)
def _answer_map(codes: tuple[str, ...]) -> dict[str, str]:
    """Lower-cased LimeSurvey code → canonical code of one code list."""
    return {k.lower(): v for k, v in option_codes(codes).items()}


def _value(f: Field, raw: str | None, not_applicable: frozenset[str] = NOT_APPLICABLE_TEXTS, no: frozenset[str] = _NO) -> str | None:
    """A LimeSurvey answer (code or full answer) in the canonical encoding; unrecognised ones pass on to validation.

    no: the marks of a yes/no "No" in this file (``_NO``, plus "2" where N was converted: ``_converted_no``)."""
    text = (raw or "").strip()
    if not text:
        return None
    lower = text.lower()
    if f.kind is Kind.BOOL:
        if lower in _YES:
            return "yes"
        if lower in no:
            return "no"
        flat = flat_text(text)
        if flat in not_applicable:
            return None
        return "yes" if flat in YES_TEXTS else "no" if flat in NO_TEXTS else text
    if f.kind is Kind.CODE:
        return _answer_map(f.codes).get(lower) or answer_codes(f).get(flat_text(text), text)
    if f.kind is Kind.INT and (match := _PADDED_INT.match(text)):
        return match[1]
    if f.kind is Kind.DECIMAL and "." in text and (match := _PADDED_DECIMAL.match(text)):
        return match[1].rstrip(".")
    if f.kind is Kind.DATE and (match := _MIDNIGHT_DATE.match(text)):
        return match[1]
    return text


def _ticked(mark: str, not_applicable: frozenset[str] = NOT_APPLICABLE_TEXTS, no: frozenset[str] = _NO) -> bool | None:
    """A multiple-choice column's answer: ``Y``/empty, or the full answer "Yes"/"No"/"N/A"; None if neither."""
    lower = mark.strip().lower()
    if lower in _YES:
        return True
    if lower in no or lower == "":
        return False
    flat = flat_text(lower)
    if flat in YES_TEXTS:
        return True
    if flat in NO_TEXTS or flat in not_applicable:
        return False
    return None


def _not_applicable(layout: _Layout, rows: list[tuple[int, list[str]]]) -> frozenset[str]:
    """The "N/A" texts of this file: the known ones, plus the export language's own where not known here.

    Under full answers LimeSurvey writes only its "Yes", "No" and "N/A" into yes/no and
    multiple-choice columns. So where they hold known Yes/No texts, no known "N/A" and exactly
    one other answer, that answer is the "N/A" of the export language (whose translation may
    change between LimeSurvey versions); anything else is left to the usual errors.
    """
    marks = _yes_no_marks(layout, rows)
    flats = {flat_text(m) for m in marks - _YES - _NO - {""}}
    full = bool(flats & (YES_TEXTS | NO_TEXTS))
    known = bool(flats & NOT_APPLICABLE_TEXTS)
    other = flats - YES_TEXTS - NO_TEXTS - NOT_APPLICABLE_TEXTS
    return NOT_APPLICABLE_TEXTS | other if full and not known and len(other) == 1 else NOT_APPLICABLE_TEXTS


def _yes_no_marks(layout: _Layout, rows: list[tuple[int, list[str]]]) -> set[str]:
    """Every answer (lower case) in this file's yes/no and multiple-choice columns."""
    positions = [
        c.position
        for c in layout.columns
        if c.option is not None or _FIELDS["members" if c.slot is not None else layout.table][c.field].kind is Kind.BOOL
    ]
    return {cells[p].strip().lower() for _, cells in rows for p in positions if p < len(cells)}


def _converted_no(layout: _Layout, rows: list[tuple[int, list[str]]]) -> frozenset[str]:
    """The marks of "No" in this file: N and 0, and "2" where the export converted N to 2.

    LimeSurvey's "Convert Y to" / "Convert N to" (export page, both off by default, values 1 and 2 preset) write
    Y and N of yes/no questions, and ticked / not ticked options of a multiple choice, as the values typed there.
    A yes/no or multiple-choice column holds nothing but Y/N/empty otherwise, so "2" there is N converted, unless
    the file also holds N or 0 (then it is not one conversion, and the usual errors name the column).
    """
    marks = _yes_no_marks(layout, rows)
    return _NO | {CONVERTED_NO} if CONVERTED_NO in marks and not marks & _NO else _NO


_FIELDS: dict[str, dict[str, Field]] = {table: {f.name: f for f in fields} for table, fields in TABLES.items()}


# How to export a multiple choice LimeSurvey's way when a column holds another mark.
MULTIPLE_CHOICE_RULE = (
    "limesurvey: multiple-choice column is not Y or empty (or Yes/No); exported with 'Convert Y to' / 'Convert N to'?"
    " export without them, or with Y converted to 1 and N to 0 or 2"
)


def _record(
    table: str,
    columns: list[_Column],
    cells: list[str],
    file: str,
    row: int,
    not_applicable: frozenset[str] = NOT_APPLICABLE_TEXTS,
    no: frozenset[str] = _NO,
) -> dict[str, str | None]:
    fields = _FIELDS[table]
    record: dict[str, str | None] = {}
    chosen: dict[str, list[str]] = {}
    for c in columns:
        raw = cells[c.position] if c.position < len(cells) else ""
        f = fields[c.field]
        if c.option is None:
            record[c.field] = _value(f, raw, not_applicable, no)
            continue
        ticked = _ticked(raw, not_applicable, no)
        if ticked is None:
            raise InputFileError(Violation(file, row, c.header, MULTIPLE_CHOICE_RULE, table))
        chosen.setdefault(c.field, [])
        if ticked:
            chosen[c.field].append(c.option)
    for name, options in chosen.items():
        if record.get(name) is None:
            record[name] = " ".join(options) or None
    return record


_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?)?$")
_LEADING_VALUES: dict[str, re.Pattern[str]] = {
    "id": re.compile(r"^\d+$"),
    "submitdate": _TIMESTAMP,
    "lastpage": re.compile(r"^-?\d*$"),
    "startlanguage": re.compile(r"^([a-z]{2,3}([-_][A-Za-z]+)*)?$"),
    "seed": re.compile(r"^\d*$"),
    "startdate": _TIMESTAMP,
    "datestamp": _TIMESTAMP,
}


def _with_leading_system_columns(names: list[str], rows: list[tuple[int, list[str]]]) -> list[str]:
    """Names for LimeSurvey's first columns where their headings are in a language not known here.

    A leading heading that is neither one of LimeSurvey's columns nor a question takes the name its
    position has in ``LEADING_SYSTEM_COLUMNS``, if that name is still missing and every value fits it.
    """
    known = {n.lower() for n in names}
    if known.issuperset(LEADING_SYSTEM_COLUMNS):
        return names
    named = list(names)
    for position, system in enumerate(LEADING_SYSTEM_COLUMNS[: len(named)]):
        name = named[position]
        if _is_system(name):
            continue
        if _is_ours(name):
            break  # the questions have begun
        if system not in known and all(_LEADING_VALUES[system].match(_cell(cells, position)) for _, cells in rows):
            named[position] = system
            known.add(system)
    return named


def _cell(cells: list[str], position: int | None) -> str:
    if position is None or position >= len(cells):
        return ""
    return cells[position].strip()


def read_limesurvey_records(records: CsvRecords, file: str) -> list[ParsedTable]:
    """Canonical tables of a tokenised LimeSurvey export: households + members, or municipalities."""
    names = _with_leading_system_columns(_headings(records.header, file), records.rows)
    layout = _layout(records.header, names, file)
    _check_layout(layout, file)
    if not records.rows:
        raise InputFileError(Violation(file, None, None, "header only: no data rows", layout.table))
    main_columns = [c for c in layout.columns if c.slot is None]
    slots = sorted({c.slot for c in layout.columns if c.slot is not None})
    slot_columns = [[c for c in layout.columns if c.slot == slot] for slot in slots]
    main: list[dict[str, str | None]] = []
    main_rows: list[int] = []
    members: list[dict[str, str | None]] = []
    member_rows: list[int] = []
    left_out: list[str | None] = []
    id_at, seed_at, date_at = (layout.system.get(k) for k in ("id", "seed", "submitdate"))
    not_applicable = _not_applicable(layout, records.rows)
    no = _converted_no(layout, records.rows)
    for number, cells in records.rows:
        submitted = _cell(cells, date_at)
        if submitted and submitted.startswith(PLACEHOLDER_DATE):
            raise InputFileError(
                Violation(
                    file,
                    number,
                    "submitdate",
                    "limesurvey: submitdate is the 1980-01-01 placeholder (switch on 'date stamp' in the survey settings)",
                    layout.table,
                )
            )
        record = _record(layout.table, main_columns, cells, file, number, not_applicable, no)
        response, seed = _cell(cells, id_at), _cell(cells, seed_at)
        record["submission_id"] = (f"ls-{response}-{seed}" if seed else f"ls-{response}") if response else None
        record["submitted_at"] = submitted
        main.append(record)
        main_rows.append(number)
        # Stored, so that erasure reaches it; validation leaves it out (and a later complete copy replaces it).
        left_out.append(None if submitted else INCOMPLETE)
        for columns in slot_columns:
            member = _record("members", columns, cells, file, number, not_applicable, no)
            if any(v is not None for v in member.values()):
                member["submission_id"] = record["submission_id"]
                members.append(member)
                member_rows.append(number)
    incomplete = sum(reason is not None for reason in left_out)
    if incomplete == len(main):
        raise InputFileError(
            Violation(file, None, None, f"limesurvey: no completed responses ({incomplete} incomplete)", layout.table)
        )
    tables = [with_left_out(canonical_table(layout.table, main, main_rows), left_out)]
    if members:
        tables.append(canonical_table("members", members, member_rows))
    return tables


# LimeSurvey's "Export a VV survey file" (vvexport in its export controller): tab separated, question
# texts in row 1, column codes in row 2 (version 2: question codes, an option as ``code_option``;
# version 1: database names like 654321X7X100), then the stored values with NULL written as
# {question_not_shown} and "{", newline, CR and tab escaped ("{" first), a leading quote as {quote}.
VV_NOT_SHOWN = "{question_not_shown}"
_VV_ESCAPES: tuple[tuple[str, str], ...] = (("{newline}", "\n"), ("{cr}", "\r"), ("{tab}", "\t"), ("{lbrace}", "{"))
_VV_OPTION = re.compile(r"^(?P<code>[A-Za-z][A-Za-z0-9]*)_(?P<sub>[A-Za-z0-9]+)$")
_SGQA = re.compile(r"^\d+X\d+X\d+")


def _vv_heading(code: str) -> str:
    """A VV version 2 column code as a code export heads it (``medicalcare_gen`` → ``medicalcare[gen]``)."""
    code = code.strip()
    match = _VV_OPTION.match(code)
    return f"{match['code']}[{match['sub']}]" if match and not _is_system(code) else code


def _vv_value(cell: str) -> str:
    if cell == VV_NOT_SHOWN:
        return ""
    if cell.startswith("{quote}"):
        cell = '"' + cell[len("{quote}") :]
    for escaped, plain in _VV_ESCAPES:  # {lbrace} last: it was escaped first
        cell = cell.replace(escaped, plain)
    return cell


def vv_records(records: CsvRecords, file: str) -> CsvRecords | None:
    """A LimeSurvey VV export's records as a code export has them (header = the codes of row 2, values
    unescaped, rows keeping their numbers), or None when the file is no VV export. A VV export
    with database column names (version 1) is refused: they differ from one installation to the next.

    LimeSurvey writes tabs; a VV export opened in Excel and saved as CSV has Excel's delimiter (`;` in a
    German Excel) and is read the same: its row 2 still names the codes under the question texts, which
    no other export has (a code export whose header is pasted again in row 2 is no VV export)."""
    located = _vv_codes_row(records)
    if located is None:
        return None
    number, codes, rows = located
    if sum(1 for c in codes if _SGQA.match(c.strip())) >= MIN_DETECTING_CODES:
        raise InputFileError(
            Violation(file, number, None, "limesurvey: VV export with database column names; export it as VV version 2 (question codes)")
        )
    header = [_vv_heading(c) for c in codes]
    if not is_limesurvey_header(header):
        return None
    return CsvRecords(header, [(n, [_vv_value(c) for c in cells]) for n, cells in rows], records.delimiter)


def _vv_codes_row(records: CsvRecords) -> tuple[int, list[str], list[tuple[int, list[str]]]] | None:
    """Where a VV export's codes are: (row number, codes, data rows), or None when the file is no VV export.

    Row 2, under the question texts; in any delimiter (a VV export re-saved by Excel has `;`), unless row 1 is
    the same header (a code export pasted twice). Row 1 where the question texts were deleted: a header
    naming `id` and `submitdate` with an option as `code_option` (a code export writes `code[option]`)."""
    def system(codes: list[str]) -> bool:
        return {"id", "submitdate"} <= {c.strip().lower() for c in codes}

    if records.rows and system(records.rows[0][1]):
        number, codes = records.rows[0]
        if records.delimiter == "\t" or [c.strip() for c in codes[: len(records.header)]] != records.header:
            return number, codes, records.rows[1:]
    if system(records.header) and any(_vv_heading(c) != c.strip() for c in records.header):
        return 1, records.header, records.rows
    return None


def read_limesurvey_vv(records: CsvRecords, file: str) -> list[ParsedTable]:
    """Canonical tables of a LimeSurvey VV export (see vv_records); a header error names the codes row (2, or 1
    where the question texts were deleted)."""
    vv = vv_records(records, file)
    if vv is None:
        raise InputFileError(Violation(file, 2, None, "limesurvey: not a VV export of the municipalities or households survey"))
    located = _vv_codes_row(records)
    codes_row = located[0] if located else 2
    try:
        return read_limesurvey_records(vv, file)
    except InputFileError as exc:
        if exc.violation.row == 1:
            raise InputFileError(dataclasses.replace(exc.violation, row=codes_row)) from exc
        raise


def read_limesurvey_csv(data: bytes, file: str) -> list[ParsedTable]:
    """Read a LimeSurvey response export (CSV; headings codes or texts, answers codes or full)."""
    return read_limesurvey_records(csv_records(data, file), file)


def read_limesurvey_book(book: Workbook, file: str) -> list[ParsedTable]:
    """Read a LimeSurvey response export in its "Microsoft Excel" format (a workbook opened by read_workbook).

    LimeSurvey's ExcelWriter (PHP_XLSXWriter) writes one sheet, named after the survey title, with
    the same headings and answers as the CSV; numbers are number cells (``3.0000000000`` is 3),
    other answers text. Errors and the tables name the sheet.
    """
    for sheet in book.sheets:
        _, header, rows = sheet_rows(sheet, file)
        if header and not is_limesurvey_header(header) and rows and is_limesurvey_header([(c or "").strip() for c in rows[0][1]]):
            # A title row typed above LimeSurvey's header: its rows would be read as responses.
            raise InputFileError(Violation(file, rows[0][0], None, header_not_in_row_1("limesurvey", rows[0][0]), sheet=sheet.title))
        if header and is_limesurvey_header(header):
            title = sheet.title
            break
    else:
        raise InputFileError(Violation(file, None, None, "limesurvey: no sheet with a LimeSurvey header"))
    refuse_unsaved_formulas(sheet, file, header)
    refuse_merged_across(sheet, file, header)
    records = CsvRecords(header, [(number, [c or "" for c in cells]) for number, cells in rows], "")
    try:
        tables = read_limesurvey_records(records, file)
    except InputFileError as exc:
        raise InputFileError(dataclasses.replace(exc.violation, sheet=exc.violation.sheet or title)) from exc
    return [dataclasses.replace(t, sheet=title) for t in tables]

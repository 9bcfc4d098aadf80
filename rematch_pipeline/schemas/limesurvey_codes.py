"""LimeSurvey codes of the two questionnaires: canonical field and code names → LimeSurvey codes.

LimeSurvey restricts codes, so the canonical snake_case names cannot be used as they are:

- question codes (and sub-question codes) are letters and digits only, start with a letter and
  have at most 20 characters: a canonical field name loses its underscores (``household_ref`` →
  ``householdref``); the few names longer than 20 characters get a fixed short code
  (``_QUESTION_OVERRIDES``);
- answer codes (single choice) have at most 5 characters: every canonical code of the contract's
  code lists has a fixed LimeSurvey code in ``LIMESURVEY_OPTION_CODES``; the same code is used for
  the sub-questions of a multiple-choice question.

Survey construction (what the LimeSurvey questionnaires under ``forms/`` follow and
``formats/limesurvey.py`` reads):

- single choice (``Kind.CODE``): a list question whose answer codes are ``LIMESURVEY_OPTION_CODES``
  of the field's code list;
- multi-select (``Kind.CODES``): a multiple-choice question whose sub-question codes are
  ``LIMESURVEY_OPTION_CODES``; the export has one column ``code[option]`` per option, ``Y`` or empty.
  Do not switch on LimeSurvey's own "Other" option (it adds a free-text column);
- yes/no (``Kind.BOOL``): a Yes/No question (answers ``Y``/``N``);
- whole numbers and decimals: numerical input; AGS keys, lists of AGS and household references:
  short text (AGS keep their leading zeros); dates: date question;
- ``submission_id`` and ``submitted_at`` are not questions: they come from LimeSurvey's own
  ``id`` and ``submitdate`` columns (``LIMESURVEY_SYSTEM_COLUMNS``; the reader makes the id
  ``ls-<id>-<seed>`` because LimeSurvey restarts ids at 1 when a survey is re-activated).
  The survey must record date stamps (otherwise ``submitdate`` is the placeholder 1980-01-01
  and the file is rejected).

Household members (LimeSurvey has no repeat groups): a fixed number of member *slots*,
``LIMESURVEY_MEMBER_SLOTS``. The question of member field ``f`` in slot ``k`` (1-based) has the code
``member_code(k, f)`` = ``"m" + k + LIMESURVEY_QUESTION_CODES["members"][f]``, e.g. ``m1name``,
``m1dob``, ``m2languages[uk]``. A slot whose answers are all empty is not a member; the survey shows
slot k only while the respondent is adding persons (relevance), so hidden slots stay empty. Larger
households are entered with the KoboToolbox form or the canonical template.
"""

from __future__ import annotations

import re

from rematch_pipeline.schemas.contract import (
    COMMUNITY,
    EDUCATION,
    GERMAN_LEVEL,
    LANGUAGES,
    MEDICAL,
    OCCUPATION,
    RELATION,
    SETTLEMENT,
    SEX,
    STATES,
    TABLES,
    TIE_IMPORTANCE,
    TRANSPORT,
    Kind,
)

# LimeSurvey limits: question/sub-question codes (questions.title) 20, answer codes (answers.code) 5.
QUESTION_CODE_MAX = 20
ANSWER_CODE_MAX = 5
CODE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")

# Canonical columns filled from LimeSurvey's own response columns, not from questions.
LIMESURVEY_SYSTEM_COLUMNS: dict[str, str] = {"submission_id": "id", "submitted_at": "submitdate"}

LIMESURVEY_MEMBER_SLOTS = 10
LIMESURVEY_MEMBER_PREFIX = "m"

# Field names that would exceed 20 characters without underscores.
_QUESTION_OVERRIDES: dict[str, str] = {
    "family_ties_municipality_id": "familytiesags",
    "preferred_municipality_ids": "preferredags",
    "excluded_municipality_ids": "excludedags",
    "school_places_secondary": "schoolplacessec",
    "integration_course_places": "integrationplaces",
}

# Member questions are per slot; these are the suffixes after "m<k>".
_MEMBER_SUFFIXES: dict[str, str] = {
    "member_name": "name",
    "date_of_birth": "dob",
    "sex": "sex",
    "relation": "relation",
    "languages": "languages",
    "german_level": "german",
    "education": "education",
    "occupation_sector": "occupation",
    "wants_work": "wantswork",
    "medical_needs": "medical",
    "wheelchair": "wheelchair",
}


def _question_codes(table: str) -> dict[str, str]:
    return {
        f.name: _QUESTION_OVERRIDES.get(f.name, f.name.replace("_", ""))
        for f in TABLES[table]
        if f.name not in LIMESURVEY_SYSTEM_COLUMNS
    }


LIMESURVEY_QUESTION_CODES: dict[str, dict[str, str]] = {
    "municipalities": _question_codes("municipalities"),
    "households": _question_codes("households"),
    # Suffixes: the question code is member_code(slot, field).
    "members": dict(_MEMBER_SUFFIXES),
}

# Canonical code -> LimeSurvey answer / sub-question code (<= 5 letters and digits, starting with a
# letter). A canonical code that already fits is kept; "other" becomes "oth" so that it cannot be
# mistaken for LimeSurvey's built-in "Other" column.
LIMESURVEY_OPTION_CODES: dict[str, str] = {
    # MEDICAL
    "general": "gen",
    "pediatrics": "ped",
    "psychotherapy": "psy",
    "gynecology": "gyn",
    "oncology": "onc",
    "dialysis": "dia",
    "diabetology": "dbt",
    "cardiology": "card",
    "disability_support": "dis",
    # SECTOR (also occupation_sector)
    "healthcare": "hlth",
    "elderly_care": "eldc",
    "education": "edu",
    "it": "it",
    "engineering": "eng",
    "construction": "cons",
    "manufacturing": "manu",
    "logistics": "logi",
    "hospitality": "hosp",
    "retail": "ret",
    "agriculture": "agri",
    "public_admin": "pub",
    "other": "oth",
    # occupation_sector extras, and "none" of every list that has it
    "none": "none",
    "student": "stud",
    # states: ISO 3166-2 without the hyphen
    **{state: state.replace("-", "") for state in STATES},
    # ukrainian_community
    "small": "small",
    "large": "large",
    # settlement_type
    "big_city": "bigc",
    "city": "city",
    "town": "town",
    "rural": "rural",
    # public_transport
    "good": "good",
    "medium": "med",
    "poor": "poor",
    # family_ties_importance
    "nice": "nice",
    "must": "must",
    # sex
    "female": "fem",
    "male": "male",
    "diverse": "div",
    # relation
    "head": "head",
    "spouse": "spo",
    "child": "child",
    "parent": "par",
    "sibling": "sib",
    # languages
    "uk": "uk",
    "ru": "ru",
    "pl": "pl",
    "en": "en",
    "de": "de",
    # german_level
    **{level: level for level in GERMAN_LEVEL if level != "none"},
    # education
    "school": "schl",
    "vocational": "voc",
    "university": "uni",
}

# Every code list a LimeSurvey question can carry (checked below and in the tests).
_CODE_LISTS: tuple[tuple[str, ...], ...] = (
    MEDICAL,
    OCCUPATION,
    STATES,
    COMMUNITY,
    SETTLEMENT,
    TRANSPORT,
    TIE_IMPORTANCE,
    SEX,
    RELATION,
    LANGUAGES,
    GERMAN_LEVEL,
    EDUCATION,
)


def member_code(slot: int, field: str) -> str:
    """Question code of member field ``field`` in member slot ``slot`` (1-based), e.g. ``m3dob``."""
    if not 1 <= slot:
        raise ValueError("member slots are numbered from 1")
    return f"{LIMESURVEY_MEMBER_PREFIX}{slot}{_MEMBER_SUFFIXES[field]}"


def option_codes(codes: tuple[str, ...]) -> dict[str, str]:
    """LimeSurvey code → canonical code for one code list (the reader's inverse mapping)."""
    return {LIMESURVEY_OPTION_CODES[c]: c for c in codes}


def mapping_markdown() -> str:
    """The code mapping as Markdown tables (docs/formats.md embeds this text verbatim)."""
    lines = ["| table | canonical field | LimeSurvey question code | answers |", "|---|---|---|---|"]
    for table in ("municipalities", "households"):
        lines.append(f"| {table} | submission_id | `ls-<id>-<seed>` from LimeSurvey's `id` and `seed` columns | |")
        lines.append(f"| {table} | submitted_at | LimeSurvey's `submitdate` column | |")
        for field in TABLES[table]:
            if field.name in LIMESURVEY_SYSTEM_COLUMNS:
                continue
            code = LIMESURVEY_QUESTION_CODES[table][field.name]
            lines.append(f"| {table} | {field.name} | `{code}` | {_answers(field.kind)} |")
    lines.append("| members | submission_id | the household's submission_id | |")
    for field in TABLES["members"]:
        if field.name == "submission_id":
            continue
        code = member_code(1, field.name)
        lines.append(
            f"| members | {field.name} | `{code}` … `{member_code(LIMESURVEY_MEMBER_SLOTS, field.name)}` "
            f"| {_answers(field.kind)} |"
        )
    lines += ["", "| canonical code | LimeSurvey code |", "|---|---|"]
    lines += [f"| {canonical} | `{code}` |" for canonical, code in LIMESURVEY_OPTION_CODES.items()]
    return "\n".join(lines) + "\n"


def _answers(kind: Kind) -> str:
    return {
        Kind.BOOL: "Yes/No: `Y` / `N`",
        Kind.CODE: "list: answer codes below",
        Kind.CODES: "multiple choice: `code[option]` = `Y` / empty, options below",
        Kind.INT: "numerical input",
        Kind.DECIMAL: "numerical input (decimal point)",
        Kind.DATE: "date",
        Kind.TEXT: "short text",
        Kind.AGS: "short text: 5 or 8 digits",
        Kind.AGS_LIST: "short text: AGS keys, space-separated",
        Kind.REF_LIST: "short text: household references, space-separated",
    }.get(kind, "")


def _check() -> None:
    """The mapping obeys LimeSurvey's code rules and is one-to-one per code list (fails at import)."""
    for table, codes in LIMESURVEY_QUESTION_CODES.items():
        seen = {c.lower() for c in codes.values()}
        if len(seen) != len(codes):
            raise AssertionError(f"LimeSurvey question codes of {table} are not unique")
        for field, code in codes.items():
            full = member_code(LIMESURVEY_MEMBER_SLOTS, field) if table == "members" else code
            if not CODE_PATTERN.match(full) or len(full) > QUESTION_CODE_MAX:
                raise AssertionError(f"bad LimeSurvey question code for {table}.{field}")
    slot = re.compile(rf"^{LIMESURVEY_MEMBER_PREFIX}\d+[a-z]+$", re.IGNORECASE)
    if any(slot.match(code) for code in LIMESURVEY_QUESTION_CODES["households"].values()):
        raise AssertionError("a household question code looks like a member slot code")
    for code in LIMESURVEY_OPTION_CODES.values():
        if not CODE_PATTERN.match(code) or len(code) > ANSWER_CODE_MAX:
            raise AssertionError(f"bad LimeSurvey answer code {code}")
    for codes in _CODE_LISTS:
        if len({LIMESURVEY_OPTION_CODES[c].lower() for c in codes}) != len(codes):
            raise AssertionError("LimeSurvey answer codes of one code list are not unique")


_check()

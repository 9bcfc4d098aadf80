"""LimeSurvey exports with question texts and full answers (the export page's defaults) back to codes.

LimeSurvey's "Export responses" page preselects headings "Full question text" and answers "Full
answers". What its writer then produces (``Writer::getHeadingText``, ``SurveyObj::getFullAnswer``):

- a heading is the question text, tags stripped and entities decoded, with `` [option text]`` after
  it for an option of a multiple-choice question; with "Convert spaces in question text to
  underscores" its blanks are ``_``; LimeSurvey's own columns get their names in the language of
  the administration interface (``Response ID``, ``Date submitted`` …, see ``SYSTEM_LABELS`` in
  ``limesurvey.py``);
- a list answer is its answer text in the export language; a yes/no answer and a multiple-choice
  option are LimeSurvey's own "Yes", "No" or "N/A" in that language (an option not ticked is "No");
  numbers lose their padding; dates and free text are as stored.

Our LSS files are generated (``forms_builder``), so their texts in German, English and Ukrainian are
known here: a text heading is turned back into its question code and the reader goes on as for a
code export; ``answer_codes`` and ``YES_TEXTS``/``NO_TEXTS`` let it read full answers. The member
slots' questions have the same text in every slot; LimeSurvey writes the slots in order, so the k-th
heading of one member question (or option) is slot k. A survey whose texts were edited in LimeSurvey
no longer matches, and its changed headings are reported as unknown columns.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass

from rematch_pipeline import forms_builder
from rematch_pipeline.schemas.contract import Field, Kind
from rematch_pipeline.schemas.limesurvey_codes import LIMESURVEY_OPTION_CODES, member_code

# Question texts a header must show before its headings are read as texts of one survey.
MIN_MATCHING_TEXTS = 3
# LimeSurvey's "Yes", "No" and "N/A" in English and as locale/de and locale/uk translate them: the
# full answers of yes/no questions and multiple-choice options ("N/A": not shown to the respondent).
YES_TEXTS: frozenset[str] = frozenset({"yes", "ja", "так"})
NO_TEXTS: frozenset[str] = frozenset({"no", "nein", "ні"})
NOT_APPLICABLE_TEXTS: frozenset[str] = frozenset({"n/a", "nicht zutreffend"})

_TAG = re.compile(r"<[^>]*>")


def flat_text(text: str) -> str:
    """A heading or answer as compared here: LimeSurvey's flattening, blanks and case folded."""
    plain = _TAG.sub(" ", html.unescape(text)).replace("_", " ")
    return " ".join(plain.split()).casefold()


class UnevenMemberSlots(ValueError):
    """Text headings where one member question (or option) appears for fewer persons than another."""

    def __init__(self, heading: str) -> None:
        super().__init__(heading)
        self.heading = heading  # the file's heading of that question, as written


@dataclass(frozen=True)
class TextHeading:
    """What a question-text heading stands for: a question (and option) of one survey."""

    code: str  # question code, or for a member question its canonical field name
    option: str | None  # LimeSurvey option code of a multiple-choice column
    member: bool


@functools.cache
def heading_catalogs() -> tuple[tuple[str, str, Mapping[str, TextHeading]], ...]:
    """(survey, language, flat heading -> question) for both surveys in every survey language."""
    catalogs = []
    for survey in ("municipalities", "households"):
        questions = [q for q in forms_builder.ls_questions(survey) if q.slot in (None, 1)]
        for index, language in enumerate(forms_builder.LS_LANGUAGE_CODES):
            headings: dict[str, TextHeading] = {}
            for q in questions:
                member = q.table == "members"
                code = q.field.name if member else q.code
                form = "households" if member else survey
                text = flat_text(forms_builder.field_label(form, q.field.name)[index])
                if forms_builder.ls_type(q.field) == "M":
                    list_ = forms_builder.list_name(q.field)
                    for option in q.field.codes:
                        sub = flat_text(forms_builder.choice_label(list_, option)[index])
                        headings[f"{text} [{sub}]"] = TextHeading(code, LIMESURVEY_OPTION_CODES[option], member)
                else:
                    headings[text] = TextHeading(code, None, member)
            catalogs.append((survey, language, headings))
    return tuple(catalogs)


# "Abbreviated question text" (Writer::getAbbreviatedHeading): each part, the question text and the
# sub-question in brackets, cut to headingTextLength characters (15 by default) followed by ".. ".
ELLIPSIS = ".."
_ABBREVIATED = re.compile(r"^(?P<text>.*?)(?:\s*\[(?P<sub>[^\[\]]*)\])?$")


class AmbiguousAbbreviation(ValueError):
    """An abbreviated heading shared by several questions whose columns cannot be told apart by their order."""

    def __init__(self, heading: str) -> None:
        super().__init__(heading)
        self.heading = heading  # the file's heading, as written


@functools.cache
def abbreviated_catalogs() -> tuple[tuple[str, str, tuple[tuple[str, str | None, TextHeading], ...]], ...]:
    """(survey, language, (flat question text, flat option text or None, question) in survey order)."""
    catalogs = []
    for survey in ("municipalities", "households"):
        questions = [q for q in forms_builder.ls_questions(survey) if q.slot in (None, 1)]
        for index, language in enumerate(forms_builder.LS_LANGUAGE_CODES):
            entries: list[tuple[str, str | None, TextHeading]] = []
            for q in questions:
                member = q.table == "members"
                code = q.field.name if member else q.code
                text = flat_text(forms_builder.field_label("households" if member else survey, q.field.name)[index])
                if forms_builder.ls_type(q.field) == "M":
                    list_ = forms_builder.list_name(q.field)
                    for option in q.field.codes:
                        sub = flat_text(forms_builder.choice_label(list_, option)[index])
                        entries.append((text, sub, TextHeading(code, LIMESURVEY_OPTION_CODES[option], member)))
                else:
                    entries.append((text, None, TextHeading(code, None, member)))
            catalogs.append((survey, language, tuple(entries)))
    return tuple(catalogs)


def _part_matches(part: str, text: str) -> bool:
    """A heading part is the whole text, or (ending in "..") the start of it."""
    if part.endswith(ELLIPSIS):
        return text.startswith(part[: -len(ELLIPSIS)])
    return part == text


def _abbreviated_headings(header: list[str], flat: list[str]) -> tuple[int, list[TextHeading | None]]:
    """The questions of "abbreviated question text" headings, in the survey and language most of them match.

    A heading part ending in ".." is the start of its text; a shorter text is written whole. A cut text
    may start several questions (the importance questions all begin "Wie wichtig ist"). LimeSurvey writes
    columns in the survey's order, so the n-th heading of such a group is the n-th of its questions (for
    member questions, per slot); when the count does not fit (a column left out) nothing is guessed.

    Returns:
        How many headings matched, and per heading its question (None where none).

    Raises:
        AmbiguousAbbreviation: a group's headings cannot be given to its questions by their order.
    """
    parts = []
    for text in flat:
        match = _ABBREVIATED.match(text)
        parts.append((match["text"].strip(), match["sub"].strip() if match["sub"] is not None else None) if match else None)
    best: list[list[int]] = []
    best_entries: tuple[tuple[str, str | None, TextHeading], ...] = ()
    best_count = 0
    for _, _, entries in abbreviated_catalogs():
        found = [
            [
                i for i, (text, sub, _) in enumerate(entries)
                if p is not None and (sub is None) == (p[1] is None) and _part_matches(p[0], text)
                and (sub is None or _part_matches(p[1] or "", sub))
            ]
            for p in parts
        ]
        count = sum(1 for f in found if f)
        if count > best_count:
            best, best_entries, best_count = found, entries, count
    resolved: list[TextHeading | None] = [None] * len(flat)
    groups: dict[tuple[int, ...], list[int]] = {}
    for position, candidates in enumerate(best):
        if candidates:
            groups.setdefault(tuple(candidates), []).append(position)
    for candidates, positions in groups.items():
        member = best_entries[candidates[0]][2].member
        if len(positions) != len(candidates) and not (member and len(positions) % len(candidates) == 0):
            raise AmbiguousAbbreviation(header[positions[0]])
        for n, position in enumerate(positions):
            resolved[position] = best_entries[candidates[n % len(candidates)]][2]
    return best_count, resolved


def code_headings(header: list[str]) -> list[str]:
    """The headings of a "question code" export, where this header has our surveys' question texts.

    Headings that are no question text (LimeSurvey's own columns, codes, unknown texts) are
    returned as they were; so is a header matching no survey.

    "Abbreviated question text" headings (cut to 15 characters and "..") are read where the full
    texts are not found (``_abbreviated_headings``).

    Raises:
        UnevenMemberSlots: a member question's text is there fewer times than another's (columns
            left out of the export): its k-th heading would no longer be slot k.
        AmbiguousAbbreviation: abbreviated headings that start several questions, in a number that
            does not tell which is which.
    """
    flat = [flat_text(h) for h in header]
    best, best_count = None, 0
    for _, _, headings in heading_catalogs():
        # Distinct texts: a column given twice in a template ("Sex", "Date of birth" are texts of the
        # English survey) must not make it look like a LimeSurvey export.
        count = len({h for h in flat if h in headings})
        if count > best_count:
            best, best_count = headings, count
    by_position: list[TextHeading | None] = [best.get(t) if best else None for t in flat]
    if any(ELLIPSIS in text for text in flat):
        # Short texts are written whole, so an abbreviated export matches some full texts too.
        abbreviated_count, abbreviated = _abbreviated_headings(header, flat)
        if abbreviated_count > best_count:
            best_count, by_position = abbreviated_count, abbreviated
    if best_count < MIN_MATCHING_TEXTS:
        return list(header)
    seen: dict[tuple[str, str | None], int] = {}
    codes = []
    for original, heading in zip(header, by_position):
        if heading is None:
            codes.append(original)
            continue
        code = heading.code
        if heading.member:
            slot = seen[(heading.code, heading.option)] = seen.get((heading.code, heading.option), 0) + 1
            code = member_code(slot, heading.code)
        codes.append(f"{code}[{heading.option}]" if heading.option else code)
    if seen and min(seen.values()) < max(seen.values()):
        fewest = min(seen, key=lambda key: seen[key])
        raise UnevenMemberSlots(next(h for h, b in zip(header, by_position) if b and (b.code, b.option) == fewest))
    return codes


@functools.cache
def answer_codes(f: Field) -> Mapping[str, str]:
    """Flat answer text (in any survey language) -> canonical code, for a list question's field."""
    if f.kind is not Kind.CODE:
        return {}
    found: dict[str, set[str]] = {}
    for code in f.codes:
        for text in forms_builder.choice_label(forms_builder.list_name(f), code):
            found.setdefault(flat_text(text), set()).add(code)
    # A text that means different codes in two languages is left to validation.
    return {text: next(iter(c)) for text, c in found.items() if len(c) == 1}

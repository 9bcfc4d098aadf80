"""KoboToolbox exports with labels ("Value and header format": a language, KPI's default) back to XML names.

KPI's exporter (formpack) writes, under a language:

- each question's label as its header (its name where it has no label: ``submission_id``,
  ``submitted_at``), with *Include groups in headers* the repeat's label before it
  (``Person in the household/Sex``); Kobo's own columns (``_uuid``, ``_index`` …) keep their names;
- a select_one answer as its choice label (``Ja``), a select_multiple answer as its choice labels
  joined by spaces, plus one column per option headed ``question label/option label`` holding 1/0.

Our XLSForms are generated (``forms_builder``), so their labels in German, English and Ukrainian
are known here: a header in one of them is turned back into the names of an "XML values and
headers" export, and the reader goes on as for one. A summary column is dropped where its option
columns are present (labels joined by spaces can be ambiguous; the 1/0 columns are not); without them
it is split into known labels. An answer that is no label of its list is passed on unchanged, so
validation reports it against the code list. A form whose wording was changed after deployment no
longer matches, and the file is refused as before.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from rematch_pipeline import forms_builder
from rematch_pipeline.schemas.contract import TABLES, Kind

Rows = list[tuple[int, list[str | None]]]

# Group separators KPI offers for headers; an option column uses the same one.
GROUP_SEPARATORS: tuple[str, ...] = ("/", ".", ":", "-")
# Labels a header must match before a file is read as a label export of that form and language.
MIN_MATCHING_LABELS = 3


@dataclass(frozen=True)
class LabelColumn:
    """What a label header stands for in an "XML values and headers" export."""

    name: str  # XML header: "state", "medical_care/dialysis", "member_name"
    choices: Mapping[str, str] | None = None  # choice label -> code (select_one, select_multiple summary)
    multiple: bool = False  # a select_multiple summary: labels joined by spaces
    field: str = ""  # the canonical field of an answer column ("" for a note)


def _choices(list_name: str, codes: tuple[str, ...], language: int) -> dict[str, str]:
    return {forms_builder.choice_label(list_name, code)[language]: code for code in codes}


@functools.cache
def label_catalogs() -> tuple[tuple[str, str, Mapping[str, LabelColumn]], ...]:
    """(form, language, header -> column) for both questionnaires in every label language."""
    catalogs = []
    for form, rows in (("municipalities", forms_builder.municipality_rows()), ("households", forms_builder.household_rows())):
        fields = {f.name: f for table in (form, "members") for f in TABLES[table]}
        for language, (_, language_name) in enumerate(forms_builder.LANGUAGES):
            columns: dict[str, LabelColumn] = {}
            prefixes = [""]
            for row in rows:
                if row.type == "begin_repeat" and row.label:
                    prefixes = ["", *(row.label[language] + sep for sep in GROUP_SEPARATORS)]
                    continue
                if row.type == "end_repeat":
                    prefixes = [""]
                    continue
                if not row.label:
                    continue
                label = row.label[language]
                f = fields.get(row.name) if row.type != "note" else None
                entries: dict[str, LabelColumn] = {}
                if f is None:
                    entries[label] = LabelColumn(row.name)
                elif f.kind in (Kind.BOOL, Kind.CODE, Kind.CODES):
                    codes = forms_builder.YES_NO if f.kind is Kind.BOOL else f.codes
                    choices = _choices(forms_builder.list_name(f), codes, language)
                    entries[label] = LabelColumn(f.name, choices, f.kind is Kind.CODES, f.name)
                    if f.kind is Kind.CODES:
                        for option, code in choices.items():
                            for sep in GROUP_SEPARATORS:
                                entries[label + sep + option] = LabelColumn(f"{f.name}/{code}", field=f.name)
                else:
                    entries[label] = LabelColumn(f.name, field=f.name)
                for prefix in prefixes:
                    for header, column in entries.items():
                        columns.setdefault(prefix + header, column)
            catalogs.append((form, language_name, columns))
    return tuple(catalogs)


def _best_catalog(header: list[str]) -> Mapping[str, LabelColumn] | None:
    best, best_count = None, 0
    for _, _, columns in label_catalogs():
        count = sum(1 for h in header if (c := columns.get(h.strip())) is not None and c.field)
        if count > best_count:
            best, best_count = columns, count
    return best if best_count >= MIN_MATCHING_LABELS else None


def split_labels(value: str, choices: Mapping[str, str]) -> list[str] | None:
    """Codes of space-joined choice labels (longest labels first), or None when they do not split."""
    words = value.split()
    by_length = sorted({len(label.split()) for label in choices}, reverse=True)

    @functools.cache
    def split_from(start: int) -> tuple[str, ...] | None:
        if start == len(words):
            return ()
        for length in by_length:
            code = choices.get(" ".join(words[start : start + length]))
            if code is not None and (rest := split_from(start + length)) is not None:
                return (code, *rest)
        return None

    codes = split_from(0)
    return list(codes) if codes is not None else None


def _answer(value: str | None, column: LabelColumn) -> str | None:
    if value is None or column.choices is None or not value.strip():
        return value
    text = value.strip()
    if not column.multiple:
        return column.choices.get(text, value)
    codes = split_labels(text, column.choices)
    return " ".join(codes) if codes is not None else value


def names_from_labels(header: list[str], rows: Rows) -> tuple[list[str], Rows]:
    """The header and rows of an "XML values and headers" export, if this one is in our forms' labels.

    Anything else is returned as it was.
    """
    columns = _best_catalog(header)
    if columns is None:
        return header, rows
    found = [columns.get(h.strip()) for h in header]
    with_options = {c.field for c in found if c is not None and "/" in c.name}
    keep = [i for i, c in enumerate(found) if c is None or not (c.multiple and c.field in with_options)]
    new_header = [found[i].name if found[i] is not None else header[i] for i in keep]  # type: ignore[union-attr]
    new_rows: Rows = []
    for number, cells in rows:
        new_cells = []
        for i in keep:
            value = cells[i] if i < len(cells) else None
            column = found[i]
            new_cells.append(_answer(value, column) if column is not None else value)
        new_rows.append((number, new_cells))
    return new_header, new_rows

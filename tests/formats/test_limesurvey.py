"""LimeSurvey response exports (headings codes or texts, answers codes or full) and the code mapping."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from rematch_pipeline.formats.canonical import REPEATED_HEADER
from rematch_pipeline.formats.detect import detect_format, read_export
from rematch_pipeline.formats.errors import InputFileError
from rematch_pipeline.formats.limesurvey import INCOMPLETE, read_limesurvey_csv
from rematch_pipeline.formats.text import UTF8_BOM
from rematch_pipeline.schemas.contract import TABLES, Kind, field_names
from rematch_pipeline.schemas.limesurvey_codes import (
    LIMESURVEY_MEMBER_SLOTS,
    LIMESURVEY_OPTION_CODES,
    LIMESURVEY_QUESTION_CODES,
    mapping_markdown,
    member_code,
)
from tests.formats.fixtures.exports import (
    HERE,
    HOUSEHOLDS,
    MUNICIPALITIES,
    SECRET,
    kobo_label_municipalities_csv,
    limesurvey_csv,
    limesurvey_records,
    limesurvey_text_csv,
    limesurvey_vv,
    limesurvey_xlsx,
)

HOUSEHOLDS_CSV = HERE / "limesurvey_households.csv"
MUNICIPALITIES_CSV = HERE / "limesurvey_municipalities.csv"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "formats.md"


def _rows(table) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "file_row"} for row in table.frame.to_dicts()]


def _complete(table) -> list[dict]:
    """Rows of completed responses (the fixture's incomplete one has a left_out reason)."""
    return [{k: v for k, v in row.items() if k != "left_out"} for row in _rows(table) if row.get("left_out") is None]


def _expected(rows: list[dict], first_id: int = 41) -> list[dict]:
    # The reader's submission id is ls-<id>-<seed>; LimeSurvey writes "YYYY-MM-DD hh:mm:ss".
    return [
        {
            **{k: v for k, v in row.items() if k != "members"},
            "submission_id": f"ls-{first_id + i}-{1000001 + i}",
            "submitted_at": row["submitted_at"].replace("T", " "),
        }
        for i, row in enumerate(rows)
    ]


def _error(data: bytes, file: str = "results-survey123456.csv") -> str:
    with pytest.raises(InputFileError) as error:
        read_export(Path(file), data)
    message = str(error.value)
    assert SECRET not in message
    return message


def test_households_export_with_bom_semicolons_crlf_and_member_slots() -> None:
    data = HOUSEHOLDS_CSV.read_bytes()
    assert data.startswith(b'\xef\xbb\xbf"id";"submitdate";') and data.endswith(b"\r\n\r\n")
    households, members = read_limesurvey_csv(data, HOUSEHOLDS_CSV.name)
    rows = _rows(households)
    # The response without submitdate is kept with its reason (validation leaves it out; erasure can reach it).
    assert [row.pop("left_out") for row in rows] == [None, None, INCOMPLETE]
    assert rows[:2] == _expected(HOUSEHOLDS)
    assert (rows[2]["submission_id"], rows[2]["submitted_at"]) == ("ls-99-7777777", None)
    assert households.frame["file_row"].to_list() == [2, 3, 4]
    assert households.skipped == {INCOMPLETE: 1}
    expected_members = [
        {"submission_id": f"ls-{41 + i}-{1000001 + i}", **m} for i, h in enumerate(HOUSEHOLDS) for m in h["members"]
    ]
    assert _rows(members) == expected_members
    assert members.frame["file_row"].to_list() == [2, 2, 3]
    assert members.frame.columns == field_names("members") + ["file_row"]


def test_municipalities_export_translates_answer_codes_and_padded_numbers() -> None:
    data = MUNICIPALITIES_CSV.read_bytes()
    assert b'"DEBY"' in data and b'"40.0000000000"' in data and b'"48.1370000000"' in data
    [table] = read_limesurvey_csv(data, MUNICIPALITIES_CSV.name)
    assert table.table == "municipalities"
    assert _rows(table) == _expected(MUNICIPALITIES)


def test_older_export_style_headings_and_comma_separator() -> None:
    # LimeSurvey 1.9x: "Completed" for submitdate, "code [option]", comma separated, no BOM.
    text = HOUSEHOLDS_CSV.read_bytes()[3:].decode("utf-8")
    header, rest = text.split("\r\n", 1)
    header = header.replace('"submitdate"', '"Completed"').replace('"lastpage"', '"Last page seen"')
    header = re.sub(r"\[", " [", header)
    data = "\r\n".join([header, rest]).replace('";"', '","').encode("utf-8")
    households, members = read_limesurvey_csv(data, "old.csv")
    assert _complete(households) == _expected(HOUSEHOLDS)
    assert members.frame.height == 3


def test_without_seed_column_the_id_is_prefixed_only() -> None:
    text = HOUSEHOLDS_CSV.read_bytes().decode("utf-8-sig")
    lines = [";".join(cells for i, cells in enumerate(line.split(";")) if i != 4) for line in text.split("\r\n")]
    households, _ = read_limesurvey_csv("\r\n".join(lines).encode(), "x.csv")
    assert households.frame["submission_id"].to_list() == ["ls-41", "ls-42", "ls-99"]


def test_placeholder_submitdate_of_a_survey_without_date_stamps_is_rejected() -> None:
    data = HOUSEHOLDS_CSV.read_bytes().replace(b'"2026-07-03 17:40:02";"13"', b'"1980-01-01 00:00:00";"13"')
    message = _error(data)
    assert "results-survey123456.csv, row 3, column submitdate: limesurvey: submitdate is the 1980-01-01 placeholder" in message


def test_only_incomplete_responses_reject_the_file() -> None:
    text = HOUSEHOLDS_CSV.read_bytes().decode("utf-8-sig").split("\r\n")
    data = "\r\n".join([text[0], text[3], ""]).encode()
    assert "no completed responses (1 incomplete)" in _error(data)


def test_renamed_and_missing_question_codes_are_named() -> None:
    data = HOUSEHOLDS_CSV.read_bytes().replace(b'"pets";', b'"haspets";').replace(b'"m1sex";', b'"m1gender";')
    message = _error(data)
    assert message.startswith("results-survey123456.csv, row 1: header: missing columns pets; unexpected columns haspets")
    assert "m1gender" in message


def test_unknown_multiple_choice_option_is_a_survey_change() -> None:
    message = _error(HOUSEHOLDS_CSV.read_bytes().replace(b'"m2medical[dia]"', b'"m2medical[homeo]"'))
    assert "unexpected columns m2medical[homeo]" in message


def test_multiple_choice_option_given_twice_is_a_duplicated_column() -> None:
    text = HOUSEHOLDS_CSV.read_bytes().decode("utf-8-sig")
    lines = text.split("\r\n")
    column = lines[0].split(";").index('"m1medical[gen]"')
    lines = [f"{line};{line.split(';')[column]}" if line else line for line in lines]
    message = _error("\r\n".join(lines).encode())
    assert "duplicated columns medical_needs" in message


def test_bad_multiple_choice_mark_names_row_and_column_not_the_value() -> None:
    text = HOUSEHOLDS_CSV.read_bytes().decode("utf-8-sig")
    header = text.split("\r\n")[0].split(";")
    column = header.index('"m1medical[gen]"')
    lines = text.split("\r\n")
    cells = lines[2].split(";")
    cells[column] = f'"{SECRET}"'
    lines[2] = ";".join(cells)
    message = _error("\r\n".join(lines).encode())
    assert "row 3, column m1medical[gen]: limesurvey: multiple-choice column is not Y or empty" in message


def test_unknown_answer_code_is_left_for_validation() -> None:
    text = HOUSEHOLDS_CSV.read_bytes().decode("utf-8-sig")
    header = [h.strip('"') for h in text.split("\r\n")[0].split(";")]
    lines = text.split("\r\n")
    cells = lines[1].split(";")
    cells[header.index("m1sex")] = '"X9"'
    lines[1] = ";".join(cells)
    _, members = read_limesurvey_csv("\r\n".join(lines).encode(), "x.csv")
    assert members.frame["sex"][0] == "X9"


# ------------------------------------------------------------------ question texts and full answers (the export page's defaults)


def _same_as_code_export(data: bytes, table: str = "households") -> list:
    """Read data (any text variant) and check it gives what the code export of the same responses gives."""
    read = read_export(Path("results-survey123456.csv"), data)
    expected = read_limesurvey_csv(limesurvey_csv(table, incomplete=table == "households"), "x.csv")
    assert [t.table for t in read] == [t.table for t in expected]
    for got, want in zip(read, expected):
        assert _rows(got) == _rows(want)
        assert got.frame["file_row"].to_list() == want.frame["file_row"].to_list()
        assert got.skipped == want.skipped
    return read


@pytest.mark.parametrize("excel", [False, True])
@pytest.mark.parametrize("convert", [("1", "2"), ("1", "0")])
@pytest.mark.parametrize("table", ["households", "municipalities"])
def test_yes_and_no_converted_at_export_read_like_the_code_export(table: str, convert: tuple[str, str], excel: bool) -> None:
    # The export page's "Convert Y to" / "Convert N to" (preset 1 and 2): yes/no answers and multiple-choice options
    # shown and not ticked become those values. Before, N as 2 stopped a municipalities file at its first option
    # column and held out every household that answered a yes/no question with no.
    data = limesurvey_csv(table, incomplete=table == "households", convert=convert)
    assert f'"{convert[1]}"'.encode() in data and b'"N"' not in data
    _same_as_code_export(limesurvey_xlsx(data) if excel else data, table)


def test_participant_columns_are_left_out_under_codes_and_named_with_a_hint_under_texts() -> None:
    # A survey with a participant table: the export's "Participant control" adds its columns (names, e-mail,
    # attributes). Under codes they are LimeSurvey's names, left out like its other columns; under text headings
    # their names are free (an attribute's description), and the rule said only "a question added or reworded".
    participant = {"tid": "7", "firstname": SECRET, "lastname": "Muster", "email": "a@b.de", "emailstatus": "OK",
                   "language": "de", "completed": "N", "usesleft": "0", "attribute_1": "Amt"}
    rows = limesurvey_records(limesurvey_csv("municipalities", incomplete=False))
    rows = [rows[0] + list(participant)] + [row + list(participant.values()) for row in rows[1:]]
    text = "\r\n".join(";".join(f'"{c}"' for c in row) for row in rows) + "\r\n\r\n"
    assert _rows(read_export(Path("results-survey123456.csv"), UTF8_BOM + text.encode())[0]) == _expected(MUNICIPALITIES)
    rows = limesurvey_records(limesurvey_text_csv("municipalities", "de"))
    rows = [rows[0] + ["Vorname", "Amt der Kontaktperson"]] + [row + [SECRET, "Amt"] for row in rows[1:]]
    text = "\r\n".join(";".join(f'"{c}"' for c in row) for row in rows) + "\r\n\r\n"
    message = _error(UTF8_BOM + text.encode())
    # "Vorname" is LimeSurvey's German "First name" (left out since the twenty-eighth session); an attribute's
    # description is the survey's own text.
    assert "unexpected columns Amt der Kontaktperson (after every answer, where LimeSurvey puts participant fields" in message
    assert SECRET not in message and "'Question code & question text' headings" in message


def _with_participant_columns(data: bytes, headings: list[str], values: list[str]) -> bytes:
    """The export with participant columns after every response column, where LimeSurvey's export page puts them."""
    rows = limesurvey_records(data)
    rows = [rows[0] + headings] + [row + values for row in rows[1:]]
    return UTF8_BOM + ("\r\n".join(";".join(f'"{c}"' for c in row) for row in rows) + "\r\n\r\n").encode()


@pytest.mark.parametrize("table", ["households", "municipalities"])
def test_participant_columns_are_left_out_under_full_text_and_code_and_text_headings(table: str) -> None:
    """Participant columns hold names and e-mail addresses. Under codes they were left out; under text headings the
    file was refused as having unexpected columns. Headings as Writer::write makes them (LimeSurvey a0f5c4dd): full
    text is the field's description, getTokenFieldsAndNames' gT('First name') / gT('Last name') / gT('Email address');
    code and text is the field name, the separator and that description. Now both are left out as under codes."""
    values = [SECRET, "Muster", "olena@example.org"]
    full = limesurvey_text_csv(table, "de", "full", system_language="en")
    _same_as_code_export(_with_participant_columns(full, ["First name", "Last name", "Email address"], values), table)
    _same_as_code_export(_with_participant_columns(full, ["First_name", "Last_name", "Email_address"], values), table)  # spaces to underscores
    codetext = limesurvey_text_csv(table, "de", "codetext", system_language="en")
    headings = ["firstname. First name", "lastname. Last name", "email. Email address", "attribute_1. Amt der Kontaktperson"]
    data = _with_participant_columns(codetext, headings, [*values, "Amt"])
    _same_as_code_export(data, table)
    _same_as_code_export(limesurvey_xlsx(data), table)
    # Under codes, as before.
    code = limesurvey_csv(table, incomplete=table == "households")
    _same_as_code_export(_with_participant_columns(code, ["firstname", "lastname", "email", "attribute_1"], [*values, "Amt"]), table)


@pytest.mark.parametrize("table", ["households", "municipalities"])
def test_participant_columns_under_german_full_text_headings_are_left_out(table: str) -> None:
    """With a German administration interface the three participant fields are headed with de.po's words for
    gT('First name'), gT('Last name'), gT('Email address'): "Vorname", "Nachname", "E-Mail-Adresse" (LimeSurvey's
    locale/de/LC_MESSAGES/de.po and de-informal.po). Before they were refused as unexpected columns. "E-Mail-Adresse"
    is also our German households question (contact_email): that one stays the answer, the participant's column
    after it is left out."""
    values = [SECRET, "Muster", "olena@example.org"]
    for language in ("de", "en"):
        full = limesurvey_text_csv(table, language, "full", system_language="de")
        read = _same_as_code_export(_with_participant_columns(full, ["Vorname", "Nachname", "E-Mail-Adresse"], values), table)
        assert "olena@example.org" not in str(read[0].frame.to_dicts())
    codetext = limesurvey_text_csv(table, "de", "codetext", system_language="de")
    headings = ["firstname. Vorname", "lastname. Nachname", "email. E-Mail-Adresse"]
    _same_as_code_export(limesurvey_xlsx(_with_participant_columns(codetext, headings, values)), table)
    # Our German e-mail question alone is read as the answer, as before.
    if table == "households":
        full = limesurvey_text_csv(table, "de", "full", system_language="de")
        assert limesurvey_records(full)[0].count("E-Mail-Adresse") == 1
        _same_as_code_export(full, table)


@pytest.mark.parametrize("table", ["households", "municipalities"])
def test_participant_fields_under_full_text_headings_not_known_here_are_refused_naming_them(table: str) -> None:
    """Under full question text LimeSurvey heads an attribute with its own description and the names and e-mail with
    the administration language's words (known here in English and German only). After every answer column, where the
    export page puts participant fields, they are refused naming file and headings and saying they look like
    participant fields and how to export them; before, the rule spoke only of a question added or reworded. Never a
    value. An unknown heading among the answers is still a question added or reworded."""
    values = [SECRET, "Muster", "olena@example.org", "Charkiw"]
    headings = ["Ім'я", "Прізвище", "Adresse électronique", "Geburtsort"]  # other administration languages, an attribute
    for system_language in ("de", "en"):
        full = limesurvey_text_csv(table, "de", "full", system_language=system_language)
        data = _with_participant_columns(full, headings, values)
        for message in (_error(data), _error(limesurvey_xlsx(data), "results-survey123456.xlsx")):
            assert "results-survey123456" in message and "row 1: header: unexpected columns" in message
            assert "Ім'я, Прізвище, Adresse électronique, Geburtsort (after every answer, where LimeSurvey puts participant fields" in message
            assert "'Question code' or 'Question code & question text' headings" in message
            assert not any(v in message for v in values)
    # A heading among the answers (a question added in the middle): the rule as before.
    rows = limesurvey_records(limesurvey_text_csv(table, "de", "full", system_language="de"))
    rows = [rows[0][:10] + ["Eine neue Frage"] + rows[0][10:]] + [row[:10] + ["x"] + row[10:] for row in rows[1:]]
    message = _error(UTF8_BOM + ("\r\n".join(";".join(f'"{c}"' for c in row) for row in rows) + "\r\n\r\n").encode())
    assert "unexpected columns Eine neue Frage (a question added or reworded" in message


def test_yes_no_converted_to_other_values_is_refused_with_how_to_export() -> None:
    message = _error(limesurvey_csv("municipalities", convert=("J", "2")))
    assert "row 2, column medicalcare[gen]: limesurvey: multiple-choice column is not Y or empty" in message
    assert "'Convert Y to' / 'Convert N to'" in message


def test_two_beside_n_is_not_read_as_a_converted_no() -> None:
    # One export converts every N or none: a 2 beside an N is no conversion, and is not guessed.
    rows = limesurvey_records(limesurvey_csv("municipalities"))
    header = rows[0]
    rows[1][header.index("medicalcare[gen]")] = "2"
    assert "N" in {cells[header.index("petsallowed")] for cells in rows[1:]}
    text = "\r\n".join(";".join(f'"{c}"' for c in row) for row in rows) + "\r\n\r\n"
    message = _error(UTF8_BOM + text.encode())
    assert "row 2, column medicalcare[gen]: limesurvey: multiple-choice column is not Y or empty" in message


@pytest.mark.parametrize("language", ["de", "en", "uk"])
@pytest.mark.parametrize("table", ["households", "municipalities"])
def test_full_question_texts_and_full_answers_read_like_the_code_export(table: str, language: str) -> None:
    data = limesurvey_text_csv(table, language)
    assert b'"Response ID";"Date submitted"' in data and b'"' + table[:1].encode() not in data.split(b"\r\n")[0][:3]
    if language == "de" and table == "households":
        # Texts of the committed LSS file: a list answer, a yes/no answer and a multiple-choice option.
        assert "Männlich".encode() in data and b'"Ja"' in data and b'"Nein"' in data and "Welche Sprachen spricht die Person? [Ukrainisch]".encode() in data
    read = _same_as_code_export(data, table)
    assert detect_format(Path("results-survey123456.csv"), data) == "limesurvey-csv"
    if table == "households":
        assert read[1].frame.height == 3  # the member slots, found by the order of their identical texts


@pytest.mark.parametrize(
    ("headings", "full_answers", "underscores"),
    [("codetext", False, False), ("codetext", True, False), ("full", False, True), ("code", True, False)],
)
def test_code_and_text_headings_underscored_texts_and_full_answers_under_codes(headings: str, full_answers: bool, underscores: bool) -> None:
    _same_as_code_export(limesurvey_text_csv("households", "de", headings, full_answers, underscores=underscores))


@pytest.mark.parametrize("system_language", ["de", "fr"])
def test_limesurvey_columns_named_in_german_or_an_unknown_language(system_language: str) -> None:
    # German names as LimeSurvey's de.po has them; in a language not known here, by their place and values.
    data = limesurvey_text_csv("households", "uk", system_language=system_language)
    households, _ = _same_as_code_export(data)
    assert households.frame["submission_id"].to_list() == ["ls-41-1000001", "ls-42-1000002", "ls-99-7777777"]


def test_not_applicable_in_a_wording_not_known_here_is_learnt_from_the_file() -> None:
    # LimeSurvey writes only "Yes", "No" and "N/A" into yes/no and multiple-choice columns; a newer
    # Ukrainian "N/A" is the one other answer there.
    data = limesurvey_text_csv("households", "uk")
    assert data.count(b'"N/A"') > 20
    _same_as_code_export(data.replace(b'"N/A"', '"Н/Д"'.encode()))
    # Two unknown answers: no guess, the multiple-choice column stops the file.
    first, rest = data.split(b'"N/A"', 1)
    message = _error(first + '"Н/Д"'.encode() + rest.replace(b'"N/A"', '"Не застосовно"'.encode()))
    assert "multiple-choice column is not Y or empty (or Yes/No)" in message


def test_kobo_export_in_labels_is_still_read_as_kobo() -> None:
    data = kobo_label_municipalities_csv(0)
    assert detect_format(Path("export.csv"), data) == "kobo-csv"


def test_edited_question_text_is_named_as_an_unexpected_column() -> None:
    data = limesurvey_text_csv("households", "de").replace(b'"Telefonnummer"', b'"Telefonnummer (mobil)"')
    message = _error(data)
    assert "row 1: header: unexpected columns Telefonnummer (mobil) (a question added or reworded" in message


def test_member_column_left_out_of_a_text_export_is_named() -> None:
    # The slots are told apart by order only: one slot's column missing would shift the others.
    text = limesurvey_text_csv("households", "en").decode("utf-8-sig")
    lines = [line.split(";") for line in text.split("\r\n")]
    drop = [i for i, h in enumerate(lines[0]) if h == '"Sex"'][1]
    data = "\r\n".join(";".join(c for i, c in enumerate(cells) if i != drop) for cells in lines).encode()
    message = _error(data)
    assert message.endswith("row 1, column Sex: limesurvey: a member question's heading is there for fewer persons than the others (export every member column)")


def test_full_answers_not_of_the_survey() -> None:
    text = limesurvey_text_csv("households", "en").decode("utf-8-sig")
    lines = text.split("\r\n")
    header = [h.strip('"') for h in lines[0].split(";")]
    cells = lines[1].split(";")
    sex = header.index("Sex")
    cells[sex] = '"Divers (new answer)"'
    lines[1] = ";".join(cells)
    _, members = read_limesurvey_csv("\r\n".join(lines).encode(), "x.csv")
    assert members.frame["sex"][0] == "Divers (new answer)"  # validation reports it against the code list
    medical = next(i for i, h in enumerate(header) if h.startswith("Which care does this person need regularly? ["))
    cells[medical] = f'"{SECRET}"'
    lines[1] = ";".join(cells)
    message = _error("\r\n".join(lines).encode())
    assert f"row 2, column {header[medical]}: limesurvey: multiple-choice column is not Y or empty (or Yes/No)" in message


@pytest.mark.parametrize("language", ["de", "en", "uk"])
@pytest.mark.parametrize("table", ["households", "municipalities"])
def test_abbreviated_question_texts_read_like_the_code_export(table: str, language: str) -> None:
    # "Abbreviated question text": each text and option cut to 15 characters and ".. ", LimeSurvey's
    # columns too ("Date last actio.. "). Several questions share a cut text ("Wie wichtig ist.. " six
    # times, "Does this perso.. " per person); the survey's column order tells them apart.
    data = limesurvey_text_csv(table, language, headings="abbreviated", system_language="de")
    header = limesurvey_records(data)[0]
    assert "Datum Abgeschic.. " in header and any(h.endswith(".. ") for h in header[7:])
    assert detect_format(Path("results-survey123456.csv"), data) == "limesurvey-csv"
    _same_as_code_export(data, table)
    _same_as_code_export(limesurvey_text_csv(table, language, headings="abbreviated", full_answers=False), table)


def test_abbreviated_texts_shared_by_questions_are_refused_when_one_of_them_is_left_out() -> None:
    data = limesurvey_text_csv("households", "de", headings="abbreviated")
    lines = limesurvey_records(data)
    shared = [i for i, h in enumerate(lines[0]) if h == "Wie wichtig ist.. "]
    assert len(shared) == 6  # the family tie's importance and five importance questions
    # Without the (optional) family tie's importance, the first "Wie wichtig ist.." could be either.
    kept = [[c for i, c in enumerate(cells) if i != shared[0]] for cells in lines]
    kept[1][kept[0].index("Name der Kontak.. ")] = SECRET
    text = "\r\n".join(";".join(f'"{c}"' for c in cells) for cells in kept) + "\r\n"
    message = _error(b"\xef\xbb\xbf" + text.encode())
    assert "row 1, column Wie wichtig ist..: limesurvey: abbreviated heading starts several questions" in message
    assert "'question code'" in message


@pytest.mark.parametrize("texts", [False, True])
def test_microsoft_excel_export_reads_like_the_csv_with_the_sheet_named(texts: bool) -> None:
    csv_data = limesurvey_text_csv("households", "de") if texts else limesurvey_csv("households")
    data = limesurvey_xlsx(csv_data)
    assert detect_format(Path("results-survey123456.xlsx"), data) == "limesurvey-xlsx"
    households, members = _same_as_code_export(data)
    assert households.sheet == members.sheet == "Fragebogen für Haushalte"


def test_microsoft_excel_export_errors_name_the_sheet() -> None:
    csv_data = limesurvey_csv("households").replace(b'"pets";', b'"haspets";')
    message = _error(limesurvey_xlsx(csv_data), "results-survey123456.xlsx")
    assert "sheet Fragebogen für Haushalte" in message and "unexpected columns haspets" in message



@pytest.mark.parametrize("table", ["households", "municipalities"])
def test_vv_export_reads_like_the_code_export(table: str) -> None:
    """LimeSurvey's VV export: question texts in row 1, codes (an option as code_option) in row 2,
    tab separated, {question_not_shown} for what was not asked; rows numbered as the file has them."""
    data = limesurvey_vv(table)
    assert detect_format(Path("vvexport_654321.csv"), data) == "limesurvey-vv"
    read = read_export(Path("vvexport_654321.csv"), data)
    expected = read_limesurvey_csv(limesurvey_csv(table, incomplete=table == "households"), "x.csv")
    assert [t.table for t in read] == [t.table for t in expected]
    for got, want in zip(read, expected):
        assert _rows(got) == _rows(want)
        assert got.frame["file_row"].to_list() == [n + 1 for n in want.frame["file_row"].to_list()]  # the codes are row 2
        assert got.skipped == want.skipped


def test_vv_export_values_are_unescaped() -> None:
    rows = [dict(HOUSEHOLDS[0], contact_name='"Olena" {Kovalenko}', current_address="Hauptstr. 1\n\t12345 Bonn")]
    [households, _] = read_export(Path("vvexport_654321.csv"), limesurvey_vv("households", rows=rows))
    assert households.frame["contact_name"][0] == '"Olena" {Kovalenko}'
    assert households.frame["current_address"][0] == "Hauptstr. 1\n\t12345 Bonn"


def test_vv_export_with_database_column_names_is_refused_with_a_hint() -> None:
    message = _error(limesurvey_vv("households", version=1), "vvexport_654321.csv")
    assert "vvexport_654321.csv, row 2" in message and "VV version 2" in message


def test_vv_export_header_errors_name_the_codes_row() -> None:
    data = limesurvey_vv("households").replace(b"\tpets\t", b"\thaspets\t")
    message = _error(data, "vvexport_654321.csv")
    assert "vvexport_654321.csv, row 2: header:" in message and "unexpected columns haspets" in message


def _resaved_by_excel(data: bytes, delimiter: str) -> bytes:
    """A VV export opened in Excel (tab separated, so its columns are right) and saved as CSV: the
    delimiter of Excel's locale (German `;`), quotes only where needed, CRLF, Windows-1252."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("cp1252")


@pytest.mark.parametrize("delimiter", [";", ","])
@pytest.mark.parametrize("table", ["households", "municipalities"])
def test_vv_export_re_saved_by_excel_with_another_delimiter_is_read(table: str, delimiter: str) -> None:
    """Exploratory testing: a VV export opened in Excel and saved as CSV (`;` in a German Excel) was refused
    with its question texts as unexpected columns, not saying what had happened. Row 2 still names the
    codes, so it is read as the VV export it is, rows numbered as before."""
    original = read_export(Path("vvexport_654321.csv"), limesurvey_vv(table))
    data = _resaved_by_excel(limesurvey_vv(table), delimiter)
    assert detect_format(Path("vvexport_654321.csv"), data) == "limesurvey-vv"
    read = read_export(Path("vvexport_654321.csv"), data)
    assert [t.table for t in read] == [t.table for t in original]
    for got, want in zip(read, original):
        assert _rows(got) == _rows(want)
        assert got.frame["file_row"].to_list() == want.frame["file_row"].to_list()
        assert got.skipped == want.skipped


@pytest.mark.parametrize("table", ["households", "municipalities"])
def test_vv_export_without_its_question_text_row_is_read(table: str) -> None:
    """Exploratory testing: a VV export whose first row (the question texts) was deleted in a spreadsheet was
    refused with its option columns (`medicalcare_gen` …) as unexpected columns. Its codes header is a VV one
    (`id`, `submitdate`, options as `code_option`), found in no other export, so it is read, rows keeping the
    file's numbers."""
    original = read_export(Path("vvexport_654321.csv"), limesurvey_vv(table))
    data = limesurvey_vv(table).split(b"\n", 1)[1]
    assert detect_format(Path("vvexport_654321.csv"), data) == "limesurvey-vv"
    read = read_export(Path("vvexport_654321.csv"), data)
    for got, want in zip(read, original, strict=True):
        assert _rows(got) == _rows(want)
        assert got.frame["file_row"].to_list() == [n - 1 for n in want.frame["file_row"].to_list()]
    code = {"households": b"\tpets\t", "municipalities": b"\tpetsallowed\t"}[table]
    assert code in data
    message = _error(data.replace(code, b"\thaspets\t"), "vvexport_654321.csv")
    assert "vvexport_654321.csv, row 1: header:" in message and "unexpected columns haspets" in message


def test_code_export_whose_header_is_repeated_in_row_2_is_no_vv_export() -> None:
    """Two code exports pasted into one file (the header again in row 2) stay a code export: the row repeating
    the header is left out and counted."""
    data = limesurvey_csv("municipalities", incomplete=False)
    header = data.split(b"\r\n", 1)[0].removeprefix(UTF8_BOM)
    pasted = data.replace(b"\r\n", b"\r\n" + header + b"\r\n", 1)
    assert detect_format(Path("results-survey123456.csv"), pasted) == "limesurvey-csv"
    [table] = read_export(Path("results-survey123456.csv"), pasted)
    assert table.skipped.get(REPEATED_HEADER) == 1


# ------------------------------------------------------------------ the code mapping


def test_every_code_of_every_list_has_a_limesurvey_code_within_limits() -> None:
    for table in ("municipalities", "households", "members"):
        for f in TABLES[table]:
            if f.kind in (Kind.CODE, Kind.CODES):
                codes = [LIMESURVEY_OPTION_CODES[c] for c in f.codes]
                assert len({c.lower() for c in codes}) == len(codes), f.name
                assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,4}", c) for c in codes), f.name
    for table in ("municipalities", "households"):
        codes = LIMESURVEY_QUESTION_CODES[table]
        assert set(codes) == set(field_names(table)) - {"submission_id", "submitted_at"}
        assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,19}", c) for c in codes.values())
    assert set(LIMESURVEY_QUESTION_CODES["members"]) == set(field_names("members")) - {"submission_id"}
    assert member_code(LIMESURVEY_MEMBER_SLOTS, "wheelchair") == f"m{LIMESURVEY_MEMBER_SLOTS}wheelchair"


def test_docs_carry_the_generated_mapping_table() -> None:
    assert mapping_markdown() in DOCS.read_text(encoding="utf-8")

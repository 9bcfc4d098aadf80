"""The canonical template reader: encodings, separators, sheets, and errors that never quote a value."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter

from rematch_pipeline.formats.canonical import NO_ANSWER_MARKS, NO_ANSWER_READ, REPLACED_LETTERS, read_canonical
from rematch_pipeline.formats.detect import read_export
from rematch_pipeline.formats.errors import InputFileError
from rematch_pipeline.formats.landing import split_identity
from rematch_pipeline.sample import generate_round
from rematch_pipeline.schemas.contract import TABLES, field_names
from rematch_pipeline.schemas.parsing import FALSE_WORDS, TRUE_WORDS
from rematch_pipeline.validation import check_rows

SECRET_VALUE = "Olena-Secret-Value"


@pytest.fixture(scope="module")
def sample():
    return generate_round(20, 5, seed=3)


def _csv(frame: pl.DataFrame, sep: str = ",") -> str:
    out = io.StringIO()
    frame.write_csv(out, separator=sep)
    return out.getvalue()


def test_municipalities_csv_is_recognised_by_content(sample, tmp_path: Path) -> None:
    path = tmp_path / "whatever-name.csv"
    path.write_text(_csv(sample.municipalities))
    [parsed] = read_canonical(path, path.read_bytes())
    assert parsed.table == "municipalities"
    assert parsed.frame.height == sample.municipalities.height
    assert parsed.frame["municipality_id"].to_list() == sample.municipalities["municipality_id"].to_list()
    assert parsed.frame["file_row"].to_list()[:2] == [2, 3]


def test_german_excel_csv_with_bom_semicolon_and_cp1252(sample, tmp_path: Path) -> None:
    frame = sample.municipalities.with_columns(pl.lit("Fürth, Stadt").alias("municipality_name"))
    text = _csv(frame, sep=";").replace("\n", "\r\n")
    for encoded in (b"\xef\xbb\xbf" + text.encode("utf-8"), text.encode("cp1252")):
        path = tmp_path / "m.csv"
        path.write_bytes(encoded)
        [parsed] = read_canonical(path, encoded)
        assert parsed.frame["municipality_name"][0] == "Fürth, Stadt"
        assert parsed.frame["municipality_id"][0] == sample.municipalities["municipality_id"][0]


def test_xlsx_workbook_with_households_and_members_sheets(sample, tmp_path: Path) -> None:
    path = tmp_path / "h.xlsx"
    with xlsxwriter.Workbook(path) as book:
        for name, frame in (("households", sample.households), ("members", sample.members)):
            sheet = book.add_worksheet(name)
            sheet.write_row(0, 0, frame.columns)
            for r, row in enumerate(frame.iter_rows(), start=1):
                for c, value in enumerate(row):
                    sheet.write_string(r, c, value or "")
    tables = read_canonical(path, path.read_bytes())
    assert [t.table for t in tables] == ["households", "members"]
    assert tables[1].frame.height == sample.members.height
    assert tables[0].sheet == "households"


def test_xlsx_is_read_from_the_bytes_given_not_from_the_path_again(sample, tmp_path: Path) -> None:
    # Ingestion hashes and archives the bytes it read; a landed file replaced meanwhile (a second save
    # from Excel) must not be what gets loaded under the first one's hash.
    path = tmp_path / "m.xlsx"
    _workbook(path, [("municipalities", [list(sample.municipalities.columns), *[[v or "" for v in row] for row in sample.municipalities.iter_rows()]])])
    data = path.read_bytes()
    path.write_bytes(b"replaced meanwhile")
    tables = read_canonical(path, data)
    assert tables[0].table == "municipalities" and tables[0].frame.height == sample.municipalities.height
    path.unlink()
    assert read_canonical(path, data)[0].frame.height == sample.municipalities.height


@pytest.mark.parametrize("date_1904", [False, True])
def test_dates_stored_as_serial_numbers_in_a_workbook_are_read_as_dates(sample, tmp_path: Path, date_1904: bool) -> None:
    # A date column whose cells were set to General (or pasted as values) holds Excel's day numbers.
    epoch = dt.date(1904, 1, 1) if date_1904 else dt.date(1899, 12, 30)
    members = sample.members.head(3)
    path = tmp_path / "members.xlsx"
    with xlsxwriter.Workbook(path, {"date_1904": date_1904}) as book:
        sheet = book.add_worksheet("members")
        sheet.write_row(0, 0, members.columns)
        for r, row in enumerate(members.iter_rows(named=True), start=1):
            for c, (name, value) in enumerate(row.items()):
                if name == "date_of_birth":
                    sheet.write_number(r, c, (dt.date.fromisoformat(value) - epoch).days)
                elif value is not None:
                    sheet.write_string(r, c, value)
        sheet.write_number(1, members.columns.index("wants_work"), 1)  # other columns keep their numbers
    table = read_canonical(path, path.read_bytes())[0]
    assert table.frame["date_of_birth"].to_list() == members["date_of_birth"].to_list()
    assert table.frame["wants_work"][0] == "1"


def _workbook(path: Path, sheets: list[tuple[str, list[list[str]]]], hidden: str | None = None) -> None:
    with xlsxwriter.Workbook(path) as book:
        for name, rows in sheets:
            sheet = book.add_worksheet(name)
            for r, row in enumerate(rows):
                sheet.write_row(r, 0, row)
            if name == hidden:
                sheet.hide()


def test_a_members_sheet_copied_in_a_workbook_is_refused_and_members_split_by_household_are_read(sample, tmp_path: Path) -> None:
    # A person is keyed by submission and position in its table: a copied members sheet made each person two (the
    # warehouse's validated members doubled twice over and its expectation check stopped validation for every file).
    def rows(frame: pl.DataFrame) -> list[list[str]]:
        return [frame.columns, *[[v or "" for v in row] for row in frame.iter_rows()]]

    members = sample.members
    first = members["submission_id"][0]
    path = tmp_path / "h.xlsx"
    _workbook(path, [("households", rows(sample.households)), ("members", rows(members)), ("members (2)", rows(members))])
    message = str(pytest.raises(InputFileError, read_export, path, path.read_bytes()).value)
    assert message.startswith("h.xlsx [sheet members (2)], row 2, column submission_id: members: this row's household has member rows in sheet members of this file too")
    assert first not in message
    # Each household's members in one sheet or the other: read, every row once.
    one, other = members.filter(pl.col("submission_id") == first), members.filter(pl.col("submission_id") != first)
    _workbook(path, [("households", rows(sample.households)), ("members", rows(other)), ("members 2", rows(one))])
    tables = read_export(path, path.read_bytes())
    assert [(t.table, t.sheet, t.frame.height) for t in tables][1:] == [("members", "members", other.height), ("members", "members 2", one.height)]


def test_a_submission_in_two_households_sheets_with_other_answers_is_said(sample, tmp_path: Path) -> None:
    # A corrected copy of the households sheet beside the first: validation uses the copy read last, which was not said
    # (only copies inside one table were compared). Equal copies stay silent.
    households = sample.households.head(3)
    header = households.columns
    rows = [[v or "" for v in row] for row in households.iter_rows()]
    edited = [row.copy() for row in rows]
    pets = header.index("pets")
    edited[1][pets] = "no" if rows[1][pets] == "yes" else "yes"
    path = tmp_path / "h.xlsx"
    _workbook(path, [("households", [header, *rows]), ("households korrigiert", [header, *edited])])
    first, second = read_export(path, path.read_bytes())
    assert first.warnings == ()
    assert second.warnings == (
        "1 submission id (column submission_id, rows 3) also in sheet households of this file with different answers; one"
        " submission id is one submission (contract), so one copy is used: the one with the latest submitted_at, of"
        " copies submitted in the same minute (or without a readable time) the one read last; keep one row per"
        " submission_id",
    )
    _workbook(path, [("households", [header, *rows]), ("households 2", [header, *rows])])
    assert [t.warnings for t in read_export(path, path.read_bytes())] == [(), ()]


def test_instructions_and_code_list_sheets_beside_the_template_are_left_out_and_counted(sample, tmp_path: Path) -> None:
    frame = sample.municipalities
    template = [frame.columns, *[[v or "" for v in row] for row in frame.iter_rows()]]
    path = tmp_path / "m.xlsx"
    _workbook(
        path,
        [
            ("Anleitung", [["Bitte eine Zeile je Kommune ausfüllen."], ["Pflichtfelder sind fett."]]),
            ("Kommunen", template),
            ("Codes", [["Code", "Bedeutung"], ["yes", "ja"], ["no", "nein"]]),
        ],
        hidden="Codes",
    )
    [parsed] = read_canonical(path, path.read_bytes())
    assert parsed.table == "municipalities" and parsed.sheet == "Kommunen"
    assert parsed.frame.height == frame.height
    assert parsed.skipped == {"sheets without template columns (instructions, code lists)": 2}


def test_a_sheet_with_some_template_columns_but_a_misspelt_key_still_stops_the_file(sample, tmp_path: Path) -> None:
    frame = sample.municipalities.rename({"municipality_id": "municipality_key"})
    path = tmp_path / "m.xlsx"
    _workbook(path, [("Anleitung", [["Bitte ausfüllen."]]), ("Kommunen", [frame.columns, ["x"] * frame.width])])
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    assert "[sheet Kommunen]" in str(error.value) and "not a municipalities, households, members or decisions template" in str(error.value)
    # The table the header is nearest to, and the identifying column it lacks.
    assert "nearest: municipalities (no column municipality_id)" in str(error.value)


def test_a_header_retyped_in_excel_is_read_as_the_template(sample, tmp_path: Path) -> None:
    """Case, spaces around and between words, and hyphens for underscores: the same columns."""
    retyped = {c: c.replace("_", " ").title() for c in sample.households.columns[:6]}
    retyped.update({sample.households.columns[6]: f"  {sample.households.columns[6].upper()} "})
    retyped.update({c: c.replace("_", "-") for c in sample.households.columns[7:10]})
    path = tmp_path / "h.csv"
    path.write_text(_csv(sample.households.rename(retyped)))
    [parsed] = read_canonical(path, path.read_bytes())
    original = tmp_path / "o.csv"
    original.write_text(_csv(sample.households))
    [expected] = read_canonical(original, original.read_bytes())
    assert parsed.table == "households" and parsed.frame.equals(expected.frame)
    # A column that is none of ours is named as the file spells it.
    path.write_text(_csv(sample.households.rename({**retyped, "pets": "Haustiere Erlaubt"})))
    with pytest.raises(InputFileError, match="unexpected columns Haustiere Erlaubt"):
        read_canonical(path, path.read_bytes())


def test_a_workbook_of_instructions_only_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.xlsx"
    _workbook(path, [("Anleitung", [["Bitte ausfüllen."]])])
    with pytest.raises(InputFileError, match="no sheet with a template header"):
        read_canonical(path, path.read_bytes())


def test_missing_and_renamed_columns_stop_the_file_naming_them(sample, tmp_path: Path) -> None:
    frame = sample.municipalities.rename({"kita_places": "kita_plaetze"}).drop("pets_allowed")
    path = tmp_path / "m.csv"
    path.write_text(_csv(frame))
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    message = str(error.value)
    assert "m.csv" in message and "row 1" in message
    assert "missing columns pets_allowed, kita_places" in message  # contract order
    assert "unexpected columns kita_plaetze" in message


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"", "empty file"),
        (",".join(field_names("municipalities")).encode() + b"\n", "header only"),
        (b"a,b,c\n1,2,3\n", "not a municipalities, households, members or decisions template"),
        # Excel's "CSV (MS-DOS)" writes code page 850: its ü (0x81) is no Windows-1252 character.
        ("a;b\nM\u00fcller;x\n".encode("cp850"), r"encoding: neither UTF-8 nor Windows-1252 \(Excel's CSV \(MS-DOS\).*save the file again as CSV UTF-8"),
        # A cell past Python's field limit was "malformed or truncated (unterminated quote?)", in a file without one.
        (b"a,b\n" + b"x" * 200_000 + b",y\n", r"bad.csv, row 2: csv: a cell longer than 131,072 characters"),
        # Excel's separator line naming a separator the readers do not split by (`sep=;` is read: see below).
        (b"sep=|\r\nmunicipality_id|municipality_name\r\n01001|x\r\n", r"bad.csv, row 1: csv: the first line is Excel's separator line \(sep=…\) naming a separator other than"),
    ],
)
def test_unreadable_files_are_rejected_with_a_rule(content: bytes, rule: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=rule):
        read_canonical(path, content)


def test_truncated_file_names_the_row_but_not_the_value(sample, tmp_path: Path) -> None:
    frame = sample.municipalities.with_columns(pl.lit(SECRET_VALUE).alias("contact_name"))
    text = _csv(frame)
    text = text[: text.rindex(SECRET_VALUE)] + '"' + SECRET_VALUE  # an unterminated quote at the end
    path = tmp_path / "cut.csv"
    path.write_text(text)
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    assert "truncated" in str(error.value)
    assert "row" in str(error.value)
    assert SECRET_VALUE not in str(error.value)


def test_short_row_stops_the_file_instead_of_shifting_values(sample, tmp_path: Path) -> None:
    """A record with a cell missing (a separator lost in an edit, or a file cut at a field boundary)
    must not be padded: every value after the gap would land in the column before it, e.g. the
    contact name in consent_followup, a non-PII column stored in the warehouse."""
    lines = _csv(sample.households.with_columns(pl.lit(SECRET_VALUE).alias("contact_name"))).splitlines()
    header = lines[0].split(",")
    cells = lines[2].split(",")
    del cells[header.index("consent_followup")]
    lines[2] = ",".join(cells)
    path = tmp_path / "h.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    message = str(error.value)
    assert "h.csv, row 3" in message and "cells, header has" in message
    assert SECRET_VALUE not in message


def test_export_cut_at_a_field_boundary_is_refused(tmp_path: Path) -> None:
    """An ODK Central members file cut off after a field: its last member must not be dropped silently."""
    from rematch_pipeline.formats.detect import read_export
    from tests.formats.fixtures.exports import odk_central_households

    data = odk_central_households()["rematch_household-members.csv"]
    cut = data[: data.rindex(b",")]  # the last record loses its final cell(s)
    path = tmp_path / "rematch_household-members.csv"
    with pytest.raises(InputFileError, match=r"row \d+: csv: row has \d+ cells"):
        read_export(path, cut)


def test_empty_columns_excel_kept_right_of_the_table_are_ignored(sample, tmp_path: Path) -> None:
    """A German Excel saves cells right of the table that were once formatted or cleared as empty
    columns, header included (`…;notes;;`): they carry nothing, so the file is read; a value in
    such an unnamed column still stops it, naming the row, not the value."""
    from rematch_pipeline.formats.detect import read_export
    from tests.formats.fixtures.exports import kobo_kpi_municipalities_csv

    lines = _csv(sample.municipalities, sep=";").splitlines()
    padded = "\r\n".join(line + ";;" for line in lines) + "\r\n" + ";" * (len(lines[0].split(";")) + 1) + "\r\n"
    path = tmp_path / "m.csv"
    [parsed] = read_export(path, padded.encode("cp1252"))
    assert parsed.frame.height == sample.municipalities.height
    assert parsed.frame["municipality_id"].to_list() == sample.municipalities["municipality_id"].to_list()

    kobo = kobo_kpi_municipalities_csv().decode().splitlines()
    [parsed] = read_export(tmp_path / "kobo.csv", ("\r\n".join(line + ";" for line in kobo) + "\r\n").encode())
    assert parsed.table == "municipalities" and parsed.frame.height == len(kobo) - 2  # header and HXL row

    typed_beside = padded.splitlines()
    typed_beside[3] += SECRET_VALUE
    with pytest.raises(InputFileError) as error:
        read_export(path, "\r\n".join(typed_beside).encode("cp1252"))
    assert "m.csv, row 4" in str(error.value) and SECRET_VALUE not in str(error.value)


def test_header_rows_repeated_inside_a_file_are_left_out_and_counted(sample, tmp_path: Path) -> None:
    """Two exports pasted into one file: the second header is no household (it would otherwise be a
    quarantine line per column); it is left out and counted, and the rows keep their line numbers."""
    first, second = sample.households.head(5), sample.households.slice(5, 5)
    path = tmp_path / "both.csv"
    path.write_text(_csv(first) + _csv(second))
    [parsed] = read_canonical(path, path.read_bytes())
    assert parsed.skipped == {"header rows repeated inside the file": 1}
    assert parsed.frame["household_ref"].to_list() == sample.households.head(10)["household_ref"].to_list()
    assert parsed.frame["file_row"].to_list() == [2, 3, 4, 5, 6, 8, 9, 10, 11, 12]


def test_a_utf8_file_with_a_stray_windows_1252_byte_is_refused_naming_the_line(sample, tmp_path: Path) -> None:
    """Lines pasted in from a file of the other encoding: read as Windows-1252, every UTF-8 umlaut of the file
    became "Ã¼" without a word; now the file is refused naming the line (never the text)."""
    frame = sample.municipalities.with_columns(pl.lit("München-Süd").alias("notes"))
    lines = _csv(frame).encode("utf-8").splitlines(keepends=True)
    lines[3] = lines[3].replace("München-Süd".encode("utf-8"), "Fürth".encode("cp1252"))
    path = tmp_path / "m.csv"
    path.write_bytes(b"".join(lines))
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    message = str(error.value)
    assert "UTF-8 with a byte of another encoding (Windows-1252?) on line 4" in message and "rth" not in message
    # A file wholly in Windows-1252 (a German Excel's "CSV (Trennzeichen-getrennt)") still reads.
    path.write_bytes(b"".join(lines).decode("utf-8", "replace").replace("\ufffd", "u").encode("cp1252"))
    [parsed] = read_canonical(path, path.read_bytes())
    assert parsed.frame["notes"][0] == "München-Süd"


def test_a_utf8_file_cut_inside_a_character_is_called_cut_not_another_encoding(sample, tmp_path: Path) -> None:
    """Exploratory testing (a file cut off in transfer): a UTF-8 file cut between the two bytes of an "ü" was refused
    as "UTF-8 with a byte of another encoding (Windows-1252?) …; save the file again as CSV UTF-8", sending the
    coordinator to re-save a file that was fine, not to fetch it again. Now the rule says it was cut, and where."""
    frame = sample.municipalities.with_columns(pl.lit("München-Süd").alias("notes"))
    data = _csv(frame).encode("utf-8")
    cut = data[: data.rindex("ü".encode("utf-8")) + 1]  # the first of the two bytes of the last "ü"
    path = tmp_path / "m.csv"
    with pytest.raises(InputFileError) as error:
        read_canonical(path, cut)
    line = cut.count(b"\n") + 1
    assert str(error.value) == (
        f"m.csv: encoding: UTF-8 that ends inside a character on line {line} (cut off in transfer?); download or copy the file again"
    )


def test_names_a_windows_1252_save_turned_into_question_marks_are_said(sample, tmp_path: Path) -> None:
    """Exploratory testing (a LimeSurvey export re-saved by a German Excel as "CSV (Trennzeichen-getrennt)"): every
    Cyrillic letter of a name became "?" and the identity store kept "????? ??????" without a word. The file is read
    (nothing else is wrong with it) and a warning names the column and rows, never the name."""
    members = sample.members.with_columns(pl.lit("Олена Ковальчук").alias("member_name"))
    path = tmp_path / "members.csv"
    data = _csv(members).encode("cp1252", errors="replace")  # what Excel writes for letters Windows-1252 lacks
    [parsed] = read_export(path, data)
    assert parsed.frame["member_name"][0] == "????? ?????????"
    rows = ", ".join(str(r) for r in range(2, 5))
    assert parsed.warnings == (f"{members.height} rows (column member_name, rows {rows} …) {REPLACED_LETTERS}",)
    # The same names saved as CSV UTF-8 are read without a word.
    assert read_export(path, _csv(members).encode("utf-8"))[0].warnings == ()
    # An address loses its letters alike (Gdańsk as Gda?sk); the other rows' addresses are not said.
    households = sample.households.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("ul. Polna 50, 80-944 Gdańsk")).otherwise(pl.lit("Hauptstraße 1")).alias("current_address")
    )
    [parsed] = read_export(tmp_path / "households.csv", _csv(households).encode("cp1252", errors="replace"))
    assert parsed.warnings == (f"1 row (column current_address, row 3) {REPLACED_LETTERS}",)


# German names as a coordinator's list holds them, none with "ü": code page 850's ü (0x81) is a byte Windows-1252
# lacks, so a file with one was refused already; without one, every byte decodes as Windows-1252.
_GERMAN_CONTACTS = ["Jörg Jäger", "Käthe Schäfer", "Björn Köhler", "Grete Weiß", "Hans Großmann"]
_GERMAN_PLACES = ["Köln", "Neuß", "Gräfenhainichen", "Lößnitz", "Bärnau"]


def _municipalities_with_german_names(sample) -> pl.DataFrame:
    return sample.municipalities.with_columns(
        pl.Series("contact_name", _GERMAN_CONTACTS), pl.Series("notes", [f"nahe {p}" for p in _GERMAN_PLACES])
    )


@pytest.mark.parametrize(
    ("code_page", "source"),
    [("cp850", r"Excel's CSV \(MS-DOS\), code page 850\?"), ("mac_roman", r"Excel's CSV \(Macintosh\), Mac Roman\?")],
)
def test_a_csv_in_code_page_850_or_mac_roman_is_refused_not_read_garbled(sample, tmp_path: Path, code_page: str, source: str) -> None:
    """Excel's "CSV (MS-DOS)" and "CSV (Macintosh)" without a byte Windows-1252 lacks were read as Windows-1252:
    "Jörg Jäger" became "J”rg J„ger" (850) or "JšrgJŠger" (Mac Roman) in the identity store, without a word."""
    frame = _municipalities_with_german_names(sample)
    data = _csv(frame, sep=";").replace("\n", "\r\n").encode(code_page)
    data.decode("cp1252")  # the old reader's fallback decodes it
    path = tmp_path / "gemeinden.csv"
    path.write_bytes(data)
    with pytest.raises(InputFileError, match=rf"gemeinden\.csv: encoding: {source} .*first on line 2\); save the file again as CSV UTF-8") as error:
        read_canonical(path, data)
    assert not any(part in str(error.value) for name in _GERMAN_CONTACTS for part in name.split())


def test_a_windows_1252_csv_with_typographic_quotes_and_foreign_names_still_reads(sample, tmp_path: Path) -> None:
    """The code-page rule looks at German letters inside words only: Windows-1252's quotes „…“ ‚…‘, apostrophes
    (don’t, O’Brien, O´Brien), € and – and Czech, Polish and Ukrainian (transliterated) names stay readable."""
    names = ["Dušan Košťál O’Brien", "Józef Wróbel", "Taras Ševčenko", "BOŽIDAR ŽIŽEK", "Mikuláš Šťastný"]
    notes = ["„Zitat“ und ‚so‘", "don't – 5 €", "O´Brien…", "Baden–Württemberg", "Straße „Am Ring“"]
    frame = sample.municipalities.with_columns(pl.Series("contact_name", names), pl.Series("notes", notes))
    data = _csv(frame, sep=";").replace("\n", "\r\n").encode("cp1252", "replace")
    path = tmp_path / "m.csv"
    path.write_bytes(data)
    [parsed] = read_canonical(path, data)
    assert parsed.frame["notes"].to_list() == notes
    assert parsed.frame["contact_name"].to_list() == [n.encode("cp1252", "replace").decode("cp1252") for n in names]
    # The German letters of the refused files above, written by Windows-1252 itself, read too.
    data = _csv(_municipalities_with_german_names(sample), sep=";").encode("cp1252")
    path.write_bytes(data)
    [parsed] = read_canonical(path, data)
    assert parsed.frame["contact_name"].to_list() == _GERMAN_CONTACTS


def test_a_header_of_another_survey_lists_a_dozen_columns_and_counts_the_rest(sample, tmp_path: Path) -> None:
    frame = sample.municipalities.rename({c: f"frage_{i}" for i, c in enumerate(sample.municipalities.columns) if c not in ("municipality_id", "capacity_persons")})
    path = tmp_path / "m.csv"
    path.write_text(_csv(frame))
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    unexpected = str(error.value).split("unexpected columns ")[1].split(";")[0]
    assert unexpected.startswith("frage_") and unexpected.count(",") == 11
    assert unexpected.endswith(f" and {frame.width - 2 - 12} more")


@pytest.mark.parametrize(
    ("header", "lacks"),
    [("round,household_ref,municipality_id,decision,reason", "round_id"), ("round_id,household_ref,municipality_id,answer", "decision")],
)
def test_a_decisions_file_with_a_misspelt_key_is_named_nearest_to_decisions(tmp_path: Path, header: str, lacks: str) -> None:
    """A coordinator's decisions file with `round` for `round_id` was said to be nearest to a households template
    lacking `consent_processing`: one identifying column of each, and the tie went to households."""
    path = tmp_path / "decisions.csv"
    path.write_text(header + "\n" + ",".join(["x"] * len(header.split(","))) + "\n")
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    assert f"nearest: decisions (no column {lacks})" in str(error.value)


def test_german_decision_headings_are_read_in_a_decisions_file_only_and_two_for_one_column_stop_it(tmp_path: Path) -> None:
    """Contract D's German headings (docs/formats.md) name our columns in a decisions file; a municipalities file keeps
    a `Gemeinde` column as written; `Gemeinde` beside `AGS` names one column twice, and the file says which."""
    path = tmp_path / "entscheidungen.csv"
    path.write_text(" runde ;HAUSHALTS-NR.;Kommune;Entscheidung;Grund\nr1;RM-1;09162;Zusage;Familie\n", encoding="utf-8")
    (table,) = read_canonical(path, path.read_bytes())
    assert table.table == "decisions" and table.frame.row(0, named=True) == {
        "round_id": "r1", "household_ref": "RM-1", "household_pseudonym": None, "municipality_id": "09162",
        "decision": "Zusage", "reason": "Familie", "file_row": 2,  # codes are read at ingestion (code_spelled)
    }
    path.write_text("Runde;Haushalt;Gemeinde;AGS;Entscheidung\nr1;RM-1;x;09162;Zusage\n", encoding="utf-8")
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    assert str(error.value).endswith(
        "header: duplicated columns municipality_id (in German, AGS, Kommune, Gemeinde all name municipality_id: keep one)")
    path.write_text("municipality_id,Gemeinde\n09162,x\n", encoding="utf-8")
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    assert str(error.value).endswith("nearest: municipalities (no column capacity_persons)")


def _merged_template(path: Path, sheets: list[tuple[str, pl.DataFrame]], merges: dict[str, list[tuple[int, int, int, int]]]) -> None:
    """A template workbook with some cells merged as Excel saves them: the value in the range's first cell, the
    others blank (xlsxwriter's merge_range). merges: by sheet, (first row, first column, last row, last column) from 0."""
    with xlsxwriter.Workbook(path) as book:
        for name, frame in sheets:
            sheet = book.add_worksheet(name)
            sheet.write_row(0, 0, frame.columns)
            rows = [list(row) for row in frame.iter_rows()]
            covered = {(r, c) for r0, c0, r1, c1 in merges.get(name, []) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
            for r, row in enumerate(rows, start=1):
                for c, value in enumerate(row):
                    if (r, c) not in covered:
                        sheet.write_string(r, c, value or "")
            for r0, c0, r1, c1 in merges.get(name, []):
                sheet.merge_range(r0, c0, r1, c1, rows[r0 - 1][c0] or "")


@pytest.mark.parametrize("reader", ["calamine", "openpyxl"])
def test_cells_merged_down_a_column_give_each_row_their_value(sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    # A coordinator merges a household's id over its members' rows, or one intake period over every offer: the
    # spreadsheet shows the value on each row but saves it in the first cell only. Before, every other row was
    # quarantined as `required`.
    monkeypatch.setenv("REMATCH_XLSX_READER", reader)
    members = sample.members.sort("submission_id", maintain_order=True)
    ids = members["submission_id"].to_list()
    column = members.columns.index("submission_id")
    runs = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or ids[i] != ids[start]:
            if i - start > 1:
                runs.append((start + 1, column, i, column))
            start = i
    assert runs
    path = tmp_path / "h.xlsx"
    _merged_template(path, [("households", sample.households), ("members", members)], {"members": runs})
    households, read = read_canonical(path, path.read_bytes())
    assert read.frame["submission_id"].to_list() == ids
    assert read.frame["file_row"].to_list() == list(range(2, len(ids) + 2))

    period = sample.municipalities.columns.index("intake_period")
    path = tmp_path / "m.xlsx"
    _merged_template(path, [("municipalities", sample.municipalities)], {"municipalities": [(1, period, sample.municipalities.height, period)]})
    [offers] = read_canonical(path, path.read_bytes())
    assert offers.frame["intake_period"].to_list() == sample.municipalities["intake_period"].to_list()


def test_cells_merged_across_columns_stop_the_file_naming_the_range(sample, tmp_path: Path) -> None:
    # The value of a range over two columns is saved in the first one: which column it was meant for is not known.
    frame = sample.municipalities.with_columns(pl.lit(SECRET_VALUE).alias("municipality_name"))
    name = frame.columns.index("municipality_name")
    path = tmp_path / "m.xlsx"
    _merged_template(path, [("municipalities", frame)], {"municipalities": [(2, name, 2, name + 1)]})
    with pytest.raises(InputFileError) as error:
        read_canonical(path, path.read_bytes())
    message = str(error.value)
    assert "[sheet municipalities], row 3, column municipality_name: xlsx: cells merged across columns (D3:E3)" in message
    assert SECRET_VALUE not in message


def test_codes_typed_in_another_case_are_stored_as_the_code_list_spells_them() -> None:
    """`Accept`, `b1`, `Uk RU`, `de-by`: typed or tidied in a spreadsheet, each is one code only. Before, each was
    withheld at ingestion and quarantined as `code list: …`; a word not on the list still is."""
    from rematch_pipeline.schemas.parsing import WITHHELD, withhold_unshaped

    members = withhold_unshaped("members", pl.DataFrame({"german_level": ["b1", "None", "C2"], "languages": ["Uk  RU", "de", "uk xx"]}))
    assert members.to_dicts() == [
        {"german_level": "B1", "languages": "uk ru"},
        {"german_level": "none", "languages": "de"},
        {"german_level": WITHHELD, "languages": WITHHELD},
    ]
    decisions = withhold_unshaped("decisions", pl.DataFrame({"decision": [" ACCEPT ", "maybe"], "reason": ["Family", None]}))
    assert decisions.to_dicts() == [{"decision": "accept", "reason": "family"}, {"decision": WITHHELD, "reason": None}]
    assert withhold_unshaped("municipalities", pl.DataFrame({"state": ["de-by"]}))["state"].to_list() == ["DE-BY"]


def test_no_code_list_holds_two_codes_that_differ_by_case_only() -> None:
    """Reading codes in any case (code_spelled) is certain only while no list has two such codes: a code added
    to the contract later (`de` beside `DE`) must change that reading first."""
    for table, fields in TABLES.items():
        for field in fields:
            lowered = [code.lower() for code in field.codes]
            assert len(lowered) == len(set(lowered)), f"{table}.{field.name}"


def test_a_csv_opened_in_excel_by_double_click_with_columns_added_says_so(tmp_path: Path) -> None:
    """proposals.csv opened by double-click in a German Excel: each comma-separated line sits in one cell, and the
    columns the coordinator added beside it are saved with `;`. Before, the file was refused as `not a … template;
    nearest: households (no column consent_processing)`, sending the coordinator to the wrong table."""
    text = "household_ref,municipality_id,persons,score,locked;round_id;decision\r\nRM-202607-126062,05513,1,80.0000,no;r1;accept\r\n"
    path = tmp_path / "decisions-r1.csv"
    path.write_bytes(text.encode("cp1252"))
    with pytest.raises(InputFileError) as raised:
        read_canonical(path, path.read_bytes())
    message = str(raised.value)
    assert "row 1: header: separators mixed (',' and ';'): the file was opened in Excel by double-click" in message
    assert "RM-202607" not in message


def test_one_submission_id_on_rows_with_different_answers_is_said_once_per_file(sample, tmp_path: Path) -> None:
    """Validation uses one copy of a submission id (the latest submitted_at, then the lowest row); copies that
    differ are said once per file, naming the count, the rows and the rule, never a value. A row pasted twice
    unchanged stays silent."""
    from rematch_pipeline.formats.canonical import read_anyway_lines
    from rematch_pipeline.formats.detect import read_export

    households = sample.households
    first, second, third = (households.slice(i, 1) for i in range(3))
    changed = first.with_columns(pl.lit(SECRET_VALUE).alias("contact_name"))
    path = tmp_path / "households.csv"
    identical = pl.concat([households, second])  # row 2 of the data again, unchanged, as data row N+1
    assert read_anyway_lines(path.name, read_export(path, _csv(identical).encode())) == []

    differing = pl.concat([households, changed, third.with_columns(pl.lit("yes").alias("pets")), changed])
    lines = read_anyway_lines(path.name, read_export(path, _csv(differing).encode()))
    n = households.height
    assert lines == [
        f"households.csv: 2 submission ids (column submission_id, rows 2, {n + 2}, {n + 4}; 4, {n + 3}) listed more than"
        " once in the file with different answers; one submission id is one submission (contract), so one copy is used:"
        " the one with the latest submitted_at, of copies submitted in the same minute (or without a readable time) the"
        " one lowest in the file; keep one row per submission_id"
    ]
    assert SECRET_VALUE not in lines[0]


@pytest.mark.parametrize("sep", [";", ",", "\t"])
def test_excel_separator_line_is_read_past_and_rows_keep_their_numbers_in_the_file(sample, sep: str, tmp_path: Path) -> None:
    """`sep=;` above the header was refused ("delete that line"). It is read past with the separator it names and said
    once; every row keeps its own record number in the file (the sep line is row 1, the header row 2, data row 3 is
    row 5), in what is read and in the errors."""
    from rematch_pipeline.formats.canonical import read_anyway_lines
    from rematch_pipeline.formats.detect import read_export
    from rematch_pipeline.formats.limits import EXCEL_SEPARATOR_READ

    path = tmp_path / "m.csv"
    text = f"sep={sep}\r\n" + _csv(sample.municipalities, sep=sep).replace("\n", "\r\n")
    tables = read_export(path, text.encode("cp1252"))
    [parsed] = tables
    assert parsed.frame.drop("file_row").equals(read_export(path, _csv(sample.municipalities).encode())[0].frame.drop("file_row"))
    assert parsed.frame["file_row"].to_list() == list(range(3, sample.municipalities.height + 3))
    assert read_anyway_lines(path.name, tables) == [f"m.csv: {EXCEL_SEPARATOR_READ}"]

    lines = text.split("\r\n")
    short = lines[:4] + [sep.join(lines[4].split(sep)[:-2])] + lines[5:]  # data row 3 loses two cells
    with pytest.raises(InputFileError, match=r"m.csv, row 5: csv: row has"):
        read_export(path, "\r\n".join(short).encode())
    renamed = [lines[0], lines[1].replace("kita_places", "kita_plaetze"), *lines[2:]]
    with pytest.raises(InputFileError, match=r"m.csv, row 2: header: missing columns kita_places"):
        read_export(path, "\r\n".join(renamed).encode())


def _marked(frame: pl.DataFrame, marks: dict[str, dict[int, str]]) -> pl.DataFrame:
    """The frame with cells replaced: column -> {row index -> text}."""
    return frame.with_columns(
        pl.Series(column, [cells.get(i, v) for i, v in enumerate(frame[column].cast(pl.Utf8).to_list())], dtype=pl.Utf8)
        for column, cells in marks.items()
    )


def _quarantined(path: Path, data: bytes) -> list[tuple[int, str, str]]:
    """(file row, column, rule) of what validation quarantines of the file's one table, as ingestion stores it."""
    [parsed] = read_export(path, data)
    raw, _ = split_identity(parsed, b"k" * 32, "0" * 64, path.name)
    _, quarantine = check_rows(parsed.table, raw)
    return sorted(quarantine.select("file_row", "column", "rule").iter_rows())


def test_a_no_answer_mark_in_an_optional_template_field_is_read_as_empty_and_said(sample, tmp_path: Path) -> None:
    """Exploratory testing (thirty-ninth session): `-`, `n/a`, `k.A.` written by hand into an optional field of a
    template quarantined the row (`type: AGS …`, `code list …`) and held the household out. Now read as empty, one
    warning per column naming its rows, never the value; in a required field the row fails as `required`."""
    households = _marked(sample.households, {
        "family_ties_municipality_id": {0: "-", 2: " k. A. "},
        "linked_household_refs": {1: "n/a"},
        "preferred_municipality_ids": {3: "Keine  Angabe"},
        "contact_phone": {4: "–"},
    })
    path = tmp_path / "households.csv"
    data = _csv(households).encode()
    [parsed] = read_export(path, data)
    assert parsed.frame["family_ties_municipality_id"][0] is None and parsed.frame["family_ties_municipality_id"][2] is None
    assert parsed.frame["linked_household_refs"][1] is None and parsed.frame["preferred_municipality_ids"][3] is None
    assert parsed.frame["contact_phone"][4] is None
    assert parsed.warnings == (
        f"1 row (column contact_phone, row 6) {NO_ANSWER_READ}",
        f"1 row (column linked_household_refs, row 3) {NO_ANSWER_READ}",
        f"2 rows (column family_ties_municipality_id, rows 2, 4) {NO_ANSWER_READ}",
        f"1 row (column preferred_municipality_ids, row 5) {NO_ANSWER_READ}",
    )
    assert _quarantined(path, data) == []
    # Members: an optional multi-select read as empty; a required yes/no and code list fail as `required`, unwarned.
    members = _marked(sample.members, {"medical_needs": {0: "k.A."}, "wheelchair": {1: "-"}, "languages": {2: "n/a"}})
    path = tmp_path / "members.xlsx"
    members.write_excel(path)
    [parsed] = read_export(path, path.read_bytes())
    assert parsed.warnings == (f"1 row (column medical_needs, row 2) {NO_ANSWER_READ}",)
    assert _quarantined(path, path.read_bytes()) == [
        (3, "wheelchair", "required: a value is needed"), (4, "languages", "required: at least one code"),
    ]
    # A required free-text field keeps what is written; a mark inside other text is text.
    households = _marked(sample.households, {"contact_name": {0: "-"}, "current_address": {1: "Weg 1 - k.A."}})
    [parsed] = read_export(tmp_path / "h2.csv", _csv(households).encode())
    assert parsed.frame["contact_name"][0] == "-" and parsed.frame["current_address"][1] == "Weg 1 - k.A."
    assert parsed.warnings == ()


def test_no_no_answer_mark_is_a_value_any_template_field_accepts() -> None:
    """The marks read as empty (NO_ANSWER_MARKS) are none of the contract's codes, their aliases, yes/no words,
    numbers or dates: no answer given is ever read as nothing."""
    words = {w.lower() for fields in TABLES.values() for f in fields for w in (*f.codes, *(a for a, _ in f.aliases))}
    assert not NO_ANSWER_MARKS & (words | TRUE_WORDS | FALSE_WORDS)
    assert not any(any(c.isdigit() for c in mark) for mark in NO_ANSWER_MARKS)

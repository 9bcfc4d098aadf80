"""Size, row and zip-bomb limits: checked before parsing, overridable by environment variables."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from rematch_pipeline.formats import limits
from rematch_pipeline.formats.canonical import read_anyway_lines
from rematch_pipeline.formats.detect import read_export
from rematch_pipeline.formats.errors import InputFileError
from rematch_pipeline.formats.tool_exports import csv_zip
from rematch_pipeline.schemas.contract import field_names
from tests.formats.fixtures.exports import HERE, SECRET, kobo_kpi_households_xlsx

LEGACY_CSV = HERE / "kobo_legacy_households.csv"


def _error(path: Path, data: bytes) -> str:
    with pytest.raises(InputFileError) as error:
        read_export(path, data)
    message = str(error.value)
    assert SECRET not in message
    return message


def test_file_above_the_size_limit_is_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMATCH_MAX_FILE_MB", "0.001")  # about 1 kB
    data = LEGACY_CSV.read_bytes()
    assert len(data) > 1100
    message = _error(tmp_path / "big.csv", data)
    assert message == "big.csv: limit: file larger than 0.001 MB"
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    with pytest.raises(InputFileError, match="limit: file larger than"):
        limits.check_path_size(path)


def test_default_limits_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REMATCH_MAX_FILE_MB", "REMATCH_MAX_ROWS"):
        monkeypatch.delenv(name, raising=False)
    assert limits.max_file_bytes() == 200 * 1024 * 1024
    assert limits.max_rows() == 1_000_000


def test_a_broken_limit_setting_is_loud(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMATCH_MAX_ROWS", "many")
    with pytest.raises(ValueError, match="REMATCH_MAX_ROWS must be a positive number"):
        limits.max_rows()


def _with_member(xlsx: Path, name: str, payload: bytes) -> bytes:
    """The workbook's zip with one more member, deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(xlsx) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr(name, payload, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return out.getvalue()


def test_zip_bomb_member_is_refused_from_the_zip_directory(tmp_path: Path) -> None:
    xlsx = kobo_kpi_households_xlsx(tmp_path / "h.xlsx")
    data = _with_member(xlsx, "xl/media/image1.png", bytes(50 * 1024 * 1024))  # 50 MB of zeros
    assert len(data) < 200_000  # the whole "bomb" is tiny on disk
    message = _error(tmp_path / "h.xlsx", data)
    assert message == "h.xlsx: xlsx: decompression ratio above 200:1 in member xl/media/image1.png (zip bomb?)"


def test_total_uncompressed_size_and_member_count_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xlsx = kobo_kpi_households_xlsx(tmp_path / "h.xlsx")
    data = xlsx.read_bytes()
    monkeypatch.setenv("REMATCH_MAX_XLSX_MB", "0.01")
    assert "xlsx: uncompressed size above 0.01 MB (zip bomb?)" in _error(xlsx, data)
    monkeypatch.delenv("REMATCH_MAX_XLSX_MB")
    monkeypatch.setenv("REMATCH_MAX_XLSX_MEMBERS", "3")
    assert "xlsx: more than 3 zip members" in _error(xlsx, data)


def test_row_limit_for_csv_names_the_first_row_over_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMATCH_MAX_ROWS", "1")
    message = _error(tmp_path / "h.csv", LEGACY_CSV.read_bytes())
    assert message == "h.csv, row 3: limit: more than 1 data rows"
    monkeypatch.setenv("REMATCH_MAX_ROWS", "2")
    assert len(read_export(tmp_path / "h.csv", LEGACY_CSV.read_bytes())) == 2


def test_row_limit_for_xlsx_is_checked_on_the_raw_sheets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xlsx = kobo_kpi_households_xlsx(tmp_path / "h.xlsx")  # members sheet: header + 3 rows
    monkeypatch.setenv("REMATCH_MAX_ROWS", "2")
    message = _error(xlsx, xlsx.read_bytes())
    assert message.startswith("h.xlsx: limit: more than 2 data rows in worksheet xl/worksheets/sheet2.xml")
    monkeypatch.setenv("REMATCH_MAX_ROWS", "3")
    assert len(read_export(xlsx, xlsx.read_bytes())) == 2


@pytest.mark.parametrize("prefix", ["", "x:"])
def test_worksheet_row_count_is_exact_across_read_chunks(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Over 1 MB of sheet XML, so row tags straddle the 1 MB read chunks.
    rows = 40_000
    cell = f'<{prefix}c t="inlineStr"><{prefix}is><{prefix}t>v</{prefix}t></{prefix}is></{prefix}c>'
    body = "".join(f'<{prefix}row r="{i}">{cell}</{prefix}row>' for i in range(1, rows + 1))
    sheet = f"<{prefix}worksheet><{prefix}sheetData>{body}</{prefix}sheetData></{prefix}worksheet>".encode()
    assert len(sheet) > 2 * (1 << 20)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
    monkeypatch.setenv("REMATCH_MAX_XLSX_RATIO", "100000")
    monkeypatch.setenv("REMATCH_MAX_ROWS", str(rows - 1))  # header + rows - 1 data rows: just fits
    limits.check_xlsx(out.getvalue(), "s.xlsx")
    monkeypatch.setenv("REMATCH_MAX_ROWS", str(rows - 2))
    with pytest.raises(InputFileError, match=f"more than {rows - 2} data rows"):
        limits.check_xlsx(out.getvalue(), "s.xlsx")


def test_not_a_zip_after_all(tmp_path: Path) -> None:
    assert _error(tmp_path / "x.xlsx", b"PK\x03\x04 truncated") == (
        "x.xlsx: xlsx: not a readable zip archive (truncated or damaged: download or copy the file again)"
    )


def test_a_cut_zip_of_csv_exports_is_not_called_a_workbook(tmp_path: Path) -> None:
    """National-scale play (h2): ODK Central's CSV zip cut short in transfer was refused as `xlsx: not a readable zip
    archive`; a zip's name says which container it was."""
    data = csv_zip({"rematch_household.csv": b"a,b\n1,2\n" * 200})
    assert _error(tmp_path / "hessen.csv.zip", data[: len(data) // 2]) == (
        "hessen.csv.zip: zip: not a readable zip archive (truncated or damaged: download or copy the file again)"
    )


def test_a_cut_or_garbled_export_and_an_empty_file_say_what_to_do(tmp_path: Path) -> None:
    """Exploratory testing: a Kobo export whose download stopped half way, one with a garbled sheet and a 0-byte
    file were refused as `not a readable zip archive`, `corrupt zip member …` and `empty file`, not saying that the
    file is damaged in transfer and should be fetched again."""
    data = kobo_kpi_households_xlsx(tmp_path / "kpi.xlsx").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheet = archive.getinfo("xl/worksheets/sheet1.xml")
    start = sheet.header_offset + 30 + len(sheet.filename) + len(sheet.extra)  # the member's compressed bytes
    garbled = data[:start] + bytes(b ^ 0x5A for b in data[start : start + 64]) + data[start + 64 :]
    assert _error(tmp_path / "x.xlsx", data[: len(data) // 2]).endswith("(truncated or damaged: download or copy the file again)")
    assert _error(tmp_path / "x.xlsx", garbled) == (
        "x.xlsx: xlsx: corrupt zip member xl/worksheets/sheet1.xml (truncated or damaged: download or copy the file again)"
    )
    assert _error(tmp_path / "haushalte.xlsx", b"").startswith("haushalte.xlsx: empty file (0 bytes: did the download or copy finish?")


def test_a_csv_ending_inside_its_last_row_is_read_and_said(tmp_path: Path) -> None:
    """Exploratory testing (a template cut off in transfer): a CSV whose cells are not quoted (a template, Central's
    and legacy Kobo's minimal quoting, any CSV Excel saved again) cut inside the last cell of its last row kept the
    row's full count of cells, so `05974 08337` in excluded_municipality_ids was read as `05974` without a word.
    Every export and spreadsheet ends its last row with a line break, but a file edited in Notepad may not: such a
    file is read, and a warning names the row (never a value); a row ending in a closing quote (no cell cut) is read
    without one, and so is an archived copy read as it landed."""
    header = field_names("households")
    row = {name: "" for name in header}
    row.update(submission_id="s-1", submitted_at="2026-07-10T08:00:00", household_ref=SECRET, consent_processing="yes",
               excluded_municipality_ids="05974 08337")
    assert header[-1] == "excluded_municipality_ids"  # the cut falls inside this cell
    text = ",".join(header) + "\r\n" + ",".join(row[name] for name in header) + "\r\n"
    whole = read_export(tmp_path / "households.csv", text.encode())
    assert whole[0].frame["excluded_municipality_ids"].to_list() == ["05974 08337"]
    assert whole[0].warnings == ()
    said = limits.unended_last_row_read(2)
    assert "row 2" in said and SECRET not in said
    cut = text.encode()[: -len(" 08337\r\n")]
    tables = read_export(tmp_path / "households.csv", cut)
    assert tables[0].frame["excluded_municipality_ids"].to_list() == ["05974"]
    assert said in tables[0].warnings
    assert f"households.csv: {said}" in read_anyway_lines("households.csv", tables)
    # Cut right after a separator, the last cell empty: a value may have been lost as well.
    assert said in read_export(tmp_path / "households.csv", text.encode()[: -len("05974 08337\r\n")])[0].warnings
    # A quoted last cell complete with its closing quote, and an archived copy read as it landed: no warning.
    quoted = text.replace("05974 08337", '"05974 08337"').rstrip("\r\n")
    assert read_export(tmp_path / "households.csv", quoted.encode())[0].warnings == ()
    assert read_export(tmp_path / "households.csv", cut, as_landed=True)[0].warnings == ()


@pytest.mark.parametrize("lead", [b"\r\n", b";;;;\r\n", b"\n\n"])
def test_a_csv_with_an_empty_line_above_its_header_is_refused_naming_that_line(tmp_path: Path, lead: bytes) -> None:
    """Exploratory testing (a file edited in a text editor, or an export pasted below an empty line): an empty line
    above the header was refused with each reader's guess, none naming it: a template "two header rows (merged title
    row?)" or "not a … template", a LimeSurvey export "malformed or truncated (unterminated quote?)". Now one rule
    naming row 1 and what to do."""
    from tests.formats.fixtures.exports import limesurvey_csv

    header = field_names("households")
    template = (",".join(header) + "\r\n" + ",".join(SECRET if n == "household_ref" else "" for n in header) + "\r\n").encode()
    bom = b"\xef\xbb\xbf"
    for name, data in (("households.csv", template), ("results-survey1.csv", limesurvey_csv())):
        body = data[len(bom):] if data.startswith(bom) else data
        with pytest.raises(InputFileError) as raised:
            read_export(tmp_path / name, (bom if data.startswith(bom) else b"") + lead + body)
        message = str(raised.value)
        assert message.startswith(f"{name}, row 1: csv: row 1 is empty; the header"), message
        assert SECRET not in message


def test_a_csv_with_an_empty_line_below_its_separator_line_is_refused_naming_that_line(tmp_path: Path) -> None:
    """Review of the session's diff: the empty-line rule looked at the file's first line only, so `sep=;` (Excel's
    separator line, which a user adds in a text editor) with an empty line below it was still refused with a
    reader's guess ("two header rows (merged title row?)", "not a … template"). Now the empty header line is named."""
    from tests.formats.fixtures.exports import limesurvey_csv

    header = field_names("households")
    template = (",".join(header) + "\r\n" + ",".join(SECRET if n == "household_ref" else "" for n in header) + "\r\n").encode()
    bom = b"\xef\xbb\xbf"
    for name, data, separator in (("households.csv", template, b","), ("results-survey1.csv", limesurvey_csv(), b";")):
        body = data[len(bom):] if data.startswith(bom) else data
        with pytest.raises(InputFileError) as raised:
            read_export(tmp_path / name, (bom if data.startswith(bom) else b"") + b"sep=" + separator + b"\r\n\r\n" + body)
        message = str(raised.value)
        assert message.startswith(f"{name}, row 2: csv: row 2 is empty; the header (the field names) must be the line right below its sep= line"), message
        assert SECRET not in message

"""Exports without some rows (erasure): the other rows read back unchanged, the dropped ones are gone from the bytes."""

from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from rematch_pipeline.formats.detect import read_export
from rematch_pipeline.formats.redact import Unlink, holds_cell, rows_holding, without_rows
from tests.formats.fixtures.exports import (
    HOUSEHOLDS,
    kobo_kpi_households_xlsx,
    kobo_legacy_households_csv,
    limesurvey_csv,
    odk_central_households,
    zipped,
)

FIRST = HOUSEHOLDS[0]
# Cells only the first household and its members carry (its ref is also a linked ref of the second).
MARKERS = (FIRST["contact_phone"], FIRST["contact_email"], FIRST["members"][0]["member_name"])


def _tables(path: Path, data: bytes) -> dict[str, list[dict]]:
    return {t.table: [{k: v for k, v in row.items() if k != "file_row"} for row in t.frame.to_dicts()] for t in read_export(path, data)}


def _first_submission(tables: dict[str, list[dict]]) -> str:
    return next(r["submission_id"] for r in tables["households"] if r["household_ref"] == FIRST["household_ref"])


def _rows_of(path: Path, data: bytes) -> dict[str | None, set[int]]:
    """Rows of the first household and its members, as the readers number them (what the raw tables keep)."""
    parsed = read_export(path, data)
    submission = _first_submission({t.table: t.frame.to_dicts() for t in parsed})
    rows: dict[str | None, set[int]] = {}
    for table in parsed:
        mine = table.frame.filter(table.frame["submission_id"] == submission)["file_row"].to_list()
        rows.setdefault(table.sheet, set()).update(mine)
    return rows


def _without_first(tables: dict[str, list[dict]]) -> dict[str, list[dict]]:
    submission = _first_submission(tables)
    return {name: [r for r in rows if r["submission_id"] != submission] for name, rows in tables.items()}


def test_a_limesurvey_csv_loses_one_record_and_keeps_every_other_byte() -> None:
    path, data = Path("responses.csv"), limesurvey_csv("households")
    rows = _rows_of(path, data)
    assert rows == {None: {2}}

    out = without_rows(data, rows, path.name)

    lines = data.split(b"\r\n")
    assert out == b"\r\n".join(lines[:1] + lines[2:]), "BOM, quoting, separator and line ends stay as exported"
    assert _tables(path, out) == _without_first(_tables(path, data))
    assert not any(m.encode() in out for m in MARKERS)


def test_a_quoted_line_break_stays_inside_its_record_in_a_windows_1252_csv() -> None:
    text = 'a,b\r\n1,"zwei\r\nZeilen"\r\n2,Gr\xfc\xdfe\r\n3,drei\r\n'
    data = text.encode("cp1252")

    assert without_rows(data, {None: {2}}, "w.csv") == 'a,b\r\n2,Gr\xfc\xdfe\r\n3,drei\r\n'.encode("cp1252")
    assert without_rows(data, {None: {3}}, "w.csv") == 'a,b\r\n1,"zwei\r\nZeilen"\r\n3,drei\r\n'.encode("cp1252")
    assert without_rows(data, {}, "w.csv") == data


def test_a_legacy_kobo_csv_loses_the_household_with_its_member_columns() -> None:
    path, data = Path("kobo.csv"), kobo_legacy_households_csv()
    out = without_rows(data, _rows_of(path, data), path.name)

    assert _tables(path, out) == _without_first(_tables(path, data))
    assert not any(m.encode() in out for m in MARKERS)


def test_a_kobo_xlsx_loses_the_household_row_and_its_member_rows(tmp_path: Path) -> None:
    path = kobo_kpi_households_xlsx(tmp_path / "kobo.xlsx")
    data = path.read_bytes()
    rows = _rows_of(path, data)
    assert sum(len(r) for r in rows.values()) == 1 + len(FIRST["members"])

    out = without_rows(data, rows, path.name)

    before, after = _tables(path, data), _tables(path, out)
    assert after == _without_first(before)
    assert len(after["members"]) == len(before["members"]) - len(FIRST["members"]) > 0, "the others' members still join"
    assert not any(m.encode() in _inflated(out) for m in MARKERS)


def test_a_rejected_export_is_searched_for_whole_cells_of_a_reference(tmp_path: Path) -> None:
    ref = FIRST["household_ref"]
    xlsx = kobo_kpi_households_xlsx(tmp_path / "kobo.xlsx").read_bytes()
    assert holds_cell(xlsx, [ref], "kobo.xlsx") is True
    assert holds_cell(xlsx, [ref + "9"], "kobo.xlsx") is False
    # Malformed CSVs are searched too (no records are read), in either encoding and any separator.
    assert holds_cell(f'a;b\r\n"{ref}";"unterminated\r\n'.encode("cp1252"), [ref], "x.csv") is True
    assert holds_cell(f"a\tb\nx{ref}\t{ref}x\t{ref}-2\t{ref}_2\n".encode(), [ref], "x.csv") is False
    # A file refused for mixing encodings is still inspected, in both spellings of its umlauts.
    mixed = "a;b\n".encode() + "Jürgen;1\n".encode("cp1252") + f"Müller;{ref}\n".encode()
    assert holds_cell(mixed, [ref], "mixed.csv") is True and holds_cell(mixed, ["Müller"], "mixed.csv") is True
    assert holds_cell(mixed, ["Jürgen"], "mixed.csv") is True
    assert holds_cell(b"a,b\r\n\x81\x8d,x\r\n", [ref], "x.csv") is None  # neither UTF-8 nor Windows-1252
    # Whole tokens: inside a partner's link list, after Central's uuid: prefix; any of several values.
    assert holds_cell(f'ref;links\r\nUA-9;"UA-7 {ref}"\r\n'.encode(), [ref], "x.csv") is True
    sid = FIRST["submission_id"]
    assert holds_cell(f"name,PARENT_KEY\nA,uuid:{sid}\n".encode(), ["UA-0", sid], "m.csv") is True
    assert holds_cell(f"name,PARENT_KEY\nA,uuid:{sid}\n".encode(), ["UA-0", sid[:-1]], "m.csv") is False
    assert holds_cell(xlsx, ["nobody", sid], "kobo.xlsx") is True
    # A zip bomb is not inflated to be searched.
    bomb = BytesIO()
    with zipfile.ZipFile(BytesIO(xlsx)) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("xl/media/image1.png", bytes(50 * 1024 * 1024), compresslevel=9)
    assert holds_cell(bomb.getvalue(), [ref], "bomb.xlsx") is None


def _linking(path: Path, data: bytes) -> dict[str | None, set[int]]:
    """Rows of the households that name the first one as linked."""
    rows: dict[str | None, set[int]] = {}
    for table in read_export(path, data):
        if table.table == "households":
            named = table.frame.filter(table.frame["linked_household_refs"].str.contains(FIRST["household_ref"], literal=True))
            rows.setdefault(table.sheet, set()).update(named["file_row"].to_list())
    return rows


def _inflated(data: bytes) -> bytes:
    """A CSV as it is, an XLSX's members inflated."""
    if not data.startswith(b"PK"):
        return data
    with zipfile.ZipFile(BytesIO(data)) as book:
        return b"".join(book.read(name) for name in book.namelist())


def _unlinked(tables: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """What erasing the first household should leave: its rows gone, its reference out of the others' links."""
    out = {name: [dict(row) for row in rows] for name, rows in _without_first(tables).items()}
    for row in out["households"]:
        links = [ref for ref in (row["linked_household_refs"] or "").split() if ref != FIRST["household_ref"]]
        row["linked_household_refs"] = " ".join(links) or None
    return out


def test_the_partner_of_an_erased_household_loses_the_linked_reference_in_csv_and_xlsx(tmp_path: Path) -> None:
    ref = FIRST["household_ref"]
    csv_path, csv_data = Path("responses.csv"), limesurvey_csv("households")
    xlsx_path = kobo_kpi_households_xlsx(tmp_path / "kobo.xlsx")
    for path, data in ((csv_path, csv_data), (xlsx_path, xlsx_path.read_bytes())):
        linking = _linking(path, data)
        assert sum(len(r) for r in linking.values()) == 1 and ref.encode() in _inflated(data)

        out = without_rows(data, _rows_of(path, data), path.name, Unlink(frozenset({ref}), linking))

        before = _tables(path, data)
        assert _tables(path, out) == _unlinked(before) != _without_first(before), path.name
        assert ref.encode() not in _inflated(out), path.name
    # The CSV's other records keep their bytes; the edited one keeps its separator, quoting and line end.
    lines = csv_data.split(b"\r\n")
    out_lines = without_rows(csv_data, {}, "responses.csv", Unlink(frozenset({ref}), _linking(csv_path, csv_data))).split(b"\r\n")
    changed = [(a, b) for a, b in zip(lines, out_lines) if a != b]
    assert len(out_lines) == len(lines) and len(changed) == 1
    assert changed[0][1] == changed[0][0].replace(f'"{ref}"'.encode(), b'""')


def test_unlink_takes_out_whole_values_only() -> None:
    unlink = Unlink(frozenset({"UA-1"}), {None: {2, 3}})
    data = 'ref;links\r\nUA-2;"UA-1  UA-3"\r\nUA-3;UA-10 UA-1\r\nUA-4;UA-1\r\n'.encode()
    assert without_rows(data, {}, "x.csv", unlink) == b"ref;links\r\nUA-2;UA-3\r\nUA-3;UA-10\r\nUA-4;UA-1\r\n"
    assert unlink.cell("UA-1") == "" and unlink.cell("UA-11 UA-2") == "UA-11 UA-2"


def test_an_odk_central_zip_loses_the_household_and_its_member_rows_and_unlinks_its_partner() -> None:
    ref = FIRST["household_ref"]
    files = odk_central_households()
    path, data = Path("submissions.csv.zip"), zipped(files, {"media/photo.jpg": b"\xff\xd8 not read"})
    rows = _rows_of(path, data)
    assert rows == {"rematch_household.csv": {2}, "rematch_household-members.csv": {2, 3}}

    out = without_rows(data, rows, path.name, Unlink(frozenset({ref}), _linking(path, data)))

    before = _tables(path, data)
    assert _tables(path, out) == _unlinked(before) != _without_first(before)
    assert not any(m.encode() in _inflated(out) for m in MARKERS) and ref.encode() not in _inflated(out)
    with zipfile.ZipFile(BytesIO(data)) as old, zipfile.ZipFile(BytesIO(out)) as new:
        assert [(i.filename, i.compress_type, i.date_time) for i in old.infolist()] == [
            (i.filename, i.compress_type, i.date_time) for i in new.infolist()
        ]
        assert new.read("media/photo.jpg") == old.read("media/photo.jpg")
        # Central's LF records without quotes: the other records keep their bytes.
        kept = old.read("rematch_household-members.csv").split(b"\n")
        assert new.read("rematch_household-members.csv").split(b"\n") == kept[:1] + kept[3:]
    assert holds_cell(data, [ref], path.name) is True and holds_cell(out, [ref], path.name) is False


def test_a_workbook_with_formulas_keeps_their_saved_results(tmp_path: Path) -> None:
    """Exploratory testing: erasure rewrote a workbook whose cells hold formulas with their results (as Excel saves
    them) with openpyxl, which keeps the formulas and drops the results: the archived copy then read those cells as
    empty, and a second erasure from it stopped (`formula without a saved value`). The rewrite keeps the results."""
    import re

    path = kobo_kpi_households_xlsx(tmp_path / "kobo.xlsx")
    data = path.read_bytes()
    with zipfile.ZipFile(BytesIO(data)) as source:
        sheet = source.read("xl/worksheets/sheet1.xml")
    # The last household's first text cell as a formula whose saved result is that text (what Excel writes).
    last_row = max(int(n) for n in re.findall(rb'<row r="(\d+)"', sheet))
    cell = re.search(rb'<c r="([A-Z]+' + str(last_row).encode() + rb')" t="inlineStr"><is><t>([^<]*)</t></is></c>', sheet)
    assert cell is not None
    formula = b'<c r="' + cell.group(1) + b'" t="str"><f>TRIM("' + cell.group(2) + b'")</f><v>' + cell.group(2) + b"</v></c>"
    out = BytesIO()
    with zipfile.ZipFile(BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "xl/workbook.xml":  # Excel resets xlsxwriter's mark to recalculate when opened
                content = content.replace(b' fullCalcOnLoad="1"', b"")
            target.writestr(info, content.replace(cell.group(0), formula) if info.filename == "xl/worksheets/sheet1.xml" else content)
    with_formula = out.getvalue()
    before = _tables(path, with_formula)
    assert before == _tables(path, data)  # the formula's result is read

    erased = without_rows(with_formula, _rows_of(path, with_formula), path.name)

    assert _tables(path, erased) == _without_first(before)


def test_a_kobo_answer_written_as_a_formula_stays_as_typed_in_the_rewrite(tmp_path: Path, monkeypatch) -> None:
    """KPI's XLSX export writes a text answer starting with = as a formula saved as 0 (xlsxwriter), and such a cell
    is read as typed (`=` and the formula: quarantined by the formula rule). openpyxl's rewrite kept the saved 0, so
    the archived copy of the other households read `0` there (a member restored from it would pass validation).
    The rewrite keeps the answer as a text cell: both readers read it as typed, before and after."""
    from rematch_pipeline.formats.workbook import ENV_XLSX_READER

    rows = [dict(h) for h in HOUSEHOLDS]
    rows[1]["current_address"] = "=5 people & <kids>"
    rows[1]["members"] = [{**rows[1]["members"][0], "member_name": "=)"}, *rows[1]["members"][1:]]
    path = kobo_kpi_households_xlsx(tmp_path / "kobo.xlsx", rows)
    data = path.read_bytes()
    assert b"<f>5 people &amp; &lt;kids&gt;</f><v>0</v>" in _inflated(data) and b"<f>)</f><v>0</v>" in _inflated(data)
    before = _tables(path, data)
    second = next(r for r in before["households"] if r["household_ref"] == rows[1]["household_ref"])
    assert second["current_address"] == "=5 people & <kids>" and "=)" in [m["member_name"] for m in before["members"]]

    erased = without_rows(data, _rows_of(path, data), path.name)

    with zipfile.ZipFile(BytesIO(erased)) as book:
        sheets = b"".join(book.read(n) for n in book.namelist() if n.startswith("xl/worksheets/"))
    assert b"<f>" not in sheets and b"=5 people &amp; &lt;kids&gt;" in sheets  # the answers are text cells now
    for reader in ("calamine", "openpyxl"):
        monkeypatch.setenv(ENV_XLSX_READER, reader)
        assert _tables(path, erased) == _without_first(before), reader
        archived = {t.table: [{k: v for k, v in r.items() if k != "file_row"} for r in t.frame.to_dicts()] for t in read_export(path, erased, as_landed=True)}
        assert archived == _without_first(before), reader


def test_a_csv_under_excels_separator_line_loses_the_household_and_keeps_that_line() -> None:
    """A file with `sep=;` (or `sep=,`) above its header: the readers number its rows from that line (header = row 2),
    as the rewriting counts records, so the household's own lines go and the copy keeps `sep=` and still reads."""
    for path, data, line in (
        (Path("responses.csv"), limesurvey_csv("households"), b"sep=;\r\n"),
        (Path("legacy.csv"), kobo_legacy_households_csv(), b"sep=,\n"),
    ):
        bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
        marked = bom + line + data[len(bom):]
        rows = _rows_of(path, marked)
        assert rows == {None: {n + 1 for n in _rows_of(path, data)[None]}}

        out = without_rows(marked, rows, path.name)

        assert out == bom + line + without_rows(data, _rows_of(path, data), path.name)[len(bom):]
        assert _tables(path, out) == _without_first(_tables(path, marked))
        assert not any(m.encode() in out for m in MARKERS)


def test_the_rows_holding_a_submission_id_are_numbered_as_the_readers_number_them(tmp_path: Path) -> None:
    """rows_holding (what ingestion takes out of a refused export after an erasure) finds the first household's row
    and its members' rows by its submission id, in a Kobo workbook (`_uuid`, `_submission__uuid`), an ODK Central zip
    (`uuid:` prefixes, the repeat's KEY) and a canonical-like CSV, under the numbers without_rows deletes by."""
    kobo = kobo_kpi_households_xlsx(tmp_path / "kobo.xlsx")
    central = (Path("submissions.csv.zip"), zipped(odk_central_households(), {}))
    legacy = (Path("legacy.csv"), kobo_legacy_households_csv())
    for path, data in [(kobo, kobo.read_bytes()), central, legacy]:
        expected = {sheet: rows for sheet, rows in _rows_of(path, data).items() if rows}
        submission = _first_submission(_tables(path, data))
        assert rows_holding(data, path.name, lambda value: value == submission) == expected, path.name
        assert rows_holding(data, path.name, lambda value: False) == {}


def test_the_rows_holding_a_submission_id_in_a_workbook_are_found_streaming(tmp_path: Path, monkeypatch) -> None:
    """rows_holding reads a workbook as the readers do (calamine, else openpyxl read-only), never with openpyxl's
    full load (2.3 GiB for a 50,000-household Kobo export, for every refused workbook after an erasure), and finds
    the same rows under both readers."""
    import openpyxl

    def full_load(*args, **kwargs):
        raise AssertionError("the workbook was loaded in full")

    kobo = kobo_kpi_households_xlsx(tmp_path / "kobo.xlsx")
    data = kobo.read_bytes()
    expected = {sheet: rows for sheet, rows in _rows_of(kobo, data).items() if rows}
    submission = _first_submission(_tables(kobo, data))
    monkeypatch.setattr(openpyxl, "load_workbook", full_load)
    for reader in ("calamine", "openpyxl"):
        monkeypatch.setenv("REMATCH_XLSX_READER", reader)
        assert rows_holding(data, kobo.name, lambda value: value == submission) == expected, reader


def _no_full_load(monkeypatch) -> None:
    """Make openpyxl's full load (3.07 GiB and 208 s for a 50,000-household Kobo export) fail the test."""
    import openpyxl

    def full_load(*args, **kwargs):
        raise AssertionError("the workbook was loaded in full")

    monkeypatch.setattr(openpyxl, "load_workbook", full_load)


def _template_workbook(folder: Path) -> Path:
    """A canonical template workbook (`rematch sample --format xlsx`: households and members sheets, every cell text)."""
    from rematch_pipeline.sample import generate_round, write_round

    return next(p for p in write_round(generate_round(6, 3, seed=5), folder, "xlsx") if p.name.startswith("households"))


@pytest.mark.parametrize("kind", ["kobo", "template"])
def test_a_workbook_is_rewritten_streaming_and_reads_back_without_the_households_lines(tmp_path: Path, monkeypatch, kind: str) -> None:
    """Erasure (and ingestion after one, for a refused workbook) rewrote a workbook by loading it in full: 3.07 GiB and
    208 s on a 50,000-household Kobo export. It now reads the rows as the readers do and writes them in constant
    memory; under both readers the copy reads as the file did, without the first household's lines, and none of the
    values only those lines held is left in the workbook's XML."""
    from rematch_pipeline.formats.workbook import ENV_XLSX_READER

    path = kobo_kpi_households_xlsx(tmp_path / "kobo.xlsx") if kind == "kobo" else _template_workbook(tmp_path)
    data = path.read_bytes()
    before = _tables(path, data)
    submission = _first_submission(before) if kind == "kobo" else before["households"][0]["submission_id"]
    parsed = read_export(path, data)
    rows = {t.sheet: set(t.frame.filter(t.frame["submission_id"] == submission)["file_row"].to_list()) for t in parsed}
    assert len(rows) == 2 and all(rows.values())
    gone = {v for t in before.values() for r in t if r["submission_id"] == submission for v in r.values() if isinstance(v, str) and len(v) > 5}
    kept = {v for t in before.values() for r in t if r["submission_id"] != submission for v in r.values() if isinstance(v, str)}
    # As whole cell texts (a value may also be part of a header, such as an option's column `…/school`).
    markers = [b">" + escape(m).encode() + b"<" for m in sorted(gone - kept)]
    assert len([m for m in markers if m in _inflated(data)]) >= 3

    _no_full_load(monkeypatch)
    for reader in ("calamine", "openpyxl"):
        monkeypatch.setenv(ENV_XLSX_READER, reader)
        out = without_rows(data, rows, path.name)
        expected = {name: [r for r in table if r["submission_id"] != submission] for name, table in before.items()}
        assert _tables(path, out) == expected, reader
        assert all(expected.values())
        inflated = _inflated(out)
        assert not [m for m in markers if m in inflated], reader


def test_a_rewritten_workbook_keeps_every_other_cell_as_the_readers_read_it(tmp_path: Path, monkeypatch) -> None:
    """Cell for cell, under both readers: text (leading zeros, spaces, `=`-text), numbers written by other programs
    to 17 digits (openpyxl's writer keeps 16: 0.30000000000000004 read back as 0.3, an integer of 17 digits as a
    float), dates, times, durations, booleans; a one-column merged range filled down, a range across columns and the
    hidden rows moved up past the deleted rows, hidden columns kept, and the second sheet untouched (hidden still)."""
    import datetime as dt
    import re

    import xlsxwriter

    from rematch_pipeline.formats.workbook import ENV_XLSX_READER, read_workbook

    path = tmp_path / "book.xlsx"
    with xlsxwriter.Workbook(path) as book:
        date, time, duration = book.add_format({"num_format": "yyyy-mm-dd"}), book.add_format({"num_format": "hh:mm"}), book.add_format({"num_format": "[h]:mm"})
        sheet = book.add_worksheet("households")
        sheet.write_row(0, 0, ["ags", "name", "note", "amount", "big", "born", "at", "took", "ok", "group", "a", "b"])
        for r in range(1, 9):
            sheet.write_string(r, 0, f"0{r}358")
            sheet.write_string(r, 1, f"Person-{r}-Secret")
            sheet.write_string(r, 2, ["=)", "  padded ", "_x000D_ kept", "x"][r % 4])
            sheet.write_number(r, 3, 888 if r == 5 else r + 0.5)  # 888: 0.30000000000000004, set in the XML below
            sheet.write_number(r, 4, 777 if r == 6 else r)  # 777: a 17-digit integer, set in the XML below
            sheet.write_datetime(r, 5, dt.datetime(1980 + r, r, 10), date)
            sheet.write_datetime(r, 6, dt.time(r, 15), time)
            sheet.write_number(r, 7, r + 0.25, duration)
            sheet.write_boolean(r, 8, r % 2 == 0)
        sheet.merge_range(2, 9, 6, 9, "G1")  # rows 3..7 of one column: each row reads G1
        sheet.merge_range(4, 10, 4, 11, "across")  # row 5, two columns (the readers refuse it, the copy keeps it)
        sheet.set_row(6, None, None, {"hidden": True})  # row 7
        sheet.set_column(11, 11, None, None, {"hidden": True})
        other = book.add_worksheet("members")
        other.write_row(0, 0, ["ags", "n"])
        other.write_row(1, 0, ["01001", "Other-Secret"])
        other.hide()  # a hidden sheet stays hidden (the readers say it)
    raw = path.read_bytes()
    patched = BytesIO()
    with zipfile.ZipFile(BytesIO(raw)) as source, zipfile.ZipFile(patched, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = content.replace(b"<v>888</v>", b"<v>0.30000000000000004</v>").replace(b"<v>777</v>", b"<v>12345678901234567</v>")
            target.writestr(info, content)
    data = patched.getvalue()
    drop = {3, 4}  # the filled-down range's first row (the one holding its value) and the next, above the others

    def read(book):
        return {s.title: (list(s.rows()), sorted(s.hidden), list(s.hidden_columns), sorted(s.merged), s.sheet_state) for s in book.sheets}

    _no_full_load(monkeypatch)
    for reader in ("calamine", "openpyxl"):
        monkeypatch.setenv(ENV_XLSX_READER, reader)
        rows, hidden, columns, merged, _ = read_workbook(data, "book.xlsx", read, unsaved_formulas_empty=True)["households"]
        assert 0.30000000000000004 in rows[5] and 12345678901234567 in rows[6]  # as the original reads
        assert {dt.datetime, dt.time, dt.timedelta, bool, float, int, str} <= {type(c) for c in rows[2]} and rows[6][9] == "G1"

        out = without_rows(data, {"households": drop}, "book.xlsx")

        after = read_workbook(out, "book.xlsx", read, unsaved_formulas_empty=True)
        kept = [row for number, row in enumerate(rows, start=1) if number not in drop]
        assert [tuple(row) for row in after["households"][0]] == [tuple(row) for row in kept], reader
        assert [[type(c) for c in row] for row in after["households"][0]] == [[type(c) for c in row] for row in kept], reader
        assert after["households"][1:] == ([5], columns, [(3, 10, 3, 11)], "visible"), reader  # row 7 is row 5 now; the across range row 3
        assert hidden == [7] and columns == [11] and (5, 10, 5, 11) in merged
        assert after["members"] == read_workbook(data, "book.xlsx", read, unsaved_formulas_empty=True)["members"]
        assert after["members"][-1] == "hidden", reader
        inflated = _inflated(out)
        assert b"Person-1-Secret" in inflated and not re.search(rb"Person-[23]-Secret", inflated), reader


@pytest.mark.parametrize("reader", ["calamine", "openpyxl"])
def test_a_very_hidden_sheet_stays_very_hidden_in_the_rewrite(monkeypatch, reader: str) -> None:
    """A sheet hidden so that Excel's Unhide does not list it (veryHidden: set by a macro or a tool) came back from
    erasure's rewrite merely hidden, listed for anyone to unhide; each sheet now keeps its own state. The erased rows
    go from it as from the others."""
    from openpyxl import Workbook, load_workbook

    from rematch_pipeline.formats.workbook import ENV_XLSX_READER

    monkeypatch.setenv(ENV_XLSX_READER, reader)
    book = Workbook()
    book.active.title = "households"
    for name, state in (("households", "visible"), ("old", "hidden"), ("lookup", "veryHidden")):
        sheet = book[name] if name in book.sheetnames else book.create_sheet(name)
        sheet.append(["submission_id", "pets"])
        sheet.append(["s1", "Erased-Secret"])
        sheet.append(["s2", "no"])
        sheet.sheet_state = state
    data = BytesIO()
    book.save(data)

    out = without_rows(data.getvalue(), {"households": {2}, "old": {2}, "lookup": {2}}, "book.xlsx")

    after = load_workbook(BytesIO(out))
    assert [(s.title, s.sheet_state) for s in after.worksheets] == [("households", "visible"), ("old", "hidden"), ("lookup", "veryHidden")]
    assert all([[c.value for c in row] for row in s.iter_rows()] == [["submission_id", "pets"], ["s2", "no"]] for s in after.worksheets)
    assert b"Erased-Secret" not in _inflated(out)


@pytest.mark.parametrize("reader", ["calamine", "openpyxl"])
def test_a_workbook_showing_only_a_chart_sheet_is_rewritten_with_its_data_sheet_shown(monkeypatch, reader: str) -> None:
    """A workbook whose only visible sheet is a chart sheet (the data sheet hidden under it): the rewrite keeps no chart
    sheet, and a workbook must show a sheet, so keeping every state stopped erasure with openpyxl's `ValueError: The
    only worksheet of a workbook cannot be hidden`. The first sheet is shown then, as before states were kept."""
    from openpyxl import Workbook, load_workbook
    from openpyxl.chart import BarChart, Reference

    from rematch_pipeline.formats.workbook import ENV_XLSX_READER

    monkeypatch.setenv(ENV_XLSX_READER, reader)
    book = Workbook()
    sheet = book.active
    sheet.title = "households"
    for row in (["submission_id", "persons"], ["s1", 2], ["s2", 3]):
        sheet.append(row)
    chart = BarChart()
    chart.add_data(Reference(sheet, min_col=2, min_row=1, max_row=3))
    book.create_chartsheet("Diagramm", 0).add_chart(chart)
    sheet.sheet_state = "hidden"
    book.active = 0
    data = BytesIO()
    book.save(data)

    out = without_rows(data.getvalue(), {"households": {2}}, "book.xlsx")

    after = load_workbook(BytesIO(out))
    assert [(s.title, s.sheet_state) for s in after.worksheets] == [("households", "visible")]
    assert [[c.value for c in row] for row in after["households"].iter_rows()] == [["submission_id", "persons"], ["s2", 3]]

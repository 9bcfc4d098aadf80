"""The generated questionnaires: valid XLSForms that ask exactly the contract, and a LimeSurvey mapping.

Also checks that what the forms produce is what the readers accept: a KoboToolbox export laid out
from the XLSForm and a LimeSurvey export laid out from the mapping both read back into canonical
tables.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from rematch_pipeline import forms_builder as fb
from rematch_pipeline.schemas.contract import (
    HOUSEHOLD_FIELDS,
    MEMBER_FIELDS,
    MUNICIPALITY_FIELDS,
    TABLES,
    Field,
    Kind,
)

FORMS_DIR = Path(__file__).resolve().parents[1] / "forms"
XLSFORMS = {"municipalities": fb.MUNICIPALITY_XLSX, "households": fb.HOUSEHOLD_XLSX}
MAIN_FIELDS = {"municipalities": MUNICIPALITY_FIELDS, "households": HOUSEHOLD_FIELDS}
LANGUAGE_COLUMNS = [lang for _, lang in fb.LANGUAGES]
LS_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
UUID = "7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh build of every generated file."""
    out = tmp_path_factory.mktemp("forms")
    fb.build_all(out)
    return out


def _sheet(path: Path, name: str) -> list[dict[str, str]]:
    """Rows of one XLSForm sheet as dicts keyed by header (empty cells → "")."""
    book = load_workbook(path, read_only=True)
    try:
        rows = [[("" if c is None else str(c)) for c in row] for row in book[name].iter_rows(values_only=True)]
    finally:
        book.close()
    header = rows[0]
    return [dict(zip(header, row + [""] * (len(header) - len(row)))) for row in rows[1:]]


def _survey(built: Path, form: str) -> list[dict[str, str]]:
    return _sheet(built / XLSFORMS[form], "survey")


def _split(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(main-sheet rows, rows inside the members repeat)."""
    main: list[dict[str, str]] = []
    repeat: list[dict[str, str]] = []
    inside = False
    for row in rows:
        kind = row["type"].replace(" ", "_")
        if kind == "begin_repeat":
            inside = True
        elif kind == "end_repeat":
            inside = False
        else:
            (repeat if inside else main).append(row)
    return main, repeat


def _data_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["type"] != "note"]


# ---------------------------------------------------------------------------- XLSForm validity


@pytest.mark.parametrize("form", sorted(XLSFORMS))
def test_xlsform_converts_with_pyxform(built: Path, form: str) -> None:
    """pyxform turns each workbook into an XForm; ODK Validate checks it too where Java is present."""
    pytest.importorskip("pyxform")
    from pyxform.xls2xform import convert

    jar = Path(__import__("pyxform").__file__).parent / "validators" / "odk_validate" / "bin" / "ODK_Validate.jar"
    validate = shutil.which("java") is not None and jar.exists()
    result = convert(str(built / XLSFORMS[form]), validate=validate)
    assert result.warnings == []
    root = ET.fromstring(result.xform)
    ns = {"h": "http://www.w3.org/1999/xhtml", "x": "http://www.w3.org/2002/xforms"}
    instance = root.find("h:head/x:model/x:instance/x:data", ns)
    assert instance is not None
    assert instance.get("id") == fb.FORM_IDS[form]
    translations = {t.get("lang") for t in root.iterfind("h:head/x:model/x:itext/x:translation", ns)}
    assert translations == set(LANGUAGE_COLUMNS)


@pytest.mark.parametrize("form", sorted(XLSFORMS))
def test_xlsform_sheets_and_settings(built: Path, form: str) -> None:
    book = load_workbook(built / XLSFORMS[form], read_only=True)
    try:
        assert book.sheetnames == ["survey", "choices", "settings"]
    finally:
        book.close()
    [settings] = _sheet(built / XLSFORMS[form], "settings")
    assert settings["form_id"] == fb.FORM_IDS[form]
    assert re.fullmatch(r"[0-9a-f]{12}", settings["version"])
    assert settings["default_language"] in LANGUAGE_COLUMNS
    assert settings["form_title"]


# ------------------------------------------------------------------------- contract coverage


@pytest.mark.parametrize("form", sorted(XLSFORMS))
def test_every_contract_field_is_asked_by_its_exact_name(built: Path, form: str) -> None:
    main, repeat = _split(_survey(built, form))
    assert [r["name"] for r in _data_rows(main)] == [f.name for f in MAIN_FIELDS[form]]
    if form == "households":
        # submission_id of a member is the join key the export supplies, not a question.
        assert [r["name"] for r in repeat] == [f.name for f in MEMBER_FIELDS if f.name != "submission_id"]
    else:
        assert repeat == []


def _expected_type(f: Field) -> str:
    return {
        Kind.UUID: "calculate",
        Kind.TIMESTAMP: "end",
        Kind.TEXT: "text",
        Kind.AGS: "text",
        Kind.AGS_LIST: "text",
        Kind.REF_LIST: "text",
        Kind.INT: "integer",
        Kind.DECIMAL: "decimal",
        Kind.DATE: "date",
        Kind.BOOL: f"select_one {fb.YES_NO_LIST}",
        Kind.CODE: f"select_one {fb.list_name(f)}",
        Kind.CODES: f"select_multiple {fb.list_name(f)}",
    }[f.kind]


@pytest.mark.parametrize("form", sorted(XLSFORMS))
def test_types_required_and_defaults_follow_the_contract(built: Path, form: str) -> None:
    fields = {f.name: f for f in (*MAIN_FIELDS[form], *(MEMBER_FIELDS if form == "households" else ()))}
    for row in _data_rows(_survey(built, form)):
        if row["type"].replace(" ", "_") in ("begin_repeat", "end_repeat"):
            continue
        f = fields[row["name"]]
        assert row["type"] == _expected_type(f), f.name
        if f.kind not in (Kind.UUID, Kind.TIMESTAMP):
            assert (row["required"] == "yes") == f.required, f.name
        assert row["default"] == (f.default or ""), f.name
    assert "geopoint" not in {r["type"] for r in _survey(built, form)}


@pytest.mark.parametrize("form", sorted(XLSFORMS))
def test_choice_lists_are_the_contract_code_lists(built: Path, form: str) -> None:
    choices: dict[str, list[str]] = {}
    for row in _sheet(built / XLSFORMS[form], "choices"):
        choices.setdefault(row["list_name"], []).append(row["name"])
    used: set[str] = set()
    for row in _data_rows(_survey(built, form)):
        if row["type"].startswith("select_"):
            list_ = row["type"].split()[1]
            used.add(list_)
            f = next(f for t in TABLES.values() for f in t if f.name == row["name"])
            expected = list(fb.YES_NO) if f.kind is Kind.BOOL else list(f.codes)
            assert choices[list_] == expected, row["name"]
    assert set(choices) == used  # no stray lists
    if "yes_no" in choices:
        assert choices["yes_no"] == ["yes", "no"]


@pytest.mark.parametrize("form", sorted(XLSFORMS))
def test_every_question_and_choice_has_three_labels(built: Path, form: str) -> None:
    for row in _survey(built, form):
        kind = row["type"].replace(" ", "_")
        if kind in ("calculate", "end", "end_repeat"):
            continue
        labels = [row[f"label::{lang}"] for lang in LANGUAGE_COLUMNS]
        assert all(label.strip() for label in labels), row["name"]
        for column in ("hint", "constraint_message"):
            texts = [row[f"{column}::{lang}"] for lang in LANGUAGE_COLUMNS]
            assert all(texts) or not any(texts), (row["name"], column)
        if row["constraint"]:
            assert all(row[f"constraint_message::{lang}"] for lang in LANGUAGE_COLUMNS), row["name"]
    for row in _sheet(built / XLSFORMS[form], "choices"):
        assert all(row[f"label::{lang}"].strip() for lang in LANGUAGE_COLUMNS), row
    # The Ukrainian column is really Ukrainian (Cyrillic), not a copy of another language.
    ukrainian = [r[f"label::{LANGUAGE_COLUMNS[2]}"] for r in _survey(built, form) if r[f"label::{LANGUAGE_COLUMNS[2]}"]]
    assert all(re.search("[А-Яа-яІіЇїЄєҐґ]", text) for text in ukrainian)


# ----------------------------------------------------------------------- rules inside the form


def _by_name(built: Path, form: str) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in _survey(built, form) if r["name"]}


@pytest.mark.parametrize("form", sorted(XLSFORMS))
def test_ags_ranges_and_formats_are_constrained(built: Path, form: str) -> None:
    rows = _by_name(built, form)
    fields = [*MAIN_FIELDS[form], *(MEMBER_FIELDS if form == "households" else ())]
    for f in fields:
        if f.kind is Kind.AGS:
            assert f"regex(., '{fb.AGS_REGEX}')" in rows[f.name]["constraint"]
            assert fb.AGS_REGEX == "^([0-9]{5}|[0-9]{8})$"
        if f.kind is Kind.AGS_LIST:
            assert "regex(., '^([0-9]{5}|[0-9]{8})( ([0-9]{5}|[0-9]{8}))" in rows[f.name]["constraint"]
        if f.kind in (Kind.INT, Kind.DECIMAL) and f.minimum is not None:
            assert f". >= {f.minimum:g}" in rows[f.name]["constraint"], f.name
        if f.kind in (Kind.INT, Kind.DECIMAL) and f.maximum is not None:
            assert f". <= {f.maximum:g}" in rows[f.name]["constraint"], f.name
    if form == "households":
        for name in ("imp_jobs", "imp_family_nearby"):
            assert rows[name]["constraint"] == ". >= 0 and . <= 3"
        assert "{0,2}" in rows["preferred_municipality_ids"]["constraint"]  # at most 3 keys


def test_ags_regex_accepts_5_and_8_digits_only() -> None:
    pattern = re.compile(fb.AGS_REGEX)
    assert pattern.match("09162") and pattern.match("09162000")
    assert not any(pattern.match(v) for v in ("9162", "091620", "0916200", "091620000", "0916a", ""))
    listed = re.compile(f"^{fb._AGS_ITEM}( {fb._AGS_ITEM}){{0,2}}$")
    assert listed.match("09162 11000000 05315")
    assert not listed.match("09162 11000000 05315 01001")
    assert not listed.match("09162,11000000")


def test_period_regex_agrees_with_validation() -> None:
    models = pytest.importorskip("rematch_pipeline.schemas.models")
    samples = ["2025-07", "2025-12", "2025-01", "2025-13", "2025-00", "2025-7", "25-07", "2025-07-01", "2025_07", ""]
    for value in samples:
        assert bool(re.match(fb.PERIOD_REGEX, value)) == bool(re.match(models.PERIOD_PATTERN, value)), value


def test_household_consent_gates_everything_after_it(built: Path) -> None:
    main, _ = _split(_survey(built, "households"))
    names = [r["name"] for r in main]
    consent = names.index("consent_processing")
    assert "consent_note" in names[:consent]
    # household_ref is asked before consent: refusals are counted and withdrawals matched per household.
    assert names.index("household_ref") < consent
    for row in main[consent + 1 :]:
        if row["name"] == "consent_refused_note":
            assert row["relevant"] == "${consent_processing} = 'no'"
            continue
        assert "${consent_processing} = 'yes'" in row["relevant"], row["name"]
    repeat = next(r for r in _survey(built, "households") if r["type"].replace(" ", "_") == "begin_repeat")
    assert repeat["name"] == "members"
    assert repeat["relevant"] == "${consent_processing} = 'yes'"


def test_family_tie_importance_only_with_a_family_municipality(built: Path) -> None:
    row = _by_name(built, "households")["family_ties_importance"]
    assert "${family_ties_municipality_id} != ''" in row["relevant"]


def test_health_answers_are_codes_only(built: Path) -> None:
    """Art. 9 data: medical fields are plain multi-selects, and there is no free text beside them."""
    municipality = _by_name(built, "municipalities")
    household = _by_name(built, "households")
    assert municipality["medical_care"]["type"] == "select_multiple medical"
    assert household["medical_needs"]["type"] == "select_multiple medical"
    for rows in (municipality, household):
        assert not any("or_other" in r["type"] for r in rows.values())
    _, repeat = _split(_survey(built, "households"))
    assert [r["name"] for r in repeat if r["type"] == "text"] == ["member_name"]


def test_municipality_notes_warn_against_personal_data(built: Path) -> None:
    notes = _by_name(built, "municipalities")["notes"]
    assert notes["type"] == "text"
    assert notes["required"] == ""
    assert "personal data of refugees" in notes[f"hint::{LANGUAGE_COLUMNS[1]}"]
    assert "personenbezogenen Daten" in notes[f"hint::{LANGUAGE_COLUMNS[0]}"]


# ----------------------------------------------------------------------------- determinism


def test_regeneration_is_byte_identical(built: Path, tmp_path: Path) -> None:
    again = fb.build_all(tmp_path)
    assert again
    for path in again:
        assert path.read_bytes() == (built / path.name).read_bytes(), path.name


def test_committed_files_are_up_to_date(built: Path) -> None:
    """forms/ holds exactly what the builder writes (regenerate: python -m rematch_pipeline.forms_builder forms/)."""
    for path in sorted(built.iterdir()):
        committed = FORMS_DIR / path.name
        assert committed.exists(), f"{path.name} missing from forms/"
        assert committed.read_bytes() == path.read_bytes(), f"forms/{path.name} is stale"


def test_cli_writes_into_the_given_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fb.main([str(tmp_path / "out")]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        fb.MUNICIPALITY_XLSX,
        fb.HOUSEHOLD_XLSX,
        fb.MAPPING_CSV,
        fb.MUNICIPALITY_LSS,
        fb.HOUSEHOLD_LSS,
    }
    assert fb.main(["a", "b"]) == 2
    capsys.readouterr()


# ------------------------------------------------------------------------------- LimeSurvey


def _mapping(built: Path) -> list[dict[str, str]]:
    with open(built / fb.MAPPING_CSV, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_mapping_codes_are_letters_and_digits_and_unique(built: Path) -> None:
    rows = _mapping(built)
    for survey in ("municipalities", "households"):
        questions = [r for r in rows if r["survey"] == survey and r["type_code"]]
        codes = [r["limesurvey_question_code"] for r in questions]
        assert all(LS_CODE.match(c) and len(c) <= 20 for c in codes), codes
        assert len({c.lower() for c in codes}) == len(codes), survey
        for row in questions:
            for pair in row["answer_codes"].split():
                canonical, code = pair.split("=")
                assert LS_CODE.match(code) and len(code) <= 5, pair
            answer = [p.split("=")[1].lower() for p in row["answer_codes"].split()]
            assert len(set(answer)) == len(answer), row["canonical_field"]


def test_mapping_covers_every_contract_field(built: Path) -> None:
    from rematch_pipeline.schemas.limesurvey_codes import LIMESURVEY_MEMBER_SLOTS

    rows = _mapping(built)
    for table in ("municipalities", "households"):
        assert [r["canonical_field"] for r in rows if r["table"] == table] == [f.name for f in TABLES[table]]
    member_rows = [r for r in rows if r["table"] == "members" and r["member_slot"]]
    asked = [f.name for f in MEMBER_FIELDS if f.name != "submission_id"]
    assert len(member_rows) == LIMESURVEY_MEMBER_SLOTS * len(asked)
    assert [r["canonical_field"] for r in member_rows if r["member_slot"] == "1"] == asked
    fields = {f.name: f for t in TABLES.values() for f in t}
    for row in rows:
        f = fields[row["canonical_field"]]
        if f.kind in (Kind.CODE, Kind.CODES):
            assert [p.split("=")[0] for p in row["answer_codes"].split()] == list(f.codes), f.name


def test_lss_files_follow_the_mapping(built: Path) -> None:
    rows = _mapping(built)
    for survey, file_name in (("municipalities", fb.MUNICIPALITY_LSS), ("households", fb.HOUSEHOLD_LSS)):
        root = ET.parse(built / file_name).getroot()
        assert root.findtext("LimeSurveyDocType") == "Survey"
        languages = [e.text for e in root.iterfind("languages/language")]
        assert sorted(languages) == ["de", "en", "uk"]
        questions = {r.findtext("qid"): r for r in root.iterfind("questions/rows/row")}
        titles = [q.findtext("title") for q in questions.values()]
        expected = [r["limesurvey_question_code"] for r in rows if r["survey"] == survey and r["type_code"]]
        assert titles == expected
        by_code = {r["limesurvey_question_code"]: r for r in rows if r["survey"] == survey and r["type_code"]}
        for q in questions.values():
            assert q.findtext("type") == by_code[q.findtext("title")]["type_code"]
        answers: dict[str, list[str]] = {}
        for a in root.iterfind("answers/rows/row"):
            answers.setdefault(questions[a.findtext("qid")].findtext("title"), []).append(a.findtext("code"))
        for sub in root.iterfind("subquestions/rows/row"):
            answers.setdefault(questions[sub.findtext("parent_qid")].findtext("title"), []).append(sub.findtext("title"))
        for code, row in by_code.items():
            if row["type_code"] in ("L", "!", "M"):
                assert answers[code] == [p.split("=")[1] for p in row["answer_codes"].split()], code
        # Every question and sub-question has its text in every language.
        l10n: dict[str, set[str]] = {}
        for r in root.iterfind("question_l10ns/rows/row"):
            assert (r.findtext("question") or "").strip()
            l10n.setdefault(r.findtext("qid") or "", set()).add(r.findtext("language") or "")
        all_qids = set(questions) | {s.findtext("qid") for s in root.iterfind("subquestions/rows/row")}
        assert all(l10n[q] == set(languages) for q in all_qids)
        assert root.findtext("surveys/rows/row/datestamp") == "Y"  # submitdate is submitted_at


# ----------------------------------------------------------- the readers accept what forms produce


def _sample_value(f: Field) -> str:
    """A valid canonical value of one field (for laying out a synthetic export)."""
    if f.kind is Kind.INT:
        return str(int(f.minimum or 0) + 1)  # every contract range has room above its minimum
    if f.kind is Kind.DECIMAL:
        return f"{((f.minimum or 0) + (f.maximum or 1)) / 2:g}"
    return {
        Kind.UUID: UUID,
        Kind.TIMESTAMP: "2025-07-01T10:00:00.000+02:00",
        Kind.DATE: "1990-05-01",
        Kind.AGS: "09162000",
        Kind.AGS_LIST: "09162000 11000000",
        Kind.BOOL: "yes",
        Kind.CODE: f.codes[0] if f.codes else "",
        Kind.CODES: f.codes[-1] if f.codes else "",
        Kind.REF_LIST: "REF-2",
    }.get(f.kind, "text")


def _member(name: str) -> Field:
    return next(f for f in MEMBER_FIELDS if f.name == name)


def _kobo_columns(rows: list[dict[str, str]], fields: dict[str, Field]) -> tuple[list[str], list[str]]:
    """KPI XLSX columns ("XML values and headers") and one row of values for some survey rows."""
    header: list[str] = []
    values: list[str] = []
    for row in _data_rows(rows):
        f = fields[row["name"]]
        value = _sample_value(f)
        header.append(f.name)
        values.append(value)
        if row["type"].startswith("select_multiple"):
            for code in f.codes:
                header.append(f"{f.name}/{code}")
                values.append("1" if code in value.split() else "0")
    return header, values


def test_kobo_export_of_the_household_form_reads_back(built: Path) -> None:
    kobo = pytest.importorskip("rematch_pipeline.formats.kobo")
    main, repeat = _split(_survey(built, "households"))
    main_header, main_values = _kobo_columns(main, {f.name: f for f in HOUSEHOLD_FIELDS})
    member_header, member_values = _kobo_columns(repeat, {f.name: f for f in MEMBER_FIELDS})
    book = Workbook()
    sheet = book.active
    sheet.title = "rematch_household"
    sheet.append([*main_header, "_id", "_uuid", "_submission_time", "__version__", "meta/rootUuid", "_index"])
    sheet.append([*main_values, "1", UUID, "2025-07-01T08:00:05", "v1", f"uuid:{UUID}", "1"])
    members = book.create_sheet("members")
    members.append([*member_header, "_index", "_parent_table_name", "_parent_index", "_submission__uuid"])
    for index in (1, 2):
        members.append([*member_values, str(index), "rematch_household", "1", UUID])
    buffer = io.BytesIO()
    book.save(buffer)
    tables = {t.table: t.frame for t in kobo.read_kobo_xlsx(buffer.getvalue(), "kobo.xlsx")}
    assert set(tables) == {"households", "members"}
    households, people = tables["households"], tables["members"]
    assert set(f.name for f in HOUSEHOLD_FIELDS) <= set(households.columns)
    assert households["submission_id"].to_list() == [UUID]
    assert households["submitted_at"].to_list() == ["2025-07-01T10:00:00.000+02:00"]  # the form's own end time
    assert households["consent_processing"].to_list() == ["yes"]
    assert set(f.name for f in MEMBER_FIELDS) <= set(people.columns)
    assert people["submission_id"].to_list() == [UUID, UUID]
    assert people["medical_needs"].to_list() == [_member("medical_needs").codes[-1]] * 2


def test_kobo_export_of_the_municipality_form_reads_back(built: Path) -> None:
    kobo = pytest.importorskip("rematch_pipeline.formats.kobo")
    header, values = _kobo_columns(_survey(built, "municipalities"), {f.name: f for f in MUNICIPALITY_FIELDS})
    lines = [
        ";".join(f'"{c}"' for c in [*header, "_id", "_uuid", "_submission_time", "_index"]),
        ";".join(f'"{c}"' for c in [*values, "1", UUID, "2025-07-01T08:00:05", "1"]),
    ]
    [table] = kobo.read_kobo_csv(("\r\n".join(lines) + "\r\n").encode(), "kobo.csv")
    assert table.table == "municipalities"
    assert set(f.name for f in MUNICIPALITY_FIELDS) <= set(table.frame.columns)
    assert table.frame["municipality_id"].to_list() == ["09162000"]


XFORMS = "http://www.w3.org/2002/xforms"
CENTRAL_COLUMNS = ["SubmitterID", "SubmitterName", "AttachmentsPresent", "AttachmentsExpected", "Status", "ReviewState", "DeviceID", "Edits", "FormVersion"]


def _central_tables(xform: str, form_id: str) -> dict[str, list[list[str]]]:
    """ODK Central's CSV tables for one submission of a form, laid out as Central lays them out from
    the XForm: every instance leaf is a column (notes too), groups joined by `-`, a repeat is a table
    of its own with PARENT_KEY and KEY (central-backend lib/data/schema.js and briefcase.js)."""
    root = ET.fromstring(xform)
    repeats = {r.get("nodeset") for r in root.iter(f"{{{XFORMS}}}repeat")}
    binds = {b.get("nodeset") for b in root.iter(f"{{{XFORMS}}}bind")}
    instance = next(root.iter(f"{{{XFORMS}}}instance"))[0]
    fields = {f.name: f for t in TABLES.values() for f in t}
    key = f"uuid:{UUID}"
    tables: dict[str, list[list[str]]] = {}

    def value(name: str) -> str:
        return key if name == "instanceID" else (_sample_value(fields[name]) if name in fields else "")

    def walk(node: ET.Element, path: str, prefix: list[str], header: list[str], row: list[str]) -> None:
        seen: set[str] = set()
        for child in node:
            name = child.tag.split("}")[-1]
            if name in seen:  # a repeat's template and its instance share the name
                continue
            seen.add(name)
            child_path = f"{path}/{name}"
            if child_path in repeats:
                sub_header: list[str] = []
                sub_row: list[str] = []
                walk(child, child_path, [], sub_header, sub_row)
                tables[f"{form_id}-{name}.csv"] = [[*sub_header, "PARENT_KEY", "KEY"]] + [
                    [*sub_row, key, f"{key}/{name}[{i}]"] for i in (1, 2)
                ]
            elif child_path not in binds and len(child):
                walk(child, child_path, [*prefix, name], header, row)
            else:
                header.append("-".join([*prefix, name]))
                row.append(value(name))

    header: list[str] = ["SubmissionDate"]
    row: list[str] = ["2025-07-01T08:00:05.123Z"]
    walk(instance, f"/{instance.tag.split('}')[-1]}", [], header, row)
    tables[f"{form_id}.csv"] = [[*header, "KEY", *CENTRAL_COLUMNS], [*row, key, "", "", "0", "0", "", "", "", "0", "v1"]]
    return tables


@pytest.mark.parametrize("form", sorted(XLSFORMS))
def test_odk_central_csv_zip_of_each_form_reads_back(built: Path, form: str) -> None:
    pytest.importorskip("pyxform")
    from pyxform.xls2xform import convert

    from rematch_pipeline.formats.detect import read_export

    tables = _central_tables(convert(str(built / XLSFORMS[form])).xform, fb.FORM_IDS[form])
    assert len(tables) == (2 if form == "households" else 1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, rows in tables.items():
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(rows)
            archive.writestr(name, text.getvalue())
    read = {t.table: t for t in read_export(Path("submissions.csv.zip"), buffer.getvalue())}
    main = read[form].frame
    assert set(f.name for f in MAIN_FIELDS[form]) <= set(main.columns)
    assert main["submission_id"].to_list() == [UUID]
    assert main["submitted_at"].to_list() == ["2025-07-01T10:00:00.000+02:00"]  # the form's own end time
    if form == "households":
        people = read["members"].frame
        assert set(f.name for f in MEMBER_FIELDS) <= set(people.columns)
        assert people["submission_id"].to_list() == [UUID, UUID]
        assert people["medical_needs"].to_list() == [_member("medical_needs").codes[-1]] * 2
        assert read["members"].sheet == f"{fb.FORM_IDS[form]}-members.csv"


@pytest.mark.parametrize("form", sorted(XLSFORMS))
def test_the_central_writer_lays_out_each_form_as_central_does(built: Path, form: str) -> None:
    """formats/tool_exports (rematch sample --format odk-central) writes the columns Central derives from the XForm."""
    pytest.importorskip("pyxform")
    import polars as pl
    from pyxform.xls2xform import convert

    from rematch_pipeline.formats import tool_exports

    tables = _central_tables(convert(str(built / XLSFORMS[form])).xform, fb.FORM_IDS[form])
    frame = pl.DataFrame({"submission_id": [UUID], "submitted_at": ["2025-07-01T10:00:00.000+02:00"]})
    ours = tool_exports.odk_central_csvs(frame, tool_exports.central_form(form), fb.FORM_IDS[form], pl.DataFrame({"submission_id": [UUID]}))
    assert {name: data.decode().split("\n", 1)[0].split(",") for name, data in ours.items()} == {name: rows[0] for name, rows in tables.items()}


def test_every_note_of_the_forms_is_named_as_the_readers_ignore_it(built: Path) -> None:
    from rematch_pipeline.formats.kobo import NOTE_SUFFIX

    notes = [row["name"] for form in XLSFORMS for row in _survey(built, form) if row["type"] == "note"]
    assert notes and all(name.endswith(NOTE_SUFFIX) for name in notes)
    assert not any(f.name.endswith(NOTE_SUFFIX) for t in TABLES.values() for f in t)


def test_limesurvey_export_laid_out_from_the_mapping_reads_back(built: Path) -> None:
    limesurvey = pytest.importorskip("rematch_pipeline.formats.limesurvey")
    fields = {f.name: f for t in TABLES.values() for f in t}
    header = ["id", "submitdate", "lastpage", "startlanguage", "seed"]
    values = ["7", "2025-07-01 10:00:00", "13", "uk", "424242"]
    for row in _mapping(built):
        if row["survey"] != "households" or not row["type_code"]:
            continue
        f = fields[row["canonical_field"]]
        filled = row["member_slot"] in ("", "1", "2")
        answers = dict(p.split("=") for p in row["answer_codes"].split())
        value = _sample_value(f) if filled else ""
        if row["type_code"] == "M":
            for column in row["export_columns"].split():
                code = column[column.index("[") + 1 : -1]
                header.append(column)
                values.append("Y" if filled and answers.get(value) == code else "")
            continue
        header.append(row["limesurvey_question_code"])
        values.append(answers.get(value, value) if filled else "")
    text = "\r\n".join(";".join(f'"{c}"' for c in line) for line in (header, values)) + "\r\n\r\n"
    tables = {t.table: t.frame for t in limesurvey.read_limesurvey_csv(("\ufeff" + text).encode(), "ls.csv")}
    assert set(tables) == {"households", "members"}
    assert tables["households"]["submission_id"].to_list() == ["ls-7-424242"]
    assert tables["households"]["consent_processing"].to_list() == ["yes"]
    assert tables["members"].height == 2
    assert tables["members"]["languages"].to_list() == [_member("languages").codes[-1]] * 2

"""Tests of the seeded sample-round generator (rematch_pipeline.sample)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import uuid
from collections import Counter
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import openpyxl
import polars as pl
import pytest

from rematch_pipeline.sample import SampleRound, generate_round, write_round
from rematch_pipeline.schemas.contract import (
    LANGUAGES,
    MEDICAL,
    STATE_BY_LAND,
    TABLES,
    Field,
    Kind,
    field_names,
)

PERIOD = "2026-07"
AGS5 = re.compile(r"^\d{5}$")
REF = re.compile(r"^RM-202607-\d{6}$")


def _reference_kreise() -> dict[str, dict[str, str]]:
    """The reference Kreise read independently of the generator (csv module, all text)."""
    text = resources.files("rematch_pipeline.reference").joinpath("kreise_2020_derived.csv").read_text("utf-8")
    return {row["ags"]: row for row in csv.DictReader(io.StringIO(text))}


KREISE = _reference_kreise()


@pytest.fixture(scope="module")
def small() -> SampleRound:
    return generate_round(600, 40, seed=123)


@pytest.fixture(scope="module")
def medium() -> SampleRound:
    return generate_round(5000, 120, seed=7)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _ints(frame: pl.DataFrame, column: str) -> np.ndarray:
    return frame[column].cast(pl.Int64).to_numpy()


def _age(dob: str, on: str) -> int:
    born, day = dt.date.fromisoformat(dob), dt.date.fromisoformat(on[:10])
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


# ---------------------------------------------------------------------------------------------
# Determinism and file format
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = write_round(generate_round(400, 30, seed=5), tmp_path / "a")
    again = write_round(generate_round(400, 30, seed=5), tmp_path / "b")
    other = write_round(generate_round(400, 30, seed=6), tmp_path / "c")
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in again]
    for a, b, c in zip(first, again, other):
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()


def test_csv_paths_headers_and_encoding(small: SampleRound, tmp_path: Path) -> None:
    paths = write_round(small, tmp_path)
    assert paths == [
        tmp_path / "municipalities" / "municipalities_2026-07.csv",
        tmp_path / "households" / "households_2026-07.csv",
        tmp_path / "households" / "members_2026-07.csv",
    ]
    for path, table, frame in zip(paths, ("municipalities", "households", "members"), (small.municipalities, small.households, small.members)):
        raw = path.read_bytes()
        assert b"\r" not in raw and not raw.startswith(b"\xef\xbb\xbf")
        raw.decode("utf-8")  # strict
        header, rows = _read_csv(path)
        assert header == field_names(table)
        assert frame.columns == field_names(table)
        assert all(dtype == pl.Utf8 for dtype in frame.dtypes)
        # Standard quoting round-trips every cell (names such as "Flensburg, Stadt" carry commas).
        assert rows == [list(r) for r in frame.rows()]


def test_no_cell_starts_a_formula(medium: SampleRound, tmp_path: Path) -> None:
    for frame in (medium.municipalities, medium.households, medium.members):
        for column in frame.columns:
            assert not frame[column].str.contains(r"^[=+\-@]").any(), column
    # Every start a spreadsheet runs as a formula (formats.writers.FORMULA_PREFIXES), a tab or return before it too.
    for cell in ("=1+1", "\t=1+1", "\r=1+1"):
        poisoned = replace(medium, households=medium.households.with_columns(pl.lit(cell).alias("contact_name")))
        with pytest.raises(ValueError, match="formula"):
            write_round(poisoned, tmp_path)


def test_xlsx_round_trips_with_leading_zeros(tmp_path: Path) -> None:
    # All 401 Kreise: Schleswig-Holstein and Hamburg keys start with 0.
    sample = generate_round(150, 401, seed=2)
    paths = write_round(sample, tmp_path / "x", fmt="xlsx")
    assert paths == [
        tmp_path / "x" / "municipalities" / "municipalities_2026-07.xlsx",
        tmp_path / "x" / "households" / "households_2026-07.xlsx",
    ]
    again = write_round(generate_round(150, 401, seed=2), tmp_path / "y", fmt="xlsx")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]

    books = {
        "municipalities": (paths[0], sample.municipalities),
        "households": (paths[1], sample.households),
        "members": (paths[1], sample.members),
    }
    assert openpyxl.load_workbook(paths[0]).sheetnames == ["municipalities"]
    assert openpyxl.load_workbook(paths[1]).sheetnames == ["households", "members"]
    for sheet, (path, frame) in books.items():
        ws = openpyxl.load_workbook(path)[sheet]
        rows = list(ws.iter_rows(values_only=True))
        assert list(rows[0]) == field_names(sheet)
        expected = [tuple(v if v != "" else None for v in row) for row in frame.rows()]
        assert rows[1:] == expected
        for row in ws.iter_rows(min_row=2, max_row=6):
            for cell in row:
                if cell.value is not None:
                    assert cell.data_type == "s" and cell.number_format == "@"
    ws = openpyxl.load_workbook(paths[0])["municipalities"]
    ids = [r[2] for r in ws.iter_rows(min_row=2, values_only=True)]
    assert "01001" in ids and "02000" in ids
    assert all(isinstance(a, str) and AGS5.match(a) for a in ids)


def test_invalid_arguments(small: SampleRound, tmp_path: Path) -> None:
    for kwargs in (
        {"households": 10, "municipalities": 0, "seed": 1},
        {"households": 10, "municipalities": 402, "seed": 1},
        {"households": 0, "municipalities": 5, "seed": 1},
        {"households": 10, "municipalities": 5, "seed": -1},
        {"households": 10, "municipalities": 5, "seed": 1, "period": "2026-13"},
        {"households": 10, "municipalities": 5, "seed": 1, "period": "July"},
    ):
        with pytest.raises(ValueError):
            generate_round(**kwargs)
    with pytest.raises(ValueError):
        write_round(small, tmp_path, fmt="json")


def test_a_period_validation_would_refuse_is_refused_as_a_period() -> None:
    """The intake period is checked by the contract's pattern (schemas.models.PERIOD_PATTERN: digits 0-9, the
    whole text): the sample's own `\\d` let other digits and a trailing newline through, to fail later on
    a date parser's message instead of the rule."""
    for period in ("\u0662\u0660\u0662\u0666-07", "2026-07\n"):
        with pytest.raises(ValueError, match="period must look like YYYY-MM"):
            generate_round(3, 2, seed=0, period=period)


# ---------------------------------------------------------------------------------------------
# Content against the contract
# ---------------------------------------------------------------------------------------------


def _check_value(field: Field, value: str, period: str) -> bool:
    """Whether one cell is valid for its contract field (independent of the generator)."""
    if value == "":
        return not field.required
    kind = field.kind
    if kind == Kind.UUID:
        return uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value
    if kind == Kind.TIMESTAMP:
        return re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", value) is not None and value.startswith(period)
    if kind == Kind.DATE:
        return dt.date.fromisoformat(value).isoformat() == value
    if kind == Kind.AGS:
        return value in KREISE
    if kind == Kind.AGS_LIST:
        items = value.split(" ")
        return all(a in KREISE for a in items) and len(set(items)) == len(items) and (field.max_items is None or len(items) <= field.max_items)
    if kind == Kind.INT:
        if not value.isdigit():
            return False
        n = int(value)
        return (field.minimum is None or n >= field.minimum) and (field.maximum is None or n <= field.maximum)
    if kind == Kind.DECIMAL:
        x = float(value)
        return (field.minimum is None or x >= field.minimum) and (field.maximum is None or x <= field.maximum)
    if kind == Kind.BOOL:
        return value in ("yes", "no")
    if kind == Kind.CODE:
        return value in field.codes
    if kind == Kind.CODES:
        items = value.split(" ")
        # Multi-select: known codes, no repeats, in code-list order.
        return all(i in field.codes for i in items) and items == sorted(set(items), key=field.codes.index)
    if kind == Kind.REF_LIST:
        return all(REF.match(r) for r in value.split(" "))
    return kind == Kind.TEXT


def test_every_value_fits_its_contract_field(medium: SampleRound) -> None:
    for table, frame in (("municipalities", medium.municipalities), ("households", medium.households), ("members", medium.members)):
        for field in TABLES[table]:
            values = frame[field.name].to_list()
            bad = [v for v in set(values) if not _check_value(field, v, PERIOD)]
            assert not bad, (table, field.name, bad[:3])


def test_municipalities_are_distinct_real_kreise(medium: SampleRound) -> None:
    mu = medium.municipalities
    ids = mu["municipality_id"].to_list()
    assert len(ids) == 120 == len(set(ids))
    for row in mu.iter_rows(named=True):
        ref = KREISE[row["municipality_id"]]
        assert AGS5.match(row["municipality_id"])
        assert row["municipality_name"] == ref["name"]
        assert row["state"] == STATE_BY_LAND[row["municipality_id"][:2]]
        assert math.isclose(float(row["latitude"]), float(ref["lat_popweighted"]), abs_tol=1e-5)
        assert math.isclose(float(row["longitude"]), float(ref["lon_popweighted"]), abs_tol=1e-5)
        assert row["intake_period"] == PERIOD
        assert row["contact_email"].endswith("@example.org")
        assert row["contact_name"].startswith("Integrationsb\u00fcro ")
    # Sampling by population^0.5: both big and small districts appear.
    pops = sorted(int(KREISE[a]["population"]) for a in ids)
    assert pops[0] < 100_000 and pops[-1] > 500_000


def test_household_wishes_use_offering_districts(medium: SampleRound) -> None:
    offers = set(medium.municipalities["municipality_id"].to_list())
    ties_in_offers = ties = 0
    for row in medium.households.iter_rows(named=True):
        preferred = row["preferred_municipality_ids"].split()
        excluded = row["excluded_municipality_ids"].split()
        assert set(preferred) <= offers and set(excluded) <= offers
        assert 0 <= len(preferred) <= 3
        assert not set(preferred) & set(excluded)
        tie, importance = row["family_ties_municipality_id"], row["family_ties_importance"]
        assert (tie == "") == (importance in ("", "none"))
        if tie:
            ties += 1
            ties_in_offers += tie in offers
            assert tie not in excluded
        if importance == "must":
            assert tie in offers
    assert ties_in_offers / ties > 0.5  # "often among the chosen municipalities"


def test_linked_households_are_symmetric_and_exist(medium: SampleRound) -> None:
    hh = medium.households
    refs = hh["household_ref"].to_list()
    assert len(set(refs)) == len(refs) and all(REF.match(r) for r in refs)
    links = {r: set(l.split()) for r, l in zip(refs, hh["linked_household_refs"].to_list())}
    linked = [r for r, others in links.items() if others]
    assert 0.05 <= len(linked) / len(refs) <= 0.07
    for ref in linked:
        others = links[ref]
        assert ref not in others and 1 <= len(others) <= 2
        for other in others:
            assert other in links  # exists
            assert ref in links[other]  # symmetric
            assert links[other] | {other} == others | {ref}  # one closed group
    groups = Counter(len(links[r]) + 1 for r in linked)
    assert set(groups) <= {2, 3} and groups[2] > 0


def test_members_reference_existing_submissions(medium: SampleRound) -> None:
    ids = medium.households["submission_id"].to_list()
    assert len(set(ids)) == len(ids)
    members = medium.members
    assert set(members["submission_id"].to_list()) == set(ids)  # every household has members
    heads = members.filter(pl.col("relation") == "head")["submission_id"].to_list()
    assert sorted(heads) == sorted(ids)  # exactly one head each
    sizes = members.group_by("submission_id").len()["len"].to_numpy()
    assert sizes.min() >= 1 and sizes.max() <= 8
    head_names = dict(zip(heads, members.filter(pl.col("relation") == "head")["member_name"].to_list()))
    assert all(head_names[s] == n for s, n in zip(ids, medium.households["contact_name"].to_list()))


def test_ages_are_consistent_with_submission_dates(medium: SampleRound) -> None:
    submitted = dict(zip(medium.households["submission_id"].to_list(), medium.households["submitted_at"].to_list()))
    ages: dict[str, list[tuple[str, int]]] = {}
    for sid, dob, rel, occupation, education in medium.members.select(
        "submission_id", "date_of_birth", "relation", "occupation_sector", "education"
    ).iter_rows():
        age = _age(dob, submitted[sid])
        assert 0 <= age <= 95
        ages.setdefault(sid, []).append((rel, age))
        if age < 6:
            assert occupation == "none" and education == "none"
        elif age < 18:
            assert occupation == "student" and education == "school"
    for members in ages.values():
        head = next(a for r, a in members if r == "head")
        assert head >= 18
        for rel, age in members:
            if rel == "child":
                assert age < 18 and head - age >= 18


def test_shares_are_plausible(medium: SampleRound) -> None:
    hh, m = medium.households, medium.members
    share = lambda s: float(s.mean())  # noqa: E731
    assert 0.09 <= share(m["medical_needs"] != "") <= 0.15
    assert 0.01 <= share(m["wheelchair"] == "yes") <= 0.03
    assert 0.11 <= share(hh["pets"] == "yes") <= 0.19
    assert 0.17 <= share(hh["family_ties_municipality_id"] != "") <= 0.23
    assert 0.03 <= share(hh["family_ties_importance"] == "must") <= 0.07
    assert 0.26 <= share(hh["preferred_municipality_ids"] != "") <= 0.34
    assert 0.03 <= share(hh["excluded_municipality_ids"] != "") <= 0.07
    assert 0.97 <= share(hh["consent_processing"] == "yes") < 1.0
    needs = Counter(c for v in m["medical_needs"].to_list() for c in v.split())
    assert needs["general"] > needs["oncology"] > 0 and needs["psychotherapy"] > needs["dialysis"] > 0
    langs = Counter(c for v in m["languages"].to_list() for c in v.split())
    assert langs["uk"] > langs["ru"] > langs["en"] > 0 and langs["pl"] > 0 and langs["de"] > 0
    assert set(langs) <= set(LANGUAGES)
    assert share(m["german_level"].is_in(["none", "A1"])) > 0.6
    sex = Counter(m["sex"].to_list())
    assert sex["female"] > sex["male"]
    relations = Counter(m["relation"].to_list())
    assert all(relations[r] > 0 for r in ("head", "spouse", "child", "parent", "sibling", "other"))


# ---------------------------------------------------------------------------------------------
# Capacities and feasibility
# ---------------------------------------------------------------------------------------------


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)


def test_capacities_scale_with_population_and_demand(medium: SampleRound) -> None:
    mu, m = medium.municipalities, medium.members
    pop = np.array([int(KREISE[a]["population"]) for a in mu["municipality_id"].to_list()])
    cap = _ints(mu, "capacity_persons")
    spearman = np.corrcoef(_ranks(pop), _ranks(cap))[0, 1]
    assert spearman > 0.7
    big = pop >= np.median(pop)
    assert cap[big].mean() > 2 * cap[~big].mean()

    persons = m.height
    assert 1.1 <= cap.sum() / persons <= 1.3 + 1 / persons
    housing = _ints(mu, "housing_units")
    sizeable = cap >= 23
    assert np.all((housing[sizeable] / cap[sizeable] > 0.3) & (housing[sizeable] / cap[sizeable] < 0.6))
    assert np.all(_ints(mu, "accessible_units") <= housing)
    assert set(_ints(mu, "largest_unit_persons")) <= set(range(3, 9))
    assert set(_ints(mu, "min_persons")) <= {0, 8}
    assert all(1 <= len(v.split()) <= 5 for v in mu["shortage_sectors"].to_list())
    assert 0.4 <= float((mu["pets_allowed"] == "yes").mean()) <= 0.8


def test_scarce_resources_cover_demand_but_are_tight_in_places(medium: SampleRound) -> None:
    mu, m = medium.municipalities, medium.members
    submitted = dict(zip(medium.households["submission_id"].to_list(), medium.households["submitted_at"].to_list()))
    ages = np.array([_age(d, submitted[s]) for s, d in m.select("submission_id", "date_of_birth").iter_rows()])
    kita_demand = int(((ages >= 1) & (ages <= 5)).sum())
    kita, cap = _ints(mu, "kita_places"), _ints(mu, "capacity_persons")
    assert kita.sum() >= kita_demand
    # Some district offers clearly fewer kita places than its share of the persons capacity.
    fair = kita_demand * cap / cap.sum()
    assert np.any((fair >= 5) & (kita < 0.5 * fair))
    assert np.any(_ints(mu, "accessible_units") == 0)
    care = [set(v.split()) for v in mu["medical_care"].to_list()]
    assert any("dialysis" not in c for c in care) and any(c == set(MEDICAL) for c in care)


def _distance_km(a: dict[str, str], b: dict[str, str]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (float(a["lat_popweighted"]), float(a["lon_popweighted"]), float(b["lat_popweighted"]), float(b["lon_popweighted"])))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _compatible_counts(sample: SampleRound) -> list[int]:
    """Per household, the offering municipalities that meet all its hard constraints (contract C)."""
    offers = [
        {
            "ags": r["municipality_id"],
            "care": set(r["medical_care"].split()),
            "pets": r["pets_allowed"] == "yes",
            "largest": int(r["largest_unit_persons"]),
            "accessible": int(r["accessible_units"]),
        }
        for r in sample.municipalities.iter_rows(named=True)
    ]
    needs: dict[str, dict] = {}
    for sid, med, wheel in sample.members.select("submission_id", "medical_needs", "wheelchair").iter_rows():
        n = needs.setdefault(sid, {"size": 0, "med": set(), "wheel": False})
        n["size"] += 1
        n["med"] |= set(med.split())
        n["wheel"] |= wheel == "yes"
    counts = []
    for row in sample.households.iter_rows(named=True):
        n = needs[row["submission_id"]]
        excluded = set(row["excluded_municipality_ids"].split())
        must = row["family_ties_municipality_id"] if row["family_ties_importance"] == "must" else None
        ok = 0
        for o in offers:
            if (
                n["size"] <= o["largest"]
                and n["med"] <= o["care"]
                and (o["pets"] or row["pets"] == "no")
                and (o["accessible"] > 0 or not n["wheel"])
                and o["ags"] not in excluded
                and (must is None or must == o["ags"] or _distance_km(KREISE[must], KREISE[o["ags"]]) <= 50)
            ):
                ok += 1
        counts.append(ok)
    return counts


@pytest.mark.parametrize(("households", "municipalities", "seed"), [(2000, 120, 7), (1500, 12, 3), (400, 3, 9)])
def test_most_households_have_a_compatible_municipality(households: int, municipalities: int, seed: int) -> None:
    counts = _compatible_counts(generate_round(households, municipalities, seed))
    assert sum(c > 0 for c in counts) / len(counts) >= 0.95
    # By design some municipalities cannot serve some needs.
    assert sum(c < municipalities for c in counts) > 0


def test_other_period_and_leap_day(tmp_path: Path) -> None:
    sample = generate_round(3000, 20, seed=4, period="2024-02")
    assert set(sample.municipalities["intake_period"].to_list()) == {"2024-02"}
    assert all(s.startswith("2024-02-") for s in sample.households["submitted_at"].to_list())
    assert all(r.startswith("RM-202402-") for r in sample.households["household_ref"].to_list())
    dobs = sample.members["date_of_birth"].to_list()
    assert all(dt.date.fromisoformat(d) <= dt.date(2024, 2, 29) for d in dobs)
    paths = write_round(sample, tmp_path)
    assert paths[0].name == "municipalities_2024-02.csv" and paths[2].name == "members_2024-02.csv"


def test_fifty_thousand_households_generate_and_write(tmp_path: Path) -> None:
    # Its time is in the ingest benchmark's "generate" column, not asserted here.
    sample = generate_round(50_000, 400, seed=1)
    paths = write_round(sample, tmp_path)
    assert sample.households.height == 50_000 and sample.municipalities.height == 400
    _, rows = _read_csv(paths[2])
    assert len(rows) == sample.members.height > 100_000
    cap = _ints(sample.municipalities, "capacity_persons").sum()
    assert 1.1 <= cap / sample.members.height <= 1.31


@pytest.mark.parametrize("fmt", ["csv", "kobo-xlsx"])
def test_rematch_sample_says_its_steps_on_stderr_and_prints_only_the_period(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rematch sample` printed nothing for its 24 s at national size. It now says each step on stderr (what it
    draws or writes, how many rows), as `rematch ingest` and `rematch erase` do; stdout stays the period alone,
    which scripts read."""
    from rematch_pipeline.cli import main

    assert main(["sample", "--households", "25", "--municipalities", "3", "--seed", "4", "--out", str(tmp_path), "--format", fmt]) == 0
    out, err = capsys.readouterr()
    assert out == "2026-07\n"
    lines = err.splitlines()
    assert all(line.startswith("sample: ") for line in lines)
    assert lines[0] == "sample: drawing 25 households and their members (seed 4, period 2026-07)"
    written = [line for line in lines if line.startswith("sample: writing ")]
    assert len(written) == (3 if fmt == "csv" else 2)
    assert any("households" in line and "25 " in line for line in written)
    assert lines[-1] == f"sample: written to {tmp_path}"

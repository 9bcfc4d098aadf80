"""Independent check of a round's proposals against the original canonical exports.

Deliberately shares no code with the pipeline: it reads the CSV files with the csv module,
derives ages and needs itself and checks every hard rule of contract section C plus capacities.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections import defaultdict
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent.parent / "rematch_pipeline" / "reference"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _coordinates() -> dict[str, tuple[float, float]]:
    coords = {}
    for row in _rows(REFERENCE / "kreise_2020_derived.csv"):
        coords[row["ags"]] = (float(row["lat_popweighted"]), float(row["lon_popweighted"]))
    for row in _rows(REFERENCE / "gemeinden_2020_clean.csv"):
        if row["lat"]:
            coords[row["ags"]] = (float(row["lat"]), float(row["lon"]))
    return coords


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def _same_place(a: str, b: str) -> bool:
    return a == b or (len(a) != len(b) and (a.startswith(b) or b.startswith(a)))


def _age(born: str, on: dt.date) -> int:
    d = dt.date.fromisoformat(born)
    return on.year - d.year - ((on.month, on.day) < (d.month, d.day))


def violations(sample_dir: Path, proposals_csv: Path) -> dict[str, list[str]]:
    """Rule name → list of violations (household_ref / municipality ids only)."""
    munis = {r["municipality_id"]: r for r in _rows(next((sample_dir / "municipalities").glob("*.csv")))}
    households = {r["household_ref"]: r for r in _rows(next((sample_dir / "households").glob("households_*.csv")))}
    members: dict[str, list[dict[str, str]]] = defaultdict(list)
    for m in _rows(next((sample_dir / "households").glob("members_*.csv"))):
        members[m["submission_id"]].append(m)
    proposals = _rows(proposals_csv)
    placed = {p["household_ref"]: p["municipality_id"] for p in proposals}
    coords = _coordinates()
    found: dict[str, list[str]] = defaultdict(list)
    if len(placed) != len(proposals):
        found["at_most_one_place"].append("a household is proposed twice")
    use: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for ref, mid in placed.items():
        h = households[ref]
        m = munis[mid]
        people = members[h["submission_id"]]
        on = dt.date.fromisoformat(h["submitted_at"][:10])
        ages = [_age(p["date_of_birth"], on) for p in people]
        if h["consent_processing"] != "yes":
            found["consent"].append(ref)
        if len(people) > int(m["largest_unit_persons"]):
            found["largest_unit"].append(ref)
        needs = {code for p in people for code in p["medical_needs"].split()}
        if not needs <= set(m["medical_care"].split()):
            found["medical_care"].append(ref)
        if h["pets"] == "yes" and m["pets_allowed"] != "yes":
            found["pets"].append(ref)
        if any(_same_place(mid, x) for x in h["excluded_municipality_ids"].split()):
            found["excluded"].append(ref)
        tie = h["family_ties_municipality_id"]
        if h["family_ties_importance"] == "must" and tie and not _same_place(mid, tie):
            seat = (float(m["latitude"]), float(m["longitude"]))
            if tie not in coords or _km(seat, coords[tie]) > 50.0:
                found["family_tie_must"].append(ref)
        for other in h["linked_household_refs"].split():
            if placed.get(other) != mid:
                found["linked_together"].append(ref)
        u = use[mid]
        u["persons"] += len(people)
        u["housing_units"] += 1
        u["accessible_units"] += int(any(p["wheelchair"] == "yes" for p in people))
        u["kita_places"] += sum(1 <= a <= 5 for a in ages)
        u["school_places_primary"] += sum(6 <= a <= 10 for a in ages)
        u["school_places_secondary"] += sum(11 <= a <= 17 for a in ages)
        u["integration_course_places"] += sum(
            18 <= a <= 64 and p["german_level"] in ("none", "A1", "A2") for a, p in zip(ages, people)
        )
    for mid, u in use.items():
        m = munis[mid]
        caps = {
            "persons": int(m["capacity_persons"]),
            "housing_units": int(m["housing_units"]),
            "accessible_units": int(m["accessible_units"]),
            "kita_places": int(m["kita_places"]),
            "school_places_primary": int(m["school_places_primary"]),
            "school_places_secondary": int(m["school_places_secondary"]),
            "integration_course_places": int(m["integration_course_places"]),
        }
        for resource, cap in caps.items():
            if u[resource] > cap:
                found[f"capacity_{resource}"].append(mid)
        minimum = int(m["min_persons"] or 0)
        if 0 < u["persons"] < minimum:
            found["min_persons"].append(mid)
    return dict(found)

"""Hard rules of contract section C, one named test per rule."""

from __future__ import annotations


import polars as pl
import pytest
from tests.engine.builders import household, households_df, municipalities_df, municipality

from rematch_pipeline.engine._common import ags_matches
from rematch_pipeline.engine.compatibility import RULES, candidate_pairs, exclusion_counts, exclusion_tables
from rematch_pipeline.engine.synthetic import random_households, random_municipalities


def places_of(pairs: pl.DataFrame, pseudonym: str) -> list[str]:
    return pairs.filter(pl.col("household_pseudonym") == pseudonym).get_column("municipality_id").to_list()


def counts_of(households: pl.DataFrame, municipalities: pl.DataFrame, pseudonym: str) -> dict[str, int]:
    df = exclusion_counts(households, municipalities).filter(pl.col("household_pseudonym") == pseudonym)
    return dict(zip(df.get_column("rule").to_list(), df.get_column("municipalities_excluded").to_list(), strict=True))


def test_no_rule_binds_gives_all_pairs(three_places: pl.DataFrame) -> None:
    hh = households_df(household("b"), household("a"))
    pairs = candidate_pairs(hh, three_places)
    assert pairs.columns == ["household_pseudonym", "municipality_id"]
    assert pairs.rows() == [
        ("a", "01001"), ("a", "01002"), ("a", "01003"),
        ("b", "01001"), ("b", "01002"), ("b", "01003"),
    ]


def test_persons_fit_largest_unit() -> None:
    mu = municipalities_df(municipality("01001", largest_unit_persons=4), municipality("01002", largest_unit_persons=5))
    hh = households_df(household("a", persons=5), household("b", persons=4))
    pairs = candidate_pairs(hh, mu)
    assert places_of(pairs, "a") == ["01002"]
    assert places_of(pairs, "b") == ["01001", "01002"]
    assert counts_of(hh, mu, "a")["largest_unit"] == 1


def test_every_medical_need_offered() -> None:
    mu = municipalities_df(
        municipality("01001", medical_care=["general", "dialysis"]),
        municipality("01002", medical_care=["general"]),
        municipality("01003", medical_care=["dialysis", "oncology", "general"]),
    )
    hh = households_df(
        household("a", medical_needs=["dialysis", "oncology"]),
        household("b", medical_needs=["dialysis"]),
        household("c", medical_needs=[]),
    )
    pairs = candidate_pairs(hh, mu)
    assert places_of(pairs, "a") == ["01003"]
    assert places_of(pairs, "b") == ["01001", "01003"]
    assert places_of(pairs, "c") == ["01001", "01002", "01003"]


def test_unknown_medical_need_is_never_satisfied() -> None:
    mu = municipalities_df(municipality("01001", medical_care=["general", "not_a_code"]))
    hh = households_df(household("a", medical_needs=["not_a_code"]))
    assert candidate_pairs(hh, mu).height == 0


def test_pets_only_where_allowed() -> None:
    mu = municipalities_df(municipality("01001", pets_allowed=False), municipality("01002", pets_allowed=True))
    hh = households_df(household("a", pets=True), household("b", pets=False))
    pairs = candidate_pairs(hh, mu)
    assert places_of(pairs, "a") == ["01002"]
    assert places_of(pairs, "b") == ["01001", "01002"]
    assert counts_of(hh, mu, "a")["pets"] == 1


def test_excluded_never_proposed_with_ags_prefix_rule() -> None:
    mu = municipalities_df(municipality("01001"), municipality("01002"), municipality("01002003"), municipality("01003"))
    # A Kreis key excludes its Gemeinden; a Gemeinde key excludes its Kreis; equal keys match.
    hh = households_df(
        household("a", excluded_municipality_ids=["01002"]),
        household("b", excluded_municipality_ids=["01001999"]),
        household("c", excluded_municipality_ids=["01003"]),
    )
    pairs = candidate_pairs(hh, mu)
    assert places_of(pairs, "a") == ["01001", "01003"]
    assert places_of(pairs, "b") == ["01002", "01002003", "01003"]
    assert places_of(pairs, "c") == ["01001", "01002", "01002003"]


def test_declined_never_proposed_again() -> None:
    mu = municipalities_df(municipality("01001"), municipality("01002"))
    hh = households_df(household("a", declined_municipality_ids=["01002"]))
    assert places_of(candidate_pairs(hh, mu), "a") == ["01001"]
    assert counts_of(hh, mu, "a")["declined"] == 1


def test_must_family_tie_within_50_km() -> None:
    # 0.1 degree latitude ~ 11.1 km: 0.44 deg ~ 48.9 km (in), 0.46 deg ~ 51.2 km (out).
    mu = municipalities_df(
        municipality("01001", latitude=52.44, longitude=10.0),
        municipality("01002", latitude=52.46, longitude=10.0),
        municipality("01003", latitude=52.0, longitude=10.0),
    )
    hh = households_df(
        household(
            "a",
            family_ties_municipality_id="09999",
            family_ties_importance="must",
            family_tie_lat=52.0,
            family_tie_lon=10.0,
        ),
        household(
            "b",
            family_ties_municipality_id="09999",
            family_ties_importance="nice",
            family_tie_lat=52.0,
            family_tie_lon=10.0,
        ),
    )
    pairs = candidate_pairs(hh, mu)
    assert places_of(pairs, "a") == ["01001", "01003"]
    assert places_of(pairs, "b") == ["01001", "01002", "01003"]  # `nice` is only a score


def test_must_family_tie_matches_tie_municipality_by_ags() -> None:
    # Far away by coordinates, but the tie Gemeinde lies in Kreis 01002.
    mu = municipalities_df(
        municipality("01001", latitude=48.0),
        municipality("01002", latitude=48.0),
    )
    hh = households_df(
        household(
            "a",
            family_ties_municipality_id="01002005",
            family_ties_importance="must",
            family_tie_lat=54.0,
            family_tie_lon=10.0,
        )
    )
    assert places_of(candidate_pairs(hh, mu), "a") == ["01002"]
    assert counts_of(hh, mu, "a")["family_tie_must"] == 1


def test_must_tie_without_coordinates_uses_ags_only() -> None:
    mu = municipalities_df(municipality("01001"), municipality("01002", latitude=52.0, longitude=10.0))
    hh = households_df(household("a", family_ties_municipality_id="01001", family_ties_importance="must"))
    assert places_of(candidate_pairs(hh, mu), "a") == ["01001"]


@pytest.mark.parametrize(
    ("usage", "capacity"),
    [
        ("persons", "capacity_persons"),
        ("accessible_units", "accessible_units"),
        ("kita_places", "kita_places"),
        ("school_places_primary", "school_places_primary"),
        ("school_places_secondary", "school_places_secondary"),
        ("integration_course_places", "integration_course_places"),
    ],
)
def test_resource_fits_in_isolation(usage: str, capacity: str) -> None:
    mu = municipalities_df(municipality("01001", **{capacity: 1}), municipality("01002", **{capacity: 3}))
    hh = households_df(household("a", **{usage: 2}))
    assert places_of(candidate_pairs(hh, mu), "a") == ["01002"]
    assert counts_of(hh, mu, "a")[f"resource_{usage}"] == 1


def test_housing_units_needed() -> None:
    mu = municipalities_df(municipality("01001", housing_units=0), municipality("01002"))
    hh = households_df(household("a"))
    assert places_of(candidate_pairs(hh, mu), "a") == ["01002"]


def test_exclusion_counts_explain_unplaceable_household() -> None:
    mu = municipalities_df(
        municipality("01001", pets_allowed=False),
        municipality("01002", largest_unit_persons=3),
        municipality("01003", pets_allowed=False, largest_unit_persons=3),
    )
    hh = households_df(household("a", pets=True, persons=4), household("b"))
    counts = counts_of(hh, mu, "a")
    assert list(counts) == [*RULES, "any"]
    assert counts["pets"] == 2
    assert counts["largest_unit"] == 2
    assert counts["any"] == 3
    assert counts_of(hh, mu, "b")["any"] == 0
    assert candidate_pairs(hh, mu).filter(pl.col("household_pseudonym") == "a").height == 0


def test_exclusions_from_the_municipalities_side_say_why_households_did_not_come() -> None:
    mu = municipalities_df(
        municipality("01001", pets_allowed=False),
        municipality("01002", largest_unit_persons=3),
        municipality("01003", pets_allowed=False, largest_unit_persons=3),
    )
    hh = households_df(household("a", pets=True, persons=4), household("b", pets=True), household("c"))
    per_household, per_place = exclusion_tables(hh, mu)
    assert per_household.equals(exclusion_counts(hh, mu))
    by = {(r["municipality_id"], r["rule"]): r["households_excluded"] for r in per_place.iter_rows(named=True)}
    assert (by["01001", "pets"], by["01001", "largest_unit"], by["01001", "any"]) == (2, 0, 2)  # a and b keep pets
    assert (by["01002", "pets"], by["01002", "largest_unit"], by["01002", "any"]) == (0, 1, 1)  # a has 4 persons
    assert (by["01003", "pets"], by["01003", "largest_unit"], by["01003", "any"]) == (2, 1, 2)
    # Seen from either side, a rule excludes the same (household, municipality) pairs.
    for rule in [*RULES, "any"]:
        assert per_household.filter(rule=rule)["municipalities_excluded"].sum() == per_place.filter(rule=rule)["households_excluded"].sum()
    # "any" and the candidates at a place add up to every household.
    pairs = candidate_pairs(hh, mu).group_by("municipality_id").len()
    assert all(by[m, "any"] + n == hh.height for m, n in pairs.iter_rows())


def test_result_independent_of_row_order_and_chunking() -> None:
    mu = random_municipalities(3, total_capacity=2_000, n_places=40)
    hh = random_households(300, 3, places=mu)
    base = candidate_pairs(hh, mu)
    shuffled = candidate_pairs(hh.sample(fraction=1.0, shuffle=True, seed=1), mu.reverse(), chunk_size=7)
    assert base.equals(shuffled)
    counts = exclusion_counts(hh, mu, chunk_size=13)
    any_rows = counts.filter(pl.col("rule") == "any")
    per_household = base.group_by("household_pseudonym").len()
    joined = any_rows.join(per_household, on="household_pseudonym", how="left").fill_null(0)
    assert (joined.get_column("municipalities_excluded") + joined.get_column("len") == mu.height).all()


def test_ags_match_rule() -> None:
    assert ags_matches("01001", "01001")
    assert ags_matches("01001", "01001004")
    assert ags_matches("01001004", "01001")
    assert not ags_matches("01001004", "01001005")
    assert not ags_matches("01002", "01001004")


def test_duplicate_keys_rejected_without_values() -> None:
    mu = municipalities_df(municipality("01001"), municipality("01001"))
    with pytest.raises(ValueError, match="1 duplicate keys"):
        candidate_pairs(households_df(household("a")), mu)


def test_candidate_pairs_at_5000_households() -> None:
    # Its time is in benchmarks/engine_scale.py, not asserted here.
    mu = random_municipalities(1, total_capacity=12_000)
    hh = random_households(5_000, 1)
    pairs = candidate_pairs(hh, mu)
    assert pairs.height > 0 and not pairs.is_duplicated().any()
    assert set(pairs["municipality_id"]) <= set(mu["municipality_id"])

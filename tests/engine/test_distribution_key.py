"""The fixed distribution key as a baseline (rematch_pipeline.engine.distribution_key, docs/mechanisms.md §6).

A hand-made round whose key assignment and counts are computed by hand in the comments, the
apportionment by largest remainder, determinism, and rules_broken against candidate_pairs.
"""

from __future__ import annotations


import numpy as np
import polars as pl

from rematch_pipeline.ags_reference import koenigstein_shares, reference_population
from rematch_pipeline.engine.compatibility import RULES, candidate_pairs, rules_broken
from rematch_pipeline.engine.distribution_key import (
    distribute_by_key,
    distribution_key_baseline,
    key_quotas,
    key_quotas_by_land,
)
from rematch_pipeline.engine.mechanisms import stability_report
from rematch_pipeline.engine.problem import AssignmentProblem, build_problem
from rematch_pipeline.engine.scoring import score_pairs
from tests.engine.builders import household, households_df, municipality, municipalities_df

A, B, C = "01001", "01002", "01003"
POPULATION = {A: 1000, B: 2000, C: 1000}


def _round() -> tuple[pl.DataFrame, pl.DataFrame]:
    """19 persons in 7 households; A, B, C keyed 1 : 2 : 1 by population."""
    households = households_df(
        household("h1", persons=4),
        household("h2", persons=2, pets=True),
        household("h3", persons=3, excluded_municipality_ids=[B]),
        household("h4", persons=1, medical_needs=["dialysis"]),
        household("h5", persons=2, link_group="g"),
        household("h6", persons=2, link_group="g"),
        household("h7", persons=5),
    )
    municipalities = municipalities_df(
        municipality(A, capacity_persons=6, pets_allowed=False, housing_units=1),
        municipality(B, capacity_persons=10),
        municipality(C, capacity_persons=4, min_persons=5),
    )
    return households, municipalities


def test_largest_remainder_shares_by_hand() -> None:
    # 19 x 1/4 = 4.75, 19 x 2/4 = 9.5, 4.75: floors 4, 9, 4 (17); the 2 left go to the remainders .75, .75.
    assert key_quotas(19, np.array([1000, 2000, 1000])).tolist() == [5, 9, 5]
    # By capacity 6, 10, 4: 5.7, 9.5, 3.8 -> floors 5, 9, 3; the 2 left go to .8 (C) and .7 (A).
    assert key_quotas(19, np.array([6, 10, 4])).tolist() == [6, 9, 4]
    # Equal remainders: the lower index first; no weight at all: nobody has a share.
    assert key_quotas(2, np.array([1, 1, 1])).tolist() == [1, 1, 0]
    assert key_quotas(5, np.array([0, 0])).tolist() == [0, 0]


def test_the_key_sends_each_household_furthest_below_its_share_where_persons_fit() -> None:
    # Shares 5, 9, 5, rooms 6, 10, 4 (shortfall / room after each household):
    # h1 (4) -> B (9 largest): B 5/6;  h2 (2) -> A (5 = 5 = 5, lowest index): A 3/4;
    # h3 (3) -> B (5 ties C, lower index): B 2/3;  h4 (1) -> C (5): C 4/3;  h5 (2) -> C (4): C 2/1;
    # h6 (2) -> A (3; C has no room): A 1/2;  h7 (5): room 2, 3, 1 -> nowhere.
    place = distribute_by_key(np.array([4, 2, 3, 1, 2, 2, 5]), np.array([6, 10, 4]), np.array([5, 9, 5]))
    assert place.tolist() == [1, 0, 1, 2, 2, 0, -1]


def test_a_hand_made_round_under_the_key_counts_what_the_rules_forbid() -> None:
    households, municipalities = _round()
    summary = distribution_key_baseline(households, municipalities, key_weight=POPULATION)
    # h1 -> B allowed; h2 -> A pets not allowed; h3 -> B excluded by it; h4 -> C no dialysis;
    # h5 -> C and h6 -> A: linked households split (both count); h7 unplaced.
    by_rule = {rule: 0 for rule in (*RULES, "linked_split")}
    by_rule.update(pets=1, excluded=1, medical_care=1, linked_split=2)
    h1_at_b = score_pairs(pl.DataFrame({"household_pseudonym": ["h1"], "municipality_id": [B]}), households, municipalities)
    assert summary == {
        "key": "population",
        "households": 7,
        "households_locked": 0,
        "households_placed": 6,
        "persons_placed": 14,
        "households_forbidden": 5,
        "households_allowed": 1,
        "total_score": h1_at_b["score"][0],
        "mean_score": h1_at_b["score"][0],
        "forbidden_by_rule": by_rule,
        # C takes 3 persons of its minimum 5; A gets 2 households into its 1 dwelling.
        "places_below_minimum_intake": 1,
        "places_over_capacity": 1,
    }


def test_without_a_population_the_key_is_the_capacity_offered() -> None:
    households, municipalities = _round()
    summary = distribution_key_baseline(households, municipalities)
    # Shares 6, 9, 4: h1 -> B (9): 5/6; h2 -> A (6): 4/4; h3 -> B (5): 2/3; h4 -> C (4): 3/3; h5 -> A (4): 2/2;
    # h6 -> C (3): 1/1; h7 nowhere. Forbidden: h2 pets, h3 excluded, h4 dialysis, h5 and h6 split; h1 allowed.
    assert summary["key"] == "capacity_persons"
    assert (summary["households_placed"], summary["persons_placed"], summary["households_forbidden"]) == (6, 14, 5)
    assert summary["forbidden_by_rule"]["linked_split"] == 2


def test_the_key_is_deterministic_and_follows_pseudonyms_not_row_order() -> None:
    households, municipalities = _round()
    first = distribution_key_baseline(households, municipalities, key_weight=POPULATION)
    shuffled = distribution_key_baseline(
        households.sample(fraction=1.0, shuffle=True, seed=7), municipalities.reverse(), key_weight=POPULATION
    )
    assert shuffled == first


def test_rules_broken_agrees_with_candidate_pairs() -> None:
    households, municipalities = _round()
    every = households.select("household_pseudonym").join(municipalities.select("municipality_id"), how="cross")
    broken = rules_broken(households, municipalities, every)
    allowed = broken.filter(~pl.any_horizontal(list(RULES))).select("household_pseudonym", "municipality_id")
    assert allowed.sort(pl.all()).equals(candidate_pairs(households, municipalities).sort(pl.all()))
    assert broken.height == every.height and broken.select(list(RULES)).to_numpy().any()


def test_at_national_scale_no_municipality_gets_more_than_its_share_and_one_household() -> None:
    """10,000 households x 401 municipalities with room to spare: everyone is placed, and since each household goes
    where the shortfall is largest (always at least 1 person while persons remain), no municipality ends more than
    a household (less one person) above its share. Its speed is in docs/mechanisms.md §6 (0.13 s), not asserted."""
    rng = np.random.default_rng(3)
    persons = rng.integers(1, 8, size=10_000)
    quota = key_quotas(int(persons.sum()), rng.integers(1, 5_000, size=401))
    place = distribute_by_key(persons, quota + 10, quota)
    assert (place >= 0).all()
    used = np.bincount(place, weights=persons, minlength=401).astype(np.int64)
    assert used.sum() == quota.sum() and (used - quota).max() <= persons.max() - 1


def test_the_key_places_locked_households_first_against_their_share_and_never_uses_a_forbidden_pair() -> None:
    # Shares 5, 9, 5, rooms 6, 10, 4; h7 (5) locked to B first: B 4/5. Then, h1 (4) barred from B:
    # A 5/6 ties C 5/4 -> A: 1/2;  h2 (2) -> C (5): 3/2;  h3 (3): only B has room -> B: 1/2;
    # h4 (1) -> C (3): 2/1;  h5 (2): A 1/2 ties B 1/2 -> A: -1/0;  h6 (2): only B -> B: -1/0.
    locked = np.array([-1, -1, -1, -1, -1, -1, 1])
    place = distribute_by_key(np.array([4, 2, 3, 1, 2, 2, 5]), np.array([6, 10, 4]), np.array([5, 9, 5]), locked, [(0, 1)])
    assert place.tolist() == [0, 2, 1, 2, 0, 1, 1]
    # Without them h1 took B and h7 found no room (test above).
    assert distribute_by_key(np.array([4, 2, 3, 1, 2, 2, 5]), np.array([6, 10, 4]), np.array([5, 9, 5]))[[0, 6]].tolist() == [1, -1]


def test_a_lock_holds_the_whole_link_group_in_the_round_baseline() -> None:
    households, municipalities = _round()
    # h5 locked to B brings h6 (link group g): 4 persons at B first, B 5/6. h1 barred from B: A 5/6 ties C 5/4 -> A;
    # h2 -> B (5 ties C, lower index); h3 -> C (5); h4 -> B (3); h7 (5): rooms 2, 3, 1 -> nowhere.
    # Forbidden: h4's dialysis at B only; the group is whole, h1 at A and h2 at B are allowed (A: no pets, h1 has none).
    summary = distribution_key_baseline(households, municipalities, key_weight=POPULATION, locked=[("h5", B)], forbidden=[("h1", B)])
    assert (summary["households_locked"], summary["households_placed"], summary["persons_placed"]) == (2, 6, 14)
    assert summary["forbidden_by_rule"]["linked_split"] == 0 and summary["forbidden_by_rule"]["medical_care"] == 1
    assert summary["households_forbidden"] == 1


def _problem(households: pl.DataFrame, municipalities: pl.DataFrame) -> AssignmentProblem:
    scored = score_pairs(candidate_pairs(households, municipalities), households, municipalities, breakdown=False)
    return build_problem(households, municipalities, scored)


def test_a_household_the_key_sends_where_a_rule_forbids_wants_any_candidate_and_ranks_last_there() -> None:
    # Keyed by capacity 1 : 2, 2 persons: shares 1, 1 (the remainder .67 to A). x -> A (tie, lower id), where its
    # dialysis is not offered; y -> B. y may not go to A (excluded). x counts as placed nowhere acceptable: it wants
    # B, its one candidate, where 1 place is free: (x, B) blocks whatever the scores. y, at its one candidate B,
    # wants nothing else. Whether B ranks x above y (justified envy) follows the scores, so it is not asserted.
    households = households_df(
        household("x", persons=1, medical_needs=["dialysis"]), household("y", persons=1, excluded_municipality_ids=[A])
    )
    municipalities = municipalities_df(
        municipality(A, capacity_persons=1), municipality(B, capacity_persons=2, medical_care=["general", "dialysis"])
    )
    summary = distribution_key_baseline(households, municipalities, stability=_problem(households, municipalities))
    assert summary["forbidden_by_rule"]["medical_care"] == 1 and summary["households_allowed"] == 1
    assert (summary["blocking_pairs"], summary["units_in_blocking_pairs"]) == (1, 1)


def test_a_link_group_the_key_splits_is_unplaced_and_its_households_are_held_apart_below_everyone() -> None:
    # Capacity 2 and 2, 4 persons: shares 2, 2. a1 -> A (tie), a2 -> B (2 against 1), z (2 persons): room 1 and 1 ->
    # nowhere. The group {a1, a2} is no placement: unplaced as a unit, a1 and a2 held apart, last at their places.
    # Each place has 1 free + 1 held apart = 2 for z and for the group: 4 blocking pairs, 2 units in them, and
    # each of the 4 envies the household held apart there (justified envy 4), whatever the scores.
    households = households_df(
        household("a1", persons=1, link_group="a"), household("a2", persons=1, link_group="a"), household("z", persons=2)
    )
    municipalities = municipalities_df(municipality(A, capacity_persons=2), municipality(B, capacity_persons=2))
    problem = _problem(households, municipalities)
    summary = distribution_key_baseline(households, municipalities, stability=problem)
    assert summary["forbidden_by_rule"]["linked_split"] == 2 and summary["households_placed"] == 2
    expected = {"blocking_pairs": 4, "units_in_blocking_pairs": 2, "units_with_justified_envy": 2, "justified_envy": 4}
    assert {k: summary[k] for k in expected} == expected
    # Counted as plain unplaced (nobody held apart), the same round would show no justified envy at all.
    assert stability_report(problem, np.array([-1, -1]))["justified_envy"] == 0


def test_the_koenigstein_step_shares_persons_between_lander_first_by_hand() -> None:
    # Länder 01 and 02 weighted 3 : 1; municipalities 01001, 01002 (Land 01) and 02000 (Land 02) of population
    # 100, 100, 600. 8 persons: Land 01 gets 6, Land 02 gets 2; within Land 01 the 6 go 3 : 3.
    # By population across the round (the old key) they would go 1, 1, 6.
    lands = ["01", "01", "02"]
    assert key_quotas_by_land(8, np.array([100, 100, 600]), lands, {"01": 3, "02": 1}).tolist() == [3, 3, 2]
    assert key_quotas(8, np.array([100, 100, 600])).tolist() == [1, 1, 6]
    # 9 persons: 6.75 and 2.25 -> 6, 2, the one left to Land 01 (.75); its 7 go 100 : 200 -> 2.33, 4.67 -> 2, 5.
    assert key_quotas_by_land(9, np.array([100, 200, 600]), lands, {"01": 3, "02": 1}).tolist() == [2, 5, 2]
    # Renormalised among the Länder present: a Land absent from the round takes nothing (Land 03's weight is unused).
    assert key_quotas_by_land(8, np.array([100, 100, 600]), lands, {"01": 3, "02": 1, "03": 96}).tolist() == [3, 3, 2]
    # A Land whose municipalities all weigh 0 takes no share: its persons would have nowhere to go.
    assert key_quotas_by_land(4, np.array([0, 0, 5]), lands, {"01": 1, "02": 1}).tolist() == [0, 0, 4]
    # Equal Länder and an odd person: the smaller Land code first (then the lower index within it).
    assert key_quotas_by_land(3, np.array([1, 1, 1]), lands, {"01": 1, "02": 1}).tolist() == [1, 1, 1]
    assert key_quotas_by_land(1, np.array([1, 1, 1]), lands, {"01": 1, "02": 1}).tolist() == [1, 0, 0]


def test_a_round_of_one_land_gets_exactly_the_population_key() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        weight = rng.integers(0, 1_000, size=int(rng.integers(1, 30)))
        total = int(rng.integers(0, 500))
        assert key_quotas_by_land(total, weight, ["09"] * weight.size, koenigstein_shares()).tolist() == key_quotas(total, weight).tolist()
    # The whole baseline too: the hand-made round lies in Land 01, so only the key's name changes.
    households, municipalities = _round()
    today = distribution_key_baseline(households, municipalities, key_weight=POPULATION)
    by_land = distribution_key_baseline(households, municipalities, key_weight=POPULATION, land_weight=koenigstein_shares())
    assert by_land == {**today, "key": "koenigstein+population"}


def test_the_koenigstein_shares_are_the_2017_column_in_exact_integers() -> None:
    shares = koenigstein_shares()
    assert len(shares) == 16 and sum(shares.values()) == 10_000_000  # the column sums to exactly 100.00000 %
    assert (shares["05"], shares["11"], shares["04"]) == (2_114_424, 508_324, 95_331)  # NRW, Berlin, Bremen
    # Düsseldorf (NRW) and Berlin, 100 persons: by the key 2,114,424 : 508,324 -> 80.62, 19.38 -> 81, 19; by their
    # population (0.62 M against 3.67 M) Berlin would take most of them.
    population = reference_population(["05111", "11000"])
    assert population is not None and population["11000"] > 5 * population["05111"]
    assert key_quotas_by_land(100, np.array([population["05111"], population["11000"]]), ["05", "11"], shares).tolist() == [81, 19]


def _two_lander_round() -> tuple[pl.DataFrame, pl.DataFrame]:
    """x (3 persons) and y (1 person, a pet); Land 01's 01001 (population 1000, no pets) and Land 02's 02000 (3000)."""
    households = households_df(household("x", persons=3), household("y", persons=1, pets=True))
    municipalities = municipalities_df(
        municipality("01001", capacity_persons=5, pets_allowed=False), municipality("02000", capacity_persons=5)
    )
    return households, municipalities


def test_the_baseline_applies_the_koenigstein_step_between_lander() -> None:
    households, municipalities = _two_lander_round()
    population = {"01001": 1000, "02000": 3000}
    # Länder 3 : 1 and 4 persons: shares 3 (01001) and 1 (02000). x (3) -> 01001 (3 against 1); y -> 02000 (1 against 0),
    # where its pet is allowed: nothing forbidden.
    summary = distribution_key_baseline(households, municipalities, key_weight=population, land_weight={"01": 3, "02": 1})
    assert summary["key"] == "koenigstein+population"
    assert (summary["households_placed"], summary["households_forbidden"], summary["forbidden_by_rule"]["pets"]) == (2, 0, 0)
    # By population alone (shares 1, 3) x went to 02000 and y to 01001, where pets are not allowed.
    alone = distribution_key_baseline(households, municipalities, key_weight=population)
    assert alone["key"] == "population" and alone["forbidden_by_rule"]["pets"] == 1


def test_without_a_population_the_koenigstein_step_still_shares_between_lander() -> None:
    households, municipalities = _two_lander_round()
    # Capacities 5 and 5 within the Länder, Länder 3 : 1: shares 3, 1 as above, so y goes to 02000. By capacity
    # alone (2, 2; the tie to the lower index), x -> 01001 (2 against 2), y -> 02000 (2 against -1): the same here,
    # but the key names both steps.
    summary = distribution_key_baseline(households, municipalities, land_weight={"01": 3, "02": 1})
    assert summary["key"] == "koenigstein+capacity_persons" and summary["households_forbidden"] == 0
    # Land weights 1 : 3 reverse the shares (1, 3): x -> 02000, y -> 01001 (pets not allowed).
    reversed_lander = distribution_key_baseline(households, municipalities, land_weight={"01": 1, "02": 3})
    assert reversed_lander["forbidden_by_rule"]["pets"] == 1
    # A municipality of no known Land (prefix 99): no Länder step for anyone.
    odd = municipalities.with_columns(pl.when(pl.col("municipality_id") == "02000").then(pl.lit("99000")).otherwise(pl.col("municipality_id")).alias("municipality_id"))
    assert distribution_key_baseline(households, odd, land_weight={"01": 3, "02": 1})["key"] == "capacity_persons"


def test_a_forbid_keeps_the_whole_link_group_away_from_that_municipality() -> None:
    # g1 and g2 linked, 1 person each; A and B take 2 each, keyed by capacity: shares 1, 1. The coordinator forbade
    # (g1, A). g1 -> B (A barred): B 0/1; g2 -> A would split the group (A 1 against B 0): it must not go to A,
    # so it goes to B too (room 1). The group stays whole at B: nothing forbidden.
    households = households_df(household("g1", persons=1, link_group="g"), household("g2", persons=1, link_group="g"))
    municipalities = municipalities_df(municipality(A, capacity_persons=2), municipality(B, capacity_persons=2))
    for named in ("g1", "g"):  # the household or its link group, as for a lock
        summary = distribution_key_baseline(households, municipalities, forbidden=[(named, A)])
        assert (summary["households_placed"], summary["households_forbidden"], summary["forbidden_by_rule"]["linked_split"]) == (2, 0, 0)

"""The score formula of docs/scoring.md, criterion by criterion."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from rematch_pipeline.engine._common import EARTH_RADIUS_KM
from rematch_pipeline.engine.compatibility import candidate_pairs
from rematch_pipeline.engine.scoring import CRITERIA, NEUTRAL_COLUMN, ScoreWeights, score_pairs
from rematch_pipeline.engine.synthetic import random_households, random_municipalities
from tests.engine.builders import household, households_df, municipalities_df, municipality

KM_100_IN_DEGREES = math.degrees(100.0 / EARTH_RADIUS_KM)


def score_one(hh: dict, mu: dict, weights: ScoreWeights | None = None) -> dict[str, float]:
    pairs = pl.DataFrame({"household_pseudonym": [hh["household_pseudonym"]], "municipality_id": [mu["municipality_id"]]})
    out = score_pairs(pairs, households_df(hh), municipalities_df(mu), weights)
    return out.row(0, named=True)


def worked_example() -> tuple[dict, dict]:
    """The example of docs/scoring.md."""
    hh = household(
        "h1",
        imp_jobs=3,
        members_wanting_work=2,
        work_sectors=["healthcare", "it"],
        imp_schools_childcare=2,
        kita_places=1,
        imp_community=1,
        imp_family_nearby=3,
        family_ties_municipality_id="09162",
        family_ties_importance="nice",
        family_tie_lat=52.0,
        family_tie_lon=10.0,
        preferred_municipality_ids=["03101", "03241"],
    )
    mu = municipality(
        "03241",
        latitude=52.0 + KM_100_IN_DEGREES,
        longitude=10.0,
        shortage_sectors=["healthcare", "logistics"],
        kita_places=2,
        ukrainian_community="large",
        settlement_type="city",
        medical_care=["general", "dialysis", "oncology"],
    )
    return hh, mu


def test_worked_example_from_docs() -> None:
    row = score_one(*worked_example())
    assert row["score_jobs"] == 12.5
    assert row["score_schools_childcare"] == 11.1111
    assert row["score_community"] == 8.3333
    assert row["score_family_nearby"] == 12.5
    assert row["score_wishes"] == 20.0
    assert row["score_medical_care"] == row["score_big_city"] == row["score_quiet_rural"] == 0.0
    assert row["score"] == 64.4444
    assert sum(row[f"score_{c}"] for c in CRITERIA) + row[NEUTRAL_COLUMN] == pytest.approx(row["score"], abs=1e-9)


def test_household_without_importances_scores_50() -> None:
    row = score_one(household("h"), municipality("01001"))
    assert row["score"] == 50.0
    assert row[NEUTRAL_COLUMN] == 50.0
    assert all(row[f"score_{c}"] == 0.0 for c in CRITERIA)


def test_all_multipliers_zero_scores_50() -> None:
    hh, mu = worked_example()
    zero = ScoreWeights(**{c: 0.0 for c in CRITERIA})
    assert score_one(hh, mu, zero)["score"] == 50.0


def test_jobs_share_of_members_wanting_work() -> None:
    mu = municipality("01001", shortage_sectors=["it", "retail"])
    row = score_one(household("h", imp_jobs=2, members_wanting_work=3, work_sectors=["it", "retail", "student"]), mu)
    assert row["score"] == pytest.approx(100 * 2 / 3, abs=1e-4)  # only criterion rated


def test_jobs_skipped_when_nobody_wants_work() -> None:
    mu = municipality("01001", ukrainian_community="large")
    row = score_one(household("h", imp_jobs=3, members_wanting_work=0, imp_community=3), mu)
    assert row["score"] == 100.0  # jobs would have pulled it to 50
    assert row["score_jobs"] == 0.0


def test_none_and_student_never_fit() -> None:
    mu = municipality("01001", shortage_sectors=list(("it", "other")))
    row = score_one(household("h", imp_jobs=3, members_wanting_work=2, work_sectors=["none", "student"]), mu)
    assert row["score"] == 0.0


def test_schools_comfort_saturates_at_three_times_need() -> None:
    hh = household("h", imp_schools_childcare=3, kita_places=1, school_places_primary=2)
    full = score_one(hh, municipality("01001", kita_places=3, school_places_primary=6))
    tight = score_one(hh, municipality("01001", kita_places=1, school_places_primary=2))
    assert full["score"] == 100.0
    assert tight["score"] == pytest.approx(100 / 3, abs=1e-4)


def test_schools_skipped_without_children() -> None:
    row = score_one(household("h", imp_schools_childcare=3, imp_big_city=3), municipality("01001", settlement_type="big_city"))
    assert row["score"] == 100.0


def test_medical_breadth_and_settlement_and_community_scales() -> None:
    mu = municipality("01001", medical_care=["general", "dialysis", "oncology"], settlement_type="town", ukrainian_community="small")
    assert score_one(household("h", imp_medical_care=1), mu)["score"] == pytest.approx(100 * 3 / 9, abs=1e-4)
    assert score_one(household("h", imp_big_city=1), mu)["score"] == pytest.approx(100 / 3, abs=1e-4)
    assert score_one(household("h", imp_quiet_rural=1), mu)["score"] == pytest.approx(200 / 3, abs=1e-4)
    assert score_one(household("h", imp_community=1), mu)["score"] == 50.0


def test_family_nearby_linear_to_200_km_and_ags_match() -> None:
    base = {"imp_family_nearby": 2, "family_ties_importance": "nice", "family_tie_lat": 52.0, "family_tie_lon": 10.0}
    near = municipality("01001", latitude=52.0 + KM_100_IN_DEGREES, longitude=10.0)
    far = municipality("01001", latitude=52.0 + 2.5 * KM_100_IN_DEGREES, longitude=10.0)
    assert score_one(household("h", family_ties_municipality_id="09999", **base), near)["score"] == 50.0
    assert score_one(household("h", family_ties_municipality_id="09999", **base), far)["score"] == 0.0
    at_tie = municipality("01001", latitude=48.0)
    assert score_one(household("h", family_ties_municipality_id="01001007", **base), at_tie)["score"] == 100.0


def test_family_nearby_skipped_without_tie() -> None:
    row = score_one(household("h", imp_family_nearby=3), municipality("01001"))
    assert row["score"] == 50.0  # nothing applies: neutral


@pytest.mark.parametrize(("wishes", "expected"), [(["01001"], 100.0), (["09", "01001"], 80.0), (["1", "2", "01001004"], 60.0), (["02000"], 0.0)])
def test_wishes_by_rank_with_ags_rule(wishes: list[str], expected: float) -> None:
    row = score_one(household("h", preferred_municipality_ids=wishes), municipality("01001"))
    assert row["score"] == expected


def test_multiplier_scales_a_criterion() -> None:
    hh = household("h", imp_community=3, imp_big_city=3)
    mu = municipality("01001", ukrainian_community="large", settlement_type="rural")
    assert score_one(hh, mu)["score"] == 50.0
    assert score_one(hh, mu, ScoreWeights(community=3.0))["score"] == 75.0
    assert score_one(hh, mu, ScoreWeights(big_city=0.0))["score"] == 100.0


def test_weights_validation() -> None:
    with pytest.raises(ValueError, match="jobs"):
        ScoreWeights(jobs=-1.0)
    with pytest.raises(ValueError, match="unknown"):
        ScoreWeights.from_mapping({"parking": 1.0})
    assert ScoreWeights.from_mapping({"wishes": 2}).wishes == 2.0


def test_random_pairs_sum_and_range_and_order() -> None:
    mu = random_municipalities(5, total_capacity=3_000, n_places=60)
    hh = random_households(400, 5, places=mu)
    pairs = candidate_pairs(hh, mu).with_columns(pl.lit(1).alias("extra")).reverse()
    out = score_pairs(pairs, hh, mu)
    assert out.select("household_pseudonym", "municipality_id", "extra").equals(pairs)
    parts = out.select([f"score_{c}" for c in CRITERIA] + [NEUTRAL_COLUMN]).to_numpy().sum(axis=1)
    score = out.get_column("score").to_numpy()
    assert np.abs(parts - score).max() < 1e-9
    assert score.min() >= 0.0 and score.max() <= 100.0
    assert np.array_equal(np.round(score, 4), score)
    again = score_pairs(pairs.sample(fraction=1.0, shuffle=True, seed=3), hh.reverse(), mu)
    assert again.sort("household_pseudonym", "municipality_id").equals(out.sort("household_pseudonym", "municipality_id"))


def test_chunking_and_lean_output_keep_the_scores() -> None:
    mu = random_municipalities(5, total_capacity=3_000, n_places=60)
    hh = random_households(400, 5, places=mu)
    pairs = candidate_pairs(hh, mu).reverse()
    out = score_pairs(pairs, hh, mu)
    assert score_pairs(pairs, hh, mu, chunk_size=97).equals(out)
    lean = score_pairs(pairs, hh, mu, breakdown=False, chunk_size=97)
    assert lean.columns == ["household_pseudonym", "municipality_id", "score"]
    assert lean.equals(out.select(lean.columns))
    # Stale score columns of the input go, breakdown or not.
    assert score_pairs(out, hh, mu, breakdown=False).columns == lean.columns


def test_unknown_household_in_pairs_rejected() -> None:
    pairs = pl.DataFrame({"household_pseudonym": ["zz"], "municipality_id": ["01001"]})
    with pytest.raises(ValueError, match="1 rows refer to a household_pseudonym"):
        score_pairs(pairs, households_df(household("h")), municipalities_df(municipality("01001")))

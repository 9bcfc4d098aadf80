"""The fixed distribution key as a baseline: what today's quota would do with a round's households.

Germany distributes people seeking protection by a fixed key (between Länder the Königsteiner
Schlüssel, within a Land in proportion to population), regardless of needs. This module applies
such a key to the households and municipalities of one round, then measures the result with the
project's own hard rules (compatibility.rules_broken) and score (scoring.score_pairs), so the
round report can show it beside the optimiser and deferred acceptance (docs/mechanisms.md §6).

The key ignores preferences, the score and every hard rule except the persons capacity offered.
Plain Python + numpy, deterministic: households are taken in pseudonym order, ties go to the
municipality with the smaller id.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from rematch_pipeline.engine._common import RESOURCE_COLUMNS, feature_tables, int_column
from rematch_pipeline.engine.compatibility import RULES, rules_broken
from rematch_pipeline.engine.scoring import ScoreWeights, score_pairs

# The link rule is not a per-pair rule of RULES: it is counted from the key's whole assignment.
LINKED_SPLIT: str = "linked_split"
KEY_RULES: tuple[str, ...] = (*RULES, LINKED_SPLIT)


def key_quotas(total_persons: int, key_weight: np.ndarray) -> np.ndarray:
    """Each municipality's share of total_persons in proportion to its key weight (int >= 0),
    apportioned by largest remainder (Hare): the floors first, then one more person each to the
    largest remainders, ties to the lower index. Exact integer arithmetic: the shares sum to
    total_persons whenever some weight is positive (all 0 when none is)."""
    w = np.asarray(key_weight, dtype=np.int64)
    if (w < 0).any():
        raise ValueError("key weights must be >= 0")
    whole = int(w.sum())
    if whole == 0:
        return np.zeros(w.size, dtype=np.int64)
    product = w * int(total_persons)
    quota, remainder = product // whole, product % whole
    left = int(total_persons) - int(quota.sum())
    # Largest remainder first, lower index on ties (lexsort: last key is primary).
    ahead = np.lexsort((np.arange(w.size), -remainder))[:left]
    quota[ahead] += 1
    return quota


def distribute_by_key(persons: np.ndarray, capacity_persons: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """Municipality index for each household (-1 = no room anywhere), households in the given order.

    Each household goes to the municipality furthest below its quota (quota minus persons already
    sent there, in persons) among those whose persons capacity left still takes the whole household;
    ties go to the lower index. Nothing else is looked at: that is what a fixed key does.
    """
    persons = np.asarray(persons, dtype=np.int64)
    room = np.asarray(capacity_persons, dtype=np.int64).copy()
    below = np.asarray(quota, dtype=np.int64).copy()  # quota minus persons sent so far
    out = np.full(persons.size, -1, dtype=np.int64)
    if room.size == 0:
        return out
    # Below every possible shortfall: masks the municipalities without room.
    never = np.iinfo(np.int64).min
    for h, size in enumerate(persons.tolist()):
        candidates = np.where(room >= size, below, never)
        m = int(candidates.argmax())  # first maximum: the lower index wins ties
        if candidates[m] == never:
            continue
        out[h] = m
        below[m] -= size
        room[m] -= size
    return out


def distribution_key_baseline(
    households: pl.DataFrame,
    municipalities: pl.DataFrame,
    weights: ScoreWeights | None = None,
    key_weight: Mapping[str, int] | None = None,
) -> dict[str, object]:
    """The fixed key applied to a round and measured like the round's own answer.

    households and municipalities are the round's pool and offers (feature tables with
    household_pseudonym, link_group, persons and the rule columns; municipality_id and the
    capacities). key_weight maps every municipality_id to its key (population); None keys by the
    persons capacity offered. Returns, for solver.json and the report: key ("population" or
    "capacity_persons"), households, households_placed, persons_placed, households_forbidden
    (placed where a hard rule forbids it, linked households split included), households_allowed,
    total_score and mean_score of the allowed ones (a forbidden pair has no score; mean None when
    none), forbidden_by_rule (households per rule of KEY_RULES; one household can count under
    several), places_below_minimum_intake and places_over_capacity (another resource than persons
    over its offer).
    """
    hh, mu = feature_tables(
        households, municipalities, ("household_pseudonym", "link_group", *(u for u, _ in RESOURCE_COLUMNS)),
        ("municipality_id", "min_persons", *(c for _, c in RESOURCE_COLUMNS)),
    )
    place_ids = mu.get_column("municipality_id").to_list()
    capacity = np.stack([int_column(mu, c) for _, c in RESOURCE_COLUMNS], axis=1)
    if key_weight is None:
        key, weight = "capacity_persons", capacity[:, 0]
    else:
        missing = [m for m in place_ids if m not in key_weight]
        if missing:
            raise ValueError(f"key_weight: {len(missing)} municipalities of the round have no key weight")
        key, weight = "population", np.array([int(key_weight[m]) for m in place_ids], dtype=np.int64)
    usage = np.stack([int_column(hh, u) for u, _ in RESOURCE_COLUMNS], axis=1)
    persons = usage[:, 0]
    # hh is sorted by pseudonym (feature_tables): the key's fixed order, not the solver's.
    place_of = distribute_by_key(persons, capacity[:, 0], key_quotas(int(persons.sum()), weight))
    placed = np.flatnonzero(place_of >= 0)

    pairs = pl.DataFrame({
        "household_pseudonym": hh.get_column("household_pseudonym").gather(placed),
        "municipality_id": pl.Series(place_ids, dtype=pl.String).gather(place_of[placed]),
        "link_group": hh.get_column("link_group").gather(placed),
    })
    checked = rules_broken(households, municipalities, pairs)
    # Linked households split: a placed household whose link group is not all at its municipality.
    group_places = pl.DataFrame({"link_group": hh.get_column("link_group"), "place": place_of}).group_by("link_group").agg(
        pl.col("place").n_unique().alias("_places")
    )
    checked = checked.join(group_places, on="link_group", how="left", maintain_order="left").with_columns(
        (pl.col("_places") > 1).alias(LINKED_SPLIT)
    )
    forbidden = checked.select(pl.any_horizontal(list(KEY_RULES))).to_series()
    allowed = checked.filter(~forbidden).select("household_pseudonym", "municipality_id")
    scores = score_pairs(allowed, households, municipalities, weights, breakdown=False).get_column("score")

    used = np.zeros_like(capacity)
    np.add.at(used, place_of[placed], usage[placed])
    below_minimum = (used[:, 0] > 0) & (used[:, 0] < int_column(mu, "min_persons"))
    return {
        "key": key,
        "households": hh.height,
        "households_placed": int(placed.size),
        "persons_placed": int(persons[placed].sum()),
        "households_forbidden": int(forbidden.sum()),
        "households_allowed": allowed.height,
        "total_score": round(float(scores.sum()), 4),
        "mean_score": round(float(scores.mean()), 4) if allowed.height else None,
        "forbidden_by_rule": {rule: int(checked.get_column(rule).sum()) for rule in KEY_RULES},
        "places_below_minimum_intake": int(below_minimum.sum()),
        "places_over_capacity": int((used[:, 1:] > capacity[:, 1:]).any(axis=1).sum()),
    }

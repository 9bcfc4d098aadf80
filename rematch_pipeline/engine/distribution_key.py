"""The fixed distribution key as a baseline: what today's quota would do with a round's households.

Germany distributes people seeking protection by a fixed key (between Länder the Königsteiner
Schlüssel, within a Land in proportion to population), regardless of needs. This module applies
such a key to the households and municipalities of one round (both steps, key_quotas_by_land),
then measures the result with the
project's own hard rules (compatibility.rules_broken) and score (scoring.score_pairs), so the
round report can show it beside the optimiser and deferred acceptance (docs/mechanisms.md §6).

The key ignores preferences, the score and every hard rule except the persons capacity offered;
it keeps the coordinator's locked and forbidden pairs, each for the whole link group, as the other
mechanisms of the comparison do, and its blocking pairs are counted like theirs (key_stability).
Plain Python + numpy, deterministic: households are taken in pseudonym order, ties go to the
municipality with the smaller id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from rematch_pipeline.engine._common import RESOURCE_COLUMNS, feature_tables, int_column
from rematch_pipeline.engine.compatibility import RULES, rules_broken
from rematch_pipeline.engine.mechanisms import StabilityCounter
from rematch_pipeline.engine.problem import AssignmentProblem
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


def land_of(municipality_id: str) -> str:
    """The Land of a municipality: the first two digits of its AGS (a Kreis's 5-digit or a Gemeinde's 8-digit key)."""
    return municipality_id[:2]


def key_quotas_by_land(
    total_persons: int, key_weight: np.ndarray, lands: Sequence[str], land_weight: Mapping[str, int]
) -> np.ndarray:
    """Each municipality's share of total_persons in two steps, as Germany distributes today: first between
    the Länder of the round by land_weight (the Königsteiner Schlüssel, renormalised among them), then within
    each Land to its municipalities by key_weight. lands holds each municipality's Land (land_of); both steps
    apportion by largest remainder (key_quotas), Länder in code order so ties go to the smaller code.

    A Land whose municipalities all weigh 0 takes no share (its persons would have nowhere to go). A round of
    one Land gets exactly key_quotas(total_persons, key_weight). Raises ValueError for a Land without a weight.
    """
    w = np.asarray(key_weight, dtype=np.int64)
    land_ids = sorted(set(lands))
    unknown = [land for land in land_ids if land not in land_weight]
    if unknown:
        raise ValueError(f"land_weight: no weight for Land {', '.join(unknown)}")
    position = {land: i for i, land in enumerate(land_ids)}
    land_at = np.array([position[land] for land in lands], dtype=np.int64).reshape(-1)
    within = np.zeros(len(land_ids), dtype=np.int64)  # each Land's total key weight
    np.add.at(within, land_at, w)
    shares = key_quotas(
        int(total_persons), np.array([land_weight[land] if within[i] > 0 else 0 for i, land in enumerate(land_ids)], dtype=np.int64)
    )
    quota = np.zeros(w.size, dtype=np.int64)
    for i, share in enumerate(shares.tolist()):
        members = np.flatnonzero(land_at == i)  # in the municipalities' order, so one Land is the one-step key
        quota[members] = key_quotas(share, w[members])
    return quota


def distribute_by_key(
    persons: np.ndarray,
    capacity_persons: np.ndarray,
    quota: np.ndarray,
    locked: np.ndarray | None = None,
    forbidden: Sequence[tuple[int, int]] = (),
) -> np.ndarray:
    """Municipality index for each household (-1 = no room anywhere), households in the given order.

    Each household goes to the municipality furthest below its quota (quota minus persons already
    sent there, in persons) among those whose persons capacity left still takes the whole household;
    ties go to the lower index. Nothing else is looked at: that is what a fixed key does.

    The coordinator's pairs, so that the key is compared on the round as the coordinator set it:
    locked[h] >= 0 sends household h there before anyone else (its persons count against that
    municipality's share and room; the round checked that the locks fit), and no household goes to a
    (household, municipality) index pair of forbidden (the caller lists every household of a link group).
    """
    persons = np.asarray(persons, dtype=np.int64)
    room = np.asarray(capacity_persons, dtype=np.int64).copy()
    below = np.asarray(quota, dtype=np.int64).copy()  # quota minus persons sent so far
    out = np.full(persons.size, -1, dtype=np.int64)
    if room.size == 0:
        return out
    if locked is not None:
        held = np.flatnonzero(np.asarray(locked) >= 0)
        out[held] = np.asarray(locked)[held]
        np.subtract.at(below, out[held], persons[held])
        np.subtract.at(room, out[held], persons[held])
    barred: dict[int, list[int]] = {}
    for h, m in forbidden:
        barred.setdefault(int(h), []).append(int(m))
    # Below every possible shortfall: masks the municipalities without room.
    never = np.iinfo(np.int64).min
    for h, size in enumerate(persons.tolist()):
        if out[h] >= 0:  # locked
            continue
        candidates = np.where(room >= size, below, never)
        if h in barred:
            candidates[barred[h]] = never
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
    *,
    land_weight: Mapping[str, int] | None = None,
    locked: Sequence[tuple[str, str]] = (),
    forbidden: Sequence[tuple[str, str]] = (),
    stability: StabilityCounter | AssignmentProblem | None = None,
) -> dict[str, object]:
    """The fixed key applied to a round and measured like the round's own answer.

    households and municipalities are the round's pool and offers (feature tables with
    household_pseudonym, link_group, persons and the rule columns; municipality_id and the
    capacities). key_weight maps every municipality_id to its key within its Land (population); None
    keys by the persons capacity offered. land_weight maps Land codes (land_of) to their share between
    Länder (the Königsteiner Schlüssel, ags_reference.koenigstein_shares): when every municipality's
    Land has one, the persons go to Länder first (key_quotas_by_land); None, or a municipality of no
    known Land, shares across the round at once. locked and forbidden are the coordinator's
    (household_pseudonym, municipality_id) pairs, each naming a household or its link group: a lock
    sends the whole link group there first, a forbidden pair keeps the whole link group away from that
    municipality (as the round does both: linked households go together; distribute_by_key). stability, the round's
    AssignmentProblem built from the same pool (or a StabilityCounter of it, shared with the other
    mechanisms), adds the stability counts of mechanisms.stability_report (blocking pairs, justified envy)
    with the score-based preferences the other mechanisms are counted with (key_stability).
    Returns, for solver.json and the report: key (the weight within a Land, "population" or
    "capacity_persons", prefixed "koenigstein+" when the Länder step was applied), households,
    households_locked, households_placed, persons_placed, households_forbidden (placed where a hard rule forbids it, linked households split included), households_allowed,
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
    lands = [land_of(m) for m in place_ids]
    # The Länder step whenever every municipality names a Land of the table, whatever the weight within a Land:
    # the Königsteiner shares do not depend on it (docs/mechanisms.md §6).
    if land_weight is not None and all(land in land_weight for land in lands):
        key, quota = "koenigstein+" + key, key_quotas_by_land(int(persons.sum()), weight, lands, land_weight)
    else:
        quota = key_quotas(int(persons.sum()), weight)
    # hh is sorted by pseudonym (feature_tables): the key's fixed order, not the solver's.
    pseudonyms = hh.get_column("household_pseudonym").to_list()
    place_index = {m: j for j, m in enumerate(place_ids)}
    groups = hh.get_column("link_group").to_list()
    group_of = dict(zip(pseudonyms, groups, strict=True))
    # A lock names a household (or its link group, as build_problem accepts) and holds the whole group.
    known_groups = set(groups)
    unknown = sum(1 for h, m in locked if group_of.get(h, h) not in known_groups or m not in place_index)
    if unknown:
        raise ValueError(f"{unknown} locked pairs name unknown households or municipalities")
    group_place = {group_of.get(h, h): place_index[m] for h, m in locked}
    locked_at = np.array([group_place.get(g, -1) for g in groups], dtype=np.int64)
    # A forbid keeps the named household's whole link group away, as a lock holds it (pairs outside the round: none).
    members: dict[str, list[int]] = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    barred = sorted({
        (row, place_index[m]) for h, m in forbidden if m in place_index for row in members.get(group_of.get(h, h), ())
    })
    place_of = distribute_by_key(persons, capacity[:, 0], quota, locked_at, barred)
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
    breaks = checked.select(pl.any_horizontal(list(KEY_RULES))).to_series()
    allowed = checked.filter(~breaks).select("household_pseudonym", "municipality_id")
    scores = score_pairs(allowed, households, municipalities, weights, breakdown=False).get_column("score")

    used = np.zeros_like(capacity)
    np.add.at(used, place_of[placed], usage[placed])
    below_minimum = (used[:, 0] > 0) & (used[:, 0] < int_column(mu, "min_persons"))
    summary: dict[str, object] = {
        "key": key,
        "households": hh.height,
        "households_locked": int((locked_at >= 0).sum()),
        "households_placed": int(placed.size),
        "persons_placed": int(persons[placed].sum()),
        "households_forbidden": int(breaks.sum()),
        "households_allowed": allowed.height,
        "total_score": round(float(scores.sum()), 4),
        "mean_score": round(float(scores.mean()), 4) if allowed.height else None,
        "forbidden_by_rule": {rule: int(checked.get_column(rule).sum()) for rule in KEY_RULES},
        "places_below_minimum_intake": int(below_minimum.sum()),
        "places_over_capacity": int((used[:, 1:] > capacity[:, 1:]).any(axis=1).sum()),
    }
    if stability is not None:
        counter = stability if isinstance(stability, StabilityCounter) else StabilityCounter(stability)
        summary.update(key_stability(counter, groups, usage, [place_ids[j] if j >= 0 else None for j in place_of.tolist()]))
    return summary


def key_stability(
    counter: StabilityCounter, link_groups: Sequence[str], usage: np.ndarray, municipality_of: Sequence[str | None]
) -> dict[str, int]:
    """Stability counts (mechanisms.stability_report) of the key's assignment of households on the round's
    problem, counter.problem (units = link groups).

    link_groups, usage (rows in problem.resources order) and municipality_of (None = unplaced) are per
    household. A link group whose households all went to one municipality is placed there as a unit,
    whether the rules allow it or not (a forbidden pair counts as no acceptable place: the unit would
    take any candidate, and the place ranks it below everyone it may take). A group the key split, or
    placed in part, is unplaced as a unit; its placed households are held apart at their places, below
    everyone there, still taking their room (mechanisms.HeldApart)."""
    problem = counter.problem
    place_index = {m: j for j, m in enumerate(problem.place_ids)}
    unit_index = {g: u for u, g in enumerate(problem.unit_ids)}
    members: dict[int, list[tuple[int, int]]] = {}
    for row, (group, place) in enumerate(zip(link_groups, municipality_of, strict=True)):
        members.setdefault(unit_index[group], []).append((row, -1 if place is None else place_index[place]))
    place_of_unit = np.full(problem.n_units, -1, dtype=np.int64)
    apart: list[tuple[int, int]] = []  # (household row, place) held outside a placement of its unit
    for u, held in members.items():
        places = {j for _, j in held}
        if len(places) == 1:
            place_of_unit[u] = places.pop()
        else:
            apart += [(row, j) for row, j in held if j >= 0]
    rows = np.array([row for row, _ in apart], dtype=np.int64)
    places = np.array([j for _, j in apart], dtype=np.int64)
    held_usage = np.asarray(usage, dtype=np.int64)[rows].reshape(-1, problem.usage.shape[1])
    return counter.counts(place_of_unit, apart=(places, held_usage))

"""Diagnosis: why a unit stays unplaced, and what extra capacity would place it."""

from __future__ import annotations

import numpy as np

from rematch_pipeline.engine.diagnosis import MIN_INTAKE, NO_CANDIDATE, capacity_offers, unplaced_reasons
from rematch_pipeline.engine.problem import AssignmentProblem

RESOURCES = ["persons", "housing_units", "kita_places"]


def _problem(usage, capacity, pairs, min_intake=None) -> AssignmentProblem:
    pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return AssignmentProblem(
        unit_ids=[f"u{i}" for i in range(len(usage))],
        place_ids=[f"0916{j}" for j in range(len(capacity))],
        resources=RESOURCES,
        usage=np.array(usage),
        capacity=np.array(capacity),
        min_intake=np.array(min_intake or [0] * len(capacity)),
        pair_unit=pairs[:, 0],
        pair_place=pairs[:, 1],
        pair_score=np.full(len(pairs), 50.0),
    )


def test_exhausted_kita_places_are_named_with_place_and_shortfall() -> None:
    # Place 0 has room for persons and dwellings but only 1 kita place; two families with small children.
    problem = _problem(
        usage=[[3, 1, 1], [4, 1, 2], [2, 1, 0]],
        capacity=[[20, 5, 1]],
        pairs=[(0, 0), (1, 0)],
    )
    placed = np.array([0, -1, -1])
    reasons = unplaced_reasons(problem, placed)
    assert reasons.unit.tolist() == [1, 2]
    assert reasons.reason == ["capacity: kita_places exhausted at 09160", NO_CANDIDATE]
    assert reasons.resource == ["kita_places", None]
    assert reasons.shortfall.tolist() == [2, 0]


def test_every_resource_short_at_the_nearest_miss_is_named() -> None:
    # A family needs 1 dwelling and 3 kita places; the place has neither left. Naming kita alone said that more
    # kita places would place it (seen: kita short by 3 and an integration course place short by 1).
    problem = _problem(usage=[[3, 1, 1], [4, 1, 3]], capacity=[[20, 1, 1]], pairs=[(0, 0), (1, 0)])
    reasons = unplaced_reasons(problem, np.array([0, -1]))
    assert reasons.reason == ["capacity: kita_places and housing_units exhausted at 09160"]
    assert reasons.resource == ["kita_places"] and reasons.shortfall.tolist() == [3]  # the largest shortfall


def test_offers_price_the_binding_resource() -> None:
    problem = _problem(
        usage=[[3, 1, 1], [4, 1, 2], [2, 1, 1], [5, 1, 0]],
        capacity=[[20, 5, 1], [3, 1, 0]],
        pairs=[(0, 0), (1, 0), (2, 0), (3, 1)],
    )
    placed = np.array([0, -1, -1, -1])
    offers = capacity_offers(problem, placed)
    kita = [o for o in offers if o.resource == "kita_places"]
    assert len(kita) == 1
    # One more kita place places unit 2 (1 kita); three more place units 2 and 1: the better ratio is 1 for 1.
    assert (kita[0].place, kita[0].extra, kita[0].units, kita[0].persons) == ("09160", 1, 1, 2)
    persons = [o for o in offers if o.resource == "persons"]
    assert (persons[0].place, persons[0].extra, persons[0].units) == ("09161", 2, 1)
    assert kita[0].sentence() == "1 more Kita place in 09160 would place 1 more household (2 persons)"


def test_minimum_intake_is_named_when_everything_else_fits() -> None:
    problem = _problem(usage=[[2, 1, 0]], capacity=[[20, 5, 5]], pairs=[(0, 0)], min_intake=[8])
    reasons = unplaced_reasons(problem, np.array([-1]))
    # The place is named, as for a capacity miss: the coordinator sees where the minimum kept the household out.
    assert reasons.reason == [f"{MIN_INTAKE} at {problem.place_ids[0]}"]
    assert capacity_offers(problem, np.array([-1])) == []

"""The greedy pass and the local moves after it: each unit on its best pair by reduced profit that fits,
then moves that push out, or move elsewhere, up to a few units of the place a unit wants."""

from __future__ import annotations

import logging

import numpy as np

from rematch_pipeline.engine.large_scale.clock import _Clock
from rematch_pipeline.engine.large_scale.pairs import _Pairs, _drop_short, _locked_places, _positions, _top_per_unit
from rematch_pipeline.engine.problem import AssignmentProblem

LOG = logging.getLogger(__name__)

# Pairs per unit the greedy pass tries, best reduced profit first.
GREEDY_PAIRS: int = 30
# Local-move passes after the greedy one, and candidate places tried per unit there.
IMPROVE_PASSES: int = 6
IMPROVE_TRIES: int = 10
# Units a move may push out of a place to make room for another.
MOST_EJECTED: int = 4
# Share of the time left that the local moves may use (the MIP gets the rest).
IMPROVE_SHARE: float = 0.12


def _greedy_and_local_moves(
    problem: AssignmentProblem,
    pairs: _Pairs,
    rp: np.ndarray,
    cost: np.ndarray,
    unit_best: np.ndarray,
    unit_margin: np.ndarray,
    locked: np.ndarray,
    clock: _Clock,
    deadline: float,
    local_moves: bool,
    room: bool,
) -> np.ndarray:
    """The greedy pass (clear-cut units first, each on its best pair by reduced profit that
    fits; with local moves, units asking most of the tight resources before them; without room
    for every unit, units that price out after all that price in), then local moves until a
    share of the time to the deadline is used."""
    n_u = problem.n_units
    clock.spend(clock.rates.pair_pass * 4 * pairs.size + clock.rates.unit * GREEDY_PAIRS * n_u)
    candidates = _top_per_unit(pairs.unit, rp, GREEDY_PAIRS, np.arange(pairs.size))
    # A locked pair may be far down its unit's list by reduced profit: the placer starts from it.
    candidates = np.union1d(candidates, _positions(problem, pairs, _locked_places(problem)))
    placer = _Placer(problem, pairs, candidates, rp, cost, clock)
    # The answer step's pass takes units asking most of the tight resources first (first fit decreasing),
    # clear-cut ones first among equals. Stage 1's pass (no local moves) only sets the persons stage 2 must
    # keep, and keeps the old order: tight-first there priced the 50,000 round worse (docs/decisions.md).
    order = np.lexsort((np.arange(n_u), -unit_best, -unit_margin))
    if local_moves:
        order = order[np.argsort(-_tight_demand(problem, pairs)[order], kind="stable")]
    if not room:
        # Units that price out (no pair with a positive reduced profit) come after all that price in: their
        # margin is how far they price out, so they came first as "clear-cut", and on a tight round (room
        # for 60 % of the persons) they took the room of units the prices want placed (twenty-fifth session).
        # Where every unit fits in total the order stays as it was measured.
        order = order[np.argsort(unit_best[order] <= 0, kind="stable")]
    placer.greedy(order)
    # Local moves: units the greedy pass left out though they price in, then those
    # furthest from their best pair.
    budget = clock.until(IMPROVE_SHARE, deadline)
    for _ in range(IMPROVE_PASSES if local_moves else 0):
        clock.spend(clock.rates.pair_pass * 2 * pairs.size + clock.rates.unit * n_u)
        loss = _loss(problem, pairs, rp, unit_best, placer.assignment())
        todo = np.flatnonzero(loss > 1e-6)
        todo = todo[np.lexsort((todo, -loss[todo]))].tolist()
        moves, tried = placer.improve(todo, IMPROVE_TRIES, budget), len(todo)
        loss = _loss(problem, pairs, rp, unit_best, placer.assignment())
        todo = [u for u in todo if loss[u] > 1e-6]
        relocated = placer.relocate(todo, IMPROVE_TRIES, MOST_EJECTED, budget)
        LOG.debug("local moves: %d of %d units moved, then %d of %d by moving several", moves, tried, relocated, len(todo))
        moves += relocated
        if not moves or clock.now() >= budget:
            break
    return _drop_short(problem, pairs, placer.assignment(), locked)


def _tight_demand(problem: AssignmentProblem, pairs: _Pairs) -> np.ndarray:
    """Per unit, whole numbers of what it asks of the tight resources: its usage weighted by
    each resource's demand over capacity (persons aside: they are the objective)."""
    if problem.pair_usage is not None:  # usage depends on the place: no single demand per unit
        return np.zeros(problem.n_units)
    has = np.zeros(problem.n_units, dtype=bool)
    has[pairs.unit] = True
    demand = problem.usage[has].sum(axis=0).astype(np.float64)
    capacity = problem.capacity.sum(axis=0).astype(np.float64)
    tightness = np.where(capacity > 0, demand / np.maximum(capacity, 1.0), 0.0)
    tightness[problem.persons_index] = 0.0
    return np.floor(problem.usage @ tightness)


def _loss(problem: AssignmentProblem, pairs: _Pairs, rp: np.ndarray, unit_best: np.ndarray, place_of: np.ndarray) -> np.ndarray:
    """Per unit: reduced profit of its best pair (0 if none prices in) minus that of its
    current pair (0 if unplaced)."""
    chosen_rp = np.zeros(problem.n_units)
    pos = _positions(problem, pairs, place_of)
    chosen_rp[pairs.unit[pos]] = rp[pos]
    return np.maximum(unit_best, 0.0) - chosen_rp


class _Placer:
    """Assignment state for the greedy pass and the local moves after it: per unit its
    candidate pairs (best reduced profit first), per place the capacity left and its units."""

    def __init__(
        self, problem: AssignmentProblem, pairs: _Pairs, candidates: np.ndarray, rp: np.ndarray, cost: np.ndarray, clock: _Clock
    ) -> None:
        self.problem, self.clock = problem, clock
        cand = candidates[np.lexsort((candidates, -rp[candidates], pairs.unit[candidates]))]
        self.bounds = np.searchsorted(pairs.unit[cand], np.arange(problem.n_units + 1)).tolist()
        self.use = problem.usage_of_pairs(pairs.idx[cand]).tolist()
        self.nz = [[(r, a) for r, a in enumerate(row) if a] for row in self.use]  # the resources a pair uses
        self.places = pairs.place[cand].tolist()
        self.cost = cost[cand].tolist()
        self.pi = problem.persons_index
        self.min_intake = problem.min_intake.tolist()
        self.capacity = problem.capacity.tolist()
        self.left = problem.capacity.astype(np.int64).tolist()
        self.at: list[set[int]] = [set() for _ in range(problem.n_places)]
        self.chosen: list[int] = [-1] * problem.n_units  # candidate index, -1 unplaced
        self.locked = {u for u, _ in problem.locked}
        for u, j in problem.locked:  # locked pairs are always candidates (see _reduce)
            k = next((k for k in range(self.bounds[u], self.bounds[u + 1]) if self.places[k] == j), None)
            if k is None:
                raise ValueError("a locked pair is missing from the candidates")
            self._put(u, k)

    def _put(self, u: int, k: int) -> None:
        row = self.left[self.places[k]]
        for r, a in enumerate(self.use[k]):
            row[r] -= a
        self.at[self.places[k]].add(u)
        self.chosen[u] = k

    def _take(self, u: int) -> None:
        k = self.chosen[u]
        row = self.left[self.places[k]]
        for r, a in enumerate(self.use[k]):
            row[r] += a
        self.at[self.places[k]].discard(u)
        self.chosen[u] = -1

    def _fits(self, k: int) -> bool:
        row = self.left[self.places[k]]
        return all(row[r] >= a for r, a in self.nz[k])

    def greedy(self, unit_order: np.ndarray) -> None:
        """Each unit in turn takes its first candidate that fits (minimum intakes aside)."""
        for u in unit_order.tolist():
            if self.chosen[u] >= 0:
                continue
            for k in range(self.bounds[u], self.bounds[u + 1]):
                if self._fits(k):
                    self._put(u, k)
                    break

    def _persons_ok(self, j: int, delta: int) -> bool:
        """A place's intake after a change stays 0 or at least its minimum."""
        if not self.min_intake[j]:
            return True
        after = self.capacity[j][self.pi] - self.left[j][self.pi] + delta
        return after == 0 or after >= self.min_intake[j]

    def improve(self, units: list[int], tries: int, deadline: float) -> int:
        """Move each unit (unplaced ones: insert it) to a candidate place, if need be
        moving one unit there elsewhere or, when it brings fewer persons, out. A move is
        kept when it places more persons, or as many with a higher objective. Returns
        the moves made."""
        moves = 0
        for n, u in enumerate(units):
            if u in self.locked:
                continue
            if n % 64 == 0 and self.clock.now() >= deadline:
                break
            self.clock.spend(self.clock.rates.unit)
            best: tuple[tuple[int, float], tuple[int, int, int]] | None = None
            pi = self.pi
            k0 = self.chosen[u]
            p0 = self.use[k0][self.pi] if k0 >= 0 else 0
            c0 = self.cost[k0] if k0 >= 0 else 0.0
            if k0 >= 0:
                self._take(u)
                if not self._persons_ok(self.places[k0], 0):
                    self._put(u, k0)
                    continue
            places, use, nz, cost, left, bounds = self.places, self.use, self.nz, self.cost, self.left, self.bounds
            for k in range(bounds[u], min(bounds[u + 1], bounds[u] + tries)):
                if k == k0:
                    continue
                j = places[k]
                self.clock.spend(self.clock.rates.candidate * (1 + len(self.at[j])))
                pu = use[k][pi]
                row = left[j]
                deficit = [(r, a - row[r]) for r, a in nz[k] if a > row[r]]
                if not deficit:
                    if self._persons_ok(j, pu):
                        gain = (pu - p0, cost[k] - c0)
                        if gain > (0, 1e-9) and (best is None or gain > best[0]):
                            best = (gain, (k, -1, -1))
                    continue
                for v in self.at[j]:
                    kv = self.chosen[v]
                    freed = use[kv]
                    if any(freed[r] < d for r, d in deficit) or v in self.locked:
                        continue
                    pv = freed[pi]
                    if not self._persons_ok(j, pu - pv):
                        continue
                    # v leaves the round, or moves to one of its candidates with room.
                    best_v = ((pu - pv - p0, cost[k] - cost[kv] - c0), -1)
                    for k2 in range(bounds[v], min(bounds[v + 1], bounds[v] + tries)):
                        j2 = places[k2]
                        if j2 == j:
                            continue
                        row2 = left[j2]
                        if all(row2[r] >= a for r, a in nz[k2]) and self._persons_ok(j2, pv):
                            option = ((pu - p0, cost[k] - cost[kv] + cost[k2] - c0), k2)
                            if option > best_v:
                                best_v = option
                    gain, k2 = best_v
                    if gain > (0, 1e-9) and (best is None or gain > best[0]):
                        best = (gain, (k, v, k2))
            if best is None:
                if k0 >= 0:
                    self._put(u, k0)
                continue
            k, v, k2 = best[1]
            if v >= 0:
                self._take(v)
                if k2 >= 0:
                    self._put(v, k2)
            self._put(u, k)
            moves += 1
        return moves

    def relocate(self, units: list[int], tries: int, most_out: int, deadline: float) -> int:
        """Move each unit to a better candidate pair (unplaced ones: insert it), making
        room there by moving up to most_out units of that place to other places of
        theirs, or out of the round. Victims are chosen greedily by lexicographic loss
        per unit of missing capacity they free. A move is kept when it places more
        persons, or as many with a higher objective. Returns the moves made."""
        places, use, cost, bounds, pi = self.places, self.use, self.cost, self.bounds, self.pi
        moves = 0
        for n, u in enumerate(units):
            if u in self.locked:
                continue
            if n % 16 == 0 and self.clock.now() >= deadline:
                break
            self.clock.spend(self.clock.rates.unit)
            k0 = self.chosen[u]
            p0, c0 = (use[k0][pi], cost[k0]) if k0 >= 0 else (0, 0.0)
            if k0 >= 0:
                self._take(u)
                if not self._persons_ok(places[k0], 0):
                    self._put(u, k0)
                    continue
            best: tuple[tuple[int, float], int, list[tuple[int, int]]] | None = None
            for k in range(bounds[u], min(bounds[u + 1], bounds[u] + tries)):
                if k == k0:
                    continue
                self.clock.spend(self.clock.rates.victim_candidate * (1 + len(self.at[places[k]])))
                plan = self._make_room(k, tries, most_out)
                if plan is None:
                    continue
                lost_persons, score_change, victims = plan
                gain = (use[k][pi] - p0 - lost_persons, cost[k] - c0 + score_change)
                if gain > (0, 1e-9) and (best is None or gain > best[0]):
                    best = (gain, k, victims)
            if best is None:
                if k0 >= 0:
                    self._put(u, k0)
                continue
            _, k, victims = best
            for v, _ in victims:
                self._take(v)
            for v, k2 in victims:
                if k2 >= 0:
                    self._put(v, k2)
            self._put(u, k)
            moves += 1
        return moves

    def _make_room(self, k: int, tries: int, most_out: int) -> tuple[int, float, list[tuple[int, int]]] | None:
        """Victims at pair k's place whose leaving lets k fit: (persons lost, score
        change, [(victim, its new pair or -1)]), or None when no such set is found."""
        places, use, nz, cost, left, bounds, pi = self.places, self.use, self.nz, self.cost, self.left, self.bounds, self.pi
        j = places[k]
        row = left[j]
        deficit = {r: a - row[r] for r, a in nz[k] if a > row[r]}
        if not deficit:
            return (0, 0.0, []) if self._persons_ok(j, use[k][pi]) else None
        options: list[tuple[float, int, int, int, float]] = []  # (loss per freed share, v, new pair, persons lost, score change)
        extra: dict[int, list[int]] = {}  # load the plan puts on other places
        for v in self.at[j]:
            kv = self.chosen[v]
            freed = use[kv]
            share = sum(min(freed[r], d) / d for r, d in deficit.items())
            if share == 0 or v in self.locked:
                continue
            move = (freed[pi], -cost[kv], -1)  # leaves the round
            for k2 in range(bounds[v], min(bounds[v + 1], bounds[v] + tries)):
                j2 = places[k2]
                if j2 != j and -cost[kv] + cost[k2] > move[1] - 1000.0 * move[0]:
                    row2 = left[j2]
                    if all(row2[r] >= a for r, a in nz[k2]) and self._persons_ok(j2, use[k2][pi]):
                        move = (0, cost[k2] - cost[kv], k2)
            options.append(((1000.0 * move[0] - move[1]) / share, v, move[2], move[0], move[1]))
        options.sort()
        chosen: list[tuple[int, int]] = []
        lost, change, out_persons = 0, 0.0, 0
        for _, v, k2, persons_lost, score_change in options:
            if not deficit or len(chosen) >= most_out:
                break
            freed = use[self.chosen[v]]
            if not any(freed[r] for r in deficit):
                continue  # what is still missing, this victim does not free
            if k2 >= 0:
                j2 = places[k2]
                load = extra.setdefault(j2, [0] * len(freed))
                row2 = left[j2]
                if any(row2[r] < load[r] + a for r, a in nz[k2]) or not self._persons_ok(j2, load[pi] + use[k2][pi]):
                    continue  # an earlier victim took the room there
                for r, a in nz[k2]:
                    load[r] += a
            chosen.append((v, k2))
            lost += persons_lost
            change += score_change
            out_persons += freed[pi]
            deficit = {r: d - freed[r] for r, d in deficit.items() if d > freed[r]}
        if deficit or not self._persons_ok(j, use[k][pi] - out_persons):
            return None
        return lost, change, chosen

    def assignment(self) -> np.ndarray:
        return np.array([self.places[k] if k >= 0 else -1 for k in self.chosen], dtype=np.int64)

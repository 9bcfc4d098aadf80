"""Neighbourhood sets from ejection chains: the units along short chains of moves that nearly pay.

A chain moves a unit off its pair to one of its best pairs by reduced profit; where that place lacks
room, one unit there whose usage covers what is missing (on every resource) is pushed out and moves
on the same way, until a unit fits (the room the first unit left counts, so cycles close too). On the
10,000-household round the answer is nearly chain-optimal at the search's end (chains of up to four
units gained ~100 of ~1,100 points in 150 s), but chains that lose at most CHAIN_TOLERANCE points
link units across places that no LP-guided set holds together, and a MIP over their union finds
combinations no single chain has (docs/decisions.md, twenty-ninth session)."""

from __future__ import annotations

import numpy as np

from rematch_pipeline.engine.large_scale.pairs import _Pairs, _load, _positions
from rematch_pipeline.engine.problem import AssignmentProblem

# Places a unit of a chain may move to: its best pairs by reduced profit (as many as a MIP gets).
CHAIN_PAIRS: int = 8
# Units pushed out per step (best first, by score so far plus their best score elsewhere), and
# units pushed out in a row after the first move.
CHAIN_VICTIMS: int = 4
CHAIN_DEPTH: int = 2
# A chain joins a set when it loses at most this many score points.
CHAIN_TOLERANCE: float = 3.0
# Chain steps (nodes) tried per set at most, and a set smaller than CHAIN_SET_LEAST units is not used.
CHAIN_NODES: int = 250_000
CHAIN_SET_LEAST: int = 100


class _ChainSets:
    """Sets of units linked by near-paying ejection chains, seeded by units far from their best
    pair (worst first, each seed once)."""

    def __init__(self, problem: AssignmentProblem, pairs: _Pairs, rp: np.ndarray) -> None:
        self.problem, self.pairs = problem, pairs
        n_u = problem.n_units
        order = np.lexsort((np.arange(pairs.size), -rp, pairs.unit))
        starts = np.searchsorted(pairs.unit[order], np.arange(n_u + 1))
        self.cand: list[list[int]] = []
        self.cand_score: list[list[float]] = []
        for u in range(n_u):
            top = order[starts[u] : min(starts[u + 1], starts[u] + CHAIN_PAIRS)]
            self.cand.append(pairs.place[top].tolist())
            self.cand_score.append(pairs.score[top].tolist())
        self.best_score = np.array([max(s) if s else -np.inf for s in self.cand_score])
        self.usage = problem.usage.astype(np.int64)
        self.seeded = np.zeros(n_u, dtype=bool)

    def next(self, current: np.ndarray, loss: np.ndarray, locked: np.ndarray, size: int) -> tuple[np.ndarray, int]:
        """A mask of about size units from chains seeded by units off their best pair (loss), and
        the chain steps it took (the caller counts them)."""
        problem, usage, best_score = self.problem, self.usage, self.best_score
        cand, cand_score = self.cand, self.cand_score
        left = problem.capacity - _load(problem, self.pairs, current)
        placed = np.flatnonzero(current >= 0)
        score_now = np.zeros(problem.n_units)
        score_now[placed] = self.pairs.score[_positions(problem, self.pairs, current)]
        at: list[list[int]] = [[] for _ in range(problem.n_places)]
        for u, j in zip(placed.tolist(), current[placed].tolist(), strict=True):
            at[j].append(u)
        nodes = 0
        free = np.zeros(problem.n_units, dtype=bool)
        seeds = np.flatnonzero((current >= 0) & (loss > 1e-6) & ~self.seeded & ~locked)
        seeds = seeds[np.lexsort((seeds, -loss[seeds]))]
        for u0 in seeds.tolist():
            if free.sum() >= size or nodes >= CHAIN_NODES:
                break
            self.seeded[u0] = True
            a0 = int(current[u0])
            room: dict[int, np.ndarray] = {a0: usage[u0].copy()}  # room a chain has freed (or taken) per place
            moved, path, found = {u0}, [], []

            def extend(u: int, came_from: int, gain: float, depth: int) -> None:
                nonlocal nodes
                for q, s in zip(cand[u], cand_score[u], strict=True):
                    if q == came_from:
                        continue
                    nodes += 1
                    g = gain + s
                    need = usage[u] - (left[q] + room[q] if q in room else left[q])
                    if (need <= 0).all():
                        if g > -CHAIN_TOLERANCE:
                            found.extend([*path, u])
                        continue
                    if depth >= CHAIN_DEPTH:
                        continue
                    there = [v for v in at[q] if v not in moved and not locked[v]]
                    if not there:
                        continue
                    victims = np.array(there)
                    victims = victims[(usage[victims] >= need).all(axis=1)]
                    if victims.size == 0:
                        continue
                    after = g - score_now[victims]
                    hope = after + best_score[victims]
                    keep = hope > -CHAIN_TOLERANCE
                    victims, after, hope = victims[keep], after[keep], hope[keep]
                    for i in np.lexsort((victims, -hope))[:CHAIN_VICTIMS].tolist():
                        v = int(victims[i])
                        path.append(u)
                        moved.add(v)
                        old = room.get(q)
                        room[q] = (old if old is not None else 0) + usage[v] - usage[u]
                        extend(v, q, float(after[i]), depth + 1)
                        if old is None:
                            del room[q]
                        else:
                            room[q] = old
                        moved.discard(v)
                        path.pop()

            extend(u0, a0, -float(score_now[u0]), 0)
            if found:
                free[found] = True
        return free, nodes

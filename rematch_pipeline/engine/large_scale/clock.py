"""Counted work: the clock every budget of a large solve is read on, and the reference rates it counts at."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

from rematch_pipeline.engine.exchange import ENTRY_SECONDS, SOLVE_SECONDS


@dataclass(frozen=True)
class _Rates:
    """Seconds per unit of counted work on the reference machine (2 cores, measured
    2026-12-01 on the 10,000-household round): per usable pair of a plain pass, of an
    exact dual (bound) evaluation, of a smoothed-dual evaluation on a working set and of
    gathering a working set; per unit the greedy pass or a local move looks at; per
    candidate a local move tries, times the units at its place (moving several units
    out costs more); of a neighbourhood MIP by its simplex iterations, binaries and rows
    (mip_seconds); per simplex iteration and per pair of the core LP."""

    pair_pass: float = 40e-9
    bound_pair: float = 150e-9
    dual_pair: float = 21e-9
    working_pair: float = 300e-9
    unit: float = 2e-6
    candidate: float = 3.6e-6
    victim_candidate: float = 7.5e-6
    # A neighbourhood MIP: mip_scale * (iterations + 1) ** 1.163 * binaries ** -0.391 * rows ** 0.155,
    # a log-linear fit to 98 MIPs of four rounds (1,000 x 40 and 1,000 / 10,000 / 50,000 x 401;
    # whole rounds 0.83-1.14x their wall time before the 20 % margin in mip_scale, which keeps
    # the 10,000 round 2-3 s further from its wall limit than 10 % did). The old linear charge
    # (0.15 ms per iteration + 60 us per binary) was 1.01-1.77x: it stopped the 50,000 round's
    # search at 203 s of wall clock with 250 s counted.
    mip_scale: float = 1.2 * math.exp(-8.593)
    # The exchange within usage classes (exchange.py's reference rates).
    exchange_entry: float = ENTRY_SECONDS
    exchange_solve: float = SOLVE_SECONDS
    # The proof MIP's root (proof.py) over a whole round of 21,600-45,800 binaries: proof_scale * (iterations
    # + 1) ** 0.442 * binaries ** 1.685, a log-linear fit to five roots of state rounds (0.78-1.22x their wall
    # time, 22-111 s, load 0.7-3, before the 25 % margin in proof_scale). mip_seconds, fitted on MIPs of a
    # few hundred units on 8 pairs each, charged them 0.4-5.4 s (twenty-ninth session).
    proof_scale: float = 1.25 * math.exp(-18.042)
    proof_exponents: ClassVar[tuple[float, float]] = (0.442, 1.685)
    # The proof MIP's cheaper tier (score alone, no heuristics, 3 cut rounds): tier_scale * (iterations + 1)
    # ** 0.459 * binaries ** 1.504, a log-linear fit to six roots of state rounds measured twice each
    # (21,600-62,900 binaries, 6-45 s; 0.77-1.19x their wall time at load 1-2.3, before the 25 % margin in
    # tier_scale; thirtieth session).
    tier_scale: float = 1.25 * math.exp(-17.304)
    tier_exponents: ClassVar[tuple[float, float]] = (0.459, 1.504)
    mip_exponents: ClassVar[tuple[float, float, float]] = (1.163, -0.391, 0.155)
    # A step of an ejection chain (chains.py; measured: 2.0 M steps in 11.3 s on the 10,000 round).
    chain_node: float = 5.5e-6
    lp_iteration: float = 0.18e-3
    lp_pair: float = 20e-6
    # A core LP's whole solve by its size, 7.2 s * (pairs / 18,700) ** 1.18 (measured 7.2 s at
    # 18,700 pairs and 49.7 s at 96,500): its iteration count alone undercounts large LPs.
    lp_seconds_at_reference: float = 7.2

    def mip_seconds(self, iterations: int, binaries: int, rows: int) -> float:
        """Counted seconds of a neighbourhood MIP (building it, its root node and heuristics)."""
        a, b, c = self.mip_exponents
        return self.mip_scale * (iterations + 1) ** a * max(binaries, 1) ** b * max(rows, 1) ** c

    def proof_seconds(self, iterations: int, binaries: int) -> float:
        """Counted seconds of the proof MIP's root over the pairs that survive reduced-cost fixing (proof.py)."""
        a, b = self.proof_exponents
        return self.proof_scale * (iterations + 1) ** a * max(binaries, 1) ** b

    def proof_tier_seconds(self, iterations: int, binaries: int) -> float:
        """Counted seconds of the proof MIP's cheaper tier (proof.py) over that many binaries."""
        a, b = self.tier_exponents
        return self.tier_scale * (iterations + 1) ** a * max(binaries, 1) ** b

    def core_lp_seconds(self, lp_pairs: int, iterations: int) -> float:
        """Counted seconds of a core LP of lp_pairs pairs that took iterations simplex iterations."""
        by_size = self.lp_seconds_at_reference * (lp_pairs / REFERENCE_LP_PAIRS) ** 1.18
        return max(by_size, self.lp_pair * lp_pairs + self.lp_iteration * iterations)

    def for_round(self, n_pairs: int) -> _Rates:
        """The rates for a round of n_pairs usable pairs: passes over arrays beyond the
        reference round's size run slower per pair (memory, not cache; measured at 50,000
        households, 14.5 M pairs: 1.4-1.7x per phase)."""
        f = max(1.0, (n_pairs / REFERENCE_PAIRS) ** 0.3)
        memory_bound = ("pair_pass", "bound_pair", "dual_pair", "working_pair", "unit", "candidate", "victim_candidate", "exchange_entry")
        return dataclasses.replace(self, **{name: getattr(self, name) * f for name in memory_bound})


RATES = _Rates()
# Usable pairs of the round the rates were measured at (10,000 households), and of its core LP.
REFERENCE_PAIRS: int = 2_856_316
REFERENCE_LP_PAIRS: int = 18_700


@dataclass
class _Clock:
    """Budgets of one large solve, in seconds from its start. Reproducible: counted work
    at rates, so the same input and parameters give the same answer whatever the
    machine's speed and load; the wall clock then only stops a run that reaches
    wall_limit (overrun: that answer may differ between runs; cut: the wall clock stopped
    work on this clock itself, not only on a fork beside it). Otherwise wall-clock."""

    reproducible: bool
    wall_limit: float
    rates: _Rates = RATES
    start: float = field(default_factory=time.perf_counter)
    work: float = 0.0
    overrun: bool = False
    cut: bool = False
    parent: _Clock | None = None

    def now(self) -> float:
        wall = self.wall()
        if not self.reproducible:
            return wall
        if wall >= self.wall_limit:
            self.overrun = self.cut = True
            if self.parent is not None:
                self.parent.overrun = True
            return math.inf
        return self.work

    def counted(self) -> float:
        """The time budgets are read in, without the wall-clock stop: counted work, or the wall clock."""
        return self.work if self.reproducible else self.wall()

    def until(self, share: float, deadline: float) -> float:
        """The clock time share of the way from now to deadline (after an overrun, now: inf)."""
        now = self.now()
        return now + share * max(0.0, deadline - now) if math.isfinite(now) else now

    def fork(self) -> _Clock:
        """A clock for work beside this one (another thread), counting on from here."""
        return dataclasses.replace(self, parent=self, cut=False)

    def spend(self, seconds: float) -> None:
        self.work += seconds

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def wall_left(self) -> float:
        return max(0.0, self.wall_limit - self.wall())

"""Large rounds: Lagrangian prices over all pairs, and an exact MIP where the prices leave a choice.

A national round has 10,000-50,000 units x 401 places, i.e. millions of candidate pairs.
Neither one MIP nor the simplex LP over them finishes in minutes on two cores (measured:
HiGHS, GLOP and CLP take 20-35 s for the LP of a 1,000-household round alone); the LP
over a core of a few pairs per unit does. The model
has few coupling rows, though: capacities per place and resource (and minimum intakes),
while each unit picks at most one place. Per lexicographic stage (persons, then score
keeping the persons found) we therefore

1. price the coupling rows: minimise the entropy-smoothed Lagrangian dual with L-BFGS-B
   over a working set of pairs, with falling temperature; pairs outside the set that
   price in are added (column generation on the dual side);
2. bound: the exact Lagrangian dual over ALL pairs at those prices. It is an upper bound
   for any multipliers >= 0, and at the optimum equals the LP bound (each unit's
   subproblem, one place or none, is integral);
3. place: a greedy pass puts every unit on its best pair at the prices that still fits;
   local moves (moving, or pushing out, up to a few units of the place a unit wants)
   follow, while HiGHS solves the LP over the core (each unit's pairs near its best) in a
   worker thread; then (taking the LP up when it is ready) a large neighbourhood search:
   an exact MIP re-decides a few hundred units at a time (those the LP places otherwise,
   the worst-placed units and the units at the places they want, or all users of a
   scarce resource) on the capacity the others leave, keeping lexicographic gains;
   units still unplaced then try all their usable pairs, and an exact exchange within
   usage classes follows. Where the search stalled with counted time left and few pairs
   survive reduced-cost fixing at the prices, one exact MIP over all units on those pairs
   ends it; proven optimal, it bounds the score too (proof).
   Meanwhile the other core refines the bound for the persons the search has reached (on a
   round short of room in total, for fixed persons between those and the persons bound, from
   the summed-capacity LP's prices); the time the search leaves refines it for the persons placed.

The gap is reported against the bound of step 2, i.e. against the whole problem. Every
budget (stage deadlines, local moves, MIPs, the search's end) is read on a _Clock: counted
work by default, so a repeat gives the same answer on a loaded or faster machine.

The package's API is solve_large, reduced_problem and SOLVER_LABEL. Its modules follow the method:
clock (counted work), pairs, pricing (steps 1-2), local_moves, neighbourhoods, search and proof (step 3),
solve (the stages end to end).
"""

from rematch_pipeline.engine.large_scale.solve import SOLVER_LABEL, reduced_problem, solve_large

__all__ = ["SOLVER_LABEL", "reduced_problem", "solve_large"]

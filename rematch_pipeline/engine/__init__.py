"""Matching engine: hard rules, score, assignment model. Plain Python, no Dagster.

compatibility.candidate_pairs / exclusion_counts -> scoring.score_pairs ->
problem.build_problem -> assignment.solve -> problem.check_assignment (the MIP: model.py).
See docs/scoring.md for the formulas and the solver model.
"""

from rematch_pipeline.engine.assignment import solve
from rematch_pipeline.engine.compatibility import RULES, candidate_pairs, exclusion_counts
from rematch_pipeline.engine.problem import (
    AssignmentProblem,
    AssignmentResult,
    SolverParams,
    StageReport,
    build_problem,
    check_assignment,
    household_assignment,
)
from rematch_pipeline.engine.scoring import CRITERIA, ScoreWeights, score_pairs

__all__ = [
    "CRITERIA",
    "RULES",
    "AssignmentProblem",
    "AssignmentResult",
    "ScoreWeights",
    "SolverParams",
    "StageReport",
    "build_problem",
    "candidate_pairs",
    "check_assignment",
    "exclusion_counts",
    "household_assignment",
    "score_pairs",
    "solve",
]

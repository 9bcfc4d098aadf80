"""Benchmarks of the matching engine (python -m benchmarks; see README.md)."""

# First, before anything loads NumPy: the package pins the BLAS kernels (rematch_pipeline/__init__.py).
import rematch_pipeline  # noqa: F401

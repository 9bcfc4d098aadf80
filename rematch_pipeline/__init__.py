"""rematch_pipeline: refugee households matched to receiving municipalities (see README.md)."""

from __future__ import annotations

import os


def _pin_blas_kernels() -> None:
    """Give every machine with AVX2 the same floating-point answers from OpenBLAS.

    OpenBLAS picks its kernels by CPU (AVX-512 "SkylakeX", AVX2 "Haswell" …); their last bits
    differ, and that is enough to send the large solver's pricing down another path (measured:
    the 10,000-household round got another assignment on AVX-512 kernels than on AVX2 ones).
    Pinning the AVX2 kernels where the CPU has AVX2 and FMA makes "same input, same proposals"
    hold across such machines, at little cost (that round's 60 s: 54-57 s of wall clock pinned,
    50-53 s on AVX-512 kernels; the counted work is the same). It must happen before NumPy loads: this
    package is imported first by ``rematch`` and ``python -m benchmarks``, and the Dagster
    processes they start inherit the environment. A value the user set wins.
    """
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:  # not Linux: left to OpenBLAS
        return
    if {"avx2", "fma"} <= set(flags):
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"


_pin_blas_kernels()

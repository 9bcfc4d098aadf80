"""`python -m benchmarks --suite ingest`: reading and ingesting one sample round in each export format.

Per size, the sample round (× 401 districts, seed 1) is written once in each format (not timed): the
canonical CSV templates (the baseline), KoboToolbox KPI XLSX, KPI CSV (municipalities; households stay
XLSX, since KPI's CSV has no members) and LimeSurvey CSV. Then, each in a process of its own so that its
peak memory is its own: ``read_export`` of each landed folder's files, and a whole
``rematch ingest`` into a fresh data home. The Kobo XLSX is also read with ``REMATCH_XLSX_READER=openpyxl``
as a second baseline. Ratios are against the canonical CSV of the same round measured in the same run.

A child's peak is its own: it reports the high-water mark of its own address space (``VmHWM``, which
starts afresh at exec) and of its own children. ``wait4``'s ``ru_maxrss`` would not do: Linux carries
the forking process's peak over exec, so every child showed at least this process's size (about 1 GiB
at 50,000 households, once the sample is built).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FORMATS: tuple[str, ...] = ("csv", "kobo-xlsx", "kobo-csv", "limesurvey-csv")
FOLDERS: tuple[str, ...] = ("municipalities", "households")
OPENPYXL = "kobo-xlsx, openpyxl"
SECRET = "benchmark-ingest"  # the same pseudonyms in every data home


@dataclass
class Measure:
    """One child process: wall seconds, its peak resident memory (MiB) and what it reports."""

    seconds: float
    peak_mib: float
    report: dict


# Appended to every child's code: its last stdout line gets the child's own peak (MiB).
_OWN_PEAK = """
import resource as _resource
with open("/proc/self/status") as _status:
    _own = next(int(line.split()[1]) for line in _status if line.startswith("VmHWM:"))
_children = _resource.getrusage(_resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({**_report, "peak_mib": max(_own, _children) / 1024}))
"""


def _child(code: str, env: dict[str, str] | None = None) -> Measure:
    """Run Python code (which leaves its report in a dict _report) in a process of its own: wall
    seconds, the child's own peak RSS (module docstring) and its report."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code + _OWN_PEAK], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})}, check=False,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {code}")
    report = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return Measure(seconds, report.pop("peak_mib"), report)


_READ = """
import json, time, sys
from pathlib import Path
from rematch_pipeline.formats.detect import detect_format, read_export
paths = [Path(p) for p in {paths!r}]
data = [p.read_bytes() for p in paths]
start = time.perf_counter()
tables = [t for p, d in zip(paths, data) for t in read_export(p, d)]
seconds = time.perf_counter() - start
_report = {{"seconds": seconds, "rows": sum(t.frame.height for t in tables),
           "formats": sorted({{detect_format(p, d) for p, d in zip(paths, data)}})}}
"""

_INGEST = """
import json, sys, duckdb, contextlib, io
from rematch_pipeline.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    status = main(["ingest"])
from rematch_pipeline.resources.home import default_home
with duckdb.connect(str(default_home() / "warehouse.duckdb"), read_only=True) as con:
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("municipalities", "households", "members", "quarantine")}
_report = {"status": status, **counts}
"""


def _read(paths: list[Path], env: dict[str, str] | None = None) -> Measure:
    """read_export of some files in a child; seconds are the reader's own (bytes already in memory)."""
    measure = _child(_READ.format(paths=[str(p) for p in paths]), env)
    measure.seconds = measure.report["seconds"]
    return measure


def _ingest(sample_dir: Path, home: Path) -> Measure:
    """`rematch ingest` of a landed sample round into a fresh data home, in a child (wall seconds, whole process)."""
    shutil.rmtree(home, ignore_errors=True)
    for folder in FOLDERS:
        (home / "landing" / folder).mkdir(parents=True)
        for path in sorted((sample_dir / folder).iterdir()):
            shutil.copyfile(path, home / "landing" / folder / path.name)
    env = {"REMATCH_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "REMATCH_SECRET": SECRET}
    return _child(_INGEST, env)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def ingest_suite(
    sizes: list[int], municipalities: int = 401, formats: tuple[str, ...] = FORMATS, work: Path | None = None
) -> None:
    """Print the ingestion tables (read_export per landed folder; rematch ingest per format) for each size.
    formats: those to measure besides the canonical CSV, which is always the baseline (openpyxl with kobo-xlsx)."""
    formats = ("csv", *(f for f in formats if f != "csv"))
    from rematch_pipeline.sample import generate_round, write_round

    root = Path(work or tempfile.mkdtemp(prefix="rematch-bench-ingest-"))
    for size in sizes:
        start = time.perf_counter()
        sample = generate_round(size, municipalities, seed=1)
        written: dict[str, Path] = {}
        for fmt in formats:
            out = root / f"{size}-{fmt}"
            shutil.rmtree(out, ignore_errors=True)
            write_round(sample, out, fmt)
            written[fmt] = out
        prepared = time.perf_counter() - start
        print(f"\n## Ingestion: {size:,} households × {municipalities} districts ({sample.members.height:,} members; written in {prepared:.1f} s, not timed)\n")
        print("| folder | format | files (MB) | rows read | read_export s | peak MiB | s vs canonical CSV | peak vs canonical CSV | s vs openpyxl |")
        print("|---|---|---|---|---|---|---|---|---|")
        for folder in FOLDERS:
            # The two baselines first, so that every later row can be divided by them.
            runs = [("csv", written["csv"], None)]
            if "kobo-xlsx" in written:
                runs.append((OPENPYXL, written["kobo-xlsx"], {"REMATCH_XLSX_READER": "openpyxl"}))
            runs += [(fmt, written[fmt], None) for fmt in formats[1:]]
            base: Measure | None = None
            openpyxl: Measure | None = None
            for fmt, out, env in runs:
                files = sorted((out / folder).iterdir())
                m = _read(files, env)
                base = base or m
                if fmt == OPENPYXL:
                    openpyxl = m
                megabytes = sum(p.stat().st_size for p in files) / 1e6
                xlsx = openpyxl is not None and "kobo-xlsx" in m.report["formats"]
                print(
                    f"| {folder} | {fmt} ({', '.join(m.report['formats'])}) | {len(files)} ({megabytes:,.1f}) | {m.report['rows']:,} "
                    f"| {m.seconds:.2f} | {m.peak_mib:,.0f} | {_ratio(m.seconds, base.seconds)} | {_ratio(m.peak_mib, base.peak_mib)} "
                    f"| {_ratio(m.seconds, openpyxl.seconds) if xlsx else '-'} |"
                )
                sys.stdout.flush()
        print("\n| format | rematch ingest s | peak MiB | s vs canonical CSV | peak vs canonical CSV | validated municipalities / households / members | quarantined |")
        print("|---|---|---|---|---|---|---|")
        base = None
        for fmt in formats:
            m = _ingest(written[fmt], root / f"home-{size}-{fmt}")
            base = base or m
            r = m.report
            print(
                f"| {fmt} | {m.seconds:.1f} | {m.peak_mib:,.0f} | {_ratio(m.seconds, base.seconds)} | {_ratio(m.peak_mib, base.peak_mib)} "
                f"| {r['municipalities']:,} / {r['households']:,} / {r['members']:,} | {r['quarantine']:,} |"
            )
            sys.stdout.flush()
            shutil.rmtree(root / f"home-{size}-{fmt}", ignore_errors=True)
    if work is None:
        shutil.rmtree(root, ignore_errors=True)

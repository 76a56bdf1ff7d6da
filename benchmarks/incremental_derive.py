"""Incremental derive: replace one dataset in which some patients changed, then derive again.

    python benchmarks/incremental_derive.py                                   # 10,000 patients
    python benchmarks/incremental_derive.py --patients 100000 --changed 100 --runs 3

The cohort is ``synth`` output in datasets of --per-dataset patients (each file its own seed). After
one full ``b12kg derive``, each run loads a copy of the first dataset in which --changed patients have
another B12 value (a new value per run, so every run changes them) with ``b12kg load``, then runs
``b12kg derive`` at the same ``--as-of`` — both as commands, interpreter start included — and checks
that derive evaluated exactly the changed patients. ``derive --full`` is timed once for comparison.
Prints a markdown table (medians of --runs).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from b12kg.synth import generate

AS_OF = "2025-10-31"
VALUE = re.compile(r'^(<[^>]*/p(\d+)-b12-1> <https://w3id.org/b12kg/ontology#value> )"[0-9.]+"')


def b12kg(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "b12kg.cli", *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"b12kg {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, done.stderr


def changed_copy(source: Path, target: Path, changed: int, run: int) -> int:
    """``source`` with the first ``changed`` patients' first B12 result set to a value of this run."""
    out, seen = [], set()
    for line in source.read_text(encoding="utf-8").splitlines():
        m = VALUE.match(line)
        if m and (m.group(2) in seen or len(seen) < changed):
            seen.add(m.group(2))
            line = line.replace(line[len(m.group(1)):].split(" ", 1)[0], f'"{100 + run}.5"^^<http://www.w3.org/2001/XMLSchema#decimal>', 1)
        out.append(line)
    target.write_text("\n".join(out) + "\n", encoding="utf-8")
    return len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--per-dataset", type=int, default=1_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-full", action="store_true", help="do not time derive --full")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="b12kg-incremental-"))
    try:
        files = []
        for i in range(-(-args.patients // args.per_dataset)):
            path = work / f"part-{i:04d}.nt"
            with path.open("w", encoding="utf-8") as out:
                generate(out, patients=min(args.per_dataset, args.patients - i * args.per_dataset), seed=1 + i,
                         as_of=date.fromisoformat(AS_OF), base=f"https://example.org/b12kg/bench/{i}/")
            files.append(path)
        db = str(work / "db")
        first_load, _ = b12kg("load", *map(str, files), "--store", db)
        first_derive, _ = b12kg("derive", "--store", db, "--as-of", AS_OF)
        loads, derives = [], []
        (work / "changed").mkdir()
        for run in range(args.runs):
            target = work / "changed" / files[0].name
            n = changed_copy(files[0], target, args.changed, run)
            took, said = b12kg("load", str(target), "--store", db)
            loads.append(took)
            took, said = b12kg("derive", "--store", db, "--as-of", AS_OF)
            derives.append(took)
            if f"evaluated {n} patient(s) without results" not in said:
                sys.exit(f"run {run + 1}: derive did not evaluate exactly the {n} changed patients: {said.strip()}")
        full = float("nan") if args.skip_full else b12kg("derive", "--store", db, "--as-of", AS_OF, "--full")[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load, derive = statistics.median(loads), statistics.median(derives)
    print("| patients | datasets | changed | first load + derive | load (1 dataset) | derive (incremental) "
          "| load + derive | derive --full |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.patients:,} | {len(files)} | {args.changed} | {first_load + first_derive:.1f} s | {load:.2f} s "
          f"| {derive:.2f} s | {load + derive:.2f} s | {full:.1f} s |")
    print(f"\nruns: load {', '.join(f'{t:.2f}' for t in loads)} s; derive {', '.join(f'{t:.2f}' for t in derives)} s")


if __name__ == "__main__":
    main()

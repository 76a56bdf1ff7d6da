"""Time and peak memory of b12kg on each hostile or careless input of fuzz/defects.py.

    python benchmarks/hostile_inputs.py            # 3 runs of each case
    python benchmarks/hostile_inputs.py --runs 5 --limit-gib 4

Each case is one `b12kg` command in a new process (the interpreter's start-up included); the table
gives the median, min and max wall time over --runs, the largest peak resident memory (wait4), the exit
code, and whether the outcome is the documented one. The target is under 10 s and under 1 GiB for
every case. --limit-gib caps each command's address space, so that a revision that blows up (run this
file with PYTHONPATH=<that checkout>/src) fails its case instead of the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _defects():
    spec = importlib.util.spec_from_file_location("b12kg_fuzz_defects", REPO / "fuzz" / "defects.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit-gib", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    defects = _defects()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = defects.build(Path(tmp) / "inputs")
        for n, case in enumerate(defects.CASES):
            times, peaks, codes, ok = [], [], set(), True
            for run in range(args.runs):
                store = defects.prepare_store(folder, f"store-{n}-{run}", case.tags) if case.needs_store else None
                outcome = defects.run(defects.arguments(case, folder, store), terminal=case.terminal,
                                      timeout=args.timeout, memory_limit=int(args.limit_gib * 2**30))
                times.append(outcome.seconds)
                peaks.append(outcome.peak_bytes)
                codes.add(outcome.code)
                ok = ok and not defects.check(case, outcome)
            rows.append((case.name, statistics.median(times), min(times), max(times), max(peaks) / 2**20,
                         ",".join(map(str, sorted(codes))), "yes" if ok else "NO"))
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'median s':>8}  {'min s':>6}  {'max s':>6}  {'peak MiB':>8}  exit  as documented")
    for name, median, low, high, peak, codes, ok in rows:
        print(f"{name:<{width}}  {median:8.2f}  {low:6.2f}  {high:6.2f}  {peak:8.0f}  {codes:>4}  {ok}")
    worst_time = max(r[1] for r in rows)
    worst_peak = max(r[4] for r in rows)
    print(f"\n{len(rows)} cases x {args.runs} runs; slowest median {worst_time:.2f} s (target < 10 s), "
          f"largest peak {worst_peak:.0f} MiB (target < 1024 MiB); not as documented: "
          f"{sum(r[6] == 'NO' for r in rows)}")


if __name__ == "__main__":
    main()

"""Benchmark: import the 24 Synthea patient bundles N times (default 5); print a markdown table.

Usage: python benchmarks/fhir_import_speed.py [--runs N] [--folder PATH]
The first run includes loading the code bindings from the ontology (cached afterwards per process);
each run reads, validates (fhir.resources) and maps all files.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from b12kg.fhir import import_fhir
from b12kg.kb import KnowledgeBase

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fhir" / "synthea"
BUDGET_S = 10.0  # issue 5: importing the 24 Synthea patients takes at most 10 s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    args = parser.parse_args()
    kb = KnowledgeBase()
    times, result = [], None
    for _ in range(args.runs):
        start = time.perf_counter()
        result = import_fhir([args.folder], kb=kb)
        times.append(time.perf_counter() - start)
    assert result is not None
    median = statistics.median(times)
    print("| files | patients | resources | triples | runs | median s | min s | max s | budget s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {len(result.files)} | {len(result.patients)} | {sum(result.resources.values())} | {len(result.triples)} "
          f"| {args.runs} | {median:.2f} | {min(times):.2f} | {max(times):.2f} | {BUDGET_S:.0f} |")
    return 0 if median <= BUDGET_S and not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())

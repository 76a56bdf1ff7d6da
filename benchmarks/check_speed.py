"""How long `b12kg check` takes on the project's knowledge base, cold (a new process per run).

Usage: python benchmarks/check_speed.py [--runs N] [-- extra check arguments]
Prints a markdown table: wall time (median, min, max) of the whole command, and the median time of
each stage as the command reports it (--format json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("extra", nargs="*", help="extra arguments for b12kg check")
    args = parser.parse_args()
    command = [sys.executable, "-m", "b12kg.cli", "check", str(REPO), "--format", "json", *args.extra]
    walls: list[float] = []
    stages: dict[str, list[float]] = {}
    scenarios = 0
    for _ in range(args.runs):
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        walls.append(time.perf_counter() - started)
        if result.returncode not in (0, 1):
            sys.exit(f"b12kg check failed ({result.returncode}): {result.stderr.strip()}")
        data = json.loads(result.stdout)
        scenarios = data["scenarios"]
        for stage, info in data["stages"].items():
            stages.setdefault(stage, []).append(info["seconds"])
    print(f"`b12kg check` on {REPO.name}, {args.runs} cold runs, {scenarios} scenarios, HermiT included\n")
    print("| what | median s | min s | max s |")
    print("|---|---:|---:|---:|")
    print(f"| whole command (wall) | {statistics.median(walls):.2f} | {min(walls):.2f} | {max(walls):.2f} |")
    for stage, values in stages.items():
        print(f"| stage {stage} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")


if __name__ == "__main__":
    main()

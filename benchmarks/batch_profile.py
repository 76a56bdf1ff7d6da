"""Where one derive batch spends its time: each step of a worker's evaluation of a batch, as `derive` runs it.

Usage:
    python benchmarks/batch_profile.py                          # a batch of 1,000 patients, 5 runs
    python benchmarks/batch_profile.py --patients 1000 --runs 7 --top 15
    python benchmarks/batch_profile.py --compare HEAD~1         # and the code and queries of a revision

The batch is the first --patients of `b12kg synth --seed 1`, evaluated in this process (one core) by
``cohort._evaluate`` with SHACL on, at 2025-10-31, after one warm-up run. The table gives each step's
median over --runs (validate: SHACL shapes and value checks; normalise, classify, derive, schedule: the
pipeline; the rest of the run — reading the batch into a workspace, writing its results out, the
scope and input digests — is "load and export"), then the --top slowest queries by name (a compiled
classification rule by the class it produces). With --compare REV the same is measured on a checkout of
REV (a git worktree, removed afterwards), each run a new process, the two revisions in turn (the
machine drifts), and both revisions must derive the same triples for the batch.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AS_OF = date(2025, 10, 31)
STEPS = ("validate", "normalise", "classify", "derive", "schedule")


def measure(patients: int, runs: int) -> dict:
    """Per-step and per-query seconds of each run, and the sorted derived N-Triples (in this process)."""
    from b12kg import cohort, derive, engine, synth
    from b12kg.kb import KnowledgeBase

    kb = KnowledgeBase()
    names = {kb.query(name): name for folder in ("normalise", "derive", "schedule", "cohort", "validate")
             for name, _ in kb.queries(folder)}
    steps: dict[str, float] = defaultdict(float)
    queries: dict[str, float] = defaultdict(float)

    def timed(key: str, function):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                steps[key] += time.perf_counter() - started
        return run

    def query_name(text: str) -> str:
        if text in names:
            return names[text]
        head = text.split("WHERE", 1)[0]
        return "rule " + head.rsplit("#", 1)[-1].strip(" .>}") if "#" in head else "rule " + " ".join(head.split())[:60]

    def timed_query(function):
        def run(self, text, *args, **kwargs):
            started = time.perf_counter()
            try:
                return function(self, text, *args, **kwargs)
            finally:
                queries[query_name(text)] += time.perf_counter() - started
        return run

    cohort.validate_shapes = timed("validate", cohort.validate_shapes)
    cohort.validate_values = timed("validate", cohort.validate_values)
    for step in STEPS[1:]:
        setattr(derive, step, timed(step, getattr(derive, step)))
    engine.Workspace.construct_nt = timed_query(engine.Workspace.construct_nt)
    engine.Workspace.select_text = timed_query(engine.Workspace.select_text)

    text = io.StringIO()
    synth.generate(text, patients=patients, seed=1, as_of=AS_OF, kb=kb)
    data = text.getvalue().encode("utf-8")
    members = sorted(synth.iter_patient_iris(patients, seed=1))
    batch = cohort._Batch(root=str(kb.root), as_of=AS_OF, reasoner="rules", shacl=True, label="batch",
                          patients=members, data=data)
    derived = cohort._evaluate(batch).derived  # warm-up: caches, compiled rules, shapes
    runs_out = []
    for _ in range(runs):
        steps.clear()
        queries.clear()
        started = time.perf_counter()
        cohort._evaluate(batch)
        total = time.perf_counter() - started
        row = dict(steps)
        row["load and export"] = total - sum(steps.values())
        row["total"] = total
        runs_out.append({"steps": row, "queries": dict(queries)})
    lines = sorted(set(derived.decode("utf-8").splitlines()))
    return {"patients": len(members), "runs": runs_out, "derived": len(lines),
            "digest": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def median(runs: list[dict], part: str, key: str) -> float:
    return statistics.median(run[part].get(key, 0.0) for run in runs)


def in_tree(tree: Path, patients: int) -> dict:
    """One measured run (after a warm-up) in a new process on the checkout ``tree`` (its src and queries)."""
    out = subprocess.run([sys.executable, __file__, "--patients", str(patients), "--runs", "1", "--json"],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tree / "src"), "B12KG_HOME": str(tree)})
    return json.loads(out.stdout)


def compared(rev: str, patients: int, runs: int) -> tuple[dict, dict]:
    """The working tree and a worktree of ``rev``, one run each in turn (the machine's drift hits both alike)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(tree), rev],
                       check=True, capture_output=True)
        try:
            now, before = [], []
            for _ in range(runs):
                now.append(in_tree(REPO, patients))
                before.append(in_tree(tree, patients))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    merge = lambda results: {**results[0], "runs": [r for result in results for r in result["runs"]]}  # noqa: E731
    return merge(now), merge(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000, help="patients in the batch (derive's default batch)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=12, help="how many of the slowest queries to list")
    parser.add_argument("--compare", metavar="REV", help="also measure git revision REV")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.patients, args.runs)))
        return
    if args.compare:
        now, before = compared(args.compare, args.patients, args.runs)
    else:
        now, before = measure(args.patients, args.runs), None
    if before is not None and before["digest"] != now["digest"]:
        sys.exit(f"{args.compare} and the working tree derive different triples for the batch "
                 f"({before['derived']} and {now['derived']} lines)")
    head = f" | {args.compare} median ms" if before else ""
    print(f"Batch of {now['patients']} patients, {now['derived']} derived lines, medians of {args.runs} runs (ms)\n")
    print("| step | median ms" + head + " |")
    print("|---|---:" + ("|---:" if before else "") + "|")
    for key in (*STEPS, "load and export", "total"):
        tail = f" | {median(before['runs'], 'steps', key) * 1000:.0f}" if before else ""
        print(f"| {key} | {median(now['runs'], 'steps', key) * 1000:.0f}{tail} |")
    names = {name for run in now["runs"] for name in run["queries"]}
    slowest = sorted(names, key=lambda n: -median(now["runs"], "queries", n))[:args.top]
    print(f"\n| slowest queries (of {len(names)}) | median ms" + head + " |")
    print("|---|---:" + ("|---:" if before else "") + "|")
    for name in slowest:
        tail = f" | {median(before['runs'], 'queries', name) * 1000:.1f}" if before else ""
        print(f"| {name} | {median(now['runs'], 'queries', name) * 1000:.1f}{tail} |")


if __name__ == "__main__":
    main()

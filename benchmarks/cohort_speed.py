"""Cohort speed and memory: load + derive on the embedded store, the HermiT path, the remote path,
and one patient from a cold start. Prints a markdown table (medians of --runs runs).

    python benchmarks/cohort_speed.py                      # 1k and 10k, 3 runs each
    python benchmarks/cohort_speed.py --sizes 1000 10000 100000 --runs 1

Each measurement runs in a fresh Python process, so its peak RSS is its own. Targets (issue): 100k
patients load + derive ≤ 30 s and ≤ 3 GB; 1M ≤ 6 min; ≥ 100× faster than owlready2 + HermiT;
one patient cold ≤ 1.5 s. Sizes that would take too long are extrapolated from the measured
patients/s and marked so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AS_OF = "2025-10-31"

EMBEDDED = """
import json, sys, time
from datetime import date
from pathlib import Path
from b12kg import cohort
from b12kg.store import EmbeddedStore
from b12kg.reason import Reasoner
cohort_file, db, batch, reasoner, shacl = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
store = EmbeddedStore(db)
t0 = time.perf_counter(); cohort.load(store, [Path(cohort_file)]); t1 = time.perf_counter()
r = cohort.derive(store, as_of=date.fromisoformat("%s"), batch_size=batch, reasoner=Reasoner(reasoner), shacl=shacl)
t2 = time.perf_counter(); store.close()
import resource
print(json.dumps({"load": t1 - t0, "derive": t2 - t1, "patients": r.evaluated, "problems": len(r.problems),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""" % AS_OF

REMOTE = """
import json, subprocess, sys, time, urllib.request
from datetime import date
from pathlib import Path
from b12kg import cohort
from b12kg.serve import free_port, oxigraph_binary, wait_for
from b12kg.store import RemoteStore
cohort_file, db, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
port = free_port()
server = subprocess.Popen([oxigraph_binary(), "serve", "--location", db, "--bind", f"127.0.0.1:{port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    wait_for(f"http://127.0.0.1:{port}/query?query=ASK%%7B%%7D", process=server)
    store = RemoteStore(f"http://127.0.0.1:{port}/query", update_endpoint=f"http://127.0.0.1:{port}/update")
    t0 = time.perf_counter(); cohort.load(store, [Path(cohort_file)]); t1 = time.perf_counter()
    r = cohort.derive(store, as_of=date.fromisoformat("%s"), batch_size=batch, shacl=False)
    t2 = time.perf_counter()
finally:
    server.terminate(); server.wait()
import resource
print(json.dumps({"load": t1 - t0, "derive": t2 - t1, "patients": r.evaluated, "problems": len(r.problems),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""" % AS_OF


def run_child(code: str, *args: str) -> tuple[dict, float]:
    """Run code in a fresh interpreter; returns its JSON output and the peak RSS it reported (MB;
    the Python process only — the remote row excludes the server's own memory)."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result, result["rss_mb"]


def synth(n: int, work: Path) -> Path:
    path = work / f"cohort-{n}.nt"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "b12kg.cli", "synth", "--patients", str(n), "--seed", "1",
                        "--as-of", AS_OF, "-o", str(path)], check=True, capture_output=True)
    return path


def measure(label: str, code: str, n: int, work: Path, runs: int, *extra: str) -> dict:
    cohort_file = synth(n, work)
    walls, rss, last = [], [], {}
    for i in range(runs):
        db = work / f"db-{label}-{n}-{i}"
        shutil.rmtree(db, ignore_errors=True)
        result, peak = run_child(code, str(cohort_file), str(db), *extra)
        walls.append(result["load"] + result["derive"])
        rss.append(peak)
        last = result
        shutil.rmtree(db, ignore_errors=True)
    wall = statistics.median(walls)
    return {"stack": label, "patients": n, "wall_s": wall, "patients_per_s": n / wall, "rss_mb": max(rss),
            "load_s": last["load"], "derive_s": last["derive"], "problems": last["problems"], "measured": True}


def cold_start(runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "b12kg"), "recommend",
                        str(REPO / "examples/patients/seed-case.ttl"), "--as-of", AS_OF],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hermit-sample", type=int, default=100)
    parser.add_argument("--remote-size", type=int, default=1000)
    parser.add_argument("--targets", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="b12kg-bench-"))
    rows = []
    try:
        for n in args.sizes:
            rows.append(measure("embedded (rules, no SHACL)", EMBEDDED, n, work, args.runs, "250", "rules", "0"))
        rows.append(measure("embedded (rules, SHACL)", EMBEDDED, args.sizes[0], work, args.runs, "250", "rules", "1"))
        rows.append(measure("embedded (HermiT, batches of 50)", EMBEDDED, args.hermit_sample, work, 1, "50", "hermit", "0"))
        rows.append(measure("remote Oxigraph server (rules)", REMOTE, args.remote_size, work, 1, "250"))
        cold = cold_start(max(args.runs, 5))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    embedded = [r for r in rows if r["stack"].startswith("embedded (rules, no")]
    rate = embedded[-1]["patients_per_s"]
    for n in args.targets:
        if n not in args.sizes:
            rows.append({"stack": "embedded (rules, no SHACL)", "patients": n, "wall_s": n / rate,
                         "patients_per_s": rate, "rss_mb": None, "measured": False})
    hermit = next(r for r in rows if "HermiT" in r["stack"])

    print(f"\nmachine: {os.cpu_count()} cores; python {sys.version.split()[0]}; medians of {args.runs} run(s)\n")
    print("| stack | patients | load + derive (s) | patients/s | peak RSS (MB) | note |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        note = "measured" if r["measured"] else "extrapolated from the largest measured size"
        if r.get("problems"):
            note += f"; {r['problems']} problem(s)"
        rss = f"{r['rss_mb']:.0f}" if r["rss_mb"] else "–"
        print(f"| {r['stack']} | {r['patients']:,} | {r['wall_s']:.1f} | {r['patients_per_s']:.0f} | {rss} | {note} |")
    print(f"\nrules engine vs owlready2 + HermiT (batched): {rate / hermit['patients_per_s']:.1f}× faster (target ≥ 100×)")
    print(f"one patient, cold start (b12kg recommend, process start to output): {cold:.2f} s median (target ≤ 1.5 s)")
    if len(embedded) >= 2:
        a, b = embedded[0], embedded[-1]
        print(f"cost growth {a['patients']:,} → {b['patients']:,} patients: "
              f"{b['wall_s'] / a['wall_s']:.1f}× time for {b['patients'] / a['patients']:.0f}× patients")


if __name__ == "__main__":
    main()

"""What a large answer costs `b12kg serve`: time and the peak memory of the server and its workers, per format.

    python benchmarks/serve_large_answers.py                      # 1,000 patients, built here
    python benchmarks/serve_large_answers.py --store DIR --runs 5 # a derived store
    python benchmarks/serve_large_answers.py --limit 100000

It starts `b12kg serve` (a new process, default row limit 10,000 unless --limit) on loopback and
sends queries whose answers are far larger than the limit: every triple of the store (SELECT as JSON
and as CSV, CONSTRUCT as N-Triples) and every pair of triples (some 10^10 rows at 1,000 patients).
The table gives the median, min and max wall time over --runs, the answer's size, whether it was
marked truncated, and the peak RSS (VmHWM) of the server process and of its largest query worker. A
worker reads an answer only up to the limit, so neither peak should grow with the answer; to see a
revision that does not, run this file with PYTHONPATH=<that checkout>/src.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import date
from pathlib import Path

from b12kg import cohort
from b12kg.serve import free_port
from b12kg.store import EmbeddedStore
from b12kg.synth import generate_file

AS_OF = date(2025, 10, 31)
QUERIES = [  # (name, Accept header, query)
    ("every triple, JSON", "application/sparql-results+json", "SELECT * WHERE { ?s ?p ?o }"),
    ("every triple, CSV", "text/csv", "SELECT * WHERE { ?s ?p ?o }"),
    ("every triple, N-Triples", "application/n-triples", "CONSTRUCT WHERE { ?s ?p ?o }"),
    ("every pair of triples, JSON", "application/sparql-results+json", "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f }"),
]


def peak_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM"))


def worker_peak_mb(parent: int) -> int:
    """The largest peak RSS among the server's child processes (its query workers)."""
    peaks = [0]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                peaks.append(peak_mb(int(stat.parent.name)))
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return max(peaks)


def wait_for(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"serve exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer within {seconds:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1_000, help="cohort size when a store is built here")
    parser.add_argument("--store", help="an embedded store already derived")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--timeout", type=int, default=120)
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="b12kg-serve-")  # a store built here; removed at exit
    if args.store:
        store_dir = Path(args.store)
    else:
        work = Path(scratch.name)
        generate_file(work / "cohort.nt", patients=args.patients, seed=1, as_of=AS_OF)
        store = EmbeddedStore(work / "db")
        cohort.load(store, [work / "cohort.nt"])
        cohort.derive(store, as_of=AS_OF, shacl=False)
        store.close()
        store_dir = work / "db"

    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "b12kg.cli", "serve", "--store", str(store_dir), "--port",
                              str(port), "--limit", str(args.limit), "--timeout", str(args.timeout)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_for(f"http://127.0.0.1:{port}/", process=serve)
        idle = peak_mb(serve.pid)
        for name, accept, query in QUERIES:
            times, size, truncated = [], 0, ""
            for _ in range(args.runs):
                request = urllib.request.Request(f"http://127.0.0.1:{port}/query", headers={"Accept": accept},
                                                 data=urllib.parse.urlencode({"query": query}).encode())
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=args.timeout + 30) as answer:
                        size = len(answer.read())
                        truncated = answer.headers["X-B12KG-Truncated"]
                except (OSError, http.client.HTTPException) as exc:  # (urllib's HTTPError is an OSError)
                    truncated = f"failed: {type(exc).__name__}: {str(exc)[:60]}"
                times.append(time.perf_counter() - started)
            rows.append((name, statistics.median(times), min(times), max(times), size, truncated, peak_mb(serve.pid),
                         worker_peak_mb(serve.pid)))
    finally:
        serve.terminate()
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
            print("serve did not stop within 60 s of SIGTERM; killed", file=sys.stderr)

    print(f"\n{store_dir}, row limit {args.limit}, {args.runs} runs each; the server's peak RSS idle: {idle} MB\n")
    print("| answer | median s | min s | max s | bytes | truncated | server peak RSS so far (MB) | largest worker peak (MB) |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for name, median, low, high, size, truncated, peak, worker in rows:
        print(f"| {name} | {median:.2f} | {low:.2f} | {high:.2f} | {size:,} | {truncated} | {peak} | {worker} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

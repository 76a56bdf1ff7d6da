"""The cohort job against the store's own floor, measured in the same run on the same cohort.

    python benchmarks/cohort_floor.py                          # 10,000 patients, 3 runs
    python benchmarks/cohort_floor.py --sizes 10000 100000 --runs 3

* **floor**: bulk-load the cohort's N-Triples into an on-disk pyoxigraph store, then one SPARQL pass
  that classifies every patient's B12 result against a threshold of the knowledge base (what any
  store-backed evaluation has to do at least);
* **job**: `b12kg load` + `b12kg derive` with their default flags (SHACL on, all cores), as a user runs
  them: each a new process, interpreter start included;
* **ratio**: job ÷ floor;
* **write floor**: bulk-load the same input *and the derived graph the job wrote* (exported from the
  job's store) into a new on-disk store, no derivation: what writing the results alone costs this store,
  which the floor above leaves out (`--no-write-floor` leaves it out);
* **derive again**: `b12kg derive --full` once more over the derived store (same `--as-of`), as after a
  change of the knowledge base: it reads the patients beside a full derived graph (`--no-again` leaves
  it out, for sizes where it would double a long run).

Prints a markdown table: medians of --runs runs (the floor and the job alternate, so a noisy minute
hits both), derived triples per patient, peak RSS of the derive process tree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyoxigraph as ox

from b12kg.engine import Workspace
from b12kg.kb import KnowledgeBase
from b12kg.namespaces import GRAPH_DERIVED
from b12kg.sparql import bind

AS_OF = "2025-10-31"
B12 = "https://w3id.org/b12kg/ontology#"
CLASSIFY = """PREFIX b12: <https://w3id.org/b12kg/ontology#>
SELECT (COUNT(DISTINCT ?patient) AS ?below) WHERE {
  ?patient b12:hasLabResult ?result . ?result b12:code ?code ; b12:value ?value .
  FILTER (?value < ?threshold)
}"""
THRESHOLD = """PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
PREFIX b12: <https://w3id.org/b12kg/ontology#>
SELECT ?value ?code WHERE {
  ?threshold a b12:Threshold ; b12:thresholdValue ?value ; b12:unit ?unit ; b12:thresholdAnalyte ?analyte .
  ?code b12:measures ?analyte .
  ?analyte rdfs:label ?label . FILTER (CONTAINS(?label, "B12"))
} ORDER BY ?value"""


def b12kg(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "b12kg.cli", *args], check=True, capture_output=True)


def floor(cohort: Path, folder: Path, threshold: ox.Literal, codes: list[ox.NamedNode]) -> float:
    start = time.perf_counter()
    store = ox.Store(str(folder))
    store.bulk_load(path=str(cohort), format=ox.RdfFormat.N_TRIPLES)
    rows = list(store.query(bind(CLASSIFY, {"threshold": threshold, "code": codes})))
    assert int(rows[0]["below"].value) > 0
    store.flush()
    elapsed = time.perf_counter() - start
    del store
    return elapsed


def write_floor(cohort: Path, derived: Path, folder: Path) -> float:
    start = time.perf_counter()
    store = ox.Store(str(folder))
    store.bulk_load(path=str(cohort), format=ox.RdfFormat.N_TRIPLES, to_graph=ox.NamedNode("urn:floor:input"))
    store.bulk_load(path=str(derived), format=ox.RdfFormat.N_TRIPLES, to_graph=ox.NamedNode("urn:floor:derived"))
    store.flush()
    elapsed = time.perf_counter() - start
    del store
    return elapsed


def tree_rss(pid_holder: list, stop: threading.Event, peak: list) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    while not stop.is_set():
        total = 0
        for pid in list(pid_holder):
            pids = [pid]
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        pids += [int(p) for p in f.read().split()]
            except OSError:
                pass
            for p in pids:
                try:
                    with open(f"/proc/{p}/statm") as f:
                        total += int(f.read().split()[1]) * page
                except OSError:
                    pass
        peak[0] = max(peak[0], total)
        stop.wait(0.2)


def job(cohort: Path, db: Path, again: bool = True, derived: Path | None = None
        ) -> tuple[float, float, int, float | None]:
    """load + derive as two commands; returns (seconds, peak RSS MB of derive's process tree, derived
    triples, seconds of a second derive over the derived store, None when ``again`` is false). With
    ``derived``, the derived graph is written there as N-Triples (not timed)."""
    start = time.perf_counter()
    b12kg("load", str(cohort), "--store", str(db))
    holder, stop, peak = [], threading.Event(), [0]
    process = subprocess.Popen([sys.executable, "-m", "b12kg.cli", "derive", "--store", str(db), "--as-of", AS_OF],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    holder.append(process.pid)
    sampler = threading.Thread(target=tree_rss, args=(holder, stop, peak), daemon=True)
    sampler.start()
    _, err = process.communicate()
    elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"derive failed ({process.returncode}): {err.decode()[-500:]}")
    seconds_again = None
    if again:
        start_again = time.perf_counter()
        b12kg("derive", "--store", str(db), "--as-of", AS_OF, "--full")  # (without --full: nothing to evaluate)
        seconds_again = time.perf_counter() - start_again
    from b12kg.store import EmbeddedStore

    store = EmbeddedStore(db)
    rows = store.select(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH <{GRAPH_DERIVED}> {{ ?s ?p ?o }} }}")
    if derived is not None:
        with derived.open("wb") as out:
            store.dump(ox.RdfFormat.N_TRIPLES, GRAPH_DERIVED, output=out)
    store.close()
    return elapsed, peak[0] / 2**20, int(rows[0]["n"].value), seconds_again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-again", action="store_true", help="leave out the second derive (--full)")
    parser.add_argument("--no-write-floor", action="store_true", help="leave out the write floor")
    args = parser.parse_args()
    rows = Workspace(KnowledgeBase()).select_text(THRESHOLD)  # the lowest B12 threshold, the codes of B12 results
    threshold, codes = rows[0]["value"], sorted({r["code"] for r in rows}, key=str)
    work = Path(tempfile.mkdtemp(prefix="b12kg-floor-"))
    rows = []
    try:
        for n in args.sizes:
            cohort = work / f"cohort-{n}.nt"
            b12kg("synth", "--patients", str(n), "--seed", "1", "--as-of", AS_OF, "-o", str(cohort))
            floors, jobs, agains, rss, writes, triples = [], [], [], [], [], 0
            for i in range(args.runs):
                folder = work / f"floor-{i}"
                floors.append(floor(cohort, folder, threshold, codes))
                shutil.rmtree(folder)
                db = work / f"db-{i}"
                derived = None if args.no_write_floor else work / "derived.nt"
                seconds, peak, triples, again = job(cohort, db, again=not args.no_again, derived=derived)
                jobs.append(seconds)
                shutil.rmtree(db)
                if derived is not None:
                    writes.append(write_floor(cohort, derived, folder))
                    shutil.rmtree(folder)
                    derived.unlink()
                if again is not None:
                    agains.append(again)
                rss.append(peak)
                print(f"{n}: run {i + 1}: floor {floors[-1]:.1f} s, job {seconds:.1f} s, peak RSS {peak:,.0f} MB"
                      + ("" if again is None else f", again {again:.1f} s")
                      + (f", write floor {writes[-1]:.1f} s" if writes else ""), file=sys.stderr, flush=True)
            rows.append((n, statistics.median(floors), statistics.median(jobs), max(rss), triples / n,
                         statistics.median(agains) if agains else None,
                         statistics.median(writes) if writes else None))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Medians of {args.runs} runs; `synth --seed 1`; load + derive with default flags (SHACL on, "
          f"{os.cpu_count()} cores).\n")
    print("| patients | floor (s) | job (s) | job ÷ floor | job patients/s | derived triples/patient | "
          "peak RSS derive (MB) | derive again (s) | write floor (s) | job ÷ write floor |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, f, j, peak, per, again, write in rows:
        again_cell = "–" if again is None else f"{again:.1f}"
        write_cells = "– | –" if write is None else f"{write:.1f} | {j / write:.1f}"
        print(f"| {n:,} | {f:.1f} | {j:.1f} | {j / f:.1f} | {n / j:,.0f} | {per:.0f} | {peak:,.0f} | {again_cell} "
              f"| {write_cells} |")


if __name__ == "__main__":
    main()

"""Cohort speed and memory: load + derive on the embedded store, the HermiT path, the remote path,
and one patient from a cold start. Prints a markdown table (medians of --runs runs).

    python benchmarks/cohort_speed.py                      # 1k and 10k, 3 runs each
    python benchmarks/cohort_speed.py --sizes 1000 10000 100000 --runs 1
    python benchmarks/cohort_speed.py --sizes 1000000 --runs 1 --only-embedded   # the embedded rows alone
    python benchmarks/cohort_speed.py --only-remote --remote-size 100000 --remote-datasets 10   # the remote row alone
    python benchmarks/cohort_speed.py --only-remote --remote-server virtuoso --remote-size 10000   # on Virtuoso
    python benchmarks/cohort_speed.py --only-remote --remote-size 10000 --remote-again   # and derive over it again

Each measurement runs in a fresh Python process, so its peak RSS is its own. The remote rows start
the test suite's loopback servers (tests/servers.py: the Oxigraph server with the union default
graph, Virtuoso with its own virtuoso.ini), their database in a temporary folder. Targets: 100k
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
workers, floor = int(sys.argv[6]), sys.argv[7] == "1"
def tree_rss(stop, peak):
    # the resident memory of this process and its workers, sampled (ru_maxrss of a spawned worker is
    # useless: it keeps the high-water mark of the parent it was forked from before exec)
    import os
    page = os.sysconf("SC_PAGE_SIZE")
    while not stop.is_set():
        pids, total = [os.getpid()], 0
        for task in os.listdir(f"/proc/{os.getpid()}/task"):
            try:
                with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
                    pids += [int(p) for p in f.read().split()]
            except OSError:
                pass
        for pid in pids:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * page
            except OSError:
                pass
        peak[0] = max(peak[0], total)
        stop.wait(0.2)
if __name__ == "__main__":  # derive starts worker processes (spawn), which import this module
    import threading
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=tree_rss, args=(stop, peak), daemon=True); sampler.start()
    store = EmbeddedStore(db)
    t0 = time.perf_counter(); cohort.load(store, [Path(cohort_file)]); t1 = time.perf_counter()
    r = cohort.derive(store, as_of=date.fromisoformat("%s"), batch_size=batch, reasoner=Reasoner(reasoner),
                      shacl=shacl, workers=workers)
    t2 = time.perf_counter()
    stop.set(); sampler.join()
    rss_mb = peak[0] / 2**20  # peak of load + derive: this process and its workers together (sampled)
    floor_s = None
    if floor:  # the store's own write cost: bulk-load the same input and derived triples, no derivation
        import pyoxigraph as ox
        derived = Path(db + "-derived.nt"); derived.write_bytes(store.dump(ox.RdfFormat.N_TRIPLES, cohort.GRAPH_DERIVED))
        store.close()
        bare = ox.Store(db + "-floor")
        t3 = time.perf_counter()
        bare.bulk_load(path=cohort_file, format=ox.RdfFormat.N_TRIPLES, to_graph=ox.NamedNode("urn:floor:input"))
        bare.bulk_load(path=str(derived), format=ox.RdfFormat.N_TRIPLES, to_graph=ox.NamedNode("urn:floor:derived"))
        bare.flush(); floor_s = time.perf_counter() - t3
    else:
        store.close()
    print(json.dumps({"load": t1 - t0, "derive": t2 - t1, "patients": r.evaluated, "problems": len(r.problems),
                      "triples": r.triples, "floor": floor_s, "rss_mb": rss_mb}))
""" % AS_OF

REMOTE = """
import json, os, sys, threading, time
from datetime import date
from pathlib import Path
from b12kg import cohort
cohort_file, db, batch, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
replace, datasets, kind, again = sys.argv[5], int(sys.argv[6]), sys.argv[7], sys.argv[8] == "1"
PATIENT = b"> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <https://w3id.org/b12kg/ontology#Patient> ."
def split(path, parts, folder):
    # the cohort as `parts` dataset files of consecutive patients (synth writes a patient's triples together)
    with open(path, "rb") as f:
        lines = f.readlines()
    starts = [i for i, line in enumerate(lines) if line.rstrip().endswith(PATIENT)]
    size = -(-len(starts) // parts)
    bounds = [starts[i] for i in range(0, len(starts), size)] + [len(lines)]
    files = []
    for k in range(len(bounds) - 1):
        files.append(Path(folder) / f"part-{k + 1:02d}.nt")
        files[-1].write_bytes(b"".join(lines[bounds[k]:bounds[k + 1]]))
    return files
def server_rss(pid, stop, peak):
    page = os.sysconf("SC_PAGE_SIZE")
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/statm") as f:
                peak[0] = max(peak[0], int(f.read().split()[1]) * page)
        except OSError:
            pass
        stop.wait(0.5)
if __name__ == "__main__":
    files = [Path(cohort_file)]
    if datasets > 1:
        os.makedirs(db + "-parts"); files = split(cohort_file, datasets, db + "-parts")
    stop, peak, times = threading.Event(), [0], {}
    def run(store):
        t0 = time.perf_counter(); cohort.load(store, files); t1 = time.perf_counter()
        day = date.fromisoformat("%s")
        r = cohort.derive(store, as_of=day, batch_size=batch, shacl=False, workers=workers, replace=replace)
        t2 = time.perf_counter()
        if again:  # derive over the populated derived graph, at a later date (other results to replace)
            cohort.derive(store, as_of=day.replace(year=day.year + 1), batch_size=batch, shacl=False,
                          workers=workers, replace=replace)
            times["again"] = time.perf_counter() - t2
        return t1 - t0, t2 - t1, r
    # the test suite's loopback servers (tests/servers.py): Virtuoso with its own virtuoso.ini, the
    # Oxigraph server with the union default graph; their database in db
    sys.path.insert(0, str(Path(cohort.__file__).resolve().parents[2] / "tests"))
    from servers import oxigraph_server, virtuoso_server
    os.makedirs(db, exist_ok=True)
    marker = str(Path(db) / ("virtuoso.ini" if kind == "virtuoso" else "store")).encode()
    with (virtuoso_server if kind == "virtuoso" else oxigraph_server)(Path(db)) as store:
        pid = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                   and marker in (p / "cmdline").read_bytes())
        threading.Thread(target=server_rss, args=(pid, stop, peak), daemon=True).start()
        try:
            load_s, derive_s, r = run(store)
        finally:
            stop.set()
    import resource
    print(json.dumps({"load": load_s, "derive": derive_s, "patients": r.evaluated, "problems": len(r.problems),
                      "triples": r.triples, "server_rss_mb": peak[0] / 2**20, **times,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""" % AS_OF


RDFLIB = """
import json, sys, time
from datetime import date, timedelta
import owlrl, rdflib, pyoxigraph as ox
from b12kg import reason
from b12kg.derive import normalise
from b12kg.engine import Workspace
from b12kg.kb import KnowledgeBase
from b12kg.sparql import bind
from b12kg._version import ENGINE_VERSION
cohort_file, sample, batch = sys.argv[1], int(sys.argv[3]), int(sys.argv[4])  # argv[2]: store, unused
AS_OF = date.fromisoformat("%s")
RECOMMENDATIONS = "SELECT DISTINCT ?r WHERE { ?r a <https://w3id.org/b12kg/ontology#Recommendation> }"
kb = KnowledgeBase()
ws = Workspace(kb)
ontology = rdflib.Graph().parse(data=ox.serialize(ws.triples("ontology"), format=ox.RdfFormat.N_TRIPLES), format="nt")
bands = [r.text for r in reason.compile_rules(ws) if "canonicalValue" in r.text]  # OWL RL has no datatype facets
negation = [r.text for r in reason.rule_set(ws).rules if r.negates]  # nor closed-world (pertinent negative) classes
triples = list(ox.parse(path=cohort_file, format=ox.RdfFormat.N_TRIPLES))
patients = []
for t in triples:
    if t.predicate.value.endswith("#type") and t.object.value.endswith("ontology#Patient"):
        patients.append(t.subject.value)
patients = sorted(set(patients))[:sample]
chosen = set(patients)
facts = {t.object.value for t in triples if t.subject.value in chosen and isinstance(t.object, ox.NamedNode)}
keep = [t for t in triples if t.subject.value in chosen or t.subject.value in facts]
def plain(graph):  # pyoxigraph -> rdflib through N-Triples
    return rdflib.Graph().parse(data=ox.serialize(graph, format=ox.RdfFormat.N_TRIPLES), format="nt")
reference = Workspace(kb)  # the normalising step (dates, units) is shared; it is not what is compared
reference.add_triples("patients", keep)
normalise(reference, AS_OF)
data = reference.triples("patients") + reference.triples("normalised")
by_patient = {}
for t in data:
    by_patient.setdefault(t.subject.value, []).append(t)
t0 = time.perf_counter()
recommendations = 0
for i in range(0, len(patients), batch):
    members = patients[i:i + batch]
    g = rdflib.Graph()
    g += ontology
    subjects = set(members) | {t.object.value for p in members for t in by_patient.get(p, []) if isinstance(t.object, ox.NamedNode)}
    g += plain([t for s in subjects for t in by_patient.get(s, [])])
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics).expand(g)
    for text in bands:
        g += g.query(text).graph
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics).expand(g)
    for text in negation:
        g += g.query(text).graph
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics).expand(g)
    for name, text in kb.queries("derive"):
        table = None
        if "#+ table:" in text:
            table_name = text.split("#+ table:")[1].split()[0]
            rows = g.query(kb.query(table_name))
            names = [str(v) for v in rows.vars]
            table = (names, [tuple(ox.NamedNode(str(x)) for x in row) for row in rows])
        g += g.query(bind(text, {"asOf": AS_OF, "engineVersion": ENGINE_VERSION}, table)).graph
    recommendations += len(list(g.query(RECOMMENDATIONS)))
t1 = time.perf_counter()
reason.classify(reference)  # the rules engine on the same patients: the two stacks must agree
from b12kg.derive import derive as derive_queries
derive_queries(reference, AS_OF)
ours = len(reference.select_text(RECOMMENDATIONS))
import resource
print(json.dumps({"load": 0.0, "derive": t1 - t0, "patients": len(patients), "problems": 0,
                  "recommendations": recommendations, "agrees": recommendations == ours,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""" % AS_OF


def run_child(code: str, *args: str) -> tuple[dict, float]:
    """Run code in a fresh interpreter; returns its JSON output and the peak RSS it reported (MB;
    the Python process only — the remote row excludes the server's own memory)."""
    script = Path(tempfile.mkdtemp(prefix="b12kg-bench-code-")) / "child.py"
    script.write_text(code)  # a file, not -c: worker processes re-import the main module
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    shutil.rmtree(script.parent, ignore_errors=True)
    if out.returncode:
        sys.exit(f"a measurement failed (exit {out.returncode}): {' '.join(args)}\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result, result["rss_mb"]


def synth(n: int, work: Path) -> Path:
    path = work / f"cohort-{n}.nt"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "b12kg.cli", "synth", "--patients", str(n), "--seed", "1",
                        "--as-of", AS_OF, "-o", str(path)], check=True, capture_output=True)
    return path


def measure(label: str, code: str, n: int, work: Path, runs: int, *extra: str, floor: bool | None = None) -> dict:
    """Median of ``runs`` runs of a child; ``floor`` (embedded rows): also measure the storage floor,
    in the first run only."""
    cohort_file = synth(n, work)
    walls, rss, last, floor_s = [], [], {}, None
    for i in range(runs):
        db = work / f"db-{label}-{n}-{i}"
        shutil.rmtree(db, ignore_errors=True)
        floor_arg = () if floor is None else ("1" if floor and i == 0 else "0",)
        result, peak = run_child(code, str(cohort_file), str(db), *extra, *floor_arg)
        walls.append(result["load"] + result["derive"])
        rss.append(peak)
        last = result
        floor_s = floor_s or result.get("floor")
        for leftover in (db, Path(f"{db}-floor"), Path(f"{db}-derived.nt"), Path(f"{db}-parts")):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    wall = statistics.median(walls)
    print(f"{label}: {n} patients, {wall:.1f} s median, {n / wall:.1f} patients/s", file=sys.stderr, flush=True)
    return {"stack": label, "patients": n, "wall_s": wall, "patients_per_s": n / wall, "rss_mb": max(rss),
            "load_s": last["load"], "derive_s": last["derive"], "problems": last["problems"], "measured": True,
            "floor_s": floor_s, "triples": last.get("triples"), "server_rss_mb": last.get("server_rss_mb"),
            "again_s": last.get("again"),
            **({"agrees": last["agrees"]} if "agrees" in last else {})}


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
    parser.add_argument("--rdflib-sample", type=int, default=2,
                        help="patients for the rdflib + owlrl row (owlrl takes minutes per batch)")
    parser.add_argument("--remote-size", type=int, default=1000)
    parser.add_argument("--remote-replace", choices=["atomic", "batches"], default="batches",
                        help="how derive replaces the derived graph on the server (default: batches)")
    parser.add_argument("--remote-datasets", type=int, default=1,
                        help="load the remote cohort as this many datasets of consecutive patients")
    parser.add_argument("--remote-server", choices=["oxigraph", "virtuoso"], default="oxigraph",
                        help="the server of the remote row (virtuoso: Debian's virtuoso-opensource)")
    parser.add_argument("--remote-again", action="store_true",
                        help="remote row: derive a second time over the populated derived graph (a year later) "
                             "and report its time in the note (not in the load + derive column)")
    parser.add_argument("--only-remote", action="store_true",
                        help="only the remote row (and the cold start)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--targets", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--only-embedded", action="store_true",
                        help="only the embedded rows without SHACL (no storage floor, SHACL, HermiT, rdflib, remote)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="b12kg-bench-"))
    rows = []
    batch, workers = str(args.batch), str(args.workers)
    try:
        if args.only_remote:
            rows.append(remote(args, work, batch, workers))
        else:
            for n in args.sizes:
                rows.append(measure("embedded (rules, no SHACL)", EMBEDDED, n, work, args.runs, batch, "rules", "0",
                                    workers, floor=n == args.sizes[-1] and not args.only_embedded))
        if not args.only_embedded and not args.only_remote:
            others(rows, args, work, batch, workers)
        cold = cold_start(max(args.runs, 5))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(rows, args, cold)


def others(rows: list[dict], args: argparse.Namespace, work: Path, batch: str, workers: str) -> None:
    """The rows beside the embedded rules engine: SHACL, HermiT, rdflib + owlrl, the remote server."""
    rows.append(measure("embedded (rules, SHACL)", EMBEDDED, args.sizes[0], work, args.runs, batch, "rules", "1",
                        workers, floor=False))
    rows.append(measure("embedded (HermiT, batches of 50)", EMBEDDED, args.hermit_sample, work, 1, "50", "hermit",
                        "0", workers, floor=False))
    if args.rdflib_sample:
        rows.append(measure("rdflib + owlrl + rdflib SPARQL (batches of 2)", RDFLIB, args.rdflib_sample, work, 1,
                            str(args.rdflib_sample), "2"))
    rows.append(remote(args, work, batch, workers))


def remote(args: argparse.Namespace, work: Path, batch: str, workers: str) -> dict:
    """The remote row: load + derive through a server started for it on loopback (one run)."""
    datasets = f", {args.remote_datasets} datasets" if args.remote_datasets > 1 else ""
    name = {"oxigraph": "Oxigraph server", "virtuoso": "Virtuoso"}[args.remote_server]
    return measure(f"remote {name} (rules, --replace {args.remote_replace}{datasets})", REMOTE,
                   args.remote_size, work, 1, batch, workers, args.remote_replace, str(args.remote_datasets),
                   args.remote_server, "1" if args.remote_again else "0")


def report(rows: list[dict], args: argparse.Namespace, cold: float) -> None:
    embedded = [r for r in rows if r["stack"].startswith("embedded (rules, no")]
    largest = embedded[-1] if embedded else {}
    rate = largest.get("patients_per_s")
    if largest.get("floor_s"):
        rows.append({"stack": "storage floor: bulk-load the same input + derived triples, no derivation",
                     "patients": largest["patients"], "wall_s": largest["floor_s"],
                     "patients_per_s": largest["patients"] / largest["floor_s"], "rss_mb": None, "measured": True})
    for n in args.targets if embedded else []:
        if n not in args.sizes:
            rows.append({"stack": "embedded (rules, no SHACL)", "patients": n, "wall_s": n / rate,
                         "patients_per_s": rate, "rss_mb": None, "measured": False})
    hermit = next((r for r in rows if "HermiT" in r["stack"]), None)
    rdflib_row = next((r for r in rows if r["stack"].startswith("rdflib")), None)

    print(f"\nmachine: {os.cpu_count()} cores; python {sys.version.split()[0]}; medians of {args.runs} run(s); "
          f"batches of {args.batch}, {args.workers} worker process(es)\n")
    print("| stack | patients | load + derive (s) | patients/s | peak RSS (MB) | note |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        note = "measured" if r["measured"] else "extrapolated from the largest measured size"
        if r.get("problems"):
            note += f"; {r['problems']} problem(s)"
        if "agrees" in r:
            note += "; same recommendations as the rules engine" if r["agrees"] else "; DIFFERENT recommendations"
        if r.get("triples"):
            note += f"; {r['triples'] / r['patients']:.0f} derived triples/patient"
        if r.get("server_rss_mb"):
            note += (f"; load {r['load_s']:.1f} s + derive {r['derive_s']:.1f} s; "
                     f"server peak RSS {r['server_rss_mb']:.0f} MB (not in the RSS column)")
        if r.get("again_s"):
            note += f"; derive again over it, a year later: {r['again_s']:.1f} s"
        rss = f"{r['rss_mb']:.0f}" if r["rss_mb"] else "–"
        print(f"| {r['stack']} | {r['patients']:,} | {r['wall_s']:.1f} | {r['patients_per_s']:.1f} | {rss} | {note} |")
    print()
    if hermit and rate:
        print(f"rules engine vs owlready2 + HermiT (batched): {rate / hermit['patients_per_s']:.0f}× faster (target ≥ 100×)")
    if rdflib_row and rate:
        print(f"rules engine vs rdflib + owlrl + rdflib SPARQL: {rate / rdflib_row['patients_per_s']:.0f}× faster")
    print(f"one patient, cold start (b12kg recommend, process start to output): {cold:.2f} s median (target ≤ 1.5 s)")
    if len(embedded) >= 2:
        a, b = embedded[0], embedded[-1]
        print(f"cost growth {a['patients']:,} → {b['patients']:,} patients: "
              f"{b['wall_s'] / a['wall_s']:.1f}× time for {b['patients'] / a['patients']:.0f}× patients")


if __name__ == "__main__":
    main()

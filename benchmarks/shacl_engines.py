"""SHACL engines on one batch of patients: pySHACL (the reference), the shapes compiled to SPARQL (what
b12kg uses), pyshacl-turbo and, when it is installed, pyrudof; beside them the derivation of the same
batch. Prints a markdown table, medians of --runs runs.

    python benchmarks/shacl_engines.py                    # 1,000 synthetic patients + every broken case
    python benchmarks/shacl_engines.py --patients 10000 --runs 3
    pip install pyrudof && python benchmarks/shacl_engines.py   # with the rudof row

The batch: `b12kg synth --seed 1` patients plus each case of tests/shape_cases.py (one per way of
breaking the patient shapes), as `derive` validates it: one graph per batch. "agrees" compares each
engine's results (focus node, path, constraint component) with pySHACL's on the same batch; the
engine's own messages are not compared here (tests/test_shacl_engines.py compares everything).
Each engine is timed from the batch's N-Triples to its report, parsing included. The SPARQL engine has
two rows: over a store made for the batch (as `recommend` validates a file), and over the workspace
store `derive` has already loaded the batch into for its derivation (that load is not timed: derive
does it either way; parsing the triples, which derive also needs for its digests, is).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pyoxigraph as ox
import rdflib
from rdflib.namespace import RDF, SH

REPO = Path(__file__).resolve().parents[1]
NEWLINE = b"\n"
sys.path.insert(0, str(REPO / "tests"))

from shape_cases import CASES, case  # noqa: E402

from b12kg import synth  # noqa: E402
from b12kg.cohort import _Batch, _evaluate  # noqa: E402
from b12kg.engine import Workspace  # noqa: E402
from b12kg.kb import KnowledgeBase  # noqa: E402
from b12kg.patient import PatientData  # noqa: E402
from b12kg.validate import shacl_report  # noqa: E402


def batch_nt(patients: int, folder: Path) -> bytes:
    path = folder / "batch.nt"
    synth.generate_file(path, patients=patients, seed=1, as_of=date(2025, 10, 31))
    broken = [t for i, name in enumerate(CASES, start=1) for t in case(name, i)]
    return path.read_bytes() + ox.serialize(broken, format=ox.RdfFormat.N_TRIPLES)


def _key(term) -> str:
    return "blank" if isinstance(term, rdflib.BNode) else str(term)


def results_of(report: rdflib.Graph | None) -> set[tuple]:
    if report is None:
        return set()
    return {(_key(report.value(r, SH.focusNode)), _key(report.value(r, SH.resultPath)),
             _key(report.value(r, SH.sourceConstraintComponent)))
            for r in report.subjects(RDF.type, SH.ValidationResult)}


def engine_run(engine: str, data: bytes, kb: KnowledgeBase) -> set[tuple]:
    triples = list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES))
    return results_of(shacl_report(PatientData(path=Path("batch"), triples=triples), kb, engine=engine))


def workspace_run(data: bytes, kb: KnowledgeBase, ws: Workspace) -> set[tuple]:
    triples = list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES))
    return results_of(shacl_report(PatientData(path=Path("batch"), triples=triples), kb, engine="sparql",
                                   dataset=(ws.store, ws.graph["patients"])))


def rudof_run(data: bytes, kb: KnowledgeBase) -> set[tuple]:
    import pyrudof

    rudof = pyrudof.Rudof(pyrudof.RudofConfig())
    rudof.read_shacl((kb.shapes_dir / "patient-shapes.ttl").read_text(encoding="utf-8"))
    rudof.read_data(data.decode("utf-8"), format=pyrudof.RDFFormat.NTriples)
    report = rudof.validate_shacl()
    return {("blank" if v.focus_node.startswith("_:") else v.focus_node, v.path or "None", v.constraint_component)
            for v in report.violations}


def derive_run(data: bytes, kb: KnowledgeBase, patients: list[str]) -> set[tuple]:
    _evaluate(_Batch(root=str(kb.root), as_of=date(2025, 10, 31), reasoner="rules", shacl=False, label="batch",
                     patients=patients, data=data))
    return set()


def timed(work, runs: int) -> tuple[float, set]:
    times, answer = [], set()
    for _ in range(runs):
        start = time.perf_counter()
        answer = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    kb = KnowledgeBase()
    with tempfile.TemporaryDirectory() as tmp:
        data = batch_nt(args.patients, Path(tmp))
    n = args.patients + len(CASES)
    patients = sorted({t.subject.value for t in ox.parse(data, format=ox.RdfFormat.N_TRIPLES)  # (derive evaluates
                       if t.object == ox.NamedNode("https://w3id.org/b12kg/ontology#Patient")  # IRI patients only)
                       and isinstance(t.subject, ox.NamedNode)})
    rows = []
    reference_s, reference = timed(lambda: engine_run("pyshacl", data, kb), args.runs)
    rows.append(("pySHACL (reference)", reference_s, reference, "–"))
    sparql_s, sparql = timed(lambda: engine_run("sparql", data, kb), args.runs)
    rows.append(("shapes as SPARQL, a store made for the batch", sparql_s, sparql,
                 "yes" if sparql == reference else "**no**"))
    ws = Workspace(kb)
    ws.load_nt("patients", data)
    in_ws_s, in_ws = timed(lambda: workspace_run(data, kb, ws), args.runs)
    rows.append(("**shapes as SPARQL, derive's workspace (b12kg's engine)**", in_ws_s, in_ws,
                 "yes" if in_ws == reference else "**no**"))
    turbo_s, turbo = timed(lambda: engine_run("turbo", data, kb), args.runs)
    rows.append(("pyshacl-turbo", turbo_s, turbo, "yes" if turbo == reference else "**no**"))
    try:
        import pyrudof  # noqa: F401
    except ImportError:
        print("pyrudof is not installed: no rudof row", file=sys.stderr)
    else:
        rudof_s, rudof = timed(lambda: rudof_run(data, kb), args.runs)
        rows.append(("pyrudof", rudof_s, rudof, "yes" if rudof == reference else f"**no** ({len(rudof ^ reference)} differ)"))
    derive_s, _ = timed(lambda: derive_run(data, kb, patients), args.runs)
    print(f"One batch of {n:,} patients ({args.patients:,} synthetic + {len(CASES)} broken cases), "
          f"{data.count(NEWLINE):,} triples; medians of {args.runs} runs.\n")
    print("| engine | seconds | patients/s | results | agrees with pySHACL | ÷ derivation of the batch |")
    print("|---|---:|---:|---:|---|---:|")
    for name, seconds, found, agrees in rows:
        print(f"| {name} | {seconds:.2f} | {n / seconds:,.0f} | {len(found)} | {agrees} | {seconds / derive_s:.2f} |")
    print(f"| derivation without validation (cohort pipeline) | {derive_s:.2f} | {n / derive_s:,.0f} | – | – | 1.00 |")


if __name__ == "__main__":
    main()

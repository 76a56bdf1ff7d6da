"""FHIR out speed: CDS Hooks latency on loopback and the FHIR NDJSON export rate of a cohort.

    python benchmarks/fhir_out_speed.py                        # 60 s of hooks, 1,000-patient export
    python benchmarks/fhir_out_speed.py --seconds 20 --clients 2 --patients 500 --runs 3

Hooks: starts ``b12kg cds-hooks`` in-process on 127.0.0.1 (``--evaluations`` at once) and sends
``patient-view`` requests with full prefetch (the source article's patient, from
examples/fhir/seed-case-bundle.json) and ``order-select`` requests with a cyanocobalamin draft for the
same patient with chronic kidney disease, from ``--clients`` threads for ``--seconds``; prints p50 and
p99 latency per hook and the error count (any answer but 200).

Export: a synthetic cohort (``synth --seed 1``) loaded and derived into an embedded store, then
``export --format fhir-ndjson`` timed ``--runs`` times (median, min, max; patients/s and resources/s).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import date
from pathlib import Path

from latency import Latencies, run_clients

from b12kg import cohort
from b12kg.cds_hooks import CdsConfig, CdsServer
from b12kg.fhir.bulk import export_ndjson
from b12kg.kb import KnowledgeBase
from b12kg.store import EmbeddedStore
from b12kg.synth import generate_file

REPO = Path(__file__).resolve().parents[1]
AS_OF = date(2025, 10, 31)


def _requests() -> list[tuple[str, str, bytes]]:
    seed = json.loads((REPO / "examples" / "fhir" / "seed-case-bundle.json").read_text())
    patient = next(e["resource"] for e in seed["entry"] if e["resource"]["resourceType"] == "Patient")
    found = []
    for entry in seed["entry"]:
        r = copy.deepcopy(entry["resource"])
        if "subject" in r:
            r["subject"] = {"reference": f"Patient/{patient['id']}"}
        found.append(r)
    ckd = {"resourceType": "Condition", "id": "ckd", "subject": {"reference": f"Patient/{patient['id']}"},
           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "709044004"}]}}

    def prefetch(resources):
        def searchset(kind):
            return {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": r} for r in resources if r["resourceType"] == kind]}
        return {"patient": patient, "conditions": searchset("Condition"), "observations": searchset("Observation"),
                "administrations": searchset("MedicationAdministration"), "statements": None, "requests": None}

    context = {"userId": "Practitioner/example", "patientId": patient["id"]}
    view = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch(found)}
    draft = {"resourceType": "MedicationRequest", "id": "draft", "status": "draft", "intent": "order",
             "subject": {"reference": f"Patient/{patient['id']}"},
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                       "code": "309594"}]}}
    select = {"hook": "order-select", "hookInstance": str(uuid.uuid4()),
              "context": {**context, "selections": ["MedicationRequest/draft"],
                          "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}},
              "prefetch": prefetch(found + [ckd])}
    return [("patient-view (prefetch)", "b12-post-stroke", json.dumps(view).encode()),
            ("order-select (CKD, cyanocobalamin draft)", "b12-order-check", json.dumps(select).encode())]


def hooks(seconds: float, clients: int, evaluations: int) -> int:
    requests = _requests()
    latencies = Latencies([name for name, _, _ in requests])
    with tempfile.TemporaryDirectory(prefix="b12kg-cds-bench-") as work:
        config = CdsConfig(as_of=AS_OF, feedback=Path(work) / "feedback.nt", evaluations=evaluations)
        with CdsServer(config, port=0) as server:
            deadline = time.monotonic() + seconds

            def client(k: int) -> None:
                i = k
                while time.monotonic() < deadline:
                    name, service, body = requests[i % len(requests)]
                    i += 1
                    request = urllib.request.Request(f"{server.url}/{service}", data=body,
                                                     headers={"Content-Type": "application/json"})

                    def call() -> None:
                        with urllib.request.urlopen(request, timeout=60) as r:
                            json.loads(r.read())

                    latencies.timed(name, call)

            wall = run_clients(clients, client)

    every = latencies.every
    print(f"\nCDS Hooks: {clients} client(s), {evaluations} evaluation(s) at once, {len(every)} answered in {wall:.1f} s\n")
    latencies.print_table("hook")
    errors = latencies.errors
    print(f"\nhooks/s: {len(every) / wall:.1f}; errors: {len(errors)}")
    for e in errors[:5]:
        print(f"  error: {e}", file=sys.stderr)
    return 1 if errors else 0


def export(patients: int, runs: int) -> None:
    kb = KnowledgeBase()
    with tempfile.TemporaryDirectory(prefix="b12kg-bulk-bench-") as work:
        cohort_file = Path(work) / "cohort.nt"
        generate_file(cohort_file, patients=patients, seed=1, as_of=AS_OF)
        store = EmbeddedStore(Path(work) / "db")
        cohort.load(store, [cohort_file])
        cohort.derive(store, as_of=AS_OF)
        times, counts = [], {}
        for run in range(runs):
            t = time.perf_counter()
            counts = export_ndjson(store, Path(work) / f"bulk-{run}", kb=kb)
            times.append(time.perf_counter() - t)
        store.close()
    total = sum(counts.values())
    median = statistics.median(times)
    print(f"\nFHIR NDJSON export, {patients} patients (synth --seed 1), {runs} run(s)\n")
    print("| patients | resources | median s | min s | max s | patients/s | resources/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {patients:,} | {total:,} | {median:.1f} | {min(times):.1f} | {max(times):.1f} | "
          f"{patients / median:.0f} | {total / median:.0f} |")
    print("\n" + ", ".join(f"{n:,} {kind}" for kind, n in counts.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--evaluations", type=int, default=2)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    failed = hooks(args.seconds, args.clients, args.evaluations)
    if not args.skip_export:
        export(args.patients, args.runs)
    return failed


if __name__ == "__main__":
    sys.exit(main())

"""A bounded load test of ``b12kg serve`` on loopback: concurrent research queries, then a table.

    python benchmarks/endpoint_load.py                       # 500 patients, 4 clients, 400 queries
    python benchmarks/endpoint_load.py --patients 2000 --clients 8 --queries 1000

It builds a store (synthetic cohort, derived), starts the endpoint on 127.0.0.1 (``--workers`` query
worker processes), sends a mix of requests round-robin from ``--clients`` threads until ``--queries``
have been answered or ``--seconds`` have passed — every research query from ``queries/research/`` as
SPARQL (form POST), the same through the named-query API (``GET /queries/NAME``), an ASK and a query
cut at the row limit — and prints queries/s, p50 and p99 latency per kind and the error count (any
answer but 200 is an error). Only loopback traffic; it stops by itself.

    python benchmarks/endpoint_load.py --patients 3000 --clients 8 --queries 1000000 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import date
from pathlib import Path

from latency import Latencies, run_clients

from b12kg import cohort
from b12kg.kb import KnowledgeBase
from b12kg.serve import Endpoint
from b12kg.sparql import bind
from b12kg.store import EmbeddedStore
from b12kg.synth import generate_file

AS_OF = date(2025, 10, 31)


def requests(kb: KnowledgeBase, store: EmbeddedStore) -> list[tuple[str, str, bytes | None]]:
    """(name, path and query string, form body or None for a GET): every research query as SPARQL and
    through the named-query API, with parameters that exist in the store; an ASK; an answer cut at the limit."""
    rec = store.select("SELECT ?r WHERE { ?r a <https://w3id.org/b12kg/ontology#Recommendation> } LIMIT 1")[0]["r"]
    patient = store.select("SELECT ?p WHERE { ?p a <https://w3id.org/b12kg/ontology#Patient> } LIMIT 1")[0]["p"]
    values = {"start": date(2025, 11, 1), "end": date(2025, 11, 30), "patient": patient, "rec": rec}
    out: list[tuple[str, str, bytes | None]] = []
    for path in sorted((kb.queries_dir / "research").glob("*.rq")):
        text = path.read_text()
        declared = cohort.query_parameters(text)
        bound = bind(text, {k: values[k] for k in declared}) if declared else text
        out.append((path.stem, "/query", urllib.parse.urlencode({"query": bound}).encode()))
        params = {k: (values[k].isoformat() if isinstance(values[k], date) else values[k].value) for k in declared}
        out.append((f"GET /queries/{path.stem}", f"/queries/{path.stem}?{urllib.parse.urlencode(params)}", None))
    out.append(("ASK {}", "/query?query=ASK%7B%7D", None))
    out.append(("every triple (cut at the limit)", "/query",
                urllib.parse.urlencode({"query": "SELECT * WHERE { ?s ?p ?o }"}).encode()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--timeout", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    kb = KnowledgeBase()
    scratch = tempfile.TemporaryDirectory(prefix="b12kg-load-")  # removed at exit
    work = Path(scratch.name)
    cohort_file = work / "cohort.nt"
    generate_file(cohort_file, patients=args.patients, seed=1, as_of=AS_OF)
    store = EmbeddedStore(work / "db")
    cohort.load(store, [cohort_file])
    cohort.derive(store, as_of=AS_OF, shacl=False)
    queries = requests(kb, store)
    store.close()

    latencies = Latencies([name for name, _, _ in queries])
    counter = iter(range(args.queries))
    deadline = time.monotonic() + args.seconds

    with Endpoint(work / "db", port=0, limit=args.limit, timeout=args.timeout, workers=args.workers) as endpoint:
        base = f"http://127.0.0.1:{endpoint.port}"

        def client(_: int) -> None:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                name, target, body = queries[i % len(queries)]

                def call() -> None:
                    with urllib.request.urlopen(base + target, data=body, timeout=args.timeout + 10) as r:
                        json.loads(r.read())

                latencies.timed(name, call)

        wall = run_clients(args.clients, client)

    every = latencies.every
    print(f"\n{args.patients} patients, {args.clients} concurrent clients, {args.workers} query workers, "
          f"{len(every)} answered in {wall:.1f} s, row limit {args.limit}, timeout {args.timeout} s\n")
    latencies.print_table("query")
    errors = latencies.errors
    print(f"\nqueries/s: {len(every) / wall:.1f}; errors: {len(errors)}")
    for e in errors[:5]:
        print(f"  error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

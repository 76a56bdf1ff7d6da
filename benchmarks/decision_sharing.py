"""What sharing one decision between patients with the same states could save, per batch of derive.

    python benchmarks/decision_sharing.py                          # 3 batches of 1,000 from 10,000
    python benchmarks/decision_sharing.py --patients 100000 --batches 5

Patients whose classification gives the same set of states (their inferred classes) reach the same
findings, so the derive queries could run once per set and be copied to each patient (values such as
dose windows would still be per patient). Classification itself cannot be shared that way: the states
are its output. This benchmark evaluates batches as `derive` does (`synth --seed 1`, batches in IRI
order, SHACL on), times each step of the pipeline, and counts the distinct state sets in the batch.
The saving is bounded by the derive queries' time × (1 − distinct sets ÷ patients); the table gives
that bound and its share of the batch. Medians over --runs of each batch's step times.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pyoxigraph as ox

from b12kg import cohort, derive
from b12kg.engine import Workspace
from b12kg.kb import KnowledgeBase
from b12kg.patient import PatientData
from b12kg.reason import Reasoner, classify
from b12kg.store import EmbeddedStore
from b12kg.synth import generate
from b12kg.validate import validate_shapes, validate_values

AS_OF = date(2025, 10, 31)
STEPS = ("validate", "normalise", "classify", "derive", "schedule")


def evaluate(kb: KnowledgeBase, data: bytes) -> tuple[dict[str, float], Workspace]:
    """One batch through the pipeline `cohort._evaluate` runs, each step timed."""
    times: dict[str, float] = {}
    started = time.perf_counter()
    ws = Workspace(kb)
    ws.load_nt("patients", data)
    triples = [q.triple for q in ox.parse(data, format=ox.RdfFormat.N_TRIPLES)]
    source = PatientData(path=Path("batch"), triples=triples)
    problems = validate_shapes(source, kb) + validate_values(ws, PatientData(path=Path("batch"), triples=[]), AS_OF)
    if problems:
        raise SystemExit(f"the synthetic batch is invalid: {problems[0]}")
    times["validate"] = time.perf_counter() - started
    for step, run in (("normalise", lambda: derive.normalise(ws, AS_OF)),
                      ("classify", lambda: classify(ws, Reasoner.rules)),
                      ("derive", lambda: derive.derive(ws, AS_OF)),
                      ("schedule", lambda: derive.schedule(ws, AS_OF))):
        started = time.perf_counter()
        run()
        times[step] = time.perf_counter() - started
    return times, ws


def state_sets(ws: Workspace, patients: list[ox.NamedNode]) -> Counter[frozenset[str]]:
    """How many patients have each set of inferred classes (states) in the workspace."""
    states: dict[str, set[str]] = defaultdict(set)
    for quad in ws.store.quads_for_pattern(None, ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type"),
                                           None, ws.graph["inferred"]):
        states[quad.subject.value].add(quad.object.value)
    return Counter(frozenset(states.get(p.value, ())) for p in patients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000, help="cohort size (synth --seed 1)")
    parser.add_argument("--batch", type=int, default=cohort.DEFAULT_BATCH)
    parser.add_argument("--batches", type=int, default=3, help="how many batches to evaluate (evenly spread)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    kb = KnowledgeBase()
    text = io.StringIO()
    generate(text, patients=args.patients, seed=1, as_of=AS_OF, kb=kb)
    raw = ox.Store()
    raw.load(text.getvalue().encode(), format=ox.RdfFormat.N_TRIPLES,
             to_graph=ox.NamedNode("urn:b12kg:dataset:synth"))
    store = EmbeddedStore.over(raw)
    patients = cohort.store_patients(store, kb)
    starts = list(range(0, len(patients), args.batch))
    picked = [starts[i * len(starts) // args.batches] for i in range(min(args.batches, len(starts)))]
    print(f"{args.patients:,} patients (synth --seed 1), batches of {args.batch:,}, medians of {args.runs} runs\n")
    print("| batch | patients | distinct state sets | largest group | "
          + " | ".join(f"{s} (s)" for s in STEPS) + " | derive saved at most (s) | of the batch |")
    print("|" + "---:|" * (4 + len(STEPS) + 2))
    evaluate(kb, cohort._batch_data(store, kb, patients[:10]))  # warm: rules compiled, queries parsed
    for start in picked:
        part = patients[start:start + args.batch]
        data = cohort._batch_data(store, kb, part)
        runs = []
        for _ in range(args.runs):
            times, ws = evaluate(kb, data)
            runs.append(times)
        median = {s: statistics.median(r[s] for r in runs) for s in STEPS}
        groups = state_sets(ws, part)
        saved = median["derive"] * (1 - len(groups) / len(part))
        total = sum(median.values())
        print(f"| {start // args.batch + 1} | {len(part):,} | {len(groups):,} | {max(groups.values())} | "
              + " | ".join(f"{median[s]:.2f}" for s in STEPS)
              + f" | {saved:.2f} | {100 * saved / total:.1f} % |")


if __name__ == "__main__":
    main()

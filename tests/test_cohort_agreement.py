"""The cohort path and ``recommend`` derive the same graph on a 10,000-patient random cohort.

``derive`` evaluates batches of 1,000 patients in worker processes and validates each batch as one
graph; ``recommend`` evaluates one file. Every triple ``derive`` stores (the lean derived graph, normalised
facts, the inferred classes of patients and facts), with its expanded provenance
(``queries/research/expand/``), must be what ``recommend`` derives for the same patients, and no more.
The cohort is ``synth`` output with a seed drawn for each run (set ``B12KG_AGREEMENT_SEED`` to replay one;
``B12KG_AGREEMENT_FILES=1`` makes a quick run of one file); its ten files go into the store as ten
datasets, so derive's batches cut across them.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pyoxigraph as ox
import pytest

from b12kg import cohort
from b12kg.derive import recommend
from b12kg.kb import KnowledgeBase
from b12kg.store import GRAPH_DERIVED, EmbeddedStore
from b12kg.synth import generate
from conftest import SEED_AS_OF

FILES, PER_FILE = int(os.environ.get("B12KG_AGREEMENT_FILES", 10)), 1_000
SEED = int(os.environ.get("B12KG_AGREEMENT_SEED") or random.SystemRandom().randrange(1, 2**31))


def recommend_triples(path: Path, kb: KnowledgeBase) -> set[ox.Triple]:
    """What ``recommend`` derives for a file (its derived graph, with the expanded provenance), with what
    derive stores beside it: the normalised facts and the inferred classes of patients and facts."""
    ws = recommend(path, as_of=SEED_AS_OF, kb=kb).workspace
    graphs = {"inferred": ws.graph["inferred"], "patients": ws.graph["patients"]}
    exported = set(ws.construct(kb.query("cohort/inferred-export"), graphs))
    fact_types = kb.query("cohort/fact-types-export")
    exported |= {q.triple for q in ox.parse(ws.construct_nt(fact_types, graphs, table=ws.table(fact_types)),
                                            format=ox.RdfFormat.N_TRIPLES)}
    return set(ws.triples("derived")) | set(ws.triples("normalised")) | exported


@pytest.mark.slow
def test_derive_and_recommend_agree_on_a_random_10k_cohort(tmp_path, kb):
    files = []
    for i in range(FILES):
        path = tmp_path / f"part-{i}.nt"
        with path.open("w", encoding="utf-8") as out:
            generate(out, patients=PER_FILE, seed=SEED + i, as_of=SEED_AS_OF,
                     base=f"https://example.org/b12kg/agreement/{SEED}/{i}/")
        files.append(path)
    store = EmbeddedStore(tmp_path / "db")
    cohort.load(store, files)
    result = cohort.derive(store, as_of=SEED_AS_OF, kb=kb, workers=2)
    stored = {q.triple for q in store.store.quads_for_pattern(None, None, None, ox.NamedNode(GRAPH_DERIVED))}
    expanded = stored | set(cohort.expanded_provenance(store, kb))  # the lean graph's joins (export --expand-provenance)
    store.close()
    assert result.problems == [] and result.patients == result.evaluated == FILES * PER_FILE
    expected: set[ox.Triple] = set()
    for path in files:
        expected |= recommend_triples(path, kb)
    assert len(expected) > FILES * PER_FILE * 10, "recommend derived almost nothing: the comparison would be empty"
    assert stored <= expected and len(stored) < len(expected), "the stored graph is a lean part of recommend's"
    missing, extra = expected - expanded, expanded - expected
    assert not missing and not extra, (
        f"seed {SEED} (B12KG_AGREEMENT_SEED={SEED} replays it): {len(missing)} triples recommend derives and "
        f"derive does not store, e.g. {sorted(map(str, missing))[:3]}; {len(extra)} the other way, "
        f"e.g. {sorted(map(str, extra))[:3]}")

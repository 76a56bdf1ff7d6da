"""Crash safety (issue 6, item 4): ``b12kg load`` and ``b12kg derive`` killed with SIGKILL at random
points leave the store as it was before or after the operation, never half; re-running completes.

A base store holds dataset A (a synthetic cohort) and its derived graph at day 1. Each trial copies
it, starts ``b12kg load B --dataset cohort`` (replacing A by a larger cohort B) or ``b12kg derive
--as-of day 2`` in a subprocess, kills it after a seeded random delay spread over the command's
measured run time, then opens the store and compares every graph to references computed once:
the dataset graph is exactly A or exactly B, the derived graph exactly the day-1 or the day-2
graph, the ontology graph complete. What a research query sees (the union default graph) is
compared to the same graphs without the scratch graphs ``urn:b12kg:scratch:*``. The command is then
run again and must complete with the new state and no scratch graph left.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyoxigraph as ox
import pytest

from b12kg import cohort
from b12kg.store import DATASET_PREFIX, GRAPH_DERIVED, GRAPH_ONTOLOGY, SCRATCH_PREFIX, EmbeddedStore
from b12kg.synth import generate_file
from conftest import SEED_AS_OF

DAY1, DAY2 = SEED_AS_OF.isoformat(), "2025-11-30"
DATASET = DATASET_PREFIX + "cohort"
TRIALS = {"load": 11, "derive": 11}
SEED = 20251124

UNION_COUNTS = """
PREFIX b12: <https://w3id.org/b12kg/ontology#>
SELECT (COUNT(DISTINCT ?p) AS ?patients) (COUNT(DISTINCT ?r) AS ?recs) WHERE {
  { ?p a b12:Patient } UNION { ?r a b12:Recommendation }
}"""
NAMED_COUNTS = """
PREFIX b12: <https://w3id.org/b12kg/ontology#>
SELECT (COUNT(DISTINCT ?p) AS ?patients) (COUNT(DISTINCT ?r) AS ?recs) WHERE {
  GRAPH ?g { { ?p a b12:Patient } UNION { ?r a b12:Recommendation } }
  FILTER (!STRSTARTS(STR(?g), "urn:b12kg:scratch:"))
}"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "b12kg.cli", *args]


def graph_set(store: ox.Store, graph: str) -> frozenset:
    return frozenset(q.triple for q in store.quads_for_pattern(None, None, None, ox.NamedNode(graph)))


def snapshot(path: Path) -> dict:
    """Every graph of the store at ``path`` (opened as the next command would open it)."""
    store = EmbeddedStore(path)
    try:
        s = store.store
        graphs = sorted({q.graph_name.value for q in s.quads_for_pattern(None, None, None, None)
                         if isinstance(q.graph_name, ox.NamedNode)})
        union = store.select(UNION_COUNTS)[0]
        named = store.select(NAMED_COUNTS)[0]
        return {
            "graphs": graphs,
            "dataset": graph_set(s, DATASET),
            "derived": graph_set(s, GRAPH_DERIVED),
            "ontology": len(graph_set(s, GRAPH_ONTOLOGY)),
            "scratch": {g: len(graph_set(s, g)) for g in graphs if g.startswith(SCRATCH_PREFIX)},
            "union": (int(union["patients"].value), int(union["recs"].value)),
            "named": (int(named["patients"].value), int(named["recs"].value)),
        }
    finally:
        store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("crash")
    a, b = root / "a.nt", root / "b.nt"
    generate_file(a, patients=200, seed=1, as_of=SEED_AS_OF)
    generate_file(b, patients=1000, seed=2, as_of=SEED_AS_OF)  # big enough that the load takes a while
    base = root / "base"
    store = EmbeddedStore(base)
    cohort.load(store, [a], dataset="cohort")
    cohort.derive(store, as_of=SEED_AS_OF, shacl=False)
    store.close()
    refs = {"base": snapshot(base)}
    after_load = root / "after-load"
    shutil.copytree(base, after_load)
    store = EmbeddedStore(after_load)
    cohort.load(store, [b], dataset="cohort")
    store.close()
    refs["load"] = snapshot(after_load)
    after_derive = root / "after-derive"
    shutil.copytree(base, after_derive)
    store = EmbeddedStore(after_derive)
    cohort.derive(store, as_of=SEED_AS_OF.replace(month=11, day=30), shacl=False)
    store.close()
    refs["derive"] = snapshot(after_derive)
    assert refs["base"]["dataset"] != refs["load"]["dataset"]
    assert refs["base"]["derived"] != refs["derive"]["derived"] and refs["derive"]["derived"]
    assert not refs["base"]["scratch"] and not refs["load"]["scratch"] and not refs["derive"]["scratch"]
    return {"root": root, "a": a, "b": b, "base": base, "refs": refs}


def _command(kind: str, world: dict, store: Path) -> list[str]:
    if kind == "load":
        return _cli("load", str(world["b"]), "--dataset", "cohort", "--store", str(store))
    return _cli("derive", "--store", str(store), "--as-of", DAY2, "--no-shacl")


def _run_to_end(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - started, done


@pytest.fixture(scope="module")
def trials(world) -> list[dict]:
    """Run every kill trial once; each test below checks one property over all of them."""
    rng = random.Random(SEED)
    out = []
    for kind, count in TRIALS.items():
        probe = world["root"] / f"probe-{kind}"
        shutil.copytree(world["base"], probe)
        duration, done = _run_to_end(_command(kind, world, probe))
        assert done.returncode == 0, done.stderr
        for i in range(count):
            store = world["root"] / f"{kind}-{i}"
            shutil.copytree(world["base"], store)
            delay = rng.uniform(0.3, duration * 0.97)
            proc = subprocess.Popen(_command(kind, world, store), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                proc.wait(timeout=delay)
                finished = True
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                finished = False
            after_kill = snapshot(store)
            trial = {"kind": kind, "delay": round(delay, 2), "duration": round(duration, 2),
                     "killed": not finished, "after_kill": after_kill}
            if kind == "load" and after_kill["scratch"] and "derive_after_kill" not in world:
                # once: a derive (not a load) is the next command after a load left a scratch graph
                _, done = _run_to_end(_cli("derive", "--store", str(store), "--as-of", DAY1, "--no-shacl"))
                world["derive_after_kill"] = {"rc": done.returncode, "stderr": done.stderr,
                                              "after_kill": after_kill, "after": snapshot(store),
                                              "derived_patients": _derived_patients(store)}
            _, trial["rerun"] = _run_to_end(_command(kind, world, store))
            trial["after_rerun"] = snapshot(store)
            out.append(trial)
            shutil.rmtree(store)
        shutil.rmtree(probe)
    return out


def _derived_patients(path: Path) -> int:
    store = EmbeddedStore(path, read_only=True)
    try:
        rows = store.select("PREFIX b12: <https://w3id.org/b12kg/ontology#> SELECT (COUNT(DISTINCT ?p) AS ?n) "
                            "WHERE { GRAPH <urn:b12kg:graph:derived> { ?run a b12:Derivation ; b12:forPatient ?p } }")
        return int(rows[0]["n"].value)
    finally:
        store.close()


def _state(snap: dict, refs: dict) -> str:
    """Which reference state the snapshot's graphs are in: "before", "after" or "HALF"."""
    dataset = {refs["base"]["dataset"]: "A", refs["load"]["dataset"]: "B"}.get(snap["dataset"], "half")
    derived = {refs["base"]["derived"]: "day1", refs["derive"]["derived"]: "day2"}.get(snap["derived"], "half")
    return f"dataset {dataset}, derived {derived}, ontology {'complete' if snap['ontology'] == refs['base']['ontology'] else 'half'}"


@pytest.mark.slow
def test_killed_runs_leave_before_or_after_never_half(world, trials):
    refs = world["refs"]
    killed = [t for t in trials if t["killed"]]
    assert len(killed) >= 20, [(t["kind"], t["delay"], t["duration"]) for t in trials]
    allowed = {"load": {"dataset A, derived day1, ontology complete", "dataset B, derived day1, ontology complete"},
               "derive": {"dataset A, derived day1, ontology complete", "dataset A, derived day2, ontology complete"}}
    seen = {kind: set() for kind in TRIALS}
    for t in trials:
        state = _state(t["after_kill"], refs)
        seen[t["kind"]].add(state)
        assert state in allowed[t["kind"]], (t["kind"], t["delay"], state)
    print("\nstates after a kill:", seen)


@pytest.mark.slow
def test_rerun_after_a_kill_completes(world, trials):
    refs = world["refs"]
    for t in trials:
        assert t["rerun"].returncode == 0, (t["kind"], t["delay"], t["rerun"].stderr)
        expected = "dataset B, derived day1" if t["kind"] == "load" else "dataset A, derived day2"
        assert _state(t["after_rerun"], refs) == expected + ", ontology complete"
        assert not t["after_rerun"]["scratch"], (t["kind"], t["delay"], t["after_rerun"]["scratch"])
        assert t["after_rerun"]["union"] == t["after_rerun"]["named"]


@pytest.mark.slow
def test_the_next_command_drops_a_killed_runs_scratch_graph(world, trials):
    """A derive (not a load of the same dataset) after a killed load derives the dataset alone and
    drops the scratch graph the load left, so research queries no longer see it."""
    seen = world.get("derive_after_kill")
    assert seen is not None, "no kill left a scratch graph; raise TRIALS['load']"
    assert seen["rc"] == 0, seen["stderr"]
    assert not seen["after"]["scratch"] and seen["after"]["union"] == seen["after"]["named"]
    assert seen["derived_patients"] == seen["after_kill"]["named"][0] == seen["after"]["named"][0]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "known gap: a load or derive killed after filling its scratch graph (urn:b12kg:scratch:*) and "
    "before the MOVE leaves it in the store, and the union default graph that research queries and "
    "serve read shows it beside the real graphs (e.g. 1,200 patients for a 200-patient dataset, or "
    "the recommendations of two derive runs) until the next load or derive drops it (drop_scratch)"))
def test_research_queries_never_see_a_scratch_graph_after_a_kill(world, trials):
    """What a research query reads (the union default graph) equals the real graphs alone."""
    leaks = [(t["kind"], t["delay"], t["after_kill"]["scratch"], t["after_kill"]["union"], t["after_kill"]["named"])
             for t in trials if t["after_kill"]["union"] != t["after_kill"]["named"]]
    assert not leaks, leaks


def test_the_next_derive_drops_a_scratch_graph_left_by_a_killed_load(tmp_path, monkeypatch):
    """Fast and deterministic: a scratch dataset graph as a killed ``load`` leaves it. ``derive``
    itself reads only ``urn:b12kg:dataset:*`` graphs; the union default graph does not."""
    a, b = tmp_path / "a.nt", tmp_path / "b.nt"
    generate_file(a, patients=20, seed=1, as_of=SEED_AS_OF)
    generate_file(b, patients=30, seed=2, as_of=SEED_AS_OF)
    store = EmbeddedStore(tmp_path / "db")
    cohort.load(store, [a], dataset="cohort")
    scratch = ox.NamedNode(SCRATCH_PREFIX + DATASET)

    def leave_scratch() -> None:
        store.store.bulk_extend(ox.Quad(t.subject, t.predicate, t.object, scratch)
                                for t in ox.parse(path=str(b), format=ox.RdfFormat.N_TRIPLES))

    def visible() -> tuple[int, int]:
        u, n = store.select(UNION_COUNTS)[0], store.select(NAMED_COUNTS)[0]
        return int(u["patients"].value), int(n["patients"].value)

    leave_scratch()
    assert visible() == (50, 20)  # what a research query would count
    assert cohort.derive(store, as_of=SEED_AS_OF, shacl=False).patients == 20
    assert visible() == (20, 20) and SCRATCH_PREFIX + DATASET not in store.graphs()
    # the check can fail: without drop_scratch the scratch copy outlives the derive
    leave_scratch()
    monkeypatch.setattr(EmbeddedStore, "drop_scratch", lambda self: [])
    cohort.derive(store, as_of=SEED_AS_OF, shacl=False)
    assert visible() == (50, 20)
    store.close()

"""The embedded store: load, derive, query, export; the cohort path agrees with recommend; the
synthetic cohort is deterministic; the served endpoint is read-only, federation-free and limited."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyoxigraph as ox
import pytest

from b12kg import cohort
from b12kg.derive import recommend
from b12kg.errors import ExitCode, InputError
from b12kg.report import reports
from b12kg.serve import Endpoint
from b12kg.store import GRAPH_DERIVED, EmbeddedStore, StoreError
from b12kg.synth import generate
from conftest import EXAMPLES, SEED_AS_OF, cli

B12 = "https://w3id.org/b12kg/ontology#"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.ttl"))
DERIVED_RECS = """
PREFIX b12: <https://w3id.org/b12kg/ontology#>
SELECT ?patient ?source ?status WHERE {
  GRAPH <urn:b12kg:graph:derived> { ?rec a b12:Recommendation ; b12:forPatient ?patient ;
       b12:instantiates ?source ; b12:recommendationStatus ?status }
}"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "db"
    store = EmbeddedStore(path)
    cohort.load(store, EXAMPLE_FILES)
    result = cohort.derive(store, as_of=SEED_AS_OF, batch_size=7)  # several batches
    assert result.problems == [] and result.evaluated == len(EXAMPLE_FILES)
    store.close()
    return path


def derived_triples(path: Path) -> set:
    store = EmbeddedStore(path, read_only=True)
    triples = {q.triple for q in store.store.quads_for_pattern(None, None, None, ox.NamedNode(GRAPH_DERIVED))}
    store.close()
    return triples


def test_cohort_derivation_agrees_with_recommend_for_every_example(loaded):
    store = EmbeddedStore(loaded, read_only=True)
    rows = store.select(DERIVED_RECS)
    store.close()
    from_store: dict[str, set] = {}
    for r in rows:
        from_store.setdefault(r["patient"].value, set()).add((r["source"].value.rsplit("#", 1)[-1], r["status"].value.rsplit("#", 1)[-1]))
    for path in EXAMPLE_FILES:
        (doc,) = reports(recommend(path, as_of=SEED_AS_OF))
        expected = {(r["id"], r["status"]) for r in doc["recommendations"]}
        assert from_store.get(doc["patient"], set()) == expected, path.name


def test_named_graphs_are_kept_apart(loaded):
    store = EmbeddedStore(loaded, read_only=True)
    graphs = store.graphs()
    store.close()
    assert "urn:b12kg:graph:ontology" in graphs and GRAPH_DERIVED in graphs
    assert {f"urn:b12kg:dataset:{p.stem}" for p in EXAMPLE_FILES} <= set(graphs)
    assert not [g for g in graphs if g.startswith("urn:b12kg:scratch:")]


def test_rerunning_derive_and_load_never_duplicates(loaded, tmp_path):
    before = derived_triples(loaded)
    store = EmbeddedStore(loaded)
    cohort.load(store, [EXAMPLES / "seed-case.ttl"])  # clears the derived graph (see test_generations)
    cohort.derive(store, as_of=SEED_AS_OF, batch_size=50, workers=1)  # batches read and evaluated here
    assert derived_triples(loaded) == before
    cohort.derive(store, as_of=SEED_AS_OF, batch_size=3, workers=2)  # worker processes read their batches
    datasets = store.datasets()
    store.close()
    assert derived_triples(loaded) == before
    assert datasets.count("urn:b12kg:dataset:seed-case") == 1


def test_derived_recommendations_carry_provenance(loaded):
    """Through the lean graph's joins: each recommendation's statement cites evidence, and its patient has
    exactly one derivation with the evaluation date and both versions."""
    store = EmbeddedStore(loaded, read_only=True)
    rows = store.select("""
        PREFIX b12: <https://w3id.org/b12kg/ontology#>
        SELECT ?rec (COUNT(DISTINCT ?ref) AS ?refs) (COUNT(DISTINCT ?run) AS ?runs) WHERE {
          ?rec a b12:Recommendation ; b12:instantiates ?source ; b12:forPatient ?patient .
          OPTIONAL { ?source (b12:derivedFromStatement)? ?statement . ?statement a b12:GuidelineStatement ;
                     b12:hasEvidence ?ref }
          OPTIONAL { ?run a b12:Derivation ; b12:forPatient ?patient ; b12:asOf ?asOf ; b12:ontologyVersion ?v ;
                     b12:engineVersion ?e }
        } GROUP BY ?rec""")
    store.close()
    assert rows
    for r in rows:
        assert int(r["refs"].value) >= 1 and int(r["runs"].value) == 1, r["rec"].value


def derive_beside_a_valid_patient(tmp_path: Path, name: str, text: str) -> tuple[cohort.DeriveResult, set[str]]:
    """Load a patient file with ``text`` beside a valid one and derive: the result and the patients
    with recommendations."""
    bad = tmp_path / name
    bad.write_text(text)
    store = EmbeddedStore(tmp_path / "db")
    cohort.load(store, [bad, EXAMPLES / "ckd-diagnosis.ttl"])
    result = cohort.derive(store, as_of=SEED_AS_OF)
    patients = {r["patient"].value for r in store.select(DERIVED_RECS)}
    store.close()
    return result, patients


def test_invalid_patients_are_left_out_and_reported(tmp_path):
    text = (EXAMPLES / "seed-case.ttl").read_text().replace('"pg/mL"', '"mg/dL"')
    result, patients = derive_beside_a_valid_patient(tmp_path, "bad-unit.ttl", text)
    assert result.patients == 2 and result.evaluated == 1
    assert any("unknown unit 'mg/dL'" in p for p in result.problems)
    assert patients == {"https://example.org/b12kg/ckd-diagnosis#patient"}


def test_a_future_birth_date_is_one_patients_problem(tmp_path):
    """The date check names the patient whose birth date is late, and only that one."""
    text = (EXAMPLES / "seed-case.ttl").read_text()
    born = text.split("b12:birthDate", 1)[1].split('"')[1]
    result, patients = derive_beside_a_valid_patient(tmp_path, "future-birth.ttl",
                                                     text.replace(f'"{born}"', '"2030-01-01"', 1))
    assert result.patients == 2 and result.evaluated == 1
    assert len(result.problems) == 1 and "birthDate 2030-01-01" in result.problems[0], result.problems
    assert "ckd-diagnosis" not in result.problems[0]
    assert patients == {"https://example.org/b12kg/ckd-diagnosis#patient"}


def test_a_batch_patient_describing_a_knowledge_base_term_is_one_patients_problem(kb):
    """Data that `load` refuses (a store written by another program): derive's batch validation leaves
    out the patients the triple hangs from (here the two given cyanocobalamin), names them, and
    evaluates the others."""
    retyped = ("\n<https://w3id.org/b12kg/ontology#cyanocobalamin> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> "
               "<https://w3id.org/b12kg/ontology#Hydroxocobalamin> .\n")
    data = b"".join(ox.serialize(ox.parse(path=EXAMPLES / name), format=ox.RdfFormat.N_TRIPLES)
                    for name in ("seed-case.ttl", "ckd-diagnosis.ttl", "no-prior-injection.ttl")) + retyped.encode()
    seed, ckd = "https://example.org/b12kg/seed-case#patient", "https://example.org/b12kg/ckd-diagnosis#patient"
    other = "https://example.org/b12kg/no-prior-injection#patient"
    evaluated = cohort._evaluate(cohort._Batch(root=str(kb.root), as_of=SEED_AS_OF, reasoner="rules", shacl=True,
                                               label="batch 1", patients=[ckd, other, seed], data=data))
    assert evaluated.problems == [
        f"batch 1: patient <{patient}>, <https://w3id.org/b12kg/ontology#cyanocobalamin>: type: patient data may not "
        "describe a term of the knowledge base (its classes, products, thresholds and statements)" for patient in (ckd, seed)]
    assert set(evaluated.record) == {other}


def test_a_worker_that_dies_is_one_clear_error_and_changes_nothing(loaded, tmp_path):
    """A script without the main guard, read from stdin: the spawned workers cannot start. derive
    says what happened and what to do, and the store keeps its derived graph."""
    before = derived_triples(loaded)
    script = (f"from b12kg import cohort\nfrom b12kg.store import EmbeddedStore\nfrom datetime import date\n"
              f"store = EmbeddedStore({str(loaded)!r})\n"
              f"try:\n    cohort.derive(store, as_of=date(2025, 10, 31), workers=2, full=True)\n"
              f"except cohort.WorkerError as exc:\n    print('WorkerError', exc.exit_code, exc.message)\n")
    result = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("WorkerError 10 a derive worker process stopped abruptly"), result.stdout + result.stderr
    assert "--workers 1" in result.stdout and "__main__" in result.stdout
    assert derived_triples(loaded) == before


def test_results_evaluated_ahead_keep_their_order_and_their_errors():
    """derive's workers evaluate ahead of the writer: the writer still gets the results in order, and
    an error in the evaluation (a worker that died) reaches it after the results before it."""
    assert list(cohort._ahead(iter(range(200)), depth=3)) == list(range(200))

    def failing():
        yield from range(5)
        raise cohort.WorkerError("a derive worker process stopped abruptly")

    got = []
    with pytest.raises(cohort.WorkerError, match="stopped abruptly"):
        for item in cohort._ahead(failing(), depth=2):
            got.append(item)
    assert got == list(range(5))


def test_a_writer_that_stops_stops_the_evaluation_ahead():
    """When the writer stops early (an error while writing), the evaluation ahead of it stops pulling,
    is closed (which shuts the worker processes down) and its thread ends."""
    import threading

    pulled, closed = [], []

    def source():
        try:
            for i in range(10_000):
                pulled.append(i)
                yield i
        finally:
            closed.append(True)

    ahead = cohort._ahead(source(), depth=4)
    assert [next(ahead), next(ahead)] == [0, 1]
    ahead.close()
    assert closed == [True]
    assert len(pulled) <= 2 + 4 + 1  # taken, queued, and the one waiting to be queued
    assert not any(t.name == "b12kg-derive-ahead" for t in threading.enumerate())


def test_a_write_error_in_derive_stops_its_workers_and_changes_nothing(loaded, monkeypatch):
    """The store fails while derive bulk-loads results (the disk is full, say): derive stops with one
    clear error, its worker processes and the thread feeding them end, and the store keeps its
    derived graph."""
    import multiprocessing
    import threading

    from b12kg import store as store_module

    before = derived_triples(loaded)

    def full(self, graph, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.GenerationWriter, "add_nt", full)
    monkeypatch.setattr(store_module, "INGEST_BYTES", 1)  # a bulk load per batch
    store = EmbeddedStore(loaded)
    try:
        with pytest.raises(StoreError, match="cannot write the store: No space left on device"):
            cohort.derive(store, as_of=SEED_AS_OF, batch_size=2, workers=2, shacl=False)
    finally:
        store.close()
    assert not multiprocessing.active_children()
    assert not any(t.name == "b12kg-derive-ahead" for t in threading.enumerate())
    assert derived_triples(loaded) == before


def _group(pgid: int) -> dict[int, str]:
    """The live processes of a process group: pid -> command line."""
    members = {}
    for proc in Path("/proc").iterdir():
        try:
            state, _, group = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:3]  # after the (command)
            if proc.name.isdigit() and int(group) == pgid and state != "Z":
                members[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not a process folder
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc (Linux)")
def test_workers_of_a_killed_derive_do_not_outlive_it(tmp_path):
    """derive killed with SIGKILL (or by the out-of-memory killer): its worker processes exit too,
    instead of waiting for work forever."""
    import signal
    import time

    from b12kg.synth import generate_file

    generate_file(tmp_path / "cohort.nt", patients=2_000, seed=3, as_of=SEED_AS_OF)
    store = EmbeddedStore(tmp_path / "db")
    cohort.load(store, [tmp_path / "cohort.nt"])
    store.close()
    proc = subprocess.Popen([sys.executable, "-m", "b12kg.cli", "derive", "--store", str(tmp_path / "db"),
                             "--as-of", SEED_AS_OF.isoformat(), "--no-shacl", "--workers", "2",
                             "--batch-size", "100"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while sum("spawn_main" in cmd for cmd in _group(proc.pid).values()) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "derive ended before its workers were seen"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    left = _gone_within(proc.pid, 15)
    assert not left, f"still running 15 s after their derive was killed: {left}"


def _serve_in_its_own_group(store: Path) -> subprocess.Popen:
    """``b12kg serve`` as a user starts it, once its query workers are up (stderr says so)."""
    proc = subprocess.Popen([sys.executable, "-m", "b12kg.cli", "serve", "--store", str(store), "--port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stderr.readline()
    if "SPARQL endpoint" not in line or not any("b12kg.query_worker" in c for c in _group(proc.pid).values()):
        _gone_within(proc.pid, 0)
        pytest.fail(f"serve did not start: {line}{proc.stderr.read()}")
    return proc


def _gone_within(pgid: int, seconds: float) -> dict[int, str]:
    import signal
    import time

    deadline = time.monotonic() + seconds
    while _group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _group(pgid)
    for pid in left:  # do not leave them to the rest of the test run
        os.kill(pid, signal.SIGKILL)
    return left


def test_an_endpoint_stopped_before_it_serves_stops(loaded):
    """Ctrl-C or SIGTERM just after start, before serve_forever() begins: stop() must not wait for a
    loop that never ran (it did, forever, and serve hung with its server behind it)."""
    import threading

    endpoint = Endpoint(loaded, port=0)
    endpoint.start()
    stopped = threading.Event()
    threading.Thread(target=lambda: (endpoint.stop(), stopped.set()), daemon=True).start()
    assert stopped.wait(20), "stop() waited for a serve_forever() loop that never ran"
    assert endpoint.pool is None and endpoint.server is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc (Linux)")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_serve_stopped_with_a_signal_stops_its_workers(loaded, signame):
    """``kill``, systemd and container stops send SIGTERM, a closed terminal SIGHUP, Ctrl-C SIGINT: serve
    stops (exit 0) and its query workers with it, instead of keeping their memory and the store's lock."""
    import signal

    proc = _serve_in_its_own_group(loaded)
    os.kill(proc.pid, getattr(signal, signame))
    try:
        code = proc.wait(timeout=30)
    finally:
        left = _gone_within(proc.pid, 15)
    assert code == 0, proc.stderr.read()
    assert not left, "a query worker outlived serve"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_serve_killed_takes_its_workers_with_it(loaded):
    """SIGKILL (or the out-of-memory killer) gives serve no chance to stop its workers: the kernel
    sends each SIGTERM when serve dies."""
    import signal

    proc = _serve_in_its_own_group(loaded)
    os.kill(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=30)
    finally:
        left = _gone_within(proc.pid, 15)
    assert not left, "a query worker outlived serve"


def test_load_checks_every_file_before_changing_anything(tmp_path):
    store = EmbeddedStore(tmp_path / "db")
    with pytest.raises(InputError, match="nope.ttl: no such file"):
        cohort.load(store, [EXAMPLES / "seed-case.ttl", tmp_path / "nope.ttl"])
    assert store.datasets() == []
    store.close()


def test_broken_turtle_in_a_bulk_load_keeps_what_was_stored(tmp_path):
    store = EmbeddedStore(tmp_path / "db")
    cohort.load(store, [EXAMPLES / "seed-case.ttl"], dataset="cohort")
    broken = tmp_path / "cohort.ttl"
    broken.write_text("@prefix b12: <https://w3id.org/b12kg/ontology#> .\n<a:p> a b12:Patient ;;; .\n<a:q")
    with pytest.raises(InputError, match=r"cohort.ttl:3:"):
        cohort.load(store, [broken], dataset="cohort")
    patients = store.select("SELECT ?p WHERE { GRAPH <urn:b12kg:dataset:cohort> { ?p a <https://w3id.org/b12kg/ontology#Patient> } }")
    store.close()
    assert [r["p"].value for r in patients] == ["https://example.org/b12kg/seed-case#patient"]


def test_query_command_binds_typed_parameters(loaded, tmp_path):
    q = tmp_path / "recs-of.rq"
    q.write_text("#+ param: who iri\nPREFIX b12: <https://w3id.org/b12kg/ontology#>\n"
                 "SELECT ?source WHERE { ?rec b12:forPatient ?who ; b12:instantiates ?source } ORDER BY ?source\n")
    ok = cli("query", str(q), "--store", str(loaded), "--param", "who=https://example.org/b12kg/seed-case#patient", "-f", "json")
    assert ok.returncode == 0, ok.stderr
    sources = [r["source"].rsplit("#", 1)[-1] for r in json.loads(ok.stdout)]
    assert "stmt-treatment-2" in sources and "action-switch-from-cyanocobalamin" in sources
    injected = cli("query", str(q), "--store", str(loaded), "--param", "who=https://x/p> } UNION { ?rec ?p ?source", "-f", "csv")
    assert injected.returncode == ExitCode.INPUT and "not a valid iri" in injected.stderr
    unknown = cli("query", str(q), "--store", str(loaded), "--param", "whom=x")
    assert unknown.returncode == ExitCode.INPUT and "unknown parameter(s) whom" in unknown.stderr
    missing = cli("query", str(q), "--store", str(loaded))
    assert missing.returncode == ExitCode.INPUT and "missing parameter(s) who" in missing.stderr


def test_export_round_trips(loaded, tmp_path):
    out = tmp_path / "derived.nt"
    result = cli("export", "--store", str(loaded), "--graph", "derived", "-f", "nt", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert {q.triple for q in ox.parse(path=str(out), format=ox.RdfFormat.N_TRIPLES)} == derived_triples(loaded)
    whole = cli("export", "--store", str(loaded), "-f", "ttl")
    assert whole.returncode == ExitCode.INPUT and "holds one graph" in whole.stderr


def test_export_expand_provenance_from_the_command_line(loaded, tmp_path):
    """``--expand-provenance`` adds the joins after the stored triples (every stored triple is kept, a
    finding gets its activity); one-line errors, exit 3, where it cannot apply."""
    out = tmp_path / "expanded.nt"
    result = cli("export", "--store", str(loaded), "--graph", "derived", "-f", "nt", "--expand-provenance", "-o", str(out))
    assert result.returncode == 0, result.stderr
    expanded = {q.triple for q in ox.parse(path=str(out), format=ox.RdfFormat.N_TRIPLES)}
    stored = derived_triples(loaded)
    assert stored < expanded
    assert any(t.predicate.value == "http://www.w3.org/ns/prov#wasGeneratedBy" for t in expanded - stored)
    for args, message in ((["--graph", "ontology", "-f", "nt"], "adds to the derived graph"),
                          (["--format", "fhir-ndjson", "-o", str(tmp_path / "ndjson")], "for the RDF formats")):
        refused = cli("export", "--store", str(loaded), "--expand-provenance", *args)
        assert refused.returncode == ExitCode.INPUT and message in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_export_expand_provenance_refuses_a_patient_with_two_derivations(loaded, tmp_path):
    """The joins go through the patient's one derivation: a second (another program writing the store's
    files; `load` refuses derived data as a dataset) would give each finding both, so the export stops
    with a one-line error naming the patient, and writes nothing."""
    import json
    import shutil

    db = tmp_path / "db"
    shutil.copytree(loaded, db)
    derivations = [t for t in derived_triples(db)
                   if t.predicate.value == "https://w3id.org/b12kg/ontology#forPatient"
                   and "derivation-" in t.subject.value]
    patient = derivations[0].object
    second = ox.NamedNode("https://w3id.org/b12kg/derived/derivation-elsewhere")
    extra = tmp_path / "elsewhere.ttl"
    extra.write_text(f"<{second.value}> a <https://w3id.org/b12kg/ontology#Derivation> ; "
                     f"<https://w3id.org/b12kg/ontology#forPatient> <{patient.value}> .\n")
    refused = cli("load", str(extra), "--store", str(db))
    assert refused.returncode == ExitCode.INVALID_DATA and "patient data may use only the patient vocabulary" in refused.stderr
    current = json.loads((db / "HEAD").read_text())["current"]
    other_writer = ox.Store(str(db / current))
    for triple in ox.parse(extra.read_bytes(), format=ox.RdfFormat.TURTLE):
        other_writer.add(ox.Quad(triple.subject, triple.predicate, triple.object, ox.NamedNode(GRAPH_DERIVED)))
    other_writer.flush()
    del other_writer
    assert second in {t.subject for t in derived_triples(db)}
    out = tmp_path / "expanded.nt"
    refused = cli("export", "--store", str(db), "--graph", "derived", "-f", "nt", "--expand-provenance",
                  "-o", str(out))
    assert refused.returncode == ExitCode.INPUT, refused.stderr
    assert refused.stderr.count("\n") == 1 and f"patient {patient.value} has more than one derivation" in refused.stderr
    assert not out.exists()
    assert cli("export", "--store", str(db), "--graph", "derived", "-f", "nt").returncode == 0  # without: fine


def test_an_export_that_fails_part_way_leaves_the_file_as_it_was(tmp_path):
    """``export -o FILE`` writes beside FILE and renames once complete: an answer cut off by the
    store part-way is a one-line error (exit 3), FILE keeps its earlier content, nothing is left beside it."""
    out = tmp_path / "derived.nt"
    out.write_text("<urn:earlier> <urn:export> <urn:kept> .\n")
    with _serving(CutOffStore) as port:
        result = cli("export", "--endpoint", f"http://127.0.0.1:{port}/query", "--graph", "derived", "-f", "nt",
                     "-o", str(out))
    assert result.returncode == ExitCode.INPUT, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "reading graph urn:b12kg:graph:derived failed" in result.stderr
    assert out.read_text() == "<urn:earlier> <urn:export> <urn:kept> .\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["derived.nt"]
    nowhere = cli("export", "--endpoint", f"http://127.0.0.1:{port}/query", "-o", str(tmp_path / "no" / "x.nq"))
    assert nowhere.returncode == ExitCode.INPUT and "cannot write" in nowhere.stderr, nowhere.stderr


def test_export_to_a_file_is_the_store_and_readable_by_others(loaded, tmp_path):
    out = tmp_path / "all.nq"
    assert cli("export", "--store", str(loaded), "-o", str(out)).returncode == 0
    store = EmbeddedStore(loaded, read_only=True)
    try:
        assert len(list(ox.parse(path=str(out), format=ox.RdfFormat.N_QUADS))) == len(store.store)
    finally:
        store.close()
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("command", [["synth", "--patients", "20000"], ["export", "--store", "{}", "-f", "nq"],
                                     ["query", "blocked-decisions", "--store", "{}", "-f", "csv"],
                                     ["query", "blocked-decisions", "--store", "{}"]])
def test_a_reader_that_stops_early_is_not_an_error(loaded, command):
    """``b12kg export | head``: the reader closing the pipe ends the command quietly with exit 0 (not
    typer's exit 1, which is the findings code, nor an internal error)."""
    import fcntl

    command = [part.format(loaded) for part in command]
    read, write = os.pipe()
    fcntl.fcntl(read, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)  # so that every output here overfills it
    process = subprocess.Popen([sys.executable, "-m", "b12kg.cli", *command], stdout=write, stderr=subprocess.PIPE)
    os.close(write)
    os.read(read, 10)
    os.close(read)
    assert process.wait(120) == 0
    assert process.stderr.read() == b""


ENDLESS = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"  # every triple three times over: ~10^13 rows here


def test_query_rows_come_as_the_store_evaluates_them(loaded):
    import itertools

    store = EmbeddedStore(loaded, read_only=True)
    try:
        columns, rows = cohort.stream_query(store, ENDLESS, {})
        assert columns == list("abcdefghi") and len(list(itertools.islice(rows, 3))) == 3
    finally:
        store.close()


# a CONSTRUCT whose every row is a new triple: every triple three times over, ~10^9 triples here
ENDLESS_CONSTRUCT = """CONSTRUCT { ?x <urn:p> ?c } WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i
  BIND (IRI(CONCAT("urn:x:", MD5(CONCAT(STR(?a), STR(?b), STR(?d), STR(?e), STR(?g), STR(?h))))) AS ?x) }"""


def test_remote_construct_triples_come_as_the_server_sends_them(tmp_path):
    """``export --expand-provenance`` from a remote store reads each CONSTRUCT's N-Triples as they
    arrive: the first triples of an answer with no end are there at once, and closing the stream
    closes the connection."""
    import itertools

    from servers import open_backend

    with open_backend("oxigraph", tmp_path) as store:
        cohort.load(store, sorted(EXAMPLES.glob("*.ttl")))
        for _ in range(2):  # the server is free again once a stream is closed
            stream = store.construct_stream(ENDLESS_CONSTRUCT)
            assert len(list(itertools.islice(stream, 3))) == 3
            stream.close()
        assert len(store.select("SELECT ?s WHERE { ?s ?p ?o } LIMIT 1")) == 1


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_query_output_begins_before_the_query_ends(loaded, tmp_path, fmt):
    """``b12kg query -f csv|json`` writes rows as they come: the first lines of a query with no end
    arrive at once, and the reader stopping there ends the command with exit 0."""
    q = tmp_path / "endless.rq"
    q.write_text(ENDLESS + "\n")
    process = subprocess.Popen([sys.executable, "-m", "b12kg.cli", "query", str(q), "--store", str(loaded), "-f", fmt],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import select

    head, deadline = b"", time.monotonic() + 60
    try:
        while head.count(b"\n") < 3 and time.monotonic() < deadline:
            if select.select([process.stdout], [], [], 1)[0]:
                head += os.read(process.stdout.fileno(), 4096)
        process.stdout.close()
        assert head.count(b"\n") >= 3, f"no rows within 60 s: {head!r}"
        assert process.wait(60) == 0
    finally:
        process.kill()
    assert head.startswith(b"a,b,c" if fmt == "csv" else b"[\n  {")


def test_a_query_failing_while_it_runs_is_a_one_line_error(loaded, tmp_path):
    """An error raised while the store evaluates (here a SERVICE nobody answers) is the user's query,
    not a bug: one line, exit 3 (it was exit 10, internal error)."""
    from b12kg.serve import free_port

    q = tmp_path / "federated.rq"
    q.write_text(f"SELECT * WHERE {{ SERVICE <http://127.0.0.1:{free_port()}/sparql> {{ ?s ?p ?o }} }}\n")
    for fmt in ("csv", "table"):
        result = cli("query", str(q), "--store", str(loaded), "-f", fmt)
        assert result.returncode == ExitCode.INPUT, result.stderr
        assert result.stderr.startswith(f"error: {q}: evaluation failed: ") and result.stderr.count("\n") == 1


def test_json_rows_are_written_as_one_json_array():
    rows = [{"a": ox.Literal('x"\u00e9\n'), "b": ox.NamedNode("urn:b")}, {"b": ox.Literal("2")}]
    want = [{"a": 'x"\u00e9\n', "b": "urn:b"}, {"a": "", "b": "2"}]
    for given, expected in ((rows, json.dumps(want, indent=2, ensure_ascii=False) + "\n"), ([], "[]\n")):
        out = io.StringIO()
        cohort.write_rows(["a", "b"], given, "json", out)
        assert out.getvalue() == expected


def test_cli_load_derive_progress_is_silent_off_a_terminal(tmp_path):
    db = str(tmp_path / "db")
    assert cli("load", str(EXAMPLES / "seed-case.ttl"), "--store", db).returncode == 0
    result = cli("derive", "--store", db, "--as-of", "2025-10-31")
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stderr and "derived 1 of 1 patient(s)" in result.stderr


def test_synthetic_cohort_is_deterministic_and_covers_the_dimensions():
    import io

    def text(seed: int) -> str:
        out = io.StringIO()
        generate(out, patients=300, seed=seed, as_of=SEED_AS_OF)
        return out.getvalue()

    a, b, c = text(7), text(7), text(8)
    assert a == b and a != c
    for needle in ['"pg/mL"', '"ng/L"', '"pmol/L"', '"ng/mL"', '"nmol/L"', '"umol/L"', '"mL/min/{1.73_m2}"',
                   "belowReferenceRange", "symptomStatus> <https://w3id.org/b12kg/ontology#present>",
                   "preferredRoute", "cyanocobalamin", "hydroxocobalamin", "snomed.info/id/422504002",
                   "snomed.info/id/709044004", "snomed.info/id/302226006", "-b12-2>"]:
        assert needle in a, needle


def test_synthetic_cohort_reaches_every_decision(tmp_path):
    path = tmp_path / "c.nt"
    with path.open("w") as out:
        generate(out, patients=400, seed=2, as_of=SEED_AS_OF)
    store = EmbeddedStore(tmp_path / "db")
    cohort.load(store, [path])
    result = cohort.derive(store, as_of=SEED_AS_OF, shacl=False)
    rows = store.select("""PREFIX b12: <https://w3id.org/b12kg/ontology#>
        SELECT DISTINCT ?source WHERE { ?f b12:instantiates ?source }""")
    store.close()
    sources = {r["source"].value.rsplit("#", 1)[-1] for r in rows}
    assert result.problems == []
    for expected in ["exclusion-no-stroke", "exclusion-neurological-symptoms", "exclusion-no-usable-b12",
                     "exclusion-conflicting-b12", "exclusion-b12-below-borderline", "exclusion-untreated",
                     "exclusion-treatment-lapsed", "contra-cyanocobalamin-renal", "assumption-no-neurological-symptoms",
                     "action-switch-from-cyanocobalamin", "action-treat-b12-before-folate", "stmt-form-2",
                     "missing-homocysteine", "missing-renal-function", "missing-confirm-conflict"]:
        assert expected in sources, expected


@pytest.fixture(scope="module")
def endpoint(loaded):
    with Endpoint(loaded, port=0, limit=3, timeout=20) as e:
        yield e


def post(url: str, *, accept: str | None = None, **form) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(),
                                     headers={"Accept": accept} if accept else {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read(), r.headers  # (case-insensitive)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_endpoint_answers_queries_with_the_row_limit(endpoint):
    status, body, headers = post(endpoint.url, query="PREFIX b12: <https://w3id.org/b12kg/ontology#> "
                                 "SELECT ?r WHERE { ?r a b12:Recommendation }")
    assert status == 200 and headers["X-B12KG-Truncated"] == "true"
    assert len(json.loads(body)["results"]["bindings"]) == 3
    status, body, headers = post(endpoint.url, query="ASK { ?s a <https://w3id.org/b12kg/ontology#Patient> }")
    assert status == 200 and json.loads(body)["boolean"] is True


def test_endpoint_cuts_csv_and_n_triples_at_the_row_limit(endpoint):
    status, body, headers = post(endpoint.url, accept="text/csv", query="PREFIX b12: <https://w3id.org/b12kg/ontology#> "
                                 "SELECT ?r WHERE { ?r a b12:Recommendation }")
    records = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert status == 200 and headers["X-B12KG-Truncated"] == "true"
    assert records[0] == ["r"] and len(records) == 4
    status, body, headers = post(endpoint.url, accept="application/n-triples", query="CONSTRUCT WHERE { ?s a ?c }")
    assert status == 200 and headers["X-B12KG-Truncated"] == "true"
    assert len(list(ox.parse(body, format=ox.RdfFormat.N_TRIPLES))) == 3


def test_endpoint_answers_the_first_rows_of_an_endless_select_at_once(endpoint):
    """Every answer is read from the server only up to the limit: a SELECT of some 10^13 rows (all
    triples, three times over) gives its first rows at once, in JSON as in CSV, instead of the guard
    reading the whole answer into memory until the timeout."""
    query = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
    for accept in (None, "text/csv"):
        started = time.monotonic()
        status, body, headers = post(endpoint.url, accept=accept, query=query)
        assert status == 200 and headers["X-B12KG-Truncated"] == "true", (accept, status, body[:200])
        assert time.monotonic() - started < 10, accept
    assert len(json.loads(post(endpoint.url, query=query)[1])["results"]["bindings"]) == 3


def test_endpoint_json_keeps_every_kind_of_term(endpoint):
    """The rows the guard writes back are the store's: IRIs, plain, typed and language-tagged
    literals, line breaks, blank nodes and unbound values."""
    query = ('SELECT ?a ?b ?c ?d WHERE { VALUES (?a ?b ?c) { (<urn:x> "s" "1"^^<http://www.w3.org/2001/XMLSchema#integer>) '
             '("h"@en-GB "x\\ny" UNDEF) } BIND (IF(BOUND(?c), BNODE(), "-1.5e0"^^<http://www.w3.org/2001/XMLSchema#double>) AS ?d) }')
    status, body, headers = post(endpoint.url, query=query)
    assert status == 200 and headers["X-B12KG-Truncated"] == "false"
    got = list(ox.parse_query_results(body, format=ox.QueryResultsFormat.JSON))
    want = list(ox.Store().query(query))
    assert len(got) == 2 and isinstance(got[0]["d"], ox.BlankNode) and got[1]["c"] is None
    assert [[row[v] for v in "abc"] for row in got] == [[row[v] for v in "abc"] for row in want]
    assert got[1]["d"] == want[1]["d"]


def test_the_workers_json_rows_keep_triple_terms():
    """An RDF 1.2 triple term (a store may hold them) is written as SPARQL 1.2 JSON results write it."""
    from b12kg.query_worker import answer

    store = ox.Store()
    store.add(ox.Quad(ox.NamedNode("urn:r"), ox.NamedNode("urn:says"),
                      ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode("urn:p"), ox.Literal("o", language="en"))))
    header, data = answer(store, {"query": "SELECT ?t WHERE { ?r ?says ?t }", "accept": [], "limit": 3})
    assert header["status"] == 200 and not header["truncated"]
    assert [row["t"] for row in ox.parse_query_results(data, format=ox.QueryResultsFormat.JSON)] == [
        ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode("urn:p"), ox.Literal("o", language="en"))]


@contextmanager
def _serving(handler) -> Iterator[int]:
    """An HTTP server on a loopback port for the test's duration; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


class CutOffStore(BaseHTTPRequestHandler):
    """A SPARQL endpoint that stops mid-answer: its connection closed inside a chunked body."""

    def log_message(self, *args):
        return

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        accept = self.headers["Accept"]
        self.send_response(200)
        self.send_header("Content-Type", accept)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        part = {"text/csv": b"x\r\n\"cut", "application/n-triples": b"<urn:a> <urn:b> <urn:c> .\n<urn:a> <urn:",
                "application/sparql-results+xml": b'<?xml version="1.0"?><sparql xmlns="http://www.w3.org/2005/'
                b'sparql-results#"><head><variable name="x"/></head><results><result><binding name="x"><uri>urn:a'
                b'</uri></binding></result><result><binding name="x"><uri>urn:'}.get(
            accept, b'{"head":{"vars":["x"]},"results":{"bindings":[{"x":{"type":"uri","value":"urn:a"}},')
        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.flush()
        self.close_connection = True


XML_ANSWER = b"""<?xml version="1.0"?><sparql xmlns="http://www.w3.org/2005/sparql-results#"><head><variable name="t"/>
<variable name="unbound"/></head><results><result><binding name="t"><uri>urn:a</uri></binding></result>
<result><binding name="t"><bnode>nodeID://b10006</bnode></binding></result>
<result><binding name="t"><literal xml:lang="en-gb">x</literal></binding></result>
<result><binding name="t"><literal datatype="http://www.w3.org/2001/XMLSchema#decimal">1.5</literal></binding></result>
<result><binding name="t"><literal>two
lines</literal></binding></result><result><binding name="t"><literal></literal></binding></result>
<result><binding name="t"><triple><subject><uri>urn:s</uri></subject><predicate><uri>urn:p</uri></predicate>
<object><literal>o</literal></object></triple></binding></result></results></sparql>"""


class XmlAnswer(BaseHTTPRequestHandler):
    def log_message(self, *args):
        return

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/sparql-results+xml")
        self.send_header("Content-Length", str(len(XML_ANSWER)))
        self.end_headers()
        self.wfile.write(XML_ANSWER)


def test_remote_rows_are_read_from_xml_results_as_they_arrive():
    """``b12kg query --endpoint`` reads SPARQL XML results as a stream: every kind of term, Virtuoso's
    nodeID:// blank nodes (which pyoxigraph's parsers refuse) included."""
    from b12kg.store import RemoteStore

    with _serving(XmlAnswer) as port:
        columns, rows = cohort.run_query(RemoteStore(f"http://127.0.0.1:{port}/sparql"), "SELECT ?t ?unbound {}", {})
    assert columns == ["t", "unbound"] and all(set(r) == {"t"} for r in rows)
    terms = [r["t"] for r in rows]
    assert terms[0] == ox.NamedNode("urn:a") and isinstance(terms[1], ox.BlankNode)
    assert terms[2:] == [ox.Literal("x", language="en-gb"),
                         ox.Literal("1.5", datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#decimal")),
                         ox.Literal("two\nlines"), ox.Literal(""),
                         ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode("urn:p"), ox.Literal("o"))]


def test_a_remote_answer_cut_off_part_way_is_a_one_line_error(tmp_path):
    q = tmp_path / "q.rq"
    q.write_text("SELECT ?x WHERE { ?x ?p ?o }\n")
    with _serving(CutOffStore) as port:
        result = cli("query", str(q), "--endpoint", f"http://127.0.0.1:{port}/sparql", "-f", "csv")
    assert result.returncode == ExitCode.INPUT, result.stderr
    assert "reading the answer failed" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(("values", "truncated"), [(3, "false"), (4, "true")])
def test_endpoint_counts_csv_records_not_lines(endpoint, values, truncated):
    """A quoted CSV value may hold line breaks: the limit counts rows, and a cut never splits one."""
    texts = [f"line {n}\nand {n}" for n in range(values)]
    query = "SELECT ?x WHERE { VALUES ?x { %s } } ORDER BY ?x" % " ".join(json.dumps(t) for t in texts)
    status, body, headers = post(endpoint.url, accept="text/csv", query=query)
    assert status == 200 and headers["X-B12KG-Truncated"] == truncated
    assert list(csv.reader(io.StringIO(body.decode(), newline=""))) == [["x"]] + [[t] for t in texts[:3]]


@pytest.mark.parametrize("form", [
    {"update": "INSERT DATA { <urn:a> <urn:b> <urn:c> }"},
    {"query": "INSERT DATA { <urn:a> <urn:b> <urn:c> }"},
    {"query": "DELETE WHERE { ?s ?p ?o }"},
    {"query": "LOAD <file:///etc/passwd>"},
])
def test_endpoint_refuses_updates(endpoint, form):
    status, _, _ = post(endpoint.url, **form)
    assert status in (400, 403)
    status, body, _ = post(endpoint.url, query="SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")
    assert status == 200 and int(json.loads(body)["results"]["bindings"][0]["n"]["value"]) > 0
    status, body, _ = post(endpoint.url, query="ASK { <urn:a> <urn:b> <urn:c> }")
    assert json.loads(body)["boolean"] is False


def test_endpoint_refuses_federation(endpoint):
    status, body, _ = post(endpoint.url, query="SELECT * WHERE { SERVICE <http://127.0.0.1:1/sparql> { ?s ?p ?o } }")
    assert status == 403 and b"SERVICE" in body


@pytest.mark.parametrize("query", [
    "SELECT ?s ?p ?o FROM <file:///etc/passwd> WHERE { ?s ?p ?o }",
    "SELECT ?s ?p ?o FROM NAMED <file:///etc/passwd> WHERE { GRAPH ?g { ?s ?p ?o } }",
    "SELECT ?s ?p ?o WHERE { GRAPH <file:///etc/passwd> { ?s ?p ?o } }",
    "SELECT ?s WHERE { ?s ?p ?o FILTER (CONTAINS(STR(<file:///etc/passwd>), \"root\")) }",
])
def test_endpoint_reads_no_files(endpoint, query):
    """A dataset clause or graph naming a file never reads the file (Oxigraph takes the IRI as the name
    of a graph in the store; with the union default graph a FROM clause still reads the store):
    nothing of /etc/passwd comes back."""
    status, body, _ = post(endpoint.url, query=query)
    assert status in (200, 400, 403)
    assert b"root:" not in body and b"/bin/" not in body and b"nologin" not in body
    if status == 200 and "GRAPH" in query:
        assert json.loads(body)["results"]["bindings"] == []


def test_endpoint_serves_a_query_page(endpoint):
    """The page is YASGUI (installed by ``npm ci --prefix ui``) with a tab per research query; its
    script is served by the endpoint itself. (tests/test_query_page.py runs it in Chromium.)"""
    from b12kg.kb import KnowledgeBase
    from b12kg.serve_api import research_queries

    with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/", timeout=30) as r:
        page = r.read().decode()
    assert '<script src="/yasgui/yasgui.min.js"' in page
    for name in research_queries(KnowledgeBase()):
        assert json.dumps(name) in page
    with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/yasgui/yasgui.min.js", timeout=30) as r:
        assert r.status == 200 and len(r.read()) > 100_000


def test_query_columns_are_the_projected_variables(loaded, tmp_path):
    q = tmp_path / "counts.rq"
    q.write_text("PREFIX b12: <https://w3id.org/b12kg/ontology#>\n"
                 "SELECT ?status (COUNT(DISTINCT ?rec) AS ?recs) (COUNT(DISTINCT ?patient) AS ?patients)\n"
                 "WHERE { ?rec b12:recommendationStatus ?status ; b12:forPatient ?patient }\n"
                 "GROUP BY ?status ORDER BY ?status\n")
    result = cli("query", str(q), "--store", str(loaded), "-f", "csv")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header == "status,recs,patients"
    assert len(rows) == 4  # alternative, applies, informs, selected


def test_endpoint_answers_concurrent_queries(endpoint):
    """Several clients at once: the workers take turns, every answer arrives."""
    from concurrent.futures import ThreadPoolExecutor

    query = ("PREFIX b12: <https://w3id.org/b12kg/ontology#> "
             "SELECT ?status (COUNT(?r) AS ?n) WHERE { ?r b12:recommendationStatus ?status } GROUP BY ?status")
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: post(endpoint.url, query=query)[0], range(48)))
    assert statuses == [200] * 48


@pytest.mark.parametrize("text", [
    "INSERT DATA { GRAPH <urn:g> {\n<urn:a> <urn:b> \"# not a comment\" .\n} }",
    "  drop silent graph <urn:g>",
    "MOVE SILENT GRAPH <urn:a> TO GRAPH <urn:b>",
    "#+ summary: a header\n#+ param: x iri\nPREFIX b12: <https://w3id.org/b12kg/ontology#>\nprefix : <urn:x#>\n"
    "BASE <urn:base>\nselect ?s WHERE { ?s ?p ?o }",
    "PREFIX b12: <urn:x#>\nCONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }",
    "PREFIX b12: <urn:x#>\nWITH <urn:g> DELETE { ?s ?p ?o } WHERE { ?s ?p ?o }",  # form after WITH
    "ASK {}",
])
def test_remote_requests_get_the_form_sparqlwrapper_would_find(text):
    from SPARQLWrapper import SPARQLWrapper

    from b12kg.store import _set_text

    ours, theirs = SPARQLWrapper("http://127.0.0.1:9/sparql"), SPARQLWrapper("http://127.0.0.1:9/sparql")
    _set_text(ours, text)
    theirs.setQuery(text)
    assert (ours.queryString, ours.queryType) == (text, theirs.queryType)


def test_a_large_insert_skips_sparqlwrappers_whole_text_scan(monkeypatch):
    from SPARQLWrapper import SPARQLWrapper

    from b12kg.store import _set_text

    def scan(self, text):
        raise AssertionError("setQuery scanned the whole request")

    wrapper = SPARQLWrapper("http://127.0.0.1:9/sparql")  # (its constructor sets a default query)
    monkeypatch.setattr(SPARQLWrapper, "setQuery", scan)
    text = "INSERT DATA { GRAPH <urn:g> {\n" + "<urn:a> <urn:b> <urn:c> .\n" * 5000 + "} }"
    _set_text(wrapper, text)
    assert wrapper.queryType == "INSERT" and wrapper.isSparqlUpdateRequest()


def test_a_refused_request_is_one_line_in_the_servers_own_words():
    """SPARQLWrapper's message for a refused request is a generic first line with the server's answer
    further down; the error shows the server's first line instead."""
    from SPARQLWrapper.SPARQLExceptions import EndPointInternalError, QueryBadFormed

    from b12kg.store import _first_line

    refused = QueryBadFormed(b"Virtuoso 37000 Error SP030: SPARQL compiler, line 4992: memory exhausted\n\n"
                             b"SPARQL query:\nINSERT DATA { GRAPH <urn:g> {\n<urn:a> <urn:b> <urn:c> .\n} }")
    assert _first_line(refused) == "QueryBadFormed: Virtuoso 37000 Error SP030: SPARQL compiler, line 4992: memory exhausted"
    assert _first_line(EndPointInternalError()) == "EndPointInternalError: The endpoint returned the HTTP status code 500."
    assert _first_line(OSError("connection refused\nmore")) == "connection refused"


def test_long_inserts_are_split_into_operations_a_store_can_parse():
    """An INSERT DATA of many triples is sent as operations of at most DATA_TRIPLES triples in one
    request (Virtuoso 7 refuses one operation of about 5,000); the request still parses and means the same."""
    from b12kg.store import DATA_TRIPLES, _data_ops

    lines = [f"<urn:s{i}> <urn:p> \"{i}\" ." for i in range(2 * DATA_TRIPLES + 1)]
    request = _data_ops("INSERT", "urn:g", lines)
    assert request.count("INSERT DATA") == 3
    memory = ox.Store()
    memory.update(request)
    assert len(memory) == len(lines)


def test_a_batch_split_by_patient_sends_every_triple_once_with_its_owner():
    """derive --replace batches splits a batch over the request budget into groups of whole patients:
    each triple goes exactly once, with the patient that owns it (queries/cohort/owners.rq), and what
    no patient of the batch owns (the engine agent, a node of a patient outside it) with the first group."""
    from b12kg.kb import KnowledgeBase
    from b12kg.store import _by_patient

    b12, prov = "https://w3id.org/b12kg/ontology#", "http://www.w3.org/ns/prov#"
    lines = ["<urn:agent> <http://www.w3.org/2000/01/rdf-schema#label> \"b12kg\" .",
             f"<urn:stray> <{b12}forPatient> <urn:elsewhere> ."]
    patients = [f"urn:p{i}" for i in range(5)]
    for p in patients:
        lines += [f"<{p}> <urn:state> <urn:s> .", f"<{p}-rec> <{b12}forPatient> <{p}> .",
                  f"<{p}-rec> <urn:text> \"{'x' * 200}\" .", f"<{p}-der> <{b12}forPatient> <{p}> .",
                  f"<{p}-der> <{prov}used> <{p}-b12> .", f"<{p}-b12> <{b12}canonicalValue> \"215\" ."]
    data = ("\n".join(lines) + "\n").encode()
    groups = list(_by_patient(patients, data, KnowledgeBase().query("cohort/owners"), budget=700, most=1000))
    assert len(groups) > 2 and [p for g, _ in groups for p in g] == patients
    sent = [str(t) for _, triples in groups for t in triples]
    assert sorted(sent) == sorted(str(t) for t in ox.parse(data, format=ox.RdfFormat.N_TRIPLES))
    for group, triples in groups:
        subjects = {t.subject.value for t in triples}
        for p in group:
            assert {p, p + "-rec", p + "-der", p + "-b12"} <= subjects
    assert {"urn:agent", "urn:stray"} <= {t.subject.value for t in groups[0][1]}
    assert list(_by_patient(patients, data, "", budget=len(data), most=1000))[0][0] == patients  # fits: one group


def test_deletes_are_packed_in_requests_of_whole_patients_within_the_budget():
    """A remote delete names each patient's earlier triples (DELETE DATA): requests of whole patients,
    each line once and in order, within the budget unless one patient alone is larger."""
    from b12kg.store import _line_size, _packed

    groups = [[f"<urn:p{i}> <urn:v> \"{'x' * (10 * i)}\" ." for _ in range(3)] for i in range(12)]
    keyed = [(f"urn:p{i}", g) for i, g in enumerate(groups)]
    size = lambda lines: sum(len(x) + 1 for x in lines)  # noqa: E731
    budget = 300
    packed = list(_packed(keyed, budget, size=_line_size))
    requests = [r for _, r in packed]
    assert [x for r in requests for x in r] == [x for g in groups for x in g]
    assert [k for keys, _ in packed for k in keys] == [k for k, _ in keyed]
    starts = {g[0]: len(g) for g in groups}
    for r in requests:
        i = 0
        while i < len(r):  # each request is a run of whole groups
            assert r[i] in starts
            i += starts[r[i]]
        assert i == len(r)
        assert size(r) <= budget or len({x.split()[0] for x in r}) == 1
    assert any(size(g) > budget for g in groups) and len(requests) > 3
    assert list(_packed([], budget, size=_line_size)) == []
    assert [r for _, r in _packed(keyed, 10**9, size=_line_size)] == [[x for g in groups for x in g]]


def test_a_blank_node_patient_is_refused_by_load_and_reported_by_derive(loaded, tmp_path):
    """A patient without an IRI cannot be evaluated (batches, digests and findings name patients by IRI):
    `load` refuses a file with one (exit 4, the store as it was), and `derive` over a store another
    program wrote one into reports it per dataset (exit 4) and evaluates every other patient; it used to
    stop with an internal error (exit 10)."""
    import json
    import shutil

    db = tmp_path / "db"
    shutil.copytree(loaded, db)
    before = derived_triples(db)
    blank = tmp_path / "blank.ttl"
    seed = (EXAMPLES / "seed-case.ttl").read_text(encoding="utf-8")
    assert seed.count(":patient a b12:Patient ;") == 1
    blank.write_text(seed.replace(":patient a b12:Patient ;", "_:patient a b12:Patient ;"), encoding="utf-8")
    refused = cli("load", str(blank), "--store", str(db))
    assert refused.returncode == ExitCode.INVALID_DATA, refused.stderr
    assert refused.stderr.strip() == (f"error: {blank}: a blank node typed b12:Patient: a patient must be an IRI, "
                                      "not a blank node (its recommendations and their provenance point at it): give it one")
    assert derived_triples(db) == before
    current = json.loads((db / "HEAD").read_text())["current"]
    other_writer = ox.Store(str(db / current))
    dataset = ox.NamedNode("urn:b12kg:dataset:blank")
    for triple in ox.parse(blank.read_bytes(), format=ox.RdfFormat.TURTLE, base_iri=blank.as_uri()):
        other_writer.add(ox.Quad(triple.subject, triple.predicate, triple.object, dataset))
    other_writer.flush()
    del other_writer
    done = cli("derive", "--store", str(db), "--as-of", SEED_AS_OF.isoformat(), "--full")
    assert done.returncode == ExitCode.INVALID_DATA, done.stderr
    assert ("urn:b12kg:dataset:blank: 1 patient(s) not evaluated: a patient must be an IRI, not a blank node"
            in done.stderr), done.stderr
    assert "internal error" not in done.stderr and "1 patient(s) left out for invalid data" in done.stderr
    derived = derived_triples(db)
    assert {t.object for t in derived if t.predicate.value == "https://w3id.org/b12kg/ontology#forPatient"
            and "derivation-" in t.subject.value} == {t.object for t in before if t.predicate.value ==
                                                     "https://w3id.org/b12kg/ontology#forPatient" and "derivation-" in t.subject.value}

"""``derive --replace batches`` on real Oxigraph and Virtuoso servers: the derived graph replaced patient
by patient, one update request per batch, instead of one MOVE of the whole graph at the end.

What it must keep from the atomic path: the derived graph equals the embedded store's on the same
cohort, and nothing of an earlier run is left — not the results of a patient removed from the datasets,
not those of a patient whose new data is invalid, not facts a patient's new derivation no longer uses,
not a subject nothing points at. What it gives up, and how far: a run that stops leaves each patient
with either all of its earlier results or all of its new ones, never a mix. And a remote ``load``
deletes the derived results of the patients of the datasets it replaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyoxigraph as ox
import pytest

from b12kg import cohort
from b12kg.errors import ExitCode, InputError
from b12kg.kb import KnowledgeBase
from b12kg.sparql import bind
from b12kg.store import (GRAPH_DERIVED, SCRATCH_PREFIX, SCRATCH_REGISTRY, EmbeddedStore, RemoteStore,
                         StoreError)
from b12kg.synth import generate_file
from conftest import cli
from servers import open_backend

B12 = "https://w3id.org/b12kg/ontology#"
PROV = "http://www.w3.org/ns/prov#"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
FIRST, SECOND = date(2025, 10, 31), date(2025, 12, 20)
BATCH = 7  # several batches, the last one short
SEED = 5


# ------------------------------------------------------------------------------------ the cohorts
@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, Path]:
    """``before``: a synthetic cohort. ``after``: the same dataset with one patient removed, one patient's
    B12 result removed, and one patient's B12 unit made unknown (that patient is left out)."""
    directory = tmp_path_factory.mktemp("cohorts")
    before = directory / "before" / "cohort.nt"
    before.parent.mkdir()
    generate_file(before, patients=40, seed=SEED, as_of=FIRST)
    triples = list(ox.parse(path=str(before), format=ox.RdfFormat.N_TRIPLES))
    patients = sorted({t.subject.value for t in triples if t.predicate.value == RDF_TYPE and t.object.value == B12 + "Patient"})
    with_b12 = [p for p in patients if any(t.subject.value == p + "-b12-1" for t in triples)]
    removed, changed, broken = patients[3], with_b12[4], with_b12[6]
    assert len({removed, changed, broken}) == 3

    def keep(t: ox.Triple) -> bool:
        s = t.subject.value
        gone = s == removed or s.startswith(removed + "-") or s == changed + "-b12-1"
        return not gone and t.object != ox.NamedNode(changed + "-b12-1")

    def edit(t: ox.Triple) -> ox.Triple:
        if t.subject.value == broken + "-b12-1" and t.predicate.value == B12 + "unit":
            return ox.Triple(t.subject, t.predicate, ox.Literal("furlongs"))
        return t

    after = directory / "after" / "cohort.nt"  # same file name: the same dataset graph, replaced
    after.parent.mkdir()
    after.write_bytes(ox.serialize([edit(t) for t in triples if keep(t)], format=ox.RdfFormat.N_TRIPLES))
    return {"before": before, "after": after, "removed": removed, "changed": changed, "broken": broken,
            "patients": patients}


def _graph(store, graph: str = GRAPH_DERIVED) -> set[tuple]:
    rows = store.construct("CONSTRUCT { ?s ?p ?o } WHERE { GRAPH ?g { ?s ?p ?o } }", {"g": ox.NamedNode(graph)})
    return {(t.subject, t.predicate, t.object) for t in rows}


@pytest.fixture(scope="module")
def reference(cohorts, tmp_path_factory) -> dict[str, set]:
    """The embedded store's derived graphs: ``before`` at FIRST and at SECOND, ``after`` at SECOND."""
    out = {}
    for key, name, day in (("before", "before", FIRST), ("before, later", "before", SECOND), ("after", "after", SECOND)):
        store = EmbeddedStore(tmp_path_factory.mktemp("reference") / "store")
        cohort.load(store, [cohorts[name]])
        cohort.derive(store, as_of=day, shacl=False, workers=1)
        out[key] = _graph(store)
        store.close()
    return out


@pytest.fixture(scope="module", params=["oxigraph", "virtuoso"])
def server(request, tmp_path_factory) -> Iterator[RemoteStore]:
    with open_backend(request.param, tmp_path_factory.mktemp(request.param)) as store:
        yield store


@pytest.fixture
def remote(server) -> RemoteStore:
    """The server with no b12kg graph in it."""
    for graph in server.graphs():
        if graph.startswith("urn:b12kg:"):
            server.update(f"DROP SILENT GRAPH <{graph}>")
    return server


def _derive(store, day: date, replace: str = "batches") -> cohort.DeriveResult:
    return cohort.derive(store, as_of=day, shacl=False, workers=1, batch_size=BATCH, replace=replace)


def _owned(derived: set[tuple], patient: str) -> set[tuple]:
    """The derived triples one patient owns (queries/cohort/delete-derived.ru): its own, those of the
    nodes derived for it, those about the facts its derivation used."""
    p = ox.NamedNode(patient)
    nodes = {s for s, pred, o in derived if pred.value == B12 + "forPatient" and o == p}
    facts = {o for s, pred, o in derived if s in nodes and pred.value == PROV + "used" and o != p}
    return {t for t in derived if t[0] == p or t[0] in nodes or t[0] in facts}


def _updates_sent(monkeypatch) -> list[str]:
    """The text of every update request sent from now on (the requests are sent as usual)."""
    sent: list[str] = []
    update = RemoteStore.update
    monkeypatch.setattr(RemoteStore, "update", lambda self, text: (sent.append(text), update(self, text))[1])
    return sent


def _nt(t: tuple) -> str:
    return f"{t[0]} {t[1]} {t[2]} ."


# -------------------------------------------------------------------------------------- the tests
def test_batches_give_the_embedded_derived_graph(remote, cohorts, reference):
    cohort.load(remote, [cohorts["before"]])
    result = _derive(remote, FIRST)
    derived = _graph(remote)
    assert len(derived) > 1000 and derived == reference["before"]
    assert result.triples == len(derived) and result.problems == []


def test_batches_over_changed_data_leave_nothing_of_the_earlier_run(remote, cohorts, reference):
    """Deriving again after a new load at a later date: the result is exactly the embedded store's for the
    new data, although the derived graph held a full earlier run (and an orphan) when it started."""
    cohort.load(remote, [cohorts["before"]])
    _derive(remote, FIRST, replace="atomic")
    assert _graph(remote) == reference["before"]
    orphan = ("urn:example:engine-of-an-older-version", RDF_TYPE, PROV + "SoftwareAgent")
    remote.update(f"INSERT DATA {{ GRAPH <{GRAPH_DERIVED}> {{ <{orphan[0]}> <{orphan[1]}> <{orphan[2]}> }} }}")
    cohort.load(remote, [cohorts["after"]])
    result = cli("derive", "--endpoint", remote.endpoint, "--update-endpoint", remote.update_endpoint,
                  "--replace", "batches", "--as-of", SECOND.isoformat(), "--no-shacl", "--batch-size", str(BATCH),
                  "--workers", "1")
    derived = _graph(remote)
    assert derived == reference["after"]
    assert result.returncode == ExitCode.INVALID_DATA  # the broken patient, left out and named
    assert [cohorts["broken"] in line for line in result.stderr.splitlines() if "unit" in line] == [True]
    for gone in (cohorts["removed"], cohorts["broken"]):
        assert _owned(reference["before"], gone) and not _owned(derived, gone)
    assert not any(ox.NamedNode(cohorts["changed"] + "-b12-1") in (s, o) for s, _, o in derived)


def test_a_stopped_batch_run_leaves_each_patient_whole(remote, cohorts, reference, monkeypatch):
    """Deriving again at a later date, the server refuses the third batch's request: the first two
    batches' patients have exactly their new results, every other patient exactly its earlier ones."""
    cohort.load(remote, [cohorts["before"]])
    _derive(remote, FIRST, replace="atomic")
    calls = []
    replace = RemoteStore._replace_patients

    def refuse_third(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise StoreError(f"{self.update_endpoint}: update failed: refused for the test")
        return replace(self, *args)

    monkeypatch.setattr(RemoteStore, "_replace_patients", refuse_third)
    with pytest.raises(StoreError, match="refused for the test"):
        _derive(remote, SECOND)
    replaced = sorted(r["patient"].value for r in remote.select(KnowledgeBase().query("cohort/patients")))[: 2 * BATCH]
    _each_patient_whole(_graph(remote), cohorts, reference, replaced)
    assert _owned(reference["before, later"], replaced[0]) != _owned(reference["before"], replaced[0])


def _each_patient_whole(derived: set[tuple], cohorts, reference, replaced: list[str]) -> None:
    """After a run at SECOND stopped part-way: the ``replaced`` patients have exactly their new results,
    every other patient exactly its earlier ones, and nothing else is there."""
    for patient in cohorts["patients"]:
        expected = reference["before, later"] if patient in replaced else reference["before"]
        assert _owned(derived, patient) == _owned(expected, patient), patient
    assert derived <= reference["before"] | reference["before, later"]


def test_a_batch_split_into_requests_keeps_each_patient_whole(remote, cohorts, reference, monkeypatch):
    """One batch of all 40 patients, its results over the request budget, so sent as requests of a few
    whole patients each; the server refuses the third: the patients of the first two requests have
    exactly their new results, every other patient exactly its earlier ones."""
    cohort.load(remote, [cohorts["before"]])
    _derive(remote, FIRST, replace="atomic")
    groups = []
    replace = RemoteStore._replace_patients

    def refuse_third(self, own, patients, triples):
        groups.append([p.value for p in patients])
        if len(groups) == 3:
            raise StoreError(f"{self.update_endpoint}: update failed: refused for the test")
        return replace(self, own, patients, triples)

    monkeypatch.setattr(RemoteStore, "_replace_patients", refuse_third)
    monkeypatch.setattr(remote, "request_bytes", 80_000)  # a patient's results are 10-25 kB, twice that with the earlier ones
    with pytest.raises(StoreError, match="refused for the test"):
        cohort.derive(remote, as_of=SECOND, shacl=False, workers=1, batch_size=len(cohorts["patients"]),
                      replace="batches")
    replaced = groups[0] + groups[1]
    assert 2 <= len(replaced) < len(cohorts["patients"]) // 2
    _each_patient_whole(_graph(remote), cohorts, reference, replaced)


def test_no_request_binds_more_patients_than_the_store_takes(remote, cohorts, reference, monkeypatch):
    """A batch larger than the rows a remote store takes in one VALUES block (Virtuoso 7 refuses 5,000):
    its patients are read, deleted and replaced in requests that bind at most that many, and the
    result is the same."""
    import re

    rows = []
    block = re.compile(r"VALUES \(\?patient\) \{([^}]*)\}")

    def watch(method):
        def call(self, text, *args):
            rows.extend(m.group(1).count("(") for m in block.finditer(text))
            return method(self, text, *args)
        return call

    monkeypatch.setattr(RemoteStore, "_query", watch(RemoteStore._query))
    monkeypatch.setattr(RemoteStore, "update", watch(RemoteStore.update))
    monkeypatch.setattr(remote, "values_rows", 3)
    cohort.load(remote, [cohorts["before"]])
    whole = len(cohorts["patients"])
    cohort.derive(remote, as_of=FIRST, shacl=False, workers=1, batch_size=whole, replace="atomic")
    assert _graph(remote) == reference["before"]
    cohort.derive(remote, as_of=FIRST, shacl=False, workers=1, batch_size=whole, replace="batches")
    assert _graph(remote) == reference["before"]
    assert rows and max(rows) == 3


def _part(source: Path, patients: list[str], target: Path) -> Path:
    """The triples of ``patients`` (and of their facts) from ``source``, written to ``target``."""
    def mine(t: ox.Triple) -> bool:
        return any(t.subject.value == p or t.subject.value.startswith(p + "-") for p in patients)

    target.parent.mkdir(parents=True, exist_ok=True)
    triples = ox.parse(path=str(source), format=ox.RdfFormat.N_TRIPLES)
    target.write_bytes(ox.serialize([t for t in triples if mine(t)], format=ox.RdfFormat.N_TRIPLES))
    return target


def test_a_remote_load_deletes_the_derived_results_of_its_patients(remote, cohorts, reference, tmp_path):
    """Two datasets, derived; dataset ``one`` is loaded again with changed data (through the command
    line): the derived results of its patients, before and after, are gone, dataset ``two``'s stay."""
    first, second = cohorts["patients"][:20], cohorts["patients"][20:]
    one = _part(cohorts["before"], first, tmp_path / "before" / "one.nt")
    two = _part(cohorts["before"], second, tmp_path / "before" / "two.nt")
    cohort.load(remote, [one, two])
    _derive(remote, FIRST, replace="atomic")
    assert _graph(remote) == reference["before"]
    new_one = _part(cohorts["after"], first, tmp_path / "after" / "one.nt")
    result = cli("load", str(new_one), "--endpoint", remote.endpoint, "--update-endpoint", remote.update_endpoint)
    assert result.returncode == 0, result.stderr
    assert "note: the derived results of the loaded datasets' patients were deleted" in result.stderr
    derived = _graph(remote)
    for patient in first:
        assert _owned(reference["before"], patient) and not _owned(derived, patient), patient
    for patient in second:
        assert _owned(derived, patient) == _owned(reference["before"], patient), patient
    assert not any(o.value in first for _, p, o in derived if p.value == B12 + "forPatient")
    facts = {p + "-" for p in first}  # nothing derived about their facts (normalised values) is left either
    assert not any(s.value.startswith(tuple(facts)) for s, _, _ in derived)


@pytest.fixture(scope="module")
def larger(tmp_path_factory) -> dict:
    """300 patients (about 10,000 input triples, 40,000 derived) and the embedded store's derived graphs
    at FIRST and SECOND."""
    path = tmp_path_factory.mktemp("larger") / "cohort.nt"
    generate_file(path, patients=300, seed=SEED, as_of=FIRST)
    embedded = EmbeddedStore(path.parent / "reference")
    cohort.load(embedded, [path])
    out = {"path": path}
    for day in (SECOND, FIRST):
        cohort.derive(embedded, as_of=day, shacl=False, workers=1)
        out[day] = _graph(embedded)
    embedded.close()
    return out


def test_a_cohort_larger_than_one_request_gives_the_embedded_derived_graph(remote, larger):
    """300 patients: more than one request of the load, several of the derive. Virtuoso 7 refuses an
    INSERT DATA of about 5,000 triples or more ("SPARQL compiler … memory exhausted"); the tests
    above are too small to meet that."""
    cohort.load(remote, [larger["path"]])
    assert cohort.derive(remote, as_of=FIRST, shacl=False, workers=1).problems == []
    assert _graph(remote) == larger[FIRST]


def test_batches_over_a_larger_cohort_give_the_embedded_derived_graph(remote, larger, monkeypatch):
    """The 300 patients derived, then replaced by --replace batches twice: in batches of 100, then in
    one batch of 300 split into requests of whole patients under a small budget (Virtuoso refuses
    requests over 10 MB; a batch of 1,000 patients' results is about 20 MB). On Virtuoso this once
    took minutes per request, the delete by pattern being planned as a scan of the whole derived
    graph; the requests now name the triples they delete."""
    _batches_over(remote, larger, monkeypatch)


def _batches_over(remote: RemoteStore, larger: dict, monkeypatch) -> None:
    cohort.load(remote, [larger["path"]])
    cohort.derive(remote, as_of=FIRST, shacl=False, workers=1)
    cohort.derive(remote, as_of=FIRST, shacl=False, workers=1, batch_size=100, replace="batches")
    assert _graph(remote) == larger[FIRST]
    sent = _updates_sent(monkeypatch)
    monkeypatch.setattr(remote, "request_bytes", 200_000)  # a batch of 300 patients: about 6 MB of results
    cohort.derive(remote, as_of=SECOND, shacl=False, workers=1, replace="batches")
    assert _graph(remote) == larger[SECOND]
    batches = [len(text) for text in sent if f"INSERT DATA {{ GRAPH <{GRAPH_DERIVED}>" in text]
    assert len(batches) > 20 and max(batches) <= 200_100  # the budget (earlier and new results together)


def test_what_a_batch_reads_as_its_own_is_what_the_delete_update_deletes(remote, cohorts):
    """The triples a batch request names in DELETE DATA (read with cohort/owned-subjects, owned-facts and
    cohort/subject-triples) are exactly those cohort/delete-derived.ru deletes by pattern, and exactly
    the patients' triples by the tests' own reading of ownership: the two definitions cannot drift."""
    cohort.load(remote, [cohorts["before"]])
    _derive(remote, FIRST, replace="atomic")
    own = cohort.ownership(KnowledgeBase())
    patients = [ox.NamedNode(p) for p in cohorts["patients"][5:17]]
    before = _graph(remote)
    read = remote._owned(own, patients)
    assert read is not None and set(read) == {p.value for p in patients}
    named = {line for lines in read.values() for line in lines}
    assert sum(map(len, read.values())) == len(named)  # each triple read once, for one patient
    for p in patients:
        assert read[p.value] and {_nt(t) for t in _owned(before, p.value)} == set(read[p.value]), p.value
    remote.update(bind(own.delete, {"patient": patients}))
    assert {_nt(t) for t in before - _graph(remote)} == named


def test_batch_requests_name_the_earlier_triples_and_fall_back_to_the_pattern_delete(remote, cohorts, reference,
                                                                                    monkeypatch):
    """Over a populated derived graph each batch request deletes the earlier results by name (DELETE
    DATA, cheap on Virtuoso). A blank node among a patient's earlier triples (DELETE DATA cannot name
    one) and a request that would pass the budget go through the delete-derived update instead; the
    result is the embedded store's derived graph every time."""
    cohort.load(remote, [cohorts["before"]])
    _derive(remote, FIRST, replace="atomic")
    sent = _updates_sent(monkeypatch)
    into_derived = f"INSERT DATA {{ GRAPH <{GRAPH_DERIVED}>"
    _derive(remote, SECOND)
    batches = [text for text in sent if into_derived in text]
    assert len(batches) == -(-len(cohorts["patients"]) // BATCH)
    assert all("DELETE DATA {" in text and "DELETE {" not in text for text in batches)
    assert _graph(remote) == reference["before, later"]

    node = remote.select(f"SELECT ?n WHERE {{ GRAPH <{GRAPH_DERIVED}> {{ ?n <{B12}forPatient> ?p }} }} LIMIT 1",
                         {"p": ox.NamedNode(cohorts["patients"][0])})[0]["n"]
    remote.update(f"INSERT {{ GRAPH <{GRAPH_DERIVED}> {{ {node} <urn:example:note> [ <urn:example:text> [ <urn:example:text> \"x\" ] ] }} }} WHERE {{}}")
    sent.clear()
    _derive(remote, FIRST)
    first = next(text for text in sent if into_derived in text)
    assert "DELETE {" in first and "DELETE DATA {" not in first  # the blank node's batch: by pattern
    assert sum("DELETE DATA {" in text for text in sent if into_derived in text) == len(batches) - 1
    derived = _graph(remote)
    assert derived == reference["before"]  # the hand-made triple and its blank node gone with the rest

    monkeypatch.setattr(remote, "request_bytes", 30_000)  # new results fit half of it, old + new do not
    sent.clear()
    _derive(remote, SECOND)
    requests = [text for text in sent if into_derived in text]
    assert len(requests) > len(batches) and any("DELETE {" in text for text in requests)
    assert _graph(remote) == reference["before, later"]


def test_a_batch_request_sends_only_what_changed(remote, cohorts, reference, monkeypatch):
    """Deriving again at the same date over the same data: the derived graph is already right, so the
    batch requests delete nothing and insert almost nothing (the shared engine agent); the graph is
    still the embedded store's."""
    cohort.load(remote, [cohorts["before"]])
    sent = _updates_sent(monkeypatch)
    _derive(remote, FIRST)
    into_derived = f"GRAPH <{GRAPH_DERIVED}> {{"
    first = sum(len(text) for text in sent if into_derived in text)
    sent.clear()
    _derive(remote, FIRST)
    again = [text for text in sent if into_derived in text]
    assert not any("DELETE DATA {" in text or "DELETE {" in text for text in again)
    assert sum(map(len, again)) < first / 100
    assert _graph(remote) == reference["before"]


def test_a_remote_load_with_a_bad_file_changes_nothing(remote, cohorts, reference, tmp_path):
    """A load of two files whose second has a syntax error: one line naming the file, line and column,
    exit 3, and the store as it was: the first file's dataset not replaced, no derived result deleted."""
    first = cohorts["patients"][:20]
    one = _part(cohorts["before"], first, tmp_path / "before" / "one.nt")
    cohort.load(remote, [one])
    _derive(remote, FIRST, replace="atomic")
    dataset, derived = _graph(remote, "urn:b12kg:dataset:one"), _graph(remote)
    assert dataset and derived
    new_one = _part(cohorts["after"], first, tmp_path / "after" / "one.nt")
    bad = tmp_path / "after" / "two.ttl"
    bad.write_text("@prefix b12: <https://w3id.org/b12kg/ontology#> .\n<urn:x:p> a b12:Patient\n<urn:x:q> a .\n")
    result = cli("load", str(new_one), str(bad), "--endpoint", remote.endpoint,
                 "--update-endpoint", remote.update_endpoint)
    assert result.returncode == ExitCode.INPUT, result.stderr
    assert result.stderr.startswith(f"error: {bad}:3:") and len(result.stderr.splitlines()) == 1, result.stderr
    assert _graph(remote, "urn:b12kg:dataset:one") == dataset
    assert _graph(remote) == derived
    assert "urn:b12kg:dataset:two" not in remote.graphs()


def _scratch(store) -> list[str]:
    return [g for g in store.graphs() if g.startswith(SCRATCH_PREFIX) or g == SCRATCH_REGISTRY]


def test_a_load_stopped_while_filling_leaves_its_scratch_graph_to_the_next_command(remote, cohorts, reference,
                                                                                     monkeypatch):
    """A remote load stopped after its first request into the scratch graph leaves the dataset graph as
    it was and the scratch graph listed in the registry graph; the next command drops both, finding the
    scratch graph there and not by listing every graph (a scan of every quad on Virtuoso)."""
    cohort.load(remote, [cohorts["before"]])
    _derive(remote, FIRST)
    assert _scratch(remote) == []  # a finished load and derive leave no scratch graph and an empty registry
    dataset = "urn:b12kg:dataset:cohort"
    data = _graph(remote, dataset)
    fill = RemoteStore._fill

    def stopped(self, graph, triples):
        fill(self, graph, list(triples)[:10])
        raise StoreError("the server went away")

    monkeypatch.setattr(RemoteStore, "_fill", stopped)
    with pytest.raises(StoreError, match="went away"):
        cohort.load(remote, [cohorts["after"]])
    monkeypatch.undo()
    assert _scratch(remote) == [SCRATCH_REGISTRY, SCRATCH_PREFIX + dataset]
    assert _graph(remote, dataset) == data
    monkeypatch.setattr(RemoteStore, "graphs", lambda self: pytest.fail("drop_scratch listed every graph"))
    _derive(remote, FIRST)
    monkeypatch.undo()
    assert _scratch(remote) == []
    assert _graph(remote) == reference["before"]


def test_batches_are_refused_on_the_embedded_store(tmp_path, cohorts):
    store = EmbeddedStore(tmp_path / "store")
    cohort.load(store, [cohorts["before"]])
    with pytest.raises(InputError, match="remote stores"):
        cohort.derive(store, as_of=FIRST, replace="batches")
    with pytest.raises(InputError, match="atomic or batches"):
        cohort.derive(store, as_of=FIRST, replace="sometimes")
    store.close()


@pytest.mark.parametrize("args, message", [
    (["--store", "STORE", "--replace", "batches"], "--replace batches is for remote stores"),
    (["--store", "STORE", "--replace", "sometimes"], "--replace: 'sometimes' is not one of atomic, batches"),
])
def test_cli_refuses_a_replace_it_cannot_do(tmp_path, args, message):
    result = cli("derive", *[str(tmp_path / "store") if a == "STORE" else a for a in args])
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.startswith("error: ") and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_a_remote_load_refuses_data_beyond_facts_and_sends_nothing(remote, cohorts, tmp_path):
    """A dataset file that types a patient with a state the engine decides is refused before any request
    changes the server (it has no transaction across requests): exit 4, one line, every graph as it was."""
    first = cohorts["patients"][:5]
    one = _part(cohorts["before"], first, tmp_path / "one.nt")
    cohort.load(remote, [one])
    before = {graph: _graph(remote, graph) for graph in remote.graphs() if graph.startswith("urn:b12kg:")}
    stated = tmp_path / "stated" / "one.nt"
    stated.parent.mkdir()
    stated.write_bytes(one.read_bytes() + (f"<{first[0]}> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> "
                                           f"<{B12}PatientWithKnownRenalStatus> .\n").encode())
    result = cli("load", str(stated), "--endpoint", remote.endpoint, "--update-endpoint", remote.update_endpoint)
    assert result.returncode == 4, result.stderr
    assert f"one.nt: patient <{first[0]}>: type PatientWithKnownRenalStatus: patient data may use only" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert {graph: _graph(remote, graph) for graph in remote.graphs() if graph.startswith("urn:b12kg:")} == before

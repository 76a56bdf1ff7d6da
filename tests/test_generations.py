"""The embedded store's generations: HEAD switches atomically, a load clears the derived graph, one
writer at a time, old and half-written generations are deleted unless a reader holds them, the old
single-folder layout is refused with a one-line error, readers create nothing, and compacting is a
generation like any other write."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import urllib.parse
import urllib.request
from pathlib import Path

import pyoxigraph as ox
import pytest

from b12kg import cohort
from b12kg.errors import ExitCode, InputError
from b12kg.serve import Endpoint
from b12kg.store import GRAPH_DERIVED, GRAPH_ONTOLOGY, STATE_FILE, EmbeddedStore, StoreBusy, StoreError
from conftest import EXAMPLES, SEED_AS_OF, cli, run_killed_before_head

SEED = EXAMPLES / "seed-case.ttl"
CKD = EXAMPLES / "ckd-diagnosis.ttl"
RECS = "SELECT (COUNT(?r) AS ?n) WHERE { ?r a <https://w3id.org/b12kg/ontology#Recommendation> }"
ALL_DERIVED = "CONSTRUCT { ?s ?p ?o } WHERE { GRAPH <urn:b12kg:graph:derived> { ?s ?p ?o } }"


def head(db: Path) -> dict:
    return json.loads((db / "HEAD").read_text())


def on_disk(db: Path) -> list[str]:
    return sorted(p.name for p in db.iterdir())


def tree(db: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``db`` with its size and modification time."""
    return {str(p.relative_to(db)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(db.rglob("*"))}


def recommendations(db: Path) -> int:
    with EmbeddedStore(db, read_only=True) as store:
        return int(store.select(RECS)[0]["n"].value)


def derived(db: Path) -> set:
    with EmbeddedStore(db, read_only=True) as store:
        return set(store.construct(ALL_DERIVED))


@pytest.fixture
def db(tmp_path) -> Path:
    """A store holding two example patients and their derived graph."""
    path = tmp_path / "db"
    with EmbeddedStore(path) as store:
        cohort.load(store, [SEED, CKD])
        assert cohort.derive(store, as_of=SEED_AS_OF).evaluated == 2
    return path


# ----------------------------------------------------------------------------------- the layout
def test_base_holds_no_derived_graph_and_current_is_base_plus_derived(db):
    h = head(db)
    assert h["format"] == 1 and h["base"] != h["current"]
    assert on_disk(db) == sorted(["HEAD", "lock", h["base"], h["current"]])  # nothing else left

    def graphs(gen: str) -> set:
        store = ox.Store.read_only(str(db / gen))
        return {g.value for g in store.named_graphs()}

    datasets = {"urn:b12kg:dataset:seed-case", "urn:b12kg:dataset:ckd-diagnosis"}
    assert graphs(h["base"]) == datasets | {GRAPH_ONTOLOGY}
    assert graphs(h["current"]) == datasets | {GRAPH_ONTOLOGY, GRAPH_DERIVED}


def test_a_load_that_changes_most_patients_clears_the_derived_graph_and_the_cli_says_so(tmp_path):
    db = str(tmp_path / "db")
    first = cli("load", str(SEED), "--store", db)
    assert first.returncode == 0 and "derived graph" not in first.stderr, first.stderr  # none to clear yet
    assert cli("derive", "--store", db, "--as-of", "2025-10-31").returncode == 0
    assert recommendations(Path(db)) > 0
    kept = cli("load", str(CKD), "--store", db)  # a new dataset: the seed case's results stay
    assert kept.returncode == 0, kept.stderr
    assert (f"note: the derived results of 0 patient(s) whose data this load changed were deleted from "
            f"{GRAPH_DERIVED}, the others stay") in kept.stderr
    assert recommendations(Path(db)) > 0
    again = cli("load", str(CKD), "--store", db, "--dataset", "seed-case")  # the seed case's patient is gone
    assert again.returncode == 0, again.stderr
    assert (f"note: the derived graph {GRAPH_DERIVED} was cleared: its recommendations came from the data before "
            f"this load; run b12kg derive --store {db} to derive them again") in again.stderr
    assert recommendations(Path(db)) == 0
    with EmbeddedStore(db, read_only=True) as store:
        assert GRAPH_DERIVED not in store.graphs() and GRAPH_ONTOLOGY in store.graphs()  # the ontology stays
        assert set(store.datasets()) == {"urn:b12kg:dataset:seed-case", "urn:b12kg:dataset:ckd-diagnosis"}
    derive = cli("derive", "--store", db, "--as-of", "2025-10-31")
    assert derive.returncode == 0 and "evaluated every patient (no derived results with a derive record" in derive.stderr
    assert recommendations(Path(db)) > 0


def test_rerunning_derive_never_duplicates(db):
    before = derived(db)
    for size in (1, 50):
        with EmbeddedStore(db) as store:
            cohort.derive(store, as_of=SEED_AS_OF, batch_size=size)
        assert derived(db) == before
    assert len(on_disk(db)) == 4  # HEAD, lock, base, current


def test_replace_derived_writes_the_chunks_and_changes_nothing_when_they_fail(db, kb):
    before = derived(db)
    with EmbeddedStore(db) as store:
        lines = store.construct_nt(ALL_DERIVED).splitlines(keepends=True)
        chunks = [b"".join(lines[i : i + 100]) for i in range(0, len(lines), 100)]
        ontology = [q.triple for q in kb.ontology_quads(ox.DefaultGraph())]
        for _ in range(2):  # twice: never duplicated
            assert store.replace_derived(ontology, iter(chunks)) == len(before)
            assert set(store.construct(ALL_DERIVED)) == before
        assert derived(db) == before
        h, files = head(db), on_disk(db)

        def failing():
            yield chunks[0]
            raise RuntimeError("the derivation stopped")

        with pytest.raises(RuntimeError):
            store.replace_derived(ontology, failing())
        assert head(db) == h and on_disk(db) == files  # nothing changed, nothing left
        assert store.replace_derived(ontology, iter([])) == 0  # no patients: an empty derived graph
        assert store.select(RECS)[0]["n"].value == "0"
    with EmbeddedStore(db, read_only=True) as store:
        assert GRAPH_DERIVED not in store.graphs() and len(store.datasets()) == 2


# ----------------------------------------------------------------------------- atomic HEAD switch
def test_a_syntax_error_in_a_load_changes_nothing(db, tmp_path):
    broken = tmp_path / "broken.ttl"
    broken.write_text("@prefix b12: <https://w3id.org/b12kg/ontology#> .\n<a:p> a b12:Patient ;;; .\n<a:q")
    good = tmp_path / "another.ttl"
    good.write_text(SEED.read_text())
    before, files, recs = (db / "HEAD").read_bytes(), on_disk(db), recommendations(db)
    with EmbeddedStore(db) as store:
        with pytest.raises(InputError, match=r"broken.ttl:3:\d+: Turtle syntax error"):
            cohort.load(store, [good, broken])  # the good file first: it is not kept either
        assert store.select(RECS)[0]["n"].value == str(recs)
    assert (db / "HEAD").read_bytes() == before and on_disk(db) == files
    done = cli("load", str(good), str(broken), "--store", str(db))
    assert done.returncode == ExitCode.INPUT and done.stderr.startswith(f"error: {broken}:3:"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (db / "HEAD").read_bytes() == before and on_disk(db) == files and recommendations(db) == recs


@pytest.mark.parametrize("partial_head", [None, b'{"format": 1, "base": "gen-0'])
def test_a_kill_before_head_is_switched_leaves_the_old_head(db, partial_head):
    """A writer killed after writing its generation, before (or while) writing HEAD: readers see the
    old state; the next writer deletes the generation and the temporary HEAD file."""
    before, recs = (db / "HEAD").read_bytes(), recommendations(db)
    killed = run_killed_before_head(db, "load", str(SEED), partial_head=partial_head)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (db / "HEAD").read_bytes() == before
    left = set(on_disk(db)) - {"HEAD", "lock", head(db)["base"], head(db)["current"]}
    # the complete, never-named generations: a new base, and a new current keeping the unchanged results
    assert len([e for e in left if e.startswith("gen-")]) == 2
    assert ("HEAD.tmp" in left) == (partial_head is not None)
    assert recommendations(db) == recs  # query
    with Endpoint(db, port=0) as endpoint:  # serve
        assert endpoint.generation == db / head(db)["current"]
    with EmbeddedStore(db) as store:  # the next writer cleans up
        assert sorted(store.drop_scratch()) == [] and store.generations() == sorted(
            {head(db)["base"], head(db)["current"]})
    assert on_disk(db) == sorted(["HEAD", "lock", head(db)["base"], head(db)["current"]])


def test_a_damaged_head_is_a_one_line_error(db):
    (db / "HEAD").write_text('{"format": 1, "base": "../../etc"}')
    for command in (["query", "due-in-window", "--param", "start=2025-11-01", "--param", "end=2025-11-30"],
                    ["load", str(SEED)], ["export", "--graph", "derived", "-f", "nt"]):
        done = cli(*command, "--store", str(db))
        assert done.returncode == ExitCode.INPUT, done.stderr
        assert done.stderr.startswith(f"error: {db / 'HEAD'}: damaged") and len(done.stderr.splitlines()) == 1


# ------------------------------------------------------------------------------------------ locks
def test_a_second_writer_is_refused_while_the_first_writes(db):
    with EmbeddedStore(db) as writer:
        with pytest.raises(StoreBusy, match="another b12kg load/derive is writing to this store"):
            EmbeddedStore(db)
        done = cli("derive", "--store", str(db), "--as-of", "2025-10-31")
        assert done.returncode == ExitCode.BUSY == 7
        assert done.stderr == (f"error: {db}: another b12kg load/derive is writing to this store; "
                               "run the command again when it has finished\n")
        reader = cli("query", "due-in-window", "--store", str(db), "--param", "start=2025-11-01",
                     "--param", "end=2025-11-30", "-f", "csv")
        assert reader.returncode == 0, reader.stderr  # readers are not blocked by a writer
        cohort.load(writer, [SEED])
    assert cli("derive", "--store", str(db), "--as-of", "2025-10-31").returncode == 0  # the lock is released


def test_old_generations_are_deleted_unless_a_reader_holds_them(db):
    first = head(db)["current"]
    reader = EmbeddedStore(db, read_only=True)
    recs = int(reader.select(RECS)[0]["n"].value)
    assert recs > 0
    with EmbeddedStore(db) as writer:
        cohort.load(writer, [CKD], dataset="seed-case")  # HEAD moves on; the reader's generation stays
        assert first in writer.generations() and head(db)["current"] != first
        assert int(reader.select(RECS)[0]["n"].value) == recs  # the reader keeps its snapshot
        # the writer reads the new current: the seed case's patient and results are gone, the other's stay
        assert 0 < int(writer.select(RECS)[0]["n"].value) < recs
    reader.close()
    with EmbeddedStore(db) as writer:  # the next writer deletes it
        assert first not in writer.generations()
        assert writer.generations() == sorted({head(db)["base"], head(db)["current"]})


def test_the_served_generation_is_kept_while_the_server_runs(db):
    """``serve`` keeps answering from the generation it started on, even after a load and after the
    b12kg process has let go of its lock: the Oxigraph server inherited it."""
    served = head(db)["current"]
    endpoint = Endpoint(db, port=0)
    with endpoint:
        assert endpoint.generation == db / served
        os.close(endpoint._lease)  # only the server process holds the lock now
        endpoint._lease = None
        with EmbeddedStore(db) as writer:
            cohort.load(writer, [SEED])
            assert served in writer.generations()
        body = urllib.parse.urlencode({"query": RECS}).encode()
        with urllib.request.urlopen(endpoint.url, data=body, timeout=60) as r:
            assert int(json.loads(r.read())["results"]["bindings"][0]["n"]["value"]) > 0  # the old data
    with EmbeddedStore(db) as writer:  # server stopped: its generation goes
        assert served not in writer.generations()
    with Endpoint(db, port=0) as endpoint:  # a restart serves the new current generation
        assert endpoint.generation == db / head(db)["current"]


def test_a_half_written_generation_is_deleted_by_the_next_writer_only(db):
    orphan = db / "gen-000900"
    ox.Store.read_only(str(db / head(db)["base"])).backup(str(orphan))
    (db / "HEAD.tmp").write_text("{")
    with EmbeddedStore(db, read_only=True):
        assert orphan.is_dir()  # readers delete nothing
    fd = os.open(orphan, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # someone holds it: kept
    with EmbeddedStore(db) as writer:
        assert orphan.is_dir() and "HEAD.tmp" not in on_disk(db)
        os.close(fd)
        assert writer.drop_scratch() == ["gen-000900"] and not orphan.exists()


# ------------------------------------------------------------------------------ opening the folder
def test_readers_create_nothing(db, tmp_path):
    before = tree(db)
    with EmbeddedStore(db, read_only=True) as store:
        assert store.select(RECS)
        assert store.drop_scratch() == []
    for command in (["query", "due-in-window", "--param", "start=2025-11-01", "--param", "end=2025-11-30"],
                    ["export", "--graph", "derived", "-f", "nt"]):
        assert cli(*command, "--store", str(db)).returncode == 0
    with Endpoint(db, port=0):
        pass
    assert tree(db) == before
    missing = tmp_path / "nothing"
    done = cli("query", "due-in-window", "--store", str(missing), "--param", "start=2025-11-01",
               "--param", "end=2025-11-30")
    assert done.returncode == ExitCode.INPUT and "no store here (run b12kg load --store" in done.stderr
    assert not missing.exists()


def test_a_store_in_the_old_layout_is_refused_with_how_to_rebuild_it(tmp_path):
    old = tmp_path / "old"
    store = ox.Store(str(old))  # b12kg before generations: the RocksDB files directly in the folder
    store.add(ox.Quad(ox.NamedNode("urn:a"), ox.NamedNode("urn:b"), ox.NamedNode("urn:c"), ox.NamedNode("urn:g")))
    store.flush()
    del store
    before = tree(old)
    for read_only in (True, False):
        with pytest.raises(StoreError, match=r"layout of an earlier b12kg .*rebuild it: move it away, then run "
                                             r"b12kg load \(and b12kg derive\)"):
            EmbeddedStore(old, read_only=read_only)
    for command in (["load", str(SEED)], ["derive"], ["export", "-f", "nq"]):
        done = cli(*command, "--store", str(old))
        assert done.returncode == ExitCode.INPUT and "layout of an earlier b12kg" in done.stderr, done.stderr
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    served = cli("serve", "--store", str(old), "--port", "0")
    assert served.returncode == ExitCode.INPUT and "layout of an earlier b12kg" in served.stderr
    assert tree(old) == before  # untouched


def test_a_folder_that_is_not_a_store_is_refused(tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match=r"not a b12kg store and not empty \(holds 'notes.txt'\)"):
        EmbeddedStore(folder)
    assert on_disk(folder) == ["notes.txt"]
    with pytest.raises(StoreError, match="no store here"):
        EmbeddedStore(folder, read_only=True)


def test_sparql_updates_are_refused_on_the_embedded_store(db):
    with EmbeddedStore(db) as store:
        with pytest.raises(StoreError, match="takes no SPARQL updates"):
            store.update("INSERT DATA { <urn:a> <urn:b> <urn:c> }")
    with EmbeddedStore(db, read_only=True) as store:
        with pytest.raises(StoreError, match="read-only"):
            store.replace_graph("urn:b12kg:dataset:x", [])


def test_replace_graph_keeps_the_invariants(db):
    """The generic replace_graph: the derived graph from the base, the ontology in both, a dataset
    in a new base without the derived graph."""
    triple = ox.Triple(ox.NamedNode("urn:s"), ox.NamedNode("urn:p"), ox.Literal("o"))
    with EmbeddedStore(db) as store:
        assert store.replace_graph(GRAPH_ONTOLOGY, [triple]) == 1
        h = head(db)
        assert h["base"] != h["current"] and len(store.construct(ALL_DERIVED)) > 0
        for gen in (h["base"], h["current"]):
            assert list(ox.Store.read_only(str(db / gen)).quads_for_pattern(None, None, None, ox.NamedNode(GRAPH_ONTOLOGY))) == [
                ox.Quad(*triple, ox.NamedNode(GRAPH_ONTOLOGY))]
        assert store.replace_graph(GRAPH_DERIVED, [triple, triple]) == 2
        assert store.construct(ALL_DERIVED) == [triple] and head(db)["base"] == h["base"]
        store.replace_graph("urn:b12kg:dataset:extra", [triple])
        assert head(db)["base"] == head(db)["current"] and store.construct(ALL_DERIVED) == []
        assert "urn:b12kg:dataset:extra" in store.datasets()


def test_replacing_the_largest_graph_copies_the_rest_instead(tmp_path, monkeypatch):
    """When the replaced graphs hold more than the rest, the new generation gets a copy of the rest
    (removing quads is slow); the result is the same as through a checkpoint."""
    from b12kg import store as store_module
    from b12kg.synth import generate_file

    big, bigger = tmp_path / "big.nt", tmp_path / "bigger.nt"
    generate_file(big, patients=150, seed=1, as_of=SEED_AS_OF)
    generate_file(bigger, patients=160, seed=2, as_of=SEED_AS_OF)
    copies = []
    real_copy = store_module._copy
    monkeypatch.setattr(store_module, "_copy", lambda quads, store: copies.append(1) or real_copy(quads, store))
    db = tmp_path / "db"
    with EmbeddedStore(db) as store:
        cohort.load(store, [big, SEED])
        cohort.derive(store, as_of=SEED_AS_OF, shacl=False)
        before = set(store.store.quads_for_pattern(None, None, None, None))
        copies.clear()
        cohort.load(store, [SEED])  # small: a checkpoint, the seed case removed and loaded again
        assert copies == []
        copies.clear()
        cohort.load(store, [bigger], dataset="big")  # larger than the rest: the rest is copied
        assert copies
        after = set(store.store.quads_for_pattern(None, None, None, None))
    blank = [q for q in before if isinstance(q.subject, ox.BlankNode) and q.graph_name == ox.NamedNode(GRAPH_ONTOLOGY)]
    assert blank  # the ontology's blank nodes keep their identity in the copy
    kept = {q for q in before if q.graph_name.value not in ("urn:b12kg:dataset:big", GRAPH_DERIVED)}
    assert {q for q in after if q.graph_name.value != "urn:b12kg:dataset:big"} == kept
    reference = ox.Store()  # in memory: literals normalised as the store does
    reference.bulk_load(path=str(bigger), format=ox.RdfFormat.N_TRIPLES, to_graph=ox.NamedNode("urn:b12kg:dataset:big"))
    assert {q for q in after if q.graph_name.value == "urn:b12kg:dataset:big"} == set(reference)


def test_derived_chunks_are_bulk_loaded_in_groups():
    from b12kg.store import _grouped

    assert list(_grouped([b"aaaa\n", b"bbbb\n", b"", b"cc\n"], 8)) == [b"aaaa\nbbbb\n", b"cc\n"]
    assert list(_grouped([b"", b""], 8)) == []
    assert list(_grouped([b"aaaaaaaaa\n", b"b\n"], 8)) == [b"aaaaaaaaa\n", b"b\n"]


# ------------------------------------------------------------------------------------ compacting
def every_quad(db: Path) -> set:
    with EmbeddedStore(db, read_only=True) as store:
        return set(store.store.quads_for_pattern(None, None, None, None))


def test_compact_switches_to_a_compacted_copy_with_the_same_quads_and_derive_record(db):
    before, old = every_quad(db), head(db)
    record = (db / old["current"] / STATE_FILE).read_text()
    reader = EmbeddedStore(db, read_only=True)
    done = cli("compact", "--store", str(db))
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"compacted {db}: {old['current']} -> {head(db)['current']} in ")
    assert head(db)["base"] == old["base"] and head(db)["current"] != old["current"]
    assert every_quad(db) == before
    assert int(reader.select(RECS)[0]["n"].value) > 0  # a reader keeps the generation it opened
    reader.close()
    assert (db / head(db)["current"] / STATE_FILE).read_text() == record
    with EmbeddedStore(db) as store:  # the record came along: the next derive keeps every result
        assert old["current"] not in store.generations()
        result = cohort.derive(store, as_of=SEED_AS_OF)
        assert result.full == "" and result.kept == result.patients == 2
        assert every_quad(db) == before


def test_compact_without_a_derived_graph_makes_one_generation_base_and_current(tmp_path):
    db = tmp_path / "db"
    with EmbeddedStore(db) as store:
        cohort.load(store, [SEED])
    before = every_quad(db)
    assert cli("compact", "--store", str(db)).returncode == 0
    assert head(db)["base"] == head(db)["current"] and every_quad(db) == before
    assert cli("derive", "--store", str(db), "--as-of", "2025-10-31").returncode == 0
    assert recommendations(db) > 0


def test_compact_refuses_a_missing_store_a_busy_one_and_changes_nothing_when_it_fails(db, tmp_path, monkeypatch):
    missing = tmp_path / "nothing"
    done = cli("compact", "--store", str(missing))
    assert done.returncode == ExitCode.INPUT and done.stderr == f"error: {missing}: no store here (run b12kg load --store {missing} first)\n"
    assert not missing.exists()
    with EmbeddedStore(db):
        busy = cli("compact", "--store", str(db))
        assert busy.returncode == ExitCode.BUSY and "another b12kg load/derive is writing" in busy.stderr
    before, layout = every_quad(db), on_disk(db)

    def full_disk(self, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("b12kg.store.DeriveState.write", full_disk)
    with EmbeddedStore(db) as store:
        with pytest.raises(StoreError, match="cannot write the store: No space left on device"):
            store.compact()
    assert on_disk(db) == layout and every_quad(db) == before

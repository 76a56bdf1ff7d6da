"""Cohort operations on a store: load datasets, derive every patient, run research queries, export.

``derive`` reads the patients from the store in batches, evaluates each batch with exactly the
pipeline ``recommend`` uses (validate, normalise, classify, derive, schedule) in an in-memory
workspace, and writes one derived graph back, replacing the old one atomically: re-running never
duplicates, and a run that stops half-way leaves the previous derived graph in place (on a remote
store, ``replace="batches"`` replaces it patient by patient instead). Batches keep the cost linear in
the cohort; the same code serves the embedded store and remote endpoints, so
their derived graphs are identical by construction (and the tests check it on real servers).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import BinaryIO, TextIO, TypeVar

import pyoxigraph as ox

from b12kg._version import ENGINE_VERSION
from b12kg.derive import evaluate as evaluate_pipeline
from b12kg.engine import Workspace
from b12kg.errors import B12kgError, ExitCode, InputError, InvalidPatientData, printable
from b12kg.inputs import check_evaluation_date, read_input, utf8
from b12kg.kb import KnowledgeBase
from b12kg.patient import FORMATS, PatientData, load_patient
from b12kg.reason import Reasoner
from b12kg.sparql import Table, bind, table_columns, table_name
from b12kg.sparql_text import query_form
from b12kg.store import (GRAPH_DERIVED, GRAPH_ONTOLOGY, DeriveState, EmbeddedStore, GenerationWriter, Ownership,
                         RemoteStore, Store, chunks, dataset_graph)
from b12kg.validate import data_beyond_facts, validate_shapes, validate_values

Progress = Callable[[int], None]
T = TypeVar("T")
DEFAULT_BATCH = 1_000  # patients per batch in derive: an engineering setting, not a guideline number


class WorkerError(B12kgError):
    """A worker process of ``derive`` died (its result is lost; the store is unchanged)."""

    exit_code = ExitCode.INTERNAL


# ------------------------------------------------------------------------------------------ load
def load(store: Store, files: list[Path], *, dataset: str | None = None,
         progress: Progress | None = None, changed: list[str] | None = None) -> dict[str, int]:
    """Load each file into its dataset graph (named after the file, or ``dataset`` for one file).
    Loading a dataset again replaces it. Returns {dataset graph: triples loaded} (-1: not counted,
    a bulk load).

    On the embedded store all the files go into one new generation, which replaces the previous
    one only when every file loaded: a syntax error changes nothing. Derived results stay only for
    patients whose input the load leaves as it was (by their input digests; see :func:`derive`): the
    patients whose results were deleted are appended to ``changed``. When most of the recorded patients
    changed, or the derived graph has no derive record, no derived graph stays. Run ``derive`` again.

    On a remote store every file is parsed first, so a syntax error in any of them changes nothing;
    then, file by file, the derived results of the patients of its dataset (those there before and
    those in the file) are deleted and the dataset graph is replaced: the rest of the derived graph
    stays. A server that fails part-way leaves the files before the failing one loaded."""
    if dataset is not None and len(files) != 1:
        raise InputError("--dataset names one file's dataset; load several files without it")
    graphs = []
    for path in files:  # check everything before changing anything
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        if path.suffix.lower() not in FORMATS:
            raise InputError(f"{path}: unknown file type {path.suffix!r} (known: {', '.join(sorted(FORMATS))})")
        graphs.append(dataset_graph(dataset or path.stem))
    store.drop_scratch()  # left by a killed run (remote: scratch graphs; embedded: generations)
    loaded = {}
    kb = KnowledgeBase()
    if isinstance(store, EmbeddedStore):
        parsed: dict[Path, list[ox.Triple]] = {}

        def fill(generation: GenerationWriter) -> None:
            first = not loaded
            for graph, path in zip(graphs, files):
                fmt = FORMATS[path.suffix.lower()]
                if fmt in (ox.RdfFormat.N_TRIPLES, ox.RdfFormat.TURTLE):
                    generation.replace_file(graph, path, fmt)
                    loaded[graph] = -1
                else:
                    if path not in parsed:
                        parsed[path] = load_patient(path).triples
                    loaded[graph] = generation.replace(graph, parsed[path])
                _refuse_beyond_facts(kb, path, EmbeddedStore.over(generation.store), graph)
                if progress and first:
                    progress(1)

        replace_datasets(store, graphs, fill, changed=changed)
        return loaded
    for graph, path in zip(graphs, files):  # a remote store has no transaction across requests: read every
        # file first, so a syntax error in any of them changes nothing (each is read again to load it)
        _refuse_beyond_facts(kb, path, load_patient(path).triples, graph)
    own = ownership(kb) if store.has_graph(GRAPH_DERIVED) else None
    for graph, path in zip(graphs, files):
        triples = load_patient(path).triples
        if own:  # first: a reader may see these patients without results, never new data with old results
            assert isinstance(store, RemoteStore)
            store.delete_derived(own, _dataset_patients(kb, store, graph) | _dataset_patients(kb, triples, graph),
                                 chunk=DEFAULT_BATCH)
        loaded[graph] = store.replace_graph(graph, triples)
        if progress:
            progress(1)
    return loaded


def _refuse_beyond_facts(kb: KnowledgeBase, path: Path, data: Store | list[ox.Triple], graph: str) -> None:
    """Refuse the dataset file ``path`` (``graph`` in a store, or its triples) when it states more than
    patients' facts or the CDS service's log (:func:`b12kg.validate.data_beyond_facts`: about a term of the
    knowledge base, outside those vocabularies, schema), or has a patient that is a blank node: derive would
    refuse those patients, and research queries over the store would read such triples beside the
    knowledge base's own and the engine's."""
    if not isinstance(data, Store):
        data = _in_memory(data, graph)
    problems = data_beyond_facts(lambda name, bindings: data.select(kb.query(name), bindings), kb,
                                 ox.NamedNode(graph), path, service_log=True)
    if data.select(kb.query("cohort/blank-patients"), {"dataset": ox.NamedNode(graph)}):
        problems.append(f"{path}: a blank node typed b12:Patient: {BLANK_PATIENT}")
    if problems:
        more = f" (and {len(problems) - 1} more such triple(s))" if len(problems) > 1 else ""
        raise InvalidPatientData(problems[0] + more)


def replace_datasets(store: EmbeddedStore, graphs: list[str], fill: Callable[[GenerationWriter], None], *,
                     changed: list[str] | None = None) -> bool:
    """Replace dataset graphs of the embedded store (``fill`` writes them into a generation), keeping the
    derived results of the patients whose input stays as it was (see :func:`load`); the patients whose
    results were deleted are appended to ``changed``. Returns whether a derived graph stays."""
    kb = KnowledgeBase()
    return store.replace_datasets(graphs, fill,
                                  carry=lambda base, record: _unchanged(kb, store, base, graphs, record, changed))


def replaced_note(store: str, *, had_derived: bool, kept: bool, changed: int, what: str = "load") -> str | None:
    """What ``load`` / ``import-fhir`` (``what``) tells the user about the derived graph afterwards."""
    if kept:
        return (f"note: the derived results of {changed} patient(s) whose data this {what} changed were deleted "
                f"from {GRAPH_DERIVED}, the others stay; run b12kg derive --store {store}: it evaluates the "
                "patients without results (changed or new)")
    if had_derived:
        return (f"note: the derived graph {GRAPH_DERIVED} was cleared: its recommendations came from the data "
                f"before this {what}; run b12kg derive --store {store} to derive them again")
    return None


# When a load changes the input of more than this share of the patients derive recorded, it keeps no
# derived results at all (the next derive evaluates everyone): deleting results patient by patient
# costs more per patient than deriving the whole store again. An engineering setting.
MOST_CHANGED = 0.5


def _unchanged(kb: KnowledgeBase, store: EmbeddedStore, base: GenerationWriter, graphs: list[str],
               record: DeriveState, report: list[str] | None = None) -> tuple[list[str], DeriveState] | None:
    """After a load wrote ``graphs`` into ``base``: the updates deleting the derived results of the
    patients whose input the load changed (their input digest now differs from the one derive
    recorded, or they are patients no more), and the record of the rest; None when most changed.
    The patients a replaced graph can change are its subjects, before (``store``) and after (``base``)."""
    text = kb.query("cohort/graph-subjects")
    after = EmbeddedStore.over(base.store)
    touched: set[str] = set()
    for graph in graphs:
        for data in (store, after):
            touched |= {r["subject"].value for r in data.select(text, {"graph": ox.NamedNode(graph)})}
    recorded = sorted(touched & record.patients.keys())
    now = store_digests(after, kb, recorded)
    changed = [p for p in recorded if now.get(p) != record.patients[p][0]]
    if len(changed) > MOST_CHANGED * len(record.patients):
        return None
    if report is not None:
        report += changed
    gone = set(changed)
    delete = kb.update("cohort/delete-derived")
    updates = [bind(delete, {"patient": [ox.NamedNode(p) for p in part]}) for part in chunks(changed, DEFAULT_BATCH)]
    return updates, DeriveState(settings=record.settings,
                                patients={p: v for p, v in record.patients.items() if p not in gone})


def input_digests(triples: Iterable[ox.Triple], patients: Iterable[str]) -> dict[str, str]:
    """Each patient's input digest: a hash of the triples the batch reads take for it (its own, its
    facts', their sources'), as canonical N-Triples lines, sorted. Patients with no triple get none.
    Blank nodes count by their store labels, so a dataset with blank nodes loaded again makes its
    patients' digests change (they are derived again: more work, never a stale result)."""
    about: dict[object, list[ox.Triple]] = {}
    for t in triples:
        about.setdefault(t.subject, []).append(t)
    digests = {}
    for patient in patients:
        lines: set[str] = set()
        frontier: list[object] = [ox.NamedNode(patient)]
        seen = set(frontier)
        for _ in range(3):  # the patient, its facts and sources, its facts' sources
            reached = []
            for node in frontier:
                for t in about.get(node, ()):
                    lines.add(f"{t.subject} {t.predicate} {t.object} .")
                    if not isinstance(t.object, ox.Literal) and t.object not in seen:
                        seen.add(t.object)
                        reached.append(t.object)
            frontier = reached
        if lines:
            digests[patient] = hashlib.blake2b("\n".join(sorted(lines)).encode("utf-8"), digest_size=16).hexdigest()
    return digests


def store_digests(store: Store, kb: KnowledgeBase, patients: list[str]) -> dict[str, str]:
    """The input digests of ``patients`` as the store holds their data now (read as derive reads it)."""
    digests: dict[str, str] = {}
    for part in chunks(patients, DEFAULT_BATCH):
        data = _batch_data(store, kb, [ox.NamedNode(p) for p in part])
        digests.update(input_digests(ox.parse(data, format=ox.RdfFormat.N_TRIPLES), part))
    return digests


def _files_digest(folders: Iterable[Path], pattern: str = "*") -> str:
    h = hashlib.blake2b(digest_size=16)
    for folder in folders:
        for path in sorted(folder.rglob(pattern)) if folder.is_dir() else ():
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(f"{path.relative_to(folder)}\0".encode("utf-8", "surrogateescape"))
                h.update(path.read_bytes())
                h.update(b"\0")
    return h.hexdigest()


def derive_settings(kb: KnowledgeBase, as_of: date, reasoner: str, shacl: bool) -> dict:
    """What derived results depend on besides the patients' data: derive keeps a patient's earlier
    results only when every value here is the same as when they were derived."""
    import b12kg

    return {"asOf": as_of.isoformat(), "reasoner": reasoner, "shacl": shacl, "engine": ENGINE_VERSION,
            "knowledgeBase": _files_digest([kb.ontology_dir, kb.shapes_dir, kb.queries_dir, kb.root / "schema"]),
            "code": _files_digest([Path(b12kg.__file__).parent], "*.py")}


SETTING_NAMES = {"asOf": "the evaluation date (--as-of)", "reasoner": "the reasoner", "shacl": "--shacl/--no-shacl",
                 "engine": "the b12kg version", "knowledgeBase": "the knowledge base (ontology, shapes, queries)",
                 "code": "the b12kg code"}


def ownership(kb: KnowledgeBase) -> Ownership:
    """The queries that say what each patient owns in the derived graph (remote deletes)."""
    return Ownership(subjects=(kb.query("cohort/owned-subjects"), kb.query("cohort/owned-facts")),
                     triples=kb.query("cohort/subject-triples"),
                     delete=kb.update("cohort/delete-derived"), delete_subjects=kb.update("cohort/delete-derived-subjects"),
                     owners=kb.query("cohort/owners"), orphans=kb.query("cohort/derived-orphans"),
                     blank_orphans=kb.update("cohort/delete-blank-orphans"))


def _dataset_patients(kb: KnowledgeBase, data: Store | list[ox.Triple], graph: str) -> set[str]:
    """The patients of a dataset graph in a store, or of triples about to become that graph."""
    rows = _dataset_select(data, graph, kb.query("cohort/dataset-patients"), {"dataset": ox.NamedNode(graph)})
    return {r["patient"].value for r in rows}


def _dataset_select(data: Store | list[ox.Triple], graph: str, text: str, bindings: dict) -> list[dict]:
    """A SELECT over a store, or over triples about to become its dataset ``graph`` (in memory)."""
    if not isinstance(data, Store):
        data = _in_memory(data, graph)
    return data.select(text, bindings)


def _in_memory(triples: list[ox.Triple], graph: str) -> EmbeddedStore:
    """``triples`` as the dataset ``graph`` of an in-memory store."""
    memory = ox.Store()
    memory.extend(ox.Quad(t.subject, t.predicate, t.object, ox.NamedNode(graph)) for t in triples)
    return EmbeddedStore.over(memory)


# ---------------------------------------------------------------------------------------- derive
@dataclass
class DeriveResult:
    patients: int = 0  # in the store
    evaluated: int = 0  # with results: evaluated now, or kept from the last derive
    in_scope: int = 0
    triples: int = 0  # in the derived graph; when ``full`` is "": derived for the patients evaluated now
    problems: list[str] = field(default_factory=list)
    kept: int = 0  # results kept from the last derive (their input and the settings unchanged)
    full: str = ""  # why every patient was evaluated ("" when only those without results were)


@dataclass
class _Batch:
    """One batch of patients as the worker that evaluates it receives it (picklable: the data, or the
    embedded store generation to read it from)."""

    root: str
    as_of: date
    reasoner: str
    shacl: bool
    label: str
    patients: list[str]
    data: bytes | None = None  # the batch's triples, N-Triples; None: the worker reads them from `store`
    store: tuple[str, str] | None = None  # (folder, generation) of the embedded store to read them from


@dataclass
class _Evaluated:
    derived: bytes  # N-Triples for the derived graph
    record: dict[str, tuple[str, bool]]  # evaluated patient -> (input digest, in scope)
    problems: list[str]


def _evaluate(batch: _Batch) -> _Evaluated:
    """Evaluate one batch with exactly the pipeline ``recommend`` uses: validate (shapes, units, dates),
    normalise, classify, derive, schedule. Patients with invalid data are left out and reported."""
    kb = KnowledgeBase(Path(batch.root))
    as_of = batch.as_of
    data = batch.data if batch.data is not None else _read_batch(kb, batch)
    ws = Workspace(kb)
    ws.load_nt("patients", data)
    label = Path(batch.label)
    problems = validate_values(ws, PatientData(path=label, triples=[]), as_of)
    triples: list[ox.Triple] | None = None
    if batch.shacl:
        triples = list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES))
        problems = validate_shapes(PatientData(path=label, triples=triples), kb,
                                   dataset=(ws.store, ws.graph["patients"])) + problems
    if problems:
        if triples is None:
            triples = list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES))
        ws = Workspace(kb)
        ws.load_nt("patients", _without(triples, batch.patients, problems))
    evaluate_pipeline(ws, as_of, Reasoner(batch.reasoner), expanded=False)
    graphs = {"inferred": ws.graph["inferred"], "patients": ws.graph["patients"]}
    derived = (ws.dump_nt("derived") + ws.dump_nt("normalised")
               + ws.construct_nt(kb.query("cohort/inferred-export"), graphs)
               + ws.construct_nt(fact_types := kb.query("cohort/fact-types-export"), graphs, table=ws.table(fact_types)))
    scope = {r["patient"].value: r["inScope"].value == "true"  # (a blank-node patient is never evaluated)
             for r in ws.select("cohort/batch-patients", {"patients": ws.graph["patients"]})
             if isinstance(r["patient"], ox.NamedNode)}
    digests = input_digests(triples if triples is not None else ox.parse(data, format=ox.RdfFormat.N_TRIPLES), scope)
    return _Evaluated(derived=derived, record={p: (digests[p], s) for p, s in scope.items()}, problems=problems)


def _without(triples: list[ox.Triple], patients: list[str], problems: list[str]) -> bytes:
    """The batch's triples without the patients a problem names (all of them if none is named)."""
    bad = {p for p in patients if any(f"<{p}>" in line or f" {p}" in line for line in problems)} or set(patients)
    owned = {t.object for t in triples if t.subject.value in bad and isinstance(t.object, ox.NamedNode)}
    keep = [t for t in triples if t.subject.value not in bad and t.subject not in owned]
    return ox.serialize(keep, format=ox.RdfFormat.N_TRIPLES)


def _batch_data(store: Store, kb: KnowledgeBase, patients: list[ox.NamedNode]) -> bytes:
    """The triples of ``patients`` and of their facts, from the store's dataset graphs, as N-Triples
    (in requests that bind at most the store's ``values_rows`` patients each)."""
    parts = []
    for part in chunks(patients, store.values_rows):
        bindings = {"patient": part}
        parts += [store.construct_nt(kb.query("cohort/patient-triples"), bindings),
                  store.construct_nt(kb.query("cohort/fact-triples"), bindings),
                  store.construct_nt(kb.query("cohort/source-references"), bindings),
                  store.construct_nt(kb.query("cohort/fact-source-references"), bindings)]
    return b"".join(parts)


_READERS: dict[str, EmbeddedStore] = {}  # a worker process's read-only views, opened once


def _read_batch(kb: KnowledgeBase, batch: _Batch) -> bytes:
    """In a worker: read the batch from the generation the deriving writer reads. The writer holds
    that generation until it commits, so the worker takes no lock of its own: a worker left running
    by a killed writer must not keep the generation from being collected."""
    assert batch.store is not None
    folder = str(Path(batch.store[0]) / batch.store[1])
    if folder not in _READERS:
        _READERS[folder] = EmbeddedStore.generation_view(folder)
    return _batch_data(_READERS[folder], kb, [ox.NamedNode(p) for p in batch.patients])


def store_patients(store: Store, kb: KnowledgeBase) -> list[ox.NamedNode]:
    """Every patient of the store's datasets with an IRI, in IRI order (sorted here: Oxigraph's ORDER BY
    took 0.9 s for 10,000 IRIs, the query without it 0.07 s). Blank-node patients: :func:`blank_patients`."""
    return sorted((r["patient"] for r in store.select(kb.query("cohort/patients"))
                   if isinstance(r["patient"], ox.NamedNode)), key=lambda p: p.value)


BLANK_PATIENT = ("a patient must be an IRI, not a blank node (its recommendations and their provenance point "
                 "at it): give it one")


def blank_patients(store: Store, kb: KnowledgeBase) -> dict[str, int]:
    """Dataset graph -> how many of its patients are blank nodes (derive cannot evaluate them)."""
    return {row["dataset"].value: int(row["patients"].value) for row in store.select(kb.query("cohort/blank-patients"))}


def _batches(store: Store, kb: KnowledgeBase, patients: list[ox.NamedNode], size: int, workers: int,
             **common) -> Iterator[_Batch]:
    """The batches to evaluate. Worker processes read an embedded store's batches themselves (reading
    is a third of the work per patient, and the writer has the bulk loading to do)."""
    embedded = isinstance(store, EmbeddedStore) and workers > 1
    for i in range(0, len(patients), size):
        batch = patients[i : i + size]
        yield _Batch(label=f"store batch {i + 1}", patients=[p.value for p in batch],
                     data=None if embedded else _batch_data(store, kb, batch),
                     store=(str(store.path), store.generation) if embedded else None, **common)


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """In a worker: exit when the derive process that started it is gone (killed, or out of memory).
    A spawned worker holds both ends of its task queue, so it would otherwise wait for work forever."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="b12kg-parent-watch", daemon=True).start()


def _in_order(batches: Iterator[_Batch], workers: int, work: Callable = None) -> Iterator[tuple[_Batch, object]]:
    """Run ``work`` (default: evaluate for derive; a picklable top-level function) on batches in
    ``workers`` processes (in this one for 1), keeping at most two batches per worker in flight so memory
    stays bounded; results come back in batch order."""
    work = work or _evaluate
    if workers <= 1:
        for batch in batches:
            yield batch, work(batch)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the parent holds an open on-disk store with its own threads.
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
            pending: deque = deque()
            for batch in batches:
                pending.append((batch, pool.submit(work, batch)))
                if len(pending) >= 2 * workers:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
    except BrokenProcessPool:
        raise WorkerError(
            "a derive worker process stopped abruptly (killed, or out of memory; a script calling "
            "cohort.derive needs the `if __name__ == \"__main__\":` guard); nothing was written: run again, "
            "with a smaller --batch-size or --workers 1 if memory is short") from None


# results evaluated ahead of the writer: the workers go on evaluating while this process writes (a bulk
# load of ~100 MB, an update request) instead of waiting for it. An engineering setting: memory is at
# most this many batches' results (about 20 MB each at 1,000 patients) on top of those in flight.
AHEAD = 8


def _ahead(items: Iterator[T], depth: int = AHEAD) -> Iterator[T]:
    """``items`` in order, pulled by a thread up to ``depth`` ahead of the consumer. An exception in
    ``items`` is raised here; when the consumer stops early (an error while writing) the thread stops
    pulling and closes ``items`` (which shuts the worker processes down)."""
    import queue
    import threading

    pipe: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                pipe.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pull() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    break
            else:
                put((True, end))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    thread = threading.Thread(target=pull, name="b12kg-derive-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = pipe.get()
            if not ok:
                raise item  # type: ignore[misc]
            if item is end:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


REPLACE_MODES = ("atomic", "batches")


def derive(store: Store, *, as_of: date, kb: KnowledgeBase | None = None, batch_size: int = DEFAULT_BATCH,
           reasoner: Reasoner = Reasoner.rules, shacl: bool = True, workers: int | None = None,
           progress: Progress | None = None, replace: str = "atomic",
           on_total: Callable[[int], None] | None = None, full: bool = False) -> DeriveResult:
    """Derive the store's patients at ``as_of`` (all, or those without results: below); the derived
    graph changes atomically.

    Batches of ``batch_size`` patients are evaluated in ``workers`` processes (default: one per CPU;
    one batch runs in this process). Patients whose data breaks the patient shapes (``shacl``), has an
    unknown unit or a date after ``as_of`` are left out and reported in ``problems``.

    On the embedded store derive is incremental: it records each patient's input digest with the
    results, ``load`` deletes the results of patients whose input it changes, and a derive with the same
    settings (:func:`derive_settings`: ``as_of``, the knowledge base, the code …) evaluates only the
    patients without results (changed, new, or left out before) and keeps the others. ``full``, other
    settings, a remote store or a derived graph without a record evaluate everyone (``result.full`` says
    why).

    ``replace="batches"`` (remote stores only) replaces the derived graph batch by batch instead of in
    one final request: each patient's results change at once, the whole graph does not (see
    :meth:`RemoteStore.replace_derived_by_batch`)."""
    check_evaluation_date(as_of)
    if replace not in REPLACE_MODES:
        raise InputError(f"--replace {replace!r}: use {' or '.join(REPLACE_MODES)}")
    if replace == "batches" and not isinstance(store, RemoteStore):
        raise InputError("--replace batches is for remote stores (--endpoint): the embedded store replaces "
                         "the derived graph atomically at any size")
    kb = kb or KnowledgeBase()
    result = DeriveResult()
    store.drop_scratch()  # left by a killed run: research queries would read it beside the real graphs
    if workers is None:
        workers = os.cpu_count() or 1
    settings = derive_settings(kb, as_of, Reasoner(reasoner).value, shacl)
    patients = store_patients(store, kb)
    result.patients = len(patients)
    for dataset, count in blank_patients(store, kb).items():
        result.patients += count
        result.problems.append(f"{dataset}: {count} patient(s) not evaluated: {BLANK_PATIENT}")
    record = store.derive_state() if isinstance(store, EmbeddedStore) else None
    result.full = _why_full(store, record, settings, full)
    kept: dict[str, tuple[str, bool]] = {}
    if not result.full:
        assert record is not None
        names = {p.value for p in patients}
        kept = {p: v for p, v in record.patients.items() if p in names}
        patients = [p for p in patients if p.value not in kept]
        workers = min(workers, -(-len(patients) // batch_size))  # no process pool for one batch
    result.kept = result.evaluated = len(kept)
    result.in_scope = sum(s for _, s in kept.values())
    if on_total is not None:
        on_total(len(patients))
    batches = _batches(store, kb, patients, batch_size, workers, root=str(kb.root), as_of=as_of,
                       reasoner=Reasoner(reasoner).value, shacl=shacl)
    recorded = dict(kept)

    def derived() -> Iterator[tuple[list[str], bytes]]:
        for batch, evaluated in _ahead(_in_order(batches, workers)):
            recorded.update(evaluated.record)
            result.evaluated += len(evaluated.record)
            result.in_scope += sum(s for _, s in evaluated.record.values())
            result.problems += evaluated.problems
            if progress:
                progress(len(batch.patients))
            yield batch.patients, evaluated.derived

    def state() -> DeriveState:
        return DeriveState(settings=settings, patients=recorded)

    if not result.full:
        assert isinstance(store, EmbeddedStore) and record is not None
        gone = [ox.NamedNode(p) for p in sorted(record.patients.keys() - kept.keys())]  # patients no more
        delete = kb.update("cohort/delete-derived")
        updates = [bind(delete, {"patient": part}) for part in chunks(gone, DEFAULT_BATCH)]
        result.triples = store.update_derived(updates, (data for _, data in derived()), state)
        return result
    ontology = [q.triple for q in kb.ontology_quads(ox.DefaultGraph())]
    if replace == "batches":
        assert isinstance(store, RemoteStore)
        result.triples = store.replace_derived_by_batch(
            ontology, derived(), own=ownership(kb), chunk=batch_size)
    elif isinstance(store, EmbeddedStore):
        result.triples = store.replace_derived(ontology, (data for _, data in derived()), state)
    else:
        result.triples = store.replace_derived(ontology, (data for _, data in derived()))
    return result


def _why_full(store: Store, record: DeriveState | None, settings: dict, full: bool) -> str:
    """Why derive evaluates every patient this time ("" when it evaluates only those without results)."""
    if full:
        return "--full"
    if not isinstance(store, EmbeddedStore):
        return "a remote store keeps no derive record"
    if record is None:
        return "no derived results with a derive record in the store"
    changed = [SETTING_NAMES.get(k, k) for k in sorted(settings.keys() | record.settings.keys())
               if settings.get(k) != record.settings.get(k)]
    if changed:
        return "changed since the last derive: " + ", ".join(changed)
    return ""


# ----------------------------------------------------------------------------------------- query
_PARAM = re.compile(r"^#\+\s*param(?:eter)?:\s*(\w+)\s+(\w+)", re.MULTILINE)
_PARAM_TYPES = {"iri", "date", "string", "integer", "decimal"}


def query_parameters(text: str) -> dict[str, str]:
    """The ``#+ param: NAME TYPE`` header lines of a research query."""
    params = dict(_PARAM.findall(text))
    for name, kind in params.items():
        if kind not in _PARAM_TYPES:
            raise InputError(f"query parameter {name}: unknown type {kind!r} (use {', '.join(sorted(_PARAM_TYPES))})")
    return params


_LEXICAL = {  # the XSD lexical spaces a parameter's text must match (no float syntax, no NaN or INF)
    "date": re.compile(r"^-?[0-9]{4,}-[0-9]{2}-[0-9]{2}$"),
    "integer": re.compile(r"^[+-]?[0-9]+$"),
    "decimal": re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"),
}


def typed_parameter(name: str, kind: str, value: str) -> object:
    """A research query parameter's text as the RDF term (or date) it is bound as; text outside the
    type's XSD lexical space is an :class:`InputError` naming the parameter and the value."""
    xsd = "http://www.w3.org/2001/XMLSchema#"
    try:
        pattern = _LEXICAL.get(kind)
        if pattern is not None and not pattern.match(value):
            raise ValueError(f"not in the xsd:{kind} lexical space")
        if kind == "iri":
            if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value):
                raise ValueError("not an absolute IRI")
            return ox.NamedNode(value)
        if kind == "date":
            return date.fromisoformat(value)
        if kind == "integer":
            return ox.Literal(str(int(value)), datatype=ox.NamedNode(xsd + "integer"))
        if kind == "decimal":
            from decimal import Decimal

            return ox.Literal(str(Decimal(value)), datatype=ox.NamedNode(xsd + "decimal"))
        return ox.Literal(value)
    except (ValueError, ArithmeticError) as exc:
        raise InputError(f"--param {name}={value!r}: not a valid {kind} ({exc})") from None


def resolve_query(kb: KnowledgeBase, name_or_file: str) -> tuple[str, str]:
    """A research query by name (``queries/research/NAME.rq``) or a path to a ``.rq`` file."""
    path = Path(name_or_file)
    if path.suffix == ".rq":
        return str(path), utf8(read_input(path), path)
    research = kb.queries_dir / "research" / f"{name_or_file}.rq"
    if not research.is_file():
        known = ", ".join(sorted(p.stem for p in (kb.queries_dir / "research").glob("*.rq")))
        raise InputError(f"unknown query {name_or_file!r} (research queries: {known}; or give a .rq file)")
    return str(research), research.read_text(encoding="utf-8")


def run_query(store: Store, text: str, params: dict[str, str], *, source: str = "query") -> tuple[list[str], list[dict]]:
    columns, rows = stream_query(store, text, params, source=source)
    return columns, list(rows)


def stream_query(store: Store, text: str, params: dict[str, str], *, source: str = "query"
                 ) -> tuple[list[str], Iterator[dict]]:
    """A query's columns and its rows as the store evaluates them (on the embedded store nothing holds
    them all). Bad parameters and a query that does not parse raise before the first row."""
    form = query_form(text)
    if form is not None and form != "SELECT":
        raise InputError(f"{source}: a {form} query; b12kg query runs SELECT queries "
                         "(a graph: b12kg export, or the endpoint of b12kg serve)")
    declared = query_parameters(text)
    unknown = set(params) - set(declared)
    if unknown:
        raise InputError(f"{source}: unknown parameter(s) {', '.join(sorted(unknown))} (declared: {', '.join(declared) or 'none'})")
    missing = set(declared) - set(params)
    if missing:
        raise InputError(f"{source}: missing parameter(s) {', '.join(sorted(missing))} (give --param NAME=VALUE)")
    bindings = {name: typed_parameter(name, declared[name], value) for name, value in params.items()}
    try:
        columns, rows = store.select_stream(text, bindings)
    except (SyntaxError, ValueError) as exc:
        raise InputError(f"{source}: {exc}") from None

    def checked() -> Iterator[dict]:
        try:
            yield from rows
        except (SyntaxError, ValueError, OSError) as exc:  # raised while evaluating, after rows went out
            raise InputError(f"{source}: evaluation failed: {exc}") from None

    return columns, checked()


def _plain(term: object) -> str:
    return "" if term is None else term.value


def write_rows(columns: list[str], rows: Iterable[dict], fmt: str, out: TextIO) -> None:
    """Rows as CSV or as a JSON array of {column: value} objects, written as they come."""
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_plain(r.get(c)) for c in columns])
        return
    if fmt != "json":
        raise ValueError(fmt)
    opened = False
    for r in rows:  # as json.dumps(list, indent=2) writes it, one object at a time
        out.write(",\n" if opened else "[\n")
        opened = True
        out.write(textwrap.indent(json.dumps({c: _plain(r.get(c)) for c in columns}, indent=2, ensure_ascii=False), "  "))
    out.write("\n]\n" if opened else "[]\n")


def print_table(columns: list[str], rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, show_lines=False)  # (variable names: no markup, no control characters)
    for r in rows:  # (Text: a value is never read as rich markup; printable: nor as terminal codes)
        table.add_row(*[Text(printable(_plain(r.get(c)))) for c in columns])
    Console(file=sys.stdout, width=200).print(table)
    print(f"{len(rows)} row(s)")


# ---------------------------------------------------------------------------------------- export
EXPORT_FORMATS = {"nq": ox.RdfFormat.N_QUADS, "trig": ox.RdfFormat.TRIG, "ttl": ox.RdfFormat.TURTLE,
                  "nt": ox.RdfFormat.N_TRIPLES}


def export(store: Store, *, graph: str | None, fmt: str, output: BinaryIO | None = None,
           expand: KnowledgeBase | None = None) -> bytes | None:
    """The store, or one graph of it, in ``fmt``: written to ``output`` as it is read (nothing holds the
    whole export, so a store of any size exports in bounded memory), or returned when there is none.
    With ``expand`` (a knowledge base), the derived graph also gets its expanded provenance
    (:func:`expanded_provenance`), written after the stored triples."""
    rdf_format = EXPORT_FORMATS[fmt]
    if graph is None and not rdf_format.supports_datasets:
        raise InputError(f"--format {fmt} holds one graph: give --graph, or use nq / trig for the whole store")
    if expand is not None and graph not in (None, GRAPH_DERIVED):
        raise InputError("--expand-provenance adds to the derived graph: export it (--graph derived) or the whole store")
    if output is None:
        buffer = io.BytesIO()
        export(store, graph=graph, fmt=fmt, output=buffer, expand=expand)
        return buffer.getvalue()
    store.dump(rdf_format, graph, output)
    if expand is not None:
        derived = ox.NamedNode(GRAPH_DERIVED)
        triples = expanded_provenance(store, expand)
        if graph is None:  # the whole store: the added triples are quads of the derived graph
            triples = (ox.Quad(t.subject, t.predicate, t.object, derived) for t in triples)
        ox.serialize(triples, output, format=rdf_format)
    return None


def expanded_provenance(store: Store, kb: KnowledgeBase) -> Iterator[ox.Triple]:
    """The triples ``queries/research/expand/*.rq`` add to the store's lean derived graph (each finding's
    activity, guideline element, evidence and patient facts), query by query; a query's ``#+ table:``
    is read from the store. The joins need one derivation per patient, as derive writes them: a store
    with two for a patient (``cohort/derivation-conflicts``) raises InputError before anything is read."""
    _, conflicts = store.select_stream(kb.query("cohort/derivation-conflicts"))
    first = next(conflicts, None)  # (none, on a store derive wrote: the query reads to its end)
    if first is not None:
        raise InputError(f"--expand-provenance: patient {first['patient'].value} has more than one derivation "
                         f"({first['derivation'].value}, {first['other'].value}); its findings could not be told "
                         "apart: derive the store again")
    for _, text in kb.queries("research/expand"):
        yield from store.construct_stream(bind(text, None, store_table(store, kb, text)))


def store_table(store: Store, kb: KnowledgeBase, text: str) -> Table | None:
    """The VALUES table a query's ``#+ table: NAME`` header asks for, evaluated by the store (None: no
    header); :meth:`Workspace.table` is the same on a workspace."""
    name = table_name(text)
    if name is None:
        return None
    columns, rows = store.select_with_columns(kb.query(name))
    return table_columns(text, (columns, [tuple(row.get(c) for c in columns) for row in rows]))


def graph_alias(name: str | None) -> str | None:
    """``derived``, ``ontology``, ``dataset:NAME`` or a full graph IRI; None means every graph."""
    if name is None or name == "all":
        return None
    if name == "derived":
        return GRAPH_DERIVED
    if name == "ontology":
        return GRAPH_ONTOLOGY
    if name.startswith("dataset:"):
        return dataset_graph(name.split(":", 1)[1])
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", name):
        try:
            ox.NamedNode(name)
        except ValueError as exc:
            raise InputError(f"--graph {name!r}: not a valid IRI ({exc})") from None
        return name
    raise InputError(f"--graph {name!r}: use derived, ontology, dataset:NAME, all or a graph IRI")


__all__ = ["DeriveResult", "InvalidPatientData", "derive", "export", "load", "run_query"]

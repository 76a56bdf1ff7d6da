"""Where cohorts live: an embedded on-disk store, or any SPARQL 1.1 endpoint, behind one interface.

Named graphs are kept apart:

* ``urn:b12kg:graph:ontology`` — the knowledge base (all ontology modules), refreshed by ``derive``;
* ``urn:b12kg:dataset:NAME`` — one graph per loaded patient dataset (``load`` replaces a dataset
  with the same name, never duplicates it);
* ``urn:b12kg:graph:derived`` — derived recommendations, findings, patient states and provenance.

Queries read the union of all graphs (Oxigraph: ``use_default_graph_as_union``; an Oxigraph server
started with ``--union-default-graph``; Virtuoso's default). Only standard SPARQL 1.1 is sent.

**The embedded store** (``--store DIR``) is a folder of generations, each a complete Oxigraph
(RocksDB) store, ``DIR/gen-000001/`` …, and ``DIR/HEAD``, a small JSON pointer
``{"format": 1, "base": "gen-…", "current": "gen-…"}``. *base* holds the ontology graph and the
dataset graphs, never the derived graph; *current* is what readers (query, export, serve) open: the
base itself, or the base plus the derived graph. A write never changes a generation HEAD names: it
makes a new one from a RocksDB checkpoint (hard links, milliseconds), fills it, makes it durable, and
then replaces HEAD atomically (temporary file, fsync, rename, fsync of DIR). A writer killed at any
point leaves HEAD, and so what readers see, exactly as before or exactly as after; the half-written
generation it leaves is deleted by the next writer. ``load`` (and ``import-fhir --store``) makes a
new base with the dataset graphs replaced. When the current generation has a derive record
(:data:`STATE_FILE`: each patient's input digest), ``load`` also makes a new current from it, with the
datasets replaced and the derived results of the patients whose input changed deleted; otherwise the
new base is also the new current, with no derived graph. Either way derived results of replaced data
are never served; run ``derive`` again. ``derive`` makes a new base (ontology refreshed) and a new
current (that base plus the derived graph, bulk-loaded as the batches are derived) or, when it only
adds the results of patients without any, a new current made from the current one. Writers hold
``DIR/lock`` (``flock``) while open; a second writer is refused (:class:`StoreBusy`, exit 7). Readers
hold a shared ``flock`` on the generation folder they read; after switching HEAD a writer deletes the
generations HEAD does not name unless a reader holds them (``b12kg serve`` holds its generation until
it stops, so it keeps serving what was current when it started).

**Remote stores** replace a graph by filling a scratch graph and one SPARQL 1.1 ``MOVE`` (a single
update request). ``derive --replace batches`` replaces the derived graph patient by patient instead
(:meth:`RemoteStore.replace_derived_by_batch`), for cohorts one server transaction cannot hold.
"""

from __future__ import annotations

import ast
import fcntl
import http.client
import io
import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import pyoxigraph as ox

from b12kg.errors import B12kgError, ExitCode, InputError
from b12kg.sparql import Term, bind

from b12kg.namespaces import GRAPH_DERIVED, GRAPH_ONTOLOGY, RDF_TYPE  # noqa: E402  (one place for graph names)
DATASET_PREFIX = "urn:b12kg:dataset:"
SCRATCH_PREFIX = "urn:b12kg:scratch:"
# Remote stores list each scratch graph here while it is filled, so that the next command finds what a
# stopped run left without listing every graph (on Virtuoso 7.2, with the plan it appears to keep from
# the first time it saw that query, on an empty store, the list scans every quad: 7 s at 10,000
# patients). An entry: <scratch graph> a sd:NamedGraph.
SCRATCH_REGISTRY = "urn:b12kg:graph:scratch"
_SD_NAMED_GRAPH = "http://www.w3.org/ns/sparql-service-description#NamedGraph"
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StoreError(B12kgError):
    """The store or endpoint could not be opened or refused an operation."""

    exit_code = ExitCode.INPUT


def dataset_graph(name: str) -> str:
    if not _DATASET_NAME.match(name):
        raise InputError(f"dataset name {name!r}: use letters, digits, '.', '_' or '-' (at most 128)")
    return DATASET_PREFIX + name


class Store(ABC):
    """The operations the cohort commands need; every query runs unchanged on each backend."""

    values_rows: int | None = None  # the most rows one request binds in a VALUES block (None: no limit)

    def select(self, text: str, bindings: Mapping[str, object] | None = None) -> list[dict[str, Term]]:
        return self.select_with_columns(text, bindings)[1]

    @abstractmethod
    def select_with_columns(self, text: str, bindings: Mapping[str, object] | None = None
                            ) -> tuple[list[str], list[dict[str, Term]]]:
        """A SELECT query's projected variables (as the store reports them) and its rows."""

    def select_stream(self, text: str, bindings: Mapping[str, object] | None = None
                      ) -> tuple[list[str], Iterator[dict[str, Term]]]:
        """As :meth:`select_with_columns`, the rows as an iterator; a store that can hands them over as
        it evaluates them (errors of the query itself are raised here, before any row)."""
        columns, rows = self.select_with_columns(text, bindings)
        return columns, iter(rows)

    @abstractmethod
    def construct(self, text: str, bindings: Mapping[str, object] | None = None) -> list[ox.Triple]: ...

    def construct_stream(self, text: str, bindings: Mapping[str, object] | None = None) -> Iterator[ox.Triple]:
        """A CONSTRUCT query's triples as an iterator; a store that can hands them over as it evaluates them."""
        return iter(self.construct(text, bindings))

    @abstractmethod
    def dump(self, fmt: ox.RdfFormat, graph: str | None = None, output: BinaryIO | None = None) -> bytes | None:
        """Every graph (or ``graph``) serialised in ``fmt``: written to ``output`` as it is read, or returned."""

    @abstractmethod
    def update(self, text: str) -> None: ...

    @abstractmethod
    def _fill(self, graph: str, triples: Iterable[ox.Triple]) -> int:
        """Add triples to a (scratch) graph; returns how many were sent."""

    def replace_graph(self, graph: str, triples: Iterable[ox.Triple]) -> int:
        """Atomically replace ``graph`` with ``triples``: fill a scratch graph, then MOVE it. The scratch
        graph is listed in the registry graph from the request that empties it to the one that moves
        it, so a run stopped in between leaves it where :meth:`drop_scratch` looks."""
        scratch = SCRATCH_PREFIX + graph
        entry = [f"<{scratch}> <{RDF_TYPE}> <{_SD_NAMED_GRAPH}> ."]
        self.update(f"DROP SILENT GRAPH <{scratch}> ;\n" + _data_ops("INSERT", SCRATCH_REGISTRY, entry))
        count = self._fill(scratch, triples)
        if count == 0:
            done = f"DROP SILENT GRAPH <{graph}>"
        else:
            done = f"MOVE SILENT GRAPH <{scratch}> TO GRAPH <{graph}>"
        self.update(done + " ;\n" + _data_ops("DELETE", SCRATCH_REGISTRY, entry))
        return count

    def construct_nt(self, text: str, bindings: Mapping[str, object] | None = None) -> bytes:
        """A CONSTRUCT query's triples as one N-Triples document (cheap to hand to another process)."""
        return ox.serialize(self.construct(text, bindings), format=ox.RdfFormat.N_TRIPLES)

    def replace_derived(self, ontology: list[ox.Triple], chunks: Iterable[bytes]) -> int:
        """Replace the ontology graph with ``ontology`` and the derived graph with the triples of
        ``chunks`` (N-Triples documents, consumed once, in order). Returns the derived triples written."""
        self.replace_graph(GRAPH_ONTOLOGY, ontology)
        return self.replace_graph(
            GRAPH_DERIVED, (t for chunk in chunks for t in ox.parse(chunk, format=ox.RdfFormat.N_TRIPLES)))

    def has_graph(self, graph: str) -> bool:
        rows = self.select("SELECT ?s WHERE { GRAPH ?g { ?s ?p ?o } } LIMIT 1", {"g": ox.NamedNode(graph)})
        return bool(rows)

    def graphs(self) -> list[str]:
        rows = self.select("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }")
        return sorted(r["g"].value for r in rows)

    def drop_scratch(self) -> list[str]:
        """Drop the scratch graphs a stopped (killed) run left behind: queries read the union of all
        graphs, where they would be seen beside the real ones. They are those the registry graph
        lists (:meth:`replace_graph`); one request drops them and the registry. Returns the graphs dropped."""
        rows = self.select(f"SELECT DISTINCT ?g WHERE {{ GRAPH <{SCRATCH_REGISTRY}> {{ ?g a <{_SD_NAMED_GRAPH}> }} }}")
        stale = sorted(r["g"].value for r in rows
                       if isinstance(r["g"], ox.NamedNode) and r["g"].value.startswith(SCRATCH_PREFIX))
        if stale:
            self.update(" ;\n".join([*(f"DROP SILENT GRAPH <{g}>" for g in stale),
                                     f"DROP SILENT GRAPH <{SCRATCH_REGISTRY}>"]))
        return stale

    def datasets(self) -> list[str]:
        return [g for g in self.graphs() if g.startswith(DATASET_PREFIX)]

    def close(self) -> None:
        """Release the store (the embedded store flushes to disk)."""


class StoreBusy(StoreError):
    """Another writer holds the embedded store's lock."""

    exit_code = ExitCode.BUSY


# ---------------------------------------------------------------------------- generations on disk
HEAD_FILE = "HEAD"
LOCK_FILE = "lock"
HEAD_FORMAT = 1
GENERATION_PREFIX = "gen-"
# derive bulk-loads its results in documents of about this size: each bulk load ingests new sorted
# files into RocksDB, and many small ingests cost compaction work (measured: batches of 1,000 patients
# one by one 239 patients/s at 32k patients, grouped to 100 MB 301/s; 300 MB and 1 GB no better)
INGEST_BYTES = 100 * 2**20
_GENERATION = re.compile(r"^gen-(\d{6,})$")


def _read_head(root: Path) -> dict | None:
    """HEAD's ``{"format": 1, "base": NAME, "current": NAME}``, or None when there is no HEAD."""
    try:
        text = (root / HEAD_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{root / HEAD_FILE}: cannot read it: {exc.strerror or exc}") from None
    try:
        head = json.loads(text)
        ok = (isinstance(head, dict) and head.get("format") == HEAD_FORMAT
              and all(isinstance(head.get(k), str) and _GENERATION.match(head[k]) for k in ("base", "current")))
    except ValueError:
        ok = False
    if not ok:
        raise StoreError(f"{root / HEAD_FILE}: damaged (expected {{\"format\": {HEAD_FORMAT}, \"base\": \"gen-…\", "
                         f"\"current\": \"gen-…\"}}); rebuild the store with b12kg load")
    return head


def _write_head(root: Path, base: str, current: str) -> None:
    """Replace HEAD atomically: a temporary file written and synced, renamed over HEAD, the folder synced."""
    tmp = root / f"{HEAD_FILE}.tmp"
    data = json.dumps({"format": HEAD_FORMAT, "base": base, "current": current}).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, root / HEAD_FILE)
    _sync_dir(root)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(path: Path) -> None:
    """fsync every file of a generation and the generation folder (RocksDB syncs most already)."""
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _sync_dir(path)


def _check_layout(root: Path, *, writer: bool) -> None:
    """Refuse what is not a store of this layout with a one-line error saying what to do."""
    if not root.is_dir():
        if writer:
            return
        raise StoreError(f"{root}: no store here (run b12kg load --store {root} first)")
    if (root / HEAD_FILE).exists():
        return
    if (root / "CURRENT").exists():
        raise StoreError(f"{root}: a store in the layout of an earlier b12kg (database files directly in the "
                         f"folder, no {HEAD_FILE}); rebuild it: move it away, then run b12kg load (and b12kg "
                         f"derive) with --store {root}")
    if not writer:
        raise StoreError(f"{root}: no store here (run b12kg load --store {root} first)")
    foreign = sorted(e for e in os.listdir(root)
                     if not (_GENERATION.match(e) or e == LOCK_FILE or e.startswith(HEAD_FILE + ".tmp")))
    if foreign:
        raise StoreError(f"{root}: not a b12kg store and not empty (holds {foreign[0]!r}); give a new or empty folder")


def lease_current(root: Path) -> tuple[str, int]:
    """The generation HEAD names as current, with a shared ``flock`` on its folder (the returned file
    descriptor; closing it releases the lock). Writers never delete a generation someone holds, and
    a reader only uses a generation HEAD still names once it holds the lock."""
    _check_layout(root, writer=False)
    for _ in range(100):
        head = _read_head(root)
        if head is None:
            raise StoreError(f"{root}: no store here (run b12kg load --store {root} first)")
        name = head["current"]
        try:
            fd = os.open(root / name, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if _read_head(root) == head:
                raise StoreError(f"{root / HEAD_FILE} names {name}, which is missing: the store is damaged; "
                                 "rebuild it with b12kg load") from None
            continue  # HEAD moved on and the old generation was collected
        except OSError as exc:
            raise StoreError(f"{root / name}: cannot open it: {exc.strerror or exc}") from None
        fcntl.flock(fd, fcntl.LOCK_SH)
        now = _read_head(root)
        if now is not None and name in (now["base"], now["current"]):
            return name, fd
        os.close(fd)  # collected (or being collected) since HEAD was read: read HEAD again
    raise StoreError(f"{root}: the store kept changing while it was being opened; try again")


def current_generation(root: Path) -> Path:
    """The folder of the generation readers see now (checks the layout; takes no lock)."""
    _check_layout(root, writer=False)
    head = _read_head(root)
    assert head is not None
    return root / head["current"]


def _grouped(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The chunks joined into documents of at least ``size`` bytes (the last one may be smaller)."""
    group: list[bytes] = []
    held = 0
    for chunk in chunks:
        if chunk:
            group.append(chunk)
            held += len(chunk)
        if held >= size:
            yield b"".join(group)
            group, held = [], 0
    if group:
        yield b"".join(group)


# derive's record of what the derived graph of a current generation was derived from, kept as a file in
# that generation's folder (RocksDB leaves files it does not know alone, and a checkpoint never copies
# them: a new generation has no record unless a writer writes one for it). No record, no incremental
# derive: the next derive evaluates every patient. The file: one line of JSON ({"format": 1,
# "settings": {...}}), then one line per patient, "IRI<TAB>input digest<TAB>1 or 0 (in scope)" (an IRI
# holds no tab or line break). As JSON, reading and writing 100,000 patients' lines took 0.8 s.
STATE_FILE = "b12kg-derive-state.tsv"
STATE_FORMAT = 1


@dataclass
class DeriveState:
    """What a derived graph was derived with (``settings``: the evaluation date, the knowledge base's and
    the code's digests …) and, for each patient with results in it, the digest of the patient's input
    data then and whether the patient was in the guideline's scope. Patients left out for invalid data
    have no entry (they are evaluated again, and reported again, by every derive)."""

    settings: dict
    patients: dict[str, tuple[str, bool]]

    def write(self, folder: Path) -> None:
        header = json.dumps({"format": STATE_FORMAT, "settings": self.settings}, sort_keys=True)
        lines = [f"{p}\t{d}\t{int(s)}\n" for p, (d, s) in sorted(self.patients.items())]
        (folder / STATE_FILE).write_text(header + "\n" + "".join(lines), encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> "DeriveState | None":
        """The record of a generation; None when it has none, or one this version cannot read (then
        derive evaluates everyone, which is always right)."""
        try:
            header, *lines = (folder / STATE_FILE).read_text(encoding="utf-8").split("\n")
            data = json.loads(header)
            if data.get("format") != STATE_FORMAT or lines[-1] != "":
                return None  # another format, or cut short
            patients = {}
            for line in lines[:-1]:
                iri, digest, scope = line.split("\t")
                patients[iri] = (digest, scope == "1")
            return cls(settings=dict(data["settings"]), patients=patients)
        except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError):
            return None


def _count(store: ox.Store, graph: ox.NamedNode) -> int:
    rows = store.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH {graph} {{ ?s ?p ?o }} }}")
    return int(next(iter(rows))["n"].value)


def _holds_more(store: ox.Store, besides: list[ox.NamedNode], than: int) -> bool:
    """Whether the graphs of ``store`` other than ``besides`` hold more than ``than`` quads. Each graph is
    counted only up to what is still missing (``len(store)`` reads every quad: seconds for a large store)."""
    seen = 0
    for graph in store.named_graphs():
        if graph in besides:
            continue
        query = f"SELECT (COUNT(*) AS ?n) WHERE {{ {{ SELECT * WHERE {{ GRAPH {graph} {{ ?s ?p ?o }} }} LIMIT {than - seen + 1} }} }}"
        seen += int(next(iter(store.query(query)))["n"].value)
        if seen > than:
            return True
    return seen + sum(1 for _ in store.quads_for_pattern(None, None, None, ox.DefaultGraph())) > than


def _copy(quads: Iterable[ox.Quad], store: ox.Store) -> int:
    count, chunk = 0, []
    for q in quads:
        chunk.append(q)
        if len(chunk) >= 200_000:
            store.bulk_extend(chunk)
            count += len(chunk)
            chunk = []
    store.bulk_extend(chunk)
    return count + len(chunk)


class GenerationWriter:
    """A generation being written: a private read-write copy of a committed one, invisible to readers
    until HEAD names it."""

    def __init__(self, name: str, path: Path, store: ox.Store) -> None:
        self.name, self.path, self.store = name, path, store
        self.committed = False

    def clear(self, graph: str) -> None:
        g = ox.NamedNode(graph)
        if self.store.contains_named_graph(g):
            self.store.remove_graph(g)

    def add(self, graph: str, triples: Iterable[ox.Triple]) -> int:
        g = ox.NamedNode(graph)
        return _copy((ox.Quad(t.subject, t.predicate, t.object, g) for t in triples), self.store)

    def replace(self, graph: str, triples: Iterable[ox.Triple]) -> int:
        self.clear(graph)
        return self.add(graph, triples)

    def replace_file(self, graph: str, path: Path, fmt: ox.RdfFormat) -> None:
        """Replace ``graph`` with a Turtle or N-Triples file, through the bulk loader."""
        self.clear(graph)
        try:
            self.store.bulk_load(path=str(path), format=fmt, to_graph=ox.NamedNode(graph),
                                 base_iri=path.resolve().as_uri())
        except SyntaxError as exc:
            where = f"{path}:{exc.lineno}:{exc.offset}" if exc.lineno else str(path)
            raise InputError(f"{where}: {fmt.name} syntax error: {exc.msg}") from None
        except MemoryError as exc:  # the parser's token buffer (a literal or IRI over 16 MiB)
            raise InputError(f"{path}: {fmt.name}: a literal or IRI is too long ({exc})") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if next(iter(self.store.quads_for_pattern(None, None, None, ox.NamedNode(graph))), None) is None:
            raise InputError(f"{path}: contains no RDF triples; nothing was loaded (a dataset is replaced only "
                             "by a file with data)")

    def add_nt(self, graph: str, data: bytes) -> None:
        self.store.bulk_load(input=data, format=ox.RdfFormat.N_TRIPLES, to_graph=ox.NamedNode(graph))

    def count(self, graph: str) -> int:
        return _count(self.store, ox.NamedNode(graph))

    def finish(self) -> None:
        """Flush everything into the generation's files, close it and sync it to disk."""
        self.store.flush()
        del self.store
        _sync_tree(self.path)

    def discard(self) -> None:
        if self.committed:
            return
        self.__dict__.pop("store", None)
        shutil.rmtree(self.path, ignore_errors=True)


class EmbeddedStore(Store):
    """A pyoxigraph store on disk (``--store DIR``), kept as generations (see the module docstring).

    ``EmbeddedStore(DIR, read_only=True)`` reads the generation HEAD names as current, holding a shared
    lock on it until :meth:`close`; it creates nothing in DIR. ``EmbeddedStore(DIR)`` is a writer: it
    creates DIR when needed, holds ``DIR/lock`` exclusively until :meth:`close` (another writer gets
    :class:`StoreBusy`), removes what a killed writer left, and reads the current generation; each
    write builds new generations and switches HEAD to them, and the writer then reads the new current
    generation. Queries of both read the union of all graphs.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.generation = ""
        self._lock_fd: int | None = None
        self._lease_fd: int | None = None
        self._writing = False
        try:
            if not read_only:
                self._open_writer()
            self._view()
        except BaseException:
            self.close()
            raise

    @classmethod
    def generation_view(cls, folder: str | Path) -> "EmbeddedStore":
        """A read-only view of one generation folder that takes no lock: only for a process working for
        a writer that holds the generation (derive's worker processes)."""
        try:
            view = cls.over(ox.Store.read_only(str(folder)))
        except OSError as exc:
            raise StoreError(f"{folder}: cannot open the store: {exc}") from None
        view.path, view.generation = Path(folder).parent, Path(folder).name
        return view

    def __enter__(self) -> "EmbeddedStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------- opening and generations
    def _open_writer(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path}: not a folder")
        _check_layout(self.path, writer=True)  # before anything is created in it
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusy(f"{self.path}: another b12kg load/derive is writing to this store; "
                            "run the command again when it has finished") from None
        self.drop_scratch()
        if _read_head(self.path) is None:  # a new store: one empty generation
            name = self._next_name()
            try:
                ox.Store(str(self.path / name)).flush()
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create the store: {exc}") from None
            _sync_tree(self.path / name)
            _write_head(self.path, name, name)

    def _view(self) -> None:
        """Read the current generation (again), holding a shared lock on it."""
        self._release_view()
        self.generation, self._lease_fd = lease_current(self.path)
        try:
            self.store = ox.Store.read_only(str(self.path / self.generation))
        except OSError as exc:
            raise StoreError(f"{self.path / self.generation}: cannot open the store: {exc}") from None

    def _release_view(self) -> None:
        self.__dict__.pop("store", None)
        if self._lease_fd is not None:
            os.close(self._lease_fd)
            self._lease_fd = None

    def head(self) -> dict:
        """HEAD: ``{"format": 1, "base": NAME, "current": NAME}``."""
        head = _read_head(self.path)
        if head is None:
            raise StoreError(f"{self.path}: {HEAD_FILE} is missing")
        return head

    def _next_name(self) -> str:
        numbers = [int(m.group(1)) for m in map(_GENERATION.match, os.listdir(self.path)) if m]
        return f"{GENERATION_PREFIX}{max(numbers, default=0) + 1:06d}"

    @contextmanager
    def _transaction(self) -> Iterator[list[GenerationWriter]]:
        """One write: the generations it makes go in the list; if it fails they are deleted."""
        if self.read_only or self._lock_fd is None:
            raise StoreError(f"{self.path}: opened read-only")
        if self._writing:
            raise StoreError(f"{self.path}: a write is already in progress")
        self._writing = True
        made: list[GenerationWriter] = []
        try:
            yield made
        except OSError as exc:  # a full disk, a folder that cannot be written …
            for g in made:
                g.discard()
            raise StoreError(f"{self.path}: cannot write the store: {exc.strerror or exc}") from None
        except BaseException:
            for g in made:
                g.discard()
            raise
        finally:
            self._writing = False

    def _new_generation(self, made: list[GenerationWriter], source: ox.Store | str,
                        without: Iterable[str] = (), keep_derived: bool = False) -> GenerationWriter:
        """A private read-write copy of a generation: a RocksDB checkpoint (hard links, milliseconds).
        When the graphs ``without`` (about to be replaced) hold more than the rest, the rest is copied
        into a new store instead: removing quads costs several times more per quad than adding them.
        That copy leaves the derived graph out unless ``keep_derived``."""
        name = self._next_name()
        target = self.path / name
        try:
            if isinstance(source, str):
                source = self.store if source == self.generation else ox.Store.read_only(str(self.path / source))
            dropped = [ox.NamedNode(g) for g in without if source.contains_named_graph(ox.NamedNode(g))]
            replaced = sum(_count(source, g) for g in dropped)
            if replaced and not _holds_more(source, dropped, replaced):
                store = ox.Store(str(target))
                for graph in [ox.DefaultGraph(), *source.named_graphs()]:
                    if graph not in dropped and (keep_derived or graph != ox.NamedNode(GRAPH_DERIVED)):
                        _copy(source.quads_for_pattern(None, None, None, graph), store)
            else:
                source.backup(str(target))
                store = ox.Store(str(target))
            gen = GenerationWriter(name, target, store)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise StoreError(f"{target}: cannot create a generation: {exc}") from None
        made.append(gen)
        return gen

    def _commit(self, base: GenerationWriter | str, current: GenerationWriter | str) -> None:
        """Make the new generations durable, switch HEAD to them (the commit point), read the new
        current generation and delete the generations nobody uses any more."""
        written = [g for g in (base, current) if isinstance(g, GenerationWriter)]
        for g in {id(g): g for g in written}.values():
            g.finish()
        _sync_dir(self.path)
        for g in written:  # from here on HEAD may name them: never discard them (at worst orphans)
            g.committed = True
        _write_head(self.path, getattr(base, "name", base), getattr(current, "name", current))
        self._view()
        self.drop_scratch()

    @contextmanager
    def base_generation(self, replacing: Iterable[str] = ()) -> Iterator[GenerationWriter]:
        """A new base generation made from the current base, for replacing dataset graphs (name them
        in ``replacing``: it can make the copy cheaper). When the block ends normally it becomes HEAD's
        base and current, so the derived graph is cleared (its recommendations came from the replaced
        data). When the block raises, the generation is deleted and nothing changes."""
        with self._transaction() as made:
            gen = self._new_generation(made, self.head()["base"], without=replacing)
            gen.clear(GRAPH_DERIVED)  # a base never holds one; this makes sure
            yield gen
            self._commit(gen, gen)

    def replace_datasets(self, replacing: list[str], fill: Callable[[GenerationWriter], None],
                         carry: Callable[[GenerationWriter, DeriveState], tuple[list[str], DeriveState] | None]
                         | None = None) -> bool:
        """Replace dataset graphs: ``fill`` writes them into a new base generation made from the current
        base. Without ``carry``, or when the current generation has no derive record, that base becomes
        HEAD's base and current: no derived graph (its results came from the replaced data).

        Otherwise ``carry(base, record)`` says which derived results the new data leaves valid: it
        returns the SPARQL updates that delete the others and the record of what stays (or None: keep
        no derived graph). A new current generation is then made from the current one, ``fill`` writes
        the datasets into it too, the updates run and the record is written, and HEAD switches to both
        at once. Returns whether derived results were kept. When anything raises, nothing changes."""
        head = self.head()
        with self._transaction() as made:
            base = self._new_generation(made, head["base"], without=replacing)
            base.clear(GRAPH_DERIVED)  # a base never holds one; this makes sure
            fill(base)
            record = self._record(head)
            plan = carry(base, record) if carry is not None and record is not None else None
            if plan is None:
                self._commit(base, base)
                return False
            updates, kept = plan
            base.store.flush()
            current = self._new_generation(made, head["current"], without=replacing, keep_derived=True)
            fill(current)
            for text in updates:
                current.store.update(text)
            kept.write(current.path)
            self._commit(base, current)
            return True

    def derive_state(self) -> DeriveState | None:
        """The record of the derived graph readers see now (None: none, or no derived graph)."""
        return self._record(self.head())

    def _record(self, head: dict) -> DeriveState | None:
        """The derive record of HEAD's current generation (None: none, or no derived graph)."""
        return DeriveState.read(self.path / head["current"]) if head["current"] != head["base"] else None

    def replace_derived(self, ontology: list[ox.Triple], chunks: Iterable[bytes],
                        state: Callable[[], DeriveState] | None = None) -> int:
        """A new base (the base with ``ontology`` as its ontology graph) and a new current generation
        (that base plus the derived graph, bulk-loaded chunk by chunk as ``chunks`` yields them, and
        the record ``state()`` returns once they are all read); HEAD switches to both at once. Returns
        the triples in the new derived graph."""
        with self._transaction() as made:
            base = self._new_generation(made, self.head()["base"])
            base.replace(GRAPH_ONTOLOGY, ontology)
            base.clear(GRAPH_DERIVED)
            base.store.flush()
            current = self._new_generation(made, base.store)
            for group in _grouped(chunks, INGEST_BYTES):
                current.add_nt(GRAPH_DERIVED, group)
            count = current.count(GRAPH_DERIVED)
            if state is not None:
                state().write(current.path)
            self._commit(base, current)
            return count

    def update_derived(self, updates: Iterable[str], chunks: Iterable[bytes],
                       state: Callable[[], DeriveState]) -> int:
        """A new current generation made from the current one: the SPARQL ``updates`` (deleting the
        results about to be derived again) run on it, the triples of ``chunks`` are added to its derived
        graph, and the record ``state()`` returns is written; HEAD's base stays. Returns the triples
        ``chunks`` held (counting the derived graph would read all of it: seconds at 100,000 patients)."""
        head = self.head()
        if head["current"] == head["base"]:
            raise StoreError(f"{self.path}: no derived graph to update; derive every patient")
        with self._transaction() as made:
            current = self._new_generation(made, head["current"])
            for text in updates:
                current.store.update(text)
            count = 0
            for group in _grouped(chunks, INGEST_BYTES):
                current.add_nt(GRAPH_DERIVED, group)
                count += group.count(b"\n")
            state().write(current.path)
            self._commit(head["base"], current)
            return count

    def compact(self) -> tuple[str, str]:
        """A new current generation made from the current one and compacted (RocksDB merges every level
        and drops what deletes and replaced graphs left behind), with the derive record; HEAD switches
        to it. A generation is written by bulk loads and closed, so RocksDB never finishes compacting
        it on its own, and whole-cohort queries that sort or scan read more than they need. The data
        do not change. When the store has no derived graph, the new generation is base and current.
        Returns the old and the new current generation's names."""
        head = self.head()
        with self._transaction() as made:
            gen = self._new_generation(made, head["current"])
            gen.store.optimize()
            record = self._record(head)
            if record is not None:
                record.write(gen.path)
            self._commit(gen if head["base"] == head["current"] else head["base"], gen)
        return head["current"], gen.name

    @classmethod
    def over(cls, store: ox.Store) -> "EmbeddedStore":
        """Queries over an open Oxigraph store (a generation being written), read as the store reads:
        the union of its graphs. It opens, locks and closes nothing."""
        view = cls.__new__(cls)
        view.path, view.read_only, view.generation, view.store = Path("."), True, "", store
        view._lock_fd = view._lease_fd = None
        view._writing = False
        return view

    def replace_graph(self, graph: str, triples: Iterable[ox.Triple]) -> int:
        """Replace one graph through new generations: the derived graph in a new current generation
        made from the base; the ontology graph in both base and current; any other graph (a dataset)
        in a new base, which clears the derived graph."""
        head = self.head()
        if graph == GRAPH_DERIVED:
            with self._transaction() as made:
                gen = self._new_generation(made, head["base"])
                count = gen.replace(graph, triples)
                self._commit(head["base"], gen)
                return count
        if graph == GRAPH_ONTOLOGY and head["base"] != head["current"]:
            triples = list(triples)
            with self._transaction() as made:
                base = self._new_generation(made, head["base"])
                count = base.replace(graph, triples)
                current = self._new_generation(made, head["current"])
                current.replace(graph, triples)
                self._commit(base, current)
                return count
        with self.base_generation(replacing=[graph]) as gen:
            return gen.replace(graph, triples)

    def drop_scratch(self) -> list[str]:
        """Delete the generations HEAD does not name and no reader holds: the old ones, and those a
        killed writer left half-written (readers never see them: HEAD does not name them). Also the
        temporary HEAD file a killed writer may leave. Only a writer deletes. Returns what it deleted."""
        if self.read_only or self._lock_fd is None:
            return []
        head = _read_head(self.path)
        keep = {head["base"], head["current"]} if head else set()
        removed = []
        for entry in sorted(os.listdir(self.path)):
            path = self.path / entry
            if entry.startswith(HEAD_FILE + ".tmp"):
                path.unlink(missing_ok=True)
                removed.append(entry)
                continue
            if not _GENERATION.match(entry) or entry in keep:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a reader (b12kg serve, a query) still uses it
                continue
            try:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(entry)
            finally:
                os.close(fd)
        return removed

    def generations(self) -> list[str]:
        """The generation folders in DIR (HEAD's and any others not deleted yet)."""
        return sorted(e for e in os.listdir(self.path) if _GENERATION.match(e))

    # ----------------------------------------------------------------------------------- reading
    def has_graph(self, graph: str) -> bool:
        return self.store.contains_named_graph(ox.NamedNode(graph))

    def select_with_columns(self, text, bindings=None):
        names, rows = self.select_stream(text, bindings)
        return names, list(rows)

    def select_stream(self, text, bindings=None):
        solutions = self.store.query(bind(text, bindings), use_default_graph_as_union=True)
        if not isinstance(solutions, ox.QuerySolutions):
            raise InputError("not a SELECT query: its answer is not a table of rows")
        names = [v.value for v in solutions.variables]
        return names, ({n: s[n] for n in names if s[n] is not None} for s in solutions)

    def construct(self, text, bindings=None):
        return list(self.construct_stream(text, bindings))

    def construct_stream(self, text, bindings=None):
        return iter(self.store.query(bind(text, bindings), use_default_graph_as_union=True))

    def construct_nt(self, text, bindings=None):
        result = self.store.query(bind(text, bindings), use_default_graph_as_union=True)
        return result.serialize(format=ox.RdfFormat.N_TRIPLES) or b""

    def update(self, text):
        raise StoreError(f"{self.path}: the embedded store takes no SPARQL updates; it changes only "
                         "through load, derive and import-fhir (new generations)")

    def _fill(self, graph, triples):
        raise StoreError(f"{self.path}: the embedded store fills graphs only inside a new generation")

    def dump(self, fmt: ox.RdfFormat, graph: str | None = None, output: BinaryIO | None = None) -> bytes | None:
        """The store (or one graph) serialised; written to ``output`` as it is read when one is given."""
        if graph is None:
            return self.store.dump(output, format=fmt)
        return self.store.dump(output, format=fmt, from_graph=ox.NamedNode(graph))

    def close(self) -> None:
        """Release the store and its locks (a writer's data is on disk once each write returns)."""
        self._release_view()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


# The most rows one request to a remote store binds in a VALUES block (the patients of a batch read,
# a delete). Virtuoso 7 answers 2,000 rows, and refuses 5,000 ("SP030 … Too many arguments").
VALUES_ROWS = 1_000

# The size above which derive --replace batches sends a batch's results as several requests (of whole
# patients). Virtuoso 7 refuses a request over 10 MB ("SR… The requested string session is longer than
# 10Mb"); a batch of 1,000 patients' results is about 20 MB.
REQUEST_BYTES = 8 * 2**20


@dataclass(frozen=True)
class Ownership:
    """The queries that say what each patient owns in the derived graph (``queries/cohort/``), for the
    remote stores' deletes. ``subjects`` (owned-subjects and owned-facts, bound to ``?patient``) and ``triples``
    (subject-triples, bound to ``?subject``) read it, so the request that replaces it can name each
    triple (``DELETE DATA``); ``delete`` (delete-derived, bound to ``?patient``) and
    ``delete_subjects`` (delete-derived-subjects, bound to ``?orphan``) delete by pattern instead, when
    the triples read hold a blank node (which ``DELETE DATA`` cannot name) or would make a request of
    more than ``request_bytes``. ``owners`` (unbound, on a batch's new results alone) splits a batch.
    ``orphans`` (derived-orphans) finds what no patient of the datasets owns any more after a run;
    ``blank_orphans`` (delete-blank-orphans) deletes those that are blank nodes."""

    subjects: tuple[str, ...]
    triples: str
    delete: str
    delete_subjects: str
    owners: str
    orphans: str
    blank_orphans: str


def _by_patient(patients: list[str], data: bytes, owners: str, budget: int,
                most: int) -> Iterator[tuple[list[str], list[ox.Triple]]]:
    """A batch's derived triples (N-Triples) as groups of at most ``most`` whole patients whose
    N-Triples stay within ``budget`` bytes (a patient larger than that alone); the triples no patient
    of the batch owns go with the first group. One group, the whole batch, when it fits."""
    if (len(data) <= budget and len(patients) <= most) or len(patients) < 2:
        yield patients, list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES))
        return
    scratch = ox.Store()
    scratch.load(data, format=ox.RdfFormat.N_TRIPLES)
    owner: dict[object, str] = {}
    for row in scratch.query(owners):
        owner.setdefault(row["subject"], row["patient"].value)
    for p in patients:
        owner[ox.NamedNode(p)] = p
    owned: dict[str | None, list[ox.Triple]] = {}
    for q in scratch:
        owned.setdefault(owner.get(q.subject), []).append(q.triple)
    in_batch = set(patients)
    shared = [t for who, ts in owned.items() if who not in in_batch for t in ts]
    yield from _packed(((p, owned.get(p, [])) for p in patients), budget, size=_triple_size, most=most, start=shared)


class RemoteStore(Store):
    """Any SPARQL 1.1 Protocol endpoint (``--endpoint URL [--update-endpoint URL]``), via SPARQLWrapper."""

    def __init__(self, endpoint: str, *, update_endpoint: str | None = None, user: str | None = None,
                 password: str | None = None, auth: str = "basic", timeout: int = 300,
                 batch: int = 5_000, request_bytes: int = REQUEST_BYTES, values_rows: int = VALUES_ROWS) -> None:
        from SPARQLWrapper import SPARQLWrapper

        self.endpoint, self.update_endpoint, self.batch = endpoint, update_endpoint or endpoint, batch
        self.request_bytes, self.values_rows = request_bytes, values_rows

        def client(url: str):
            w = SPARQLWrapper(url)
            w.setTimeout(timeout)
            if user is not None:
                from SPARQLWrapper import BASIC, DIGEST

                w.setHTTPAuth(DIGEST if auth == "digest" else BASIC)
                w.setCredentials(user, password or "")
            return w

        self._client = client

    def _query(self, text: str, accept: str) -> bytes:
        with self._answer(text, accept) as response:
            try:
                return response.read()
            except Exception as exc:  # urllib raises many types
                raise StoreError(f"{self.endpoint}: query failed: {_first_line(exc)}") from None

    @contextmanager
    def _answer(self, text: str, accept: str) -> Iterator[BinaryIO]:
        """The server's answer as a stream, to be parsed as it arrives (for answers as large as the store)."""
        from SPARQLWrapper import POST

        w = self._client(self.endpoint)
        w.setMethod(POST)
        # A form-encoded POST (query=...): Virtuoso 7.2 never answers a direct application/sparql-query POST.
        w.setRequestMethod("urlencoded")
        w.setOnlyConneg(True)  # the Accept header alone names the format (no format=... parameter)
        _set_text(w, text)
        w.addCustomHttpHeader("Accept", accept)
        try:
            response = w.query().response
        except Exception as exc:  # urllib and SPARQLWrapper raise many types
            raise StoreError(f"{self.endpoint}: query failed: {_first_line(exc)}") from None
        try:
            yield response
        finally:
            response.close()

    def dump(self, fmt: ox.RdfFormat, graph: str | None = None, output: BinaryIO | None = None) -> bytes | None:
        """The endpoint's graphs (or one graph) serialised, each graph read as a stream of N-Triples
        (``CONSTRUCT``): nothing holds the whole answer. Blank nodes keep the labels the server gives."""
        if output is None:
            buffer = io.BytesIO()
            self.dump(fmt, graph, buffer)
            return buffer.getvalue()
        graphs = [graph] if graph is not None else sorted(
            r["g"].value for r in self.select("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }")
            if isinstance(r.get("g"), ox.NamedNode))
        def statements():  # (an error writing ``output`` is raised in serialize, not here)
            for name in graphs:
                node = ox.NamedNode(name)
                text = bind("CONSTRUCT { ?s ?p ?o } WHERE { GRAPH ?g { ?s ?p ?o } }", {"g": node})
                for t in self._ntriples(text, f"graph {name}", "export from the store itself"):
                    yield t if graph is not None else ox.Quad(t.subject, t.predicate, t.object, node)

        with closing(statements()) as stream:
            ox.serialize(stream, output, format=fmt)
        return None

    def select_stream(self, text, bindings=None):
        """Rows parsed from SPARQL XML results as they arrive (the JSON of :meth:`select_with_columns`
        is read whole; pyoxigraph's streaming parsers refuse Virtuoso's ``nodeID://`` blank nodes)."""
        import xml.etree.ElementTree as ET

        answer = ExitStack()
        response = answer.enter_context(self._answer(bind(text, bindings), "application/sparql-results+xml"))
        events = ET.iterparse(response, events=("start", "end"))

        def failed(exc: Exception) -> StoreError:
            return StoreError(f"{self.endpoint}: reading the answer failed: {_first_line(exc)}")

        columns, results = [], None
        try:
            for event, element in events:
                if event == "end" and element.tag == _SR + "variable":
                    columns.append(element.get("name"))
                elif event == "start" and element.tag in (_SR + "results", _SR + "boolean"):
                    results = element
                    break
        except (ET.ParseError, OSError, http.client.HTTPException) as exc:
            answer.close()
            raise failed(exc) from None

        def rows() -> Iterator[dict[str, Term]]:
            with answer:
                try:
                    for event, element in events:
                        if event == "end" and element.tag == _SR + "result":
                            yield {b.get("name"): _xml_term(b[0]) for b in element.iter(_SR + "binding") if len(b)}
                            results.clear()  # the rows already given
                except (ET.ParseError, OSError, http.client.HTTPException, ValueError) as exc:
                    raise failed(exc) from None

        return columns, rows()

    def select_with_columns(self, text, bindings=None):
        import json

        data = json.loads(self._query(bind(text, bindings), "application/sparql-results+json"))
        rows = [{k: _term(v) for k, v in row.items()} for row in data["results"]["bindings"]]
        return list(data.get("head", {}).get("vars", [])), rows

    def construct(self, text, bindings=None):
        data = self._query(bind(text, bindings), "application/n-triples")
        return list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES))

    def construct_stream(self, text, bindings=None):
        """A CONSTRUCT query's triples parsed from the server's N-Triples as they arrive: nothing holds
        the whole answer (``export --expand-provenance`` of a whole cohort). The request is sent when
        the first triple is asked for; closing the iterator closes the connection."""
        return self._ntriples(bind(text, bindings), "the answer", "query the store itself")

    def _ntriples(self, text: str, what: str, instead: str) -> Iterator[ox.Triple]:
        """The triples of a CONSTRUCT, read from the server's N-Triples as they arrive; an answer the
        endpoint cut at its row limit, or one that breaks off, is a StoreError naming ``what`` was read
        (and, for a cut, ``instead``: what to do)."""
        with self._answer(text, "application/n-triples") as answer:
            if (answer.headers.get("X-B12KG-Truncated") or "").lower() == "true":
                raise StoreError(f"{self.endpoint}: the endpoint cut {what} at its row limit "
                                 f"(X-B12KG-Truncated): {instead}, or serve it with a larger --limit")
            try:
                yield from ox.parse(answer, format=ox.RdfFormat.N_TRIPLES)
            except (OSError, SyntaxError, http.client.HTTPException) as exc:
                raise StoreError(f"{self.endpoint}: reading {what} failed: {_first_line(exc)}") from None

    def update(self, text):
        from SPARQLWrapper import POST

        w = self._client(self.update_endpoint)
        w.setMethod(POST)
        w.setRequestMethod("postdirectly")
        _set_text(w, text)
        try:
            w.query().response.read()
        except Exception as exc:
            raise StoreError(f"{self.update_endpoint}: update failed: {_first_line(exc)}") from None

    def _fill(self, graph, triples):
        # Triples with blank nodes (the ontology's OWL lists and restrictions) go in one final
        # INSERT { ... } WHERE {} request: a blank node keeps its identity only within one request,
        # and Virtuoso 7 refuses blank nodes in INSERT DATA.
        count, chunk, with_blanks = 0, [], []
        for t in triples:
            if _has_blank(t):
                with_blanks.append(_line(t))
                continue
            chunk.append(_line(t))
            if len(chunk) >= self.batch:
                self.update(_data_ops("INSERT", graph, chunk))
                count += len(chunk)
                chunk = []
        if chunk:
            self.update(_data_ops("INSERT", graph, chunk))
            count += len(chunk)
        if with_blanks:
            self.update(_insert_where(graph, with_blanks))
            count += len(with_blanks)
        return count

    def replace_derived_by_batch(self, ontology: list[ox.Triple], batches: Iterable[tuple[list[str], bytes]], *,
                                 own: Ownership, chunk: int) -> int:
        """Replace the derived graph patient by patient instead of in one request: for each batch
        (its patients' IRIs and their derived triples as N-Triples) one update request deletes what
        the derived graph holds for those patients (read first with ``own``, then named in
        ``DELETE DATA``) and inserts their new triples, so each patient's results change at once and
        nothing of an earlier run is left beside them. A batch whose new results would pass half of
        ``request_bytes`` (the request carries the earlier results too) is sent as several requests
        of whole patients. Then the results of patients no longer in any dataset and subjects nothing
        points at any more (``own.orphans``) are deleted, ``chunk`` at a time. No request grows with the
        cohort; a run that stops leaves some patients with the earlier results (each patient whole).
        Reading and deleting are two requests: no other writer may change the derived graph during a
        run. Returns the triples in the derived graph."""
        self.replace_graph(GRAPH_ONTOLOGY, ontology)
        for patients, data in batches:
            for group, triples in _by_patient(patients, data, own.owners, self.request_bytes // 2, self.values_rows):
                self._replace_patients(own, [ox.NamedNode(p) for p in group], triples)
        rows = self.select(own.orphans)
        self.delete_derived(own, [r["patient"].value for r in rows if "patient" in r], chunk=chunk)
        self.delete_subjects(own, [r["orphan"].value for r in rows if isinstance(r.get("orphan"), ox.NamedNode)],
                             chunk=chunk)
        while any(isinstance(r.get("orphan"), ox.BlankNode) for r in rows):  # not in b12kg's own output
            self.update(own.blank_orphans)  # one level of nested blank nodes per round
            rows = self.select(own.orphans)
        rows = self.select("SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }", {"g": ox.NamedNode(GRAPH_DERIVED)})
        return int(rows[0]["n"].value)

    def delete_derived(self, own: Ownership, iris: Iterable[str], *, chunk: int) -> None:
        """Delete what the derived graph holds for these patients, ``chunk`` of them per read and each
        patient's triples within one request (of at most ``request_bytes``)."""
        ordered = [ox.NamedNode(iri) for iri in sorted(set(iris))]
        for part in chunks(ordered, min(chunk, self.values_rows)):
            self._delete_named(self._owned(own, part), bind(own.delete, {"patient": part}))

    def delete_subjects(self, own: Ownership, iris: Iterable[str], *, chunk: int) -> None:
        """Delete the derived graph's triples about these subjects (orphans), ``chunk`` per read."""
        ordered = [ox.NamedNode(iri) for iri in sorted(set(iris))]
        for part in chunks(ordered, min(chunk, self.values_rows)):
            self._delete_named(self._subject_lines(own, part), bind(own.delete_subjects, {"orphan": part}))

    def _delete_named(self, lines: Mapping[object, list[str]] | None, by_pattern: str) -> None:
        """``DELETE DATA`` of each key's lines (a patient's or a subject's triples), in requests of whole
        keys within ``request_bytes``; the update ``by_pattern`` instead when they are None (a blank node)."""
        if lines is None:
            self.update(by_pattern)
            return
        for _, run in _packed(lines.items(), self.request_bytes, size=_line_size):
            if run:
                self.update(_data_ops("DELETE", GRAPH_DERIVED, run))

    def _owned(self, own: Ownership, patients: list[ox.NamedNode]) -> dict[str, list[str]] | None:
        """Each patient's triples in the derived graph (N-Triples lines, per patient IRI), as
        ``own.subjects`` defines them; None when one of them holds a blank node."""
        owner: dict[object, str] = {p: p.value for p in patients}
        for part in chunks(patients, self.values_rows):
            for text in own.subjects:
                for row in self.select(text, {"patient": part}):
                    owner.setdefault(row["subject"], row["patient"].value)
        by_subject = self._subject_lines(own, list(owner))
        if by_subject is None:
            return None
        lines: dict[str, list[str]] = {p.value: [] for p in patients}
        for subject, mine in by_subject.items():
            lines[owner[subject]] += mine
        return lines

    def _subject_lines(self, own: Ownership, subjects: list) -> dict[object, list[str]] | None:
        """The derived graph's triples about each subject (N-Triples lines); None when one of the
        subjects or triples is a blank node (``DELETE DATA`` cannot name it)."""
        if any(isinstance(s, ox.BlankNode) for s in subjects):
            return None
        lines: dict[object, list[str]] = {s: [] for s in subjects}
        for part in chunks(subjects, self.values_rows):
            for t in self.construct(own.triples, {"subject": part}):
                if _has_blank(t):
                    return None
                lines[t.subject].append(_line(t))
        return lines

    def _replace_patients(self, own: Ownership, patients: list[ox.NamedNode], triples: Iterable[ox.Triple]) -> None:
        """One update request: delete what the derived graph holds for ``patients``, then insert
        ``triples`` into it. SPARQL 1.1 Update asks a store to apply each request atomically; an
        Oxigraph server runs it as one transaction. The earlier triples are read and named
        (``DELETE DATA``): Virtuoso deletes them some 20 times faster than by pattern and finds them
        with a plan whose cost does not grow with the cohort (queries/cohort/owned-subjects.rq). Only
        what changed is sent: earlier triples derived again stay, new ones already there are not
        inserted. When the earlier triples hold a blank node or the request would be too large, it
        deletes by pattern (delete-derived) and inserts every new triple."""
        if not patients:
            return
        plain, with_blanks = [], []
        for t in triples:
            (with_blanks if _has_blank(t) else plain).append(_line(t))
        old = self._owned(own, patients)
        if old is not None:  # only what changed: the earlier triples not derived again, the new ones not there
            earlier = {x for lines in old.values() for x in lines}
            new = set(plain)
            deletes = _data_ops("DELETE", GRAPH_DERIVED, sorted(earlier - new))
            inserts = [_data_ops("INSERT", GRAPH_DERIVED, [x for x in plain if x not in earlier])]
        if old is None or len(deletes) + sum(map(len, inserts)) > self.request_bytes:
            deletes, inserts = bind(own.delete, {"patient": patients}), [_data_ops("INSERT", GRAPH_DERIVED, plain)]
        if with_blanks:
            inserts.append(_insert_where(GRAPH_DERIVED, with_blanks))
        operations = [op for op in [deletes, *inserts] if op]
        if operations:
            self.update(" ;\n".join(operations))


def chunks(items: list, size: int | None) -> Iterator[list]:
    """``items`` in consecutive slices of ``size`` (one slice when ``size`` is None or 0)."""
    step = size or len(items) or 1
    for i in range(0, len(items), step):
        yield items[i : i + step]


K = TypeVar("K")
V = TypeVar("V")


def _packed(groups: Iterable[tuple[K, list[V]]], budget: int, *, size: Callable[[V], int],
            most: int | None = None, start: list[V] | None = None) -> Iterator[tuple[list[K], list[V]]]:
    """Groups of items (one patient's or one subject's triples, under its key) in runs of whole groups:
    at most ``budget`` bytes (``size`` of each item) and ``most`` groups a run, a group larger than the
    budget alone. ``start`` (items of no key) goes first in the first run. Yields (keys, items)."""
    keys: list[K] = []
    items: list[V] = list(start or [])
    total = sum(map(size, items))
    for key, group in groups:
        more = sum(map(size, group))
        if keys and (total + more > budget or (most is not None and len(keys) >= most)):
            yield keys, items
            keys, items, total = [], [], 0
        keys.append(key)
        items += group
        total += more
    if keys or items:
        yield keys, items


def _line_size(line: str) -> int:
    return len(line) + 1


def _triple_size(t: ox.Triple) -> int:
    return len(_line(t)) + 1


def _line(t: ox.Triple) -> str:
    return f"{t.subject} {t.predicate} {t.object} ."


def _has_blank(t: ox.Triple) -> bool:
    return isinstance(t.subject, ox.BlankNode) or isinstance(t.object, ox.BlankNode)


# Triples per INSERT DATA or DELETE DATA operation. A request may hold several operations
# (``;``-separated, applied as one request); Virtuoso 7's SPARQL compiler refuses one operation of about
# 5,000 triples ("SP030 … memory exhausted": its parser stack grows with the triples of one operation),
# so longer ones are split into operations of this many.
DATA_TRIPLES = 1_000


def _data_ops(verb: str, graph: str, lines: list[str]) -> str:
    """INSERT DATA or DELETE DATA operations (``verb``) for ``lines`` (N-Triples), at most
    DATA_TRIPLES each, as one request; "" for no lines."""
    return " ;\n".join(f"{verb} DATA {{ GRAPH <{graph}> {{\n" + "\n".join(lines[i : i + DATA_TRIPLES])
                        + "\n} }" for i in range(0, len(lines), DATA_TRIPLES))


def _insert_where(graph: str, lines: list[str]) -> str:
    return f"INSERT {{ GRAPH <{graph}> {{\n" + "\n".join(lines) + "\n} } WHERE {}"


# The prologue of a request (space, comments, PREFIX and BASE declarations), then its form's keyword.
_FORM = re.compile(r"(?:\s+|#[^\n]*|PREFIX\s+[^\s:]*:\s*<[^>]*>|BASE\s*<[^>]*>)*([A-Za-z]+)", re.IGNORECASE)


def _set_text(wrapper, text: str) -> None:
    """Give SPARQLWrapper the request text. Its ``setQuery`` finds the query form by running a regex
    over the whole text, which took three quarters of the time of a 5,000-triple INSERT DATA (and the
    batch queries carry 1,000 patient IRIs). The form is the first keyword after the prologue, so it is
    read here and set through the documented ``queryString`` / ``queryType`` attributes; a text whose
    form is not found that way goes through ``setQuery``."""
    from SPARQLWrapper import Wrapper as sw  # the query-form constants ("to be used to set the query type")

    forms = {sw.SELECT, sw.CONSTRUCT, sw.ASK, sw.DESCRIBE, sw.INSERT, sw.DELETE, sw.CREATE, sw.CLEAR,
             sw.DROP, sw.LOAD, sw.COPY, sw.MOVE, sw.ADD}
    match = _FORM.match(text)
    form = match.group(1).upper() if match else ""
    if form in forms:
        wrapper.queryString, wrapper.queryType = text, form
    else:
        wrapper.setQuery(text)


def _first_line(exc: Exception) -> str:
    """One line for a failed request: the server's own first line when SPARQLWrapper carries its response
    (\"Virtuoso 37000 Error SP030: …\" says more than \"QueryBadFormed: A bad request has been sent\")."""
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    _, found, response = text.partition("\n\nResponse:\n")
    if found:
        try:
            body = ast.literal_eval(response.strip())
        except (ValueError, SyntaxError):
            body = response
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        said = next((part.strip() for part in str(body).splitlines() if part.strip()), "")
        if said:
            line = f"{type(exc).__name__}: {said}"
    return line[:300]


def _term(value: dict) -> Term:
    kind = value["type"]
    if kind == "uri":
        return ox.NamedNode(value["value"])
    if kind == "bnode":
        return _blank(value["value"])
    if "xml:lang" in value:
        return ox.Literal(value["value"], language=value["xml:lang"])
    if "datatype" in value:
        return ox.Literal(value["value"], datatype=ox.NamedNode(value["datatype"]))
    return ox.Literal(value["value"])


_SR = "{http://www.w3.org/2005/sparql-results#}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _blank(label: str) -> ox.BlankNode:
    """Virtuoso names blank nodes nodeID://b123, not a valid blank node label."""
    return ox.BlankNode(re.sub(r"[^A-Za-z0-9_]", "_", label))


def _xml_term(element) -> Term:
    """A term of SPARQL XML results (``<uri>``, ``<bnode>``, ``<literal>``, SPARQL 1.2 ``<triple>``)."""
    kind, text = element.tag[len(_SR):], element.text or ""
    if kind == "uri":
        return ox.NamedNode(text)
    if kind == "bnode":
        return _blank(text)
    if kind == "triple":
        parts = {part.tag[len(_SR):]: _xml_term(part[0]) for part in element}
        return ox.Triple(parts["subject"], parts["predicate"], parts["object"])
    if kind != "literal":
        raise ValueError(f"unknown term <{kind}> in the results")
    if element.get(_XML_LANG):
        return ox.Literal(text, language=element.get(_XML_LANG))
    if element.get("datatype"):
        return ox.Literal(text, datatype=ox.NamedNode(element.get("datatype")))
    return ox.Literal(text)


def open_store(*, store: Path | None = None, endpoint: str | None = None, update_endpoint: str | None = None,
               user: str | None = None, password: str | None = None, auth: str = "basic",
               read_only: bool = False) -> Store:
    """The backend the command-line options name: exactly one of ``--store`` or ``--endpoint``."""
    if (store is None) == (endpoint is None):
        raise InputError("give exactly one of --store DIR or --endpoint URL")
    if store is not None:
        return EmbeddedStore(store, read_only=read_only)
    return RemoteStore(endpoint, update_endpoint=update_endpoint, user=user, password=password, auth=auth)

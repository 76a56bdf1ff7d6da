"""Where cohorts live: an embedded on-disk store, or any SPARQL 1.1 endpoint, behind one interface.

Named graphs are kept apart:

* ``urn:b12kg:graph:ontology`` — the knowledge base (all ontology modules), refreshed by ``derive``;
* ``urn:b12kg:dataset:NAME`` — one graph per loaded patient dataset (``load`` replaces a dataset
  with the same name, never duplicates it);
* ``urn:b12kg:graph:derived`` — derived recommendations, findings, patient states and provenance.

Every graph is replaced atomically: the new content goes into a scratch graph, then one SPARQL 1.1
``MOVE`` replaces the target (one transaction in Oxigraph; a single update request on a remote
store). Queries read the union of all graphs (Oxigraph: ``use_default_graph_as_union``; an Oxigraph
server started with ``--union-default-graph``; Virtuoso's default). Only standard SPARQL 1.1 is sent.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyoxigraph as ox

from b12kg.errors import B12kgError, ExitCode, InputError
from b12kg.sparql import Term, bind

from b12kg.namespaces import GRAPH_DERIVED, GRAPH_ONTOLOGY  # noqa: E402  (one place for graph names)
DATASET_PREFIX = "urn:b12kg:dataset:"
SCRATCH_PREFIX = "urn:b12kg:scratch:"
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

    def select(self, text: str, bindings: Mapping[str, object] | None = None) -> list[dict[str, Term]]:
        return self.select_with_columns(text, bindings)[1]

    @abstractmethod
    def select_with_columns(self, text: str, bindings: Mapping[str, object] | None = None
                            ) -> tuple[list[str], list[dict[str, Term]]]:
        """A SELECT query's projected variables (as the store reports them) and its rows."""

    @abstractmethod
    def construct(self, text: str, bindings: Mapping[str, object] | None = None) -> list[ox.Triple]: ...

    @abstractmethod
    def update(self, text: str) -> None: ...

    @abstractmethod
    def _fill(self, graph: str, triples: Iterable[ox.Triple]) -> int:
        """Add triples to a (scratch) graph; returns how many were sent."""

    def replace_graph(self, graph: str, triples: Iterable[ox.Triple]) -> int:
        """Atomically replace ``graph`` with ``triples``: fill a scratch graph, then MOVE it."""
        scratch = SCRATCH_PREFIX + graph
        self.update(f"DROP SILENT GRAPH <{scratch}>")
        count = self._fill(scratch, triples)
        if count == 0:
            self.update(f"DROP SILENT GRAPH <{graph}>")
        else:
            self.update(f"MOVE SILENT GRAPH <{scratch}> TO GRAPH <{graph}>")
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

    def graphs(self) -> list[str]:
        rows = self.select("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }")
        return sorted(r["g"].value for r in rows)

    def drop_scratch(self) -> list[str]:
        """Drop the scratch graphs a stopped (killed) run left behind: queries read the union of all
        graphs, where they would be seen beside the real ones. Returns the graphs dropped."""
        stale = [g for g in self.graphs() if g.startswith(SCRATCH_PREFIX)]
        for g in stale:
            self.update(f"DROP SILENT GRAPH <{g}>")
        return stale

    def datasets(self) -> list[str]:
        return [g for g in self.graphs() if g.startswith(DATASET_PREFIX)]

    def close(self) -> None:
        """Release the store (the embedded store flushes to disk)."""


class EmbeddedStore(Store):
    """A pyoxigraph store on disk (``--store DIR``)."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        try:
            if read_only:
                if not self.path.is_dir():
                    raise StoreError(f"{self.path}: no store here (run b12kg load --store {self.path} first)")
                self.store = ox.Store.read_only(str(self.path))
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self.store = ox.Store(str(self.path))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None

    def select_with_columns(self, text, bindings=None):
        solutions = self.store.query(bind(text, bindings), use_default_graph_as_union=True)
        names = [v.value for v in solutions.variables]
        return names, [{n: s[n] for n in names if s[n] is not None} for s in solutions]

    def construct(self, text, bindings=None):
        return list(self.store.query(bind(text, bindings), use_default_graph_as_union=True))

    def construct_nt(self, text, bindings=None):
        result = self.store.query(bind(text, bindings), use_default_graph_as_union=True)
        return result.serialize(format=ox.RdfFormat.N_TRIPLES) or b""

    def update(self, text):
        self.store.update(text)

    def _fill(self, graph, triples):
        # The scratch graph needs no transaction of its own: the MOVE that follows is the atomic step.
        g = ox.NamedNode(graph)
        count, chunk = 0, []
        for t in triples:
            chunk.append(ox.Quad(t.subject, t.predicate, t.object, g))
            if len(chunk) >= 200_000:
                self.store.bulk_extend(chunk)
                count += len(chunk)
                chunk = []
        self.store.bulk_extend(chunk)
        return count + len(chunk)

    def bulk_load_file(self, graph: str, path: Path, fmt: ox.RdfFormat) -> None:
        """Load a large file into a scratch graph with the bulk loader, then MOVE it into place."""
        scratch = SCRATCH_PREFIX + graph
        self.update(f"DROP SILENT GRAPH <{scratch}>")
        try:
            self.store.bulk_load(path=str(path), format=fmt, to_graph=ox.NamedNode(scratch),
                                 base_iri=path.resolve().as_uri())
        except SyntaxError as exc:
            self.update(f"DROP SILENT GRAPH <{scratch}>")
            where = f"{path}:{exc.lineno}:{exc.offset}" if exc.lineno else str(path)
            raise InputError(f"{where}: {fmt.name} syntax error: {exc.msg}") from None
        self.update(f"MOVE SILENT GRAPH <{scratch}> TO GRAPH <{graph}>")

    def drop_scratch(self) -> list[str]:
        stale = [g.value for g in self.store.named_graphs()
                 if isinstance(g, ox.NamedNode) and g.value.startswith(SCRATCH_PREFIX)]
        for g in stale:
            self.update(f"DROP SILENT GRAPH <{g}>")
        return stale

    def dump(self, fmt: ox.RdfFormat, graph: str | None = None) -> bytes:
        if graph is None:
            return self.store.dump(format=fmt)
        return self.store.dump(format=fmt, from_graph=ox.NamedNode(graph))

    def close(self) -> None:
        if not self.read_only:
            self.store.flush()
        del self.store


class RemoteStore(Store):
    """Any SPARQL 1.1 Protocol endpoint (``--endpoint URL [--update-endpoint URL]``), via SPARQLWrapper."""

    def __init__(self, endpoint: str, *, update_endpoint: str | None = None, user: str | None = None,
                 password: str | None = None, auth: str = "basic", timeout: int = 300,
                 batch: int = 5_000) -> None:
        from SPARQLWrapper import SPARQLWrapper

        self.endpoint, self.update_endpoint, self.batch = endpoint, update_endpoint or endpoint, batch

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
        from SPARQLWrapper import POST

        w = self._client(self.endpoint)
        w.setMethod(POST)
        # A form-encoded POST (query=...): Virtuoso 7.2 never answers a direct application/sparql-query POST.
        w.setRequestMethod("urlencoded")
        w.setOnlyConneg(True)  # the Accept header alone names the format (no format=... parameter)
        w.setQuery(text)
        w.addCustomHttpHeader("Accept", accept)
        try:
            return w.query().response.read()
        except Exception as exc:  # urllib and SPARQLWrapper raise many types
            raise StoreError(f"{self.endpoint}: query failed: {_first_line(exc)}") from None

    def select_with_columns(self, text, bindings=None):
        import json

        data = json.loads(self._query(bind(text, bindings), "application/sparql-results+json"))
        rows = [{k: _term(v) for k, v in row.items()} for row in data["results"]["bindings"]]
        return list(data.get("head", {}).get("vars", [])), rows

    def construct(self, text, bindings=None):
        data = self._query(bind(text, bindings), "application/n-triples")
        return list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES))

    def update(self, text):
        from SPARQLWrapper import POST

        w = self._client(self.update_endpoint)
        w.setMethod(POST)
        w.setRequestMethod("postdirectly")
        w.setQuery(text)
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
            line = f"{t.subject} {t.predicate} {t.object} ."
            if isinstance(t.subject, ox.BlankNode) or isinstance(t.object, ox.BlankNode):
                with_blanks.append(line)
                continue
            chunk.append(line)
            if len(chunk) >= self.batch:
                self.update(f"INSERT DATA {{ GRAPH <{graph}> {{\n" + "\n".join(chunk) + "\n} }")
                count += len(chunk)
                chunk = []
        if chunk:
            self.update(f"INSERT DATA {{ GRAPH <{graph}> {{\n" + "\n".join(chunk) + "\n} }")
            count += len(chunk)
        if with_blanks:
            self.update(f"INSERT {{ GRAPH <{graph}> {{\n" + "\n".join(with_blanks) + "\n} } WHERE {}")
            count += len(with_blanks)
        return count


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _term(value: dict) -> Term:
    kind = value["type"]
    if kind == "uri":
        return ox.NamedNode(value["value"])
    if kind == "bnode":  # Virtuoso names blank nodes nodeID://b123, not a valid blank node label
        return ox.BlankNode(re.sub(r"[^A-Za-z0-9_]", "_", value["value"]))
    if "xml:lang" in value:
        return ox.Literal(value["value"], language=value["xml:lang"])
    if "datatype" in value:
        return ox.Literal(value["value"], datatype=ox.NamedNode(value["datatype"]))
    return ox.Literal(value["value"])


def open_store(*, store: Path | None = None, endpoint: str | None = None, update_endpoint: str | None = None,
               user: str | None = None, password: str | None = None, auth: str = "basic",
               read_only: bool = False) -> Store:
    """The backend the command-line options name: exactly one of ``--store`` or ``--endpoint``."""
    if (store is None) == (endpoint is None):
        raise InputError("give exactly one of --store DIR or --endpoint URL")
    if store is not None:
        return EmbeddedStore(store, read_only=read_only)
    return RemoteStore(endpoint, update_endpoint=update_endpoint, user=user, password=password, auth=auth)

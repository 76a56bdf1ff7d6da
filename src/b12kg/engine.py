"""A working store for one evaluation: pyoxigraph in memory, with named graphs kept apart.

Graphs: the ontology, the patient data, normalised facts, inferred types, derived findings.
Queries read the union of all graphs; every CONSTRUCT result goes into one named graph.
User values reach queries only as RDF terms in a VALUES block (:mod:`b12kg.sparql`), never as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pyoxigraph as ox

from b12kg import namespaces as ns
from b12kg.kb import KnowledgeBase
from b12kg.sparql import Table, Term, bind, table_columns, table_name


class Workspace:
    """An in-memory store holding the knowledge base and the data of one evaluation."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.memo: dict[str, dict] = {}  # answers about the knowledge base, asked once per workspace
        self.store = ox.Store()
        self.graph = {
            name: ox.NamedNode(iri)
            for name, iri in {
                "ontology": ns.GRAPH_ONTOLOGY,
                "patients": ns.GRAPH_PATIENTS,
                "normalised": ns.GRAPH_NORMALISED,
                "inferred": ns.GRAPH_INFERRED,
                "derived": ns.GRAPH_DERIVED,
            }.items()
        }
        self.store.extend(kb.ontology_quads(self.graph["ontology"]))

    # ------------------------------------------------------------------ loading
    def add_triples(self, graph: str, triples: Iterable[ox.Triple]) -> int:
        """Add the triples that are in no graph yet (queries read the union of all graphs, where a
        triple stored twice would be seen twice); returns how many were added."""
        target = self.graph[graph]
        new = [
            ox.Quad(t.subject, t.predicate, t.object, target)
            for t in set(triples)
            if next(self.store.quads_for_pattern(t.subject, t.predicate, t.object), None) is None
        ]
        self.store.extend(new)
        return len(new)

    # ------------------------------------------------------------------ querying
    def select(self, name: str, bindings: Mapping[str, object] | None = None) -> list[dict[str, Term]]:
        """Run a SELECT query from ``queries/`` by name; rows as {variable: term} (unbound omitted)."""
        return self.select_text(self.kb.query(name), bindings)

    def select_text(self, text: str, bindings: Mapping[str, object] | None = None) -> list[dict[str, Term]]:
        solutions = self.store.query(bind(text, bindings), use_default_graph_as_union=True)
        names = [v.value for v in solutions.variables]
        rows = []
        for solution in solutions:
            row = {}
            for var in names:
                term = solution[var]
                if term is not None:
                    row[var] = term
            rows.append(row)
        return rows

    def construct(self, text: str, bindings: Mapping[str, object] | None = None) -> list[ox.Triple]:
        return list(self.store.query(bind(text, bindings), use_default_graph_as_union=True))

    def construct_into(self, graph: str, name: str, bindings: Mapping[str, object] | None = None,
                       *, settle: bool = True) -> None:
        """Run a CONSTRUCT query by name and add its triples to ``graph`` (see :meth:`construct_text_into`).
        A ``#+ table: NAME`` header line names a SELECT query whose rows are bound as a VALUES table."""
        text = self.kb.query(name)
        self.construct_text_into(graph, text, bindings, settle=settle, table=self.table(text))

    def table(self, text: str) -> Table | None:
        """The VALUES table a query's ``#+ table: NAME`` header asks for: NAME's projected variables and rows
        (only the columns a ``#+ table-columns:`` header names, see :func:`~b12kg.sparql.table_columns`)."""
        name = table_name(text)
        if name is None:
            return None
        solutions = self.store.query(self.kb.query(name), use_default_graph_as_union=True)
        names = [v.value for v in solutions.variables]
        return table_columns(text, (names, [tuple(s[n] for n in names) for s in solutions]))

    def construct_text_into(self, graph: str, text: str, bindings: Mapping[str, object] | None = None,
                            *, settle: bool = True, table: Table | None = None) -> None:
        """Run a CONSTRUCT query and add its triples to ``graph``. The triples never become Python
        objects: the result is serialised and loaded by Oxigraph. With ``settle`` (the default) the
        triples another graph already holds are taken out again (see :meth:`settle`); a caller that
        adds many results in a row may settle once at the end instead (queries whose aggregates count
        DISTINCT values, as all of ``queries/`` do, see no difference in between)."""
        data = self.construct_nt(text, bindings, table=table)
        if data:
            self.load_nt(graph, data, settle=settle)

    def construct_nt(self, text: str, bindings: Mapping[str, object] | None = None,
                     *, table: Table | None = None) -> bytes:
        """A CONSTRUCT query's triples as one N-Triples document, serialised by Oxigraph."""
        result = self.store.query(bind(text, bindings, table), use_default_graph_as_union=True)
        return result.serialize(format=ox.RdfFormat.N_TRIPLES) or b""

    def load_nt(self, graph: str, data: bytes, *, settle: bool = True) -> None:
        """Add the triples of an N-Triples document to ``graph`` (then :meth:`settle` it)."""
        self.store.load(data, format=ox.RdfFormat.N_TRIPLES, to_graph=self.graph[graph])
        if settle:
            self.settle(graph)

    def settle(self, graph: str) -> None:
        """Remove from ``graph`` the triples another graph holds: queries read the union of all graphs,
        where a triple stored twice would be seen twice."""
        g = self.graph[graph]
        self.store.update(f"DELETE {{ GRAPH {g} {{ ?s ?p ?o }} }} "
                          f"WHERE {{ GRAPH {g} {{ ?s ?p ?o }} GRAPH ?other {{ ?s ?p ?o }} FILTER (?other != {g}) }}")

    def size(self, graph: str) -> int:
        """How many triples ``graph`` holds."""
        rows = self.store.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH {self.graph[graph]} {{ ?s ?p ?o }} }}")
        return int(next(iter(rows))[0].value)

    def dump_nt(self, graph: str) -> bytes:
        """One graph as an N-Triples document."""
        return self.store.dump(format=ox.RdfFormat.N_TRIPLES, from_graph=self.graph[graph])

    def triples(self, graph: str) -> list[ox.Triple]:
        return [q.triple for q in self.store.quads_for_pattern(None, None, None, self.graph[graph])]

    def ask_type(self, subject: ox.NamedNode) -> set[str]:
        rdf_type = ox.NamedNode(ns.RDF_TYPE)
        return {q.object.value for q in self.store.quads_for_pattern(subject, rdf_type, None, None)}

"""Validating patient data: SHACL shapes, then unit and date checks that need the knowledge base.

Every problem is one line naming the file, the patient, the field and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pyoxigraph as ox
import pyshacl
import pyshacl_turbo
import rdflib
from rdflib.namespace import RDF, SH

from b12kg import inputs, shacl_sparql
from b12kg.engine import Workspace
from b12kg.errors import KnowledgeBaseError
from b12kg.kb import KnowledgeBase
from b12kg.namespaces import B12
from b12kg.patient import PatientData, shacl_term

PATIENT_SHAPES = "patient-shapes.ttl"
GRAPH_SHACL = "urn:b12kg:graph:shacl"  # the data's graph in the store the sparql engine queries
# what is wrong with patient data that describes a term of the knowledge base (validate_values, load)
KNOWLEDGE_BASE_TERM = ("patient data may not describe a term of the knowledge base "
                       "(its classes, products, thresholds and statements)")
OUTSIDE_VOCABULARY = ("patient data may use only the patient vocabulary: states, bands, canonical values and "
                      "findings are the engine's to derive from the facts (docs/patient-data.md)")
SCHEMA_AXIOM = "patient data may not state class or property axioms: only the knowledge base defines its terms"
_LINKS = ("hasCondition", "hasLabResult", "hasAdministration", "hasNeurologicalAssessment", "hasTreatmentPreference")


@lru_cache(maxsize=8)
def _shapes_graph(path: Path, mtime: float) -> rdflib.Graph:
    try:
        return rdflib.Graph().parse(path, format="turtle")
    except Exception as exc:  # rdflib raises many types for bad syntax
        raise KnowledgeBaseError(f"{path}: {exc}") from None


def _compact(graph: rdflib.Graph, term: rdflib.term.Node) -> str:
    if isinstance(term, rdflib.URIRef):
        try:
            return graph.namespace_manager.normalizeUri(term)
        except Exception:
            return f"<{term}>"
    if isinstance(term, rdflib.BNode):  # its label is the parser's, not the file's: say what it is
        return "a blank node"
    return str(term)


ENGINES = ("sparql", "turbo", "pyshacl")  # the first is the default; pySHACL is the reference they are tested against


def shacl_report(patient: PatientData, kb: KnowledgeBase, *, engine: str = ENGINES[0],
                 dataset: tuple[ox.Store, ox.NamedNode] | None = None) -> rdflib.Graph | None:
    """The SHACL validation report of a patient file against the patient shapes (None: it conforms).

    ``sparql`` evaluates the shapes compiled into SPARQL queries (:mod:`b12kg.shacl_sparql`) over the store
    that holds the data: ``dataset`` (a store and the graph of these triples, as read), or else a store made
    for them; when the shapes use a feature the compiler does not cover, pyshacl-turbo does the work.
    ``turbo`` (pyshacl-turbo, a Rust SHACL engine) validates an in-memory Oxigraph store of the data;
    ``pyshacl`` an rdflib graph. All give the same results on every shape (tests/test_shacl_engines.py)."""
    shapes_path = kb.shapes_dir / PATIENT_SHAPES
    if not shapes_path.is_file():
        raise KnowledgeBaseError(f"{shapes_path}: patient shapes not found")
    shapes = _shapes_graph(shapes_path, shapes_path.stat().st_mtime)
    if engine == "sparql":
        try:
            shacl_sparql.compile_shapes(shapes)
        except shacl_sparql.Unsupported:
            engine = "turbo"
    if engine == "sparql":
        if dataset is not None:
            return shacl_sparql.validate(*dataset, shapes, as_seen=shacl_term)
        store, graph = ox.Store(), ox.NamedNode(GRAPH_SHACL)
        store.extend(ox.Quad(t.subject, t.predicate, t.object, graph) for t in patient.shacl_triples())
        return shacl_sparql.validate(store, graph, shapes)
    if engine == "turbo":
        # The store is filled through Oxigraph's writer and parser (the parser keeps blank node labels):
        # a third faster than making a Quad per triple in Python.
        nt = ox.serialize(patient.shacl_triples(), format=ox.RdfFormat.N_TRIPLES)
        data = ox.Store()
        data.extend(ox.parse(nt, format=ox.RdfFormat.N_TRIPLES))
        conforms, report, _ = pyshacl_turbo.validate(data, shacl_graph=shapes, inference="none", advanced=False)
    elif engine == "pyshacl":
        conforms, report, _ = pyshacl.validate(patient.to_rdflib(), shacl_graph=shapes, inference="none", advanced=False)
    else:
        raise ValueError(f"unknown SHACL engine {engine!r} (known: {', '.join(ENGINES)})")
    return None if conforms else report


def validate_shapes(patient: PatientData, kb: KnowledgeBase, *, engine: str = ENGINES[0],
                    dataset: tuple[ox.Store, ox.NamedNode] | None = None) -> list[str]:
    """SHACL-validate a patient file; returns one message per violation (empty when valid): the file,
    the patient (the owner of the fact the result is about), the field, the shape's message, the value.
    ``dataset``: where the triples already are (see :func:`shacl_report`)."""
    report = shacl_report(patient, kb, engine=engine, dataset=dataset)
    if report is None:
        return []
    links = {str(B12[link]) for link in _LINKS}
    if dataset is None:
        owner = {_key(t.object): shacl_sparql.to_rdflib(t.subject) for t in patient.triples
                 if t.predicate.value in links}
    else:  # the report names the store's terms (a store labels blank nodes its own way)
        store, graph = dataset
        owner = {_key(q.object): shacl_sparql.to_rdflib(q.subject) for link in sorted(links)
                 for q in store.quads_for_pattern(None, ox.NamedNode(link), None, graph)}
    names = rdflib.Graph()
    names.bind("b12", str(B12._NS))
    problems = set()
    for result in report.subjects(RDF.type, SH.ValidationResult):
        focus = report.value(result, SH.focusNode)
        path = report.value(result, SH.resultPath)
        value = report.value(result, SH.value)
        message = report.value(result, SH.resultMessage) or "does not conform"
        patient_node = owner.get(_key(focus))
        where = f"patient {_compact(names, focus if patient_node is None else patient_node)}"
        if patient_node is not None:
            where += f", {_compact(names, focus)}"
        field = f" field {_compact(names, path)}" if path is not None else ""
        got = f" (got {_compact(names, value):.60})" if value is not None and value != focus else ""
        problems.add(f"{patient.path}: {where}:{field}: {message}{got}")
    return sorted(problems)


def _key(term) -> tuple[str, str] | None:
    """An Oxigraph or rdflib term, as the same key for both (what the owner of a focus node is looked up by)."""
    if term is None:
        return None
    kind = "iri" if isinstance(term, (ox.NamedNode, rdflib.URIRef)) else (
        "blank" if isinstance(term, (ox.BlankNode, rdflib.BNode)) else "literal")
    return kind, term.value if isinstance(term, (ox.NamedNode, ox.BlankNode, ox.Literal)) else str(term)


def validate_values(ws: Workspace, patient: PatientData, as_of) -> list[str]:
    """Unit and date checks that need the knowledge base, and patient data that states more than facts
    (:func:`data_beyond_facts`); one message per problem."""
    problems = []
    limits = {"maxMagnitude": ox.Literal(str(inputs.MAX_MAGNITUDE), datatype=ox.NamedNode(inputs._XSD + "decimal")),
              "earliest": inputs.EARLIEST_DATE, "latest": inputs.LATEST_DATE}
    for row in ws.select("validate/unusable-literal", limits):
        field = _local(row["property"])
        value = row["value"].value
        problems.append(
            f"{patient.path}: patient <{row['patient'].value}>, <{row['entity'].value}>: {field} "
            f"{value if len(value) <= 60 else value[:60] + '…'}: {inputs.literal_problem(value, row['datatype'].value)}"
        )
    for row in ws.select("validate/unknown-unit"):
        problems.append(
            f"{patient.path}: patient <{row['patient'].value}>, result <{row['entity'].value}>: "
            f"unknown unit {row['unit'].value!r} for {row['analyteLabel'].value} value {row['value'].value} "
            f"(known: {row['knownUnits'].value})"
        )
    problems += data_beyond_facts(ws.select, ws.kb, ws.graph["patients"], patient.path)
    for row in ws.select("validate/future-date", {"asOf": as_of}):
        field = _local(row["property"])
        problems.append(
            f"{patient.path}: patient <{row['patient'].value}>, <{row['entity'].value}>: "
            f"{field} {row['value'].value} is after the evaluation date {as_of.isoformat()}"
        )
    return problems


def data_beyond_facts(select: Callable[[str, dict], list[dict]], kb: KnowledgeBase, data: ox.NamedNode,
                      path: Path | str, *, service_log: bool = False) -> list[str]:
    """Patient data (graph ``data``, read through ``select(query name, bindings)``) that states more than
    a patient's facts, one message per triple: about a term of the knowledge base, with a class or
    property outside the patient vocabulary, or a schema axiom. Each names the file ``path``, the
    patient the subject hangs from, the subject and the property (and the term used). ``service_log``:
    a dataset for a store, which may also hold the CDS service's log (``b12:serviceLogVocabulary``)."""
    found = [(row["subject"], row["property"], None, KNOWLEDGE_BASE_TERM)
             for row in select("validate/knowledge-base-terms", {"subject": kb.described_terms(), "data": data})]
    found += [(row["subject"], row["property"], row["term"], OUTSIDE_VOCABULARY)
              for row in select("validate/outside-patient-vocabulary",
                                {"term": kb.outside_patient_vocabulary(service_log=service_log), "data": data})]
    found += [(row["subject"], row["property"], None, SCHEMA_AXIOM)
              for row in select("validate/schema-axioms", {"data": data})]
    about_terms = {(subject, prop) for subject, prop, _, what in found if what is KNOWLEDGE_BASE_TERM}
    found = [item for item in dict.fromkeys(found)  # a triple about a term is reported by that rule alone
             if item[3] is KNOWLEDGE_BASE_TERM or (item[0], item[1]) not in about_terms]
    if not found:
        return []
    owners: dict[str, list[str]] = {}
    subjects = sorted({subject for subject, *_ in found if isinstance(subject, ox.NamedNode)}, key=lambda t: t.value)
    if subjects:
        for row in select("validate/subject-owners", {"subject": subjects, "data": data}):
            owners.setdefault(row["subject"].value, []).append(row["patient"].value)
    problems = []
    for subject, prop, term, what in found:
        field = _local(prop) + (f" {_local(term)}" if term is not None and term != prop else "")
        named = isinstance(subject, ox.NamedNode)
        for owner in owners.get(subject.value, [None]) if named else [None]:
            if owner == subject.value:
                where = f"patient <{owner}>"
            else:
                where = (f"patient <{owner}>, " if owner else "") + (f"<{subject.value}>" if named else "a blank node")
            problems.append(f"{path}: {where}: {field}: {what}")
    return problems


def _local(term: ox.NamedNode) -> str:
    return term.value.rsplit("#", 1)[-1]

"""Validating patient data: SHACL shapes, then unit and date checks that need the knowledge base.

Every problem is one line naming the file, the patient, the field and what is wrong.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pyoxigraph as ox
import pyshacl
import rdflib
from rdflib.namespace import RDF, SH

from b12kg import inputs
from b12kg.engine import Workspace
from b12kg.errors import KnowledgeBaseError
from b12kg.kb import KnowledgeBase
from b12kg.patient import PatientData

PATIENT_SHAPES = "patient-shapes.ttl"
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
    return str(term)


def validate_shapes(patient: PatientData, kb: KnowledgeBase) -> list[str]:
    """SHACL-validate a patient file; returns one message per violation (empty when valid)."""
    shapes_path = kb.shapes_dir / PATIENT_SHAPES
    if not shapes_path.is_file():
        raise KnowledgeBaseError(f"{shapes_path}: patient shapes not found")
    shapes = _shapes_graph(shapes_path, shapes_path.stat().st_mtime)
    data = patient.to_rdflib()
    data.bind("b12", "https://w3id.org/b12kg/ontology#")
    conforms, report, _ = pyshacl.validate(data, shacl_graph=shapes, inference="none", advanced=False)
    if conforms:
        return []
    b12 = rdflib.Namespace("https://w3id.org/b12kg/ontology#")
    owner: dict[rdflib.term.Node, rdflib.term.Node] = {}
    for link in _LINKS:
        for s, o in data.subject_objects(b12[link]):
            owner[o] = s
    problems = set()
    for result in report.subjects(RDF.type, SH.ValidationResult):
        focus = report.value(result, SH.focusNode)
        path = report.value(result, SH.resultPath)
        value = report.value(result, SH.value)
        message = report.value(result, SH.resultMessage) or "does not conform"
        patient_node = owner.get(focus, focus)
        where = f"patient {_compact(data, patient_node)}"
        if patient_node != focus:
            where += f", {_compact(data, focus)}"
        field = f" field {_compact(data, path)}" if path is not None else ""
        got = f" (got {value!s:.60})" if value is not None and value != focus else ""
        problems.add(f"{patient.path}: {where}:{field}: {message}{got}")
    return sorted(problems)


def validate_values(ws: Workspace, patient: PatientData, as_of) -> list[str]:
    """Unit and date checks that need the knowledge base; one message per problem."""
    problems = []
    limits = {"maxMagnitude": ox.Literal(str(inputs.MAX_MAGNITUDE), datatype=ox.NamedNode(inputs._XSD + "decimal")),
              "earliest": inputs.EARLIEST_DATE, "latest": inputs.LATEST_DATE}
    for row in ws.select("validate/unusable-literal", limits):
        field = row["property"].value.rsplit("#", 1)[-1]
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
    for row in ws.select("validate/future-date", {"asOf": as_of}):
        field = row["property"].value.rsplit("#", 1)[-1]
        problems.append(
            f"{patient.path}: patient <{row['patient'].value}>, <{row['entity'].value}>: "
            f"{field} {row['value'].value} is after the evaluation date {as_of.isoformat()}"
        )
    return problems

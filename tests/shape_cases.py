"""Patient records that break the patient shapes one way each, built from the seed case (the cases named
``valid-…`` pass the shapes: a value only the values check refuses, or a form the shapes allow).

Every constraint of ``shapes/patient-shapes.ttl`` is broken by at least one case (and a few cases break
several at once). Used by the conformance test of the SHACL engines and by the validation benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyoxigraph as ox

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "patients" / "seed-case.ttl"
B12 = "https://w3id.org/b12kg/ontology#"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDF_TYPE = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
BASE = "https://example.org/b12kg/seed-case#"

Triples = list[ox.Triple]


def b12(name: str) -> ox.NamedNode:
    return ox.NamedNode(B12 + name)


def lit(value: str, datatype: str = "string") -> ox.Literal:
    return ox.Literal(value, datatype=ox.NamedNode(XSD + datatype))


def node(name: str) -> ox.NamedNode:
    return ox.NamedNode(BASE + name)


def seed() -> Triples:
    return list(ox.parse(path=str(SEED), format=ox.RdfFormat.TURTLE))


def _drop(subject: str, prop: str, ts: Triples) -> Triples:
    return [t for t in ts if not (t.subject == node(subject) and t.predicate == (RDF_TYPE if prop == "a" else b12(prop)))]


def _set(subject: str, prop: str, *objects) -> Callable[[Triples], Triples]:
    def change(ts: Triples) -> Triples:
        predicate = RDF_TYPE if prop == "a" else b12(prop)
        return _drop(subject, prop, ts) + [ox.Triple(node(subject), predicate, o) for o in objects]
    return change


def _add(subject, prop: str, obj) -> Callable[[Triples], Triples]:
    def change(ts: Triples) -> Triples:
        s = subject if isinstance(subject, (ox.NamedNode, ox.BlankNode)) else node(subject)
        return ts + [ox.Triple(s, b12(prop), obj)]
    return change


def _blank_patient(ts: Triples) -> Triples:
    blank = ox.BlankNode("p")
    swap = lambda term: blank if term == node("patient") else term  # noqa: E731
    return [ox.Triple(swap(t.subject), t.predicate, swap(t.object)) for t in ts]


def _blank_result(ts: Triples) -> Triples:
    blank = ox.BlankNode("r")
    swap = lambda term: blank if term == node("b12") else term  # noqa: E731
    return [ox.Triple(swap(t.subject), t.predicate, swap(t.object)) for t in ts]


CASES: dict[str, Callable[[Triples], Triples]] = {
    "valid": lambda ts: ts,
    "patient-untyped": lambda ts: _drop("patient", "a", ts),
    "patient-blank-node": _blank_patient,
    "birth-date-twice": _add("patient", "birthDate", lit("1950-01-01", "date")),
    "birth-date-string": _set("patient", "birthDate", lit("1948-03-12")),
    "condition-literal": _add("patient", "hasCondition", lit("stroke")),
    "condition-without-code-or-type": lambda ts: _drop("stroke", "a", _drop("stroke", "code", ts)),
    "onset-date-string": _set("stroke", "onsetDate", lit("June 2025")),
    "onset-date-twice": _add("stroke", "onsetDate", lit("2025-06-15", "date")),
    "result-blank-node": _blank_result,
    "result-without-value": lambda ts: _drop("b12", "value", ts),
    "result-value-float": _set("b12", "value", lit("292", "double")),
    "result-value-twice": _add("b12", "value", lit("300", "integer")),
    "result-value-negative": _set("b12", "value", lit("-5", "integer")),
    "result-value-string": _set("b12", "value", lit("292")),
    "result-without-unit": lambda ts: _drop("b12", "unit", ts),
    "result-unit-iri": _set("b12", "unit", ox.NamedNode("http://unitsofmeasure.org/pg/mL")),
    "result-without-date": lambda ts: _drop("b12", "effectiveDate", ts),
    "result-date-string": _set("b12", "effectiveDate", lit("2025-10-24")),
    "valid-result-date-time": _set("b12", "effectiveDate", lit("2025-10-24T10:00:00", "dateTime")),
    "result-date-ill-formed": _set("b12", "effectiveDate", lit("2025-02-30", "date")),
    "result-value-ill-formed": _set("b12", "value", lit("1e3", "decimal")),
    "result-value-huge": _set("b12", "value", lit("5e999999999", "decimal")),
    "valid-value-25-decimals": _set("b12", "value", lit("292.0000000000000000000000001", "decimal")),
    "valid-value-2e20": _set("b12", "value", lit("200000000000000000000", "integer")),
    "result-value-minus-2e20": _set("b12", "value", lit("-200000000000000000000", "integer")),
    "result-value-nan": _set("b12", "value", lit("NaN", "double")),
    "result-value-not-a-number": _set("b12", "value", lit("abc", "integer")),
    "birth-date-ill-formed": _set("patient", "birthDate", lit("1948-13-45", "date")),
    "result-blank-node-bad-value": lambda ts: _add(ox.BlankNode("r"), "value", lit("x"))(_blank_result(ts)),
    "result-without-code-or-analyte": lambda ts: _drop("b12", "code", ts),
    "result-interpretation-unknown": _add("b12", "interpretation", b12("veryLow")),
    "result-interpretation-twice": lambda ts: _add("b12", "interpretation", b12("belowReferenceRange"))(
        _add("b12", "interpretation", b12("withinReferenceRange"))(ts)),
    "administration-without-substance": lambda ts: _drop("injection-1", "substance", ts),
    "administration-substance-literal": _set("injection-1", "substance", lit("cyanocobalamin")),
    "administration-route-unknown": _set("injection-1", "route", b12("intravenous")),
    "administration-two-routes": _add("injection-1", "route", b12("oral")),
    "administration-without-date": lambda ts: _drop("injection-1", "effectiveDate", ts),
    "administration-dose-zero": _set("injection-1", "doseValue", lit("0", "integer")),
    "administration-dose-float": _set("injection-1", "doseValue", lit("1.0", "float")),
    "administration-dose-unit-iri": _set("injection-1", "doseUnit", b12("milligram")),
    "administration-literal": _add("patient", "hasAdministration", lit("injection")),
    "assessment-without-status": lambda ts: _drop("neuro", "symptomStatus", ts),
    "assessment-status-unknown": _set("neuro", "symptomStatus", b12("maybe")),
    "assessment-date-string": _set("neuro", "effectiveDate", lit("yesterday")),
    "preference-route-unknown": lambda ts: _add("pref", "preferredRoute", b12("nasal"))(
        _add("patient", "hasTreatmentPreference", node("pref"))(ts)),
    "preference-twice": lambda ts: _add("pref2", "preferredRoute", b12("oral"))(
        _add("pref", "preferredRoute", b12("oral"))(_add("patient", "hasTreatmentPreference", node("pref2"))(
            _add("patient", "hasTreatmentPreference", node("pref"))(ts)))),
    "preference-without-route": _add("patient", "hasTreatmentPreference", node("pref")),
    "several-problems": lambda ts: _set("b12", "value", lit("-1.5e2", "double"))(_drop("neuro", "symptomStatus", ts)),
}


def case(name: str, index: int = 0) -> Triples:
    """The case's triples; ``index`` > 0 renames every IRI of the seed case so that copies can share a
    graph (``…/seed-case-7#patient``)."""
    triples = CASES[name](seed())
    if index == 0:
        return triples
    base = f"https://example.org/b12kg/seed-case-{index}#"

    def rename(term):
        if isinstance(term, ox.NamedNode) and term.value.startswith(BASE):
            return ox.NamedNode(base + term.value[len(BASE):])
        if isinstance(term, ox.BlankNode):
            return ox.BlankNode(f"{term.value}{index}")
        return term

    return [ox.Triple(rename(t.subject), t.predicate, rename(t.object)) for t in triples]

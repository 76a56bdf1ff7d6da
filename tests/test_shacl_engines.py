"""The SHACL engine b12kg validates patients with (pyshacl-turbo) against the reference, pySHACL.

Every shape and constraint of ``shapes/patient-shapes.ttl`` is broken by a case of tests/shape_cases.py;
both engines must report the same results (focus node, path, value, constraint component, message) on
each case alone, on all of them in one batch, and on every example patient.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rdflib
from rdflib.namespace import RDF, SH
from shape_cases import CASES, case

from b12kg.kb import KnowledgeBase
from b12kg.patient import PatientData, load_patient
from b12kg.validate import ENGINES, shacl_report, validate_shapes

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples" / "patients").glob("*.ttl"))


def _term(term: rdflib.term.Node | None):
    """A result's term, compared by what it is: a number by its value (the engines write 292.0 and 292
    for the same double; a simple literal is an xsd:string in RDF 1.1), a blank node by its label (both
    engines keep the data's labels)."""
    if isinstance(term, rdflib.Literal):
        datatype = str(term.datatype or rdflib.XSD.string) if not term.language else "lang:" + term.language
        value = term.toPython() if not term.ill_typed else str(term)
        return ("literal", datatype, "NaN" if value != value else value)  # NaN is not equal to itself
    return None if term is None else (type(term).__name__, str(term))


def results(data: list, kb: KnowledgeBase, engine: str) -> set[tuple]:
    report = shacl_report(PatientData(path=Path("cases"), triples=data), kb, engine=engine)
    if report is None:
        return set()
    return {(_term(report.value(r, SH.focusNode)), _term(report.value(r, SH.resultPath)),
             _term(report.value(r, SH.value)), _term(report.value(r, SH.sourceConstraintComponent)),
             str(report.value(r, SH.resultMessage)), _term(report.value(r, SH.resultSeverity)))
            for r in report.subjects(RDF.type, SH.ValidationResult)}


@pytest.mark.parametrize("name", list(CASES))
def test_both_engines_give_the_same_results(name, kb):
    expected = results(case(name), kb, "pyshacl")
    assert bool(expected) == (not name.startswith("valid")), f"the case {name} does not test what it says"
    assert results(case(name), kb, "turbo") == expected


def test_one_batch_of_every_case_gives_each_cases_results(kb):
    """Set-at-a-time: every case, renamed, in one graph, gives the union of the cases' own results."""
    batch = [t for i, name in enumerate(CASES, start=1) for t in case(name, i)]
    union = set().union(*(results(case(name, i), kb, "pyshacl") for i, name in enumerate(CASES, start=1)))
    assert results(batch, kb, "pyshacl") == union
    assert results(batch, kb, "turbo") == union


def test_every_constraint_in_the_shapes_is_broken_by_a_case(kb):
    """The cases exercise every constraint component the shapes use (and so each engine's handling of it)."""
    shapes = rdflib.Graph().parse(kb.shapes_dir / "patient-shapes.ttl")
    parameters = {"datatype", "hasValue", "in", "maxCount", "minCount", "minExclusive", "minInclusive", "node",
                  "nodeKind", "or"}
    used = {str(p).removeprefix(str(SH)) for p in shapes.predicates() if str(p).removeprefix(str(SH)) in parameters}
    assert used == parameters, "a new kind of constraint in the shapes needs a case in tests/shape_cases.py"
    seen = set()
    for name in CASES:
        for result in results(case(name), kb, "turbo"):
            seen.add(result[3][1].removeprefix(str(SH)).removesuffix("ConstraintComponent"))
    assert {p[0].upper() + p[1:] for p in parameters} <= seen


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_patient_conforms_under_both_engines(path, kb):
    data = load_patient(path)
    assert validate_shapes(data, kb, engine="turbo") == validate_shapes(data, kb, engine="pyshacl") == []


def test_the_messages_name_patient_fact_field_and_value(kb):
    lines = validate_shapes(PatientData(path=Path("x.ttl"), triples=case("result-value-negative")), kb)
    assert ("x.ttl: patient <https://example.org/b12kg/seed-case#patient>, <https://example.org/b12kg/seed-case#b12>: "
            "field b12:value: value must not be negative (got -5)") in lines
    lines = validate_shapes(PatientData(path=Path("x.ttl"), triples=case("result-blank-node")), kb)
    assert lines == ["x.ttl: patient <https://example.org/b12kg/seed-case#patient>: field b12:hasLabResult: each lab "
                     "result must be an IRI with one value, one unit, one date and a code or analyte (got a blank node)"]


def test_an_unknown_engine_is_refused(kb):
    assert ENGINES[0] == "turbo"
    with pytest.raises(ValueError, match="unknown SHACL engine 'rudof'"):
        validate_shapes(PatientData(path=Path("x.ttl"), triples=case("valid")), kb, engine="rudof")

"""The SHACL engines b12kg validates patients with (the shapes compiled to SPARQL, and pyshacl-turbo)
against the reference, pySHACL.

Every shape and constraint of ``shapes/patient-shapes.ttl`` is broken by a case of tests/shape_cases.py;
every engine must report pySHACL's results (focus node, path, value, constraint component, message,
severity) on each case alone, on all of them in one batch, and on every example patient; the SPARQL
engine also over a batch already in a workspace store, as ``derive`` runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rdflib
from rdflib.namespace import RDF, SH
from shape_cases import CASES, case

import pyoxigraph as ox

from b12kg import shacl_sparql
from b12kg.engine import Workspace
from b12kg.kb import KnowledgeBase
from b12kg.patient import PatientData, load_patient
from b12kg.validate import ENGINES, PATIENT_SHAPES, shacl_report, validate_shapes

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


TESTED = [engine for engine in ENGINES if engine != "pyshacl"]


@pytest.mark.parametrize("engine", TESTED)
@pytest.mark.parametrize("name", list(CASES))
def test_every_engine_gives_pyshacls_results(name, engine, kb):
    expected = results(case(name), kb, "pyshacl")
    assert bool(expected) == (not name.startswith("valid")), f"the case {name} does not test what it says"
    assert results(case(name), kb, engine) == expected


def test_one_batch_of_every_case_gives_each_cases_results(kb):
    """Set-at-a-time: every case, renamed, in one graph, gives the union of the cases' own results."""
    batch = [t for i, name in enumerate(CASES, start=1) for t in case(name, i)]
    union = set().union(*(results(case(name, i), kb, "pyshacl") for i, name in enumerate(CASES, start=1)))
    assert results(batch, kb, "pyshacl") == union
    for engine in TESTED:
        assert results(batch, kb, engine) == union, engine


def test_the_sparql_engine_over_a_workspace_gives_the_same_lines(kb):
    """As derive runs it: the batch is already in the workspace store (which labels blank nodes its own
    way, and holds each number as written): the same lines as pyshacl-turbo on the parsed triples."""
    batch = [t for i, name in enumerate(CASES, start=1) for t in case(name, i)]
    data = ox.serialize(batch, format=ox.RdfFormat.N_TRIPLES)
    ws = Workspace(kb)
    ws.load_nt("patients", data)
    parsed = PatientData(path=Path("batch 1"), triples=list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES)))
    lines = validate_shapes(parsed, kb, engine="sparql", dataset=(ws.store, ws.graph["patients"]))
    assert lines == validate_shapes(parsed, kb, engine="turbo")
    assert len(lines) > len(CASES)


def test_shapes_the_compiler_does_not_cover_go_to_pyshacl_turbo(kb_copy):
    """A constraint outside the compiled subset (here sh:lessThan) is not skipped: the whole validation
    goes to pyshacl-turbo, and the new constraint is reported."""
    path = kb_copy.shapes_dir / PATIENT_SHAPES
    text = path.read_text(encoding="utf-8")
    anchor = "    sh:message \"a patient must be an IRI, not a blank node\" ;\n"
    assert anchor in text
    path.write_text(text.replace(anchor, anchor + "    sh:property [ sh:path b12:birthDate ; sh:lessThan b12:birthDate ;\n"
                                 "        sh:message \"birthDate must be before itself\" ] ;\n"), encoding="utf-8")
    from b12kg.validate import _shapes_graph
    with pytest.raises(shacl_sparql.Unsupported, match="lessThan"):
        shacl_sparql.compile_shapes(_shapes_graph(path, path.stat().st_mtime))
    lines = validate_shapes(PatientData(path=Path("x.ttl"), triples=case("valid")), kb_copy, engine="sparql")
    assert any("birthDate must be before itself" in line for line in lines), lines


def test_every_constraint_in_the_shapes_is_broken_by_a_case(kb):
    """The cases exercise every constraint component the shapes use (and so each engine's handling of it)."""
    shapes = rdflib.Graph().parse(kb.shapes_dir / "patient-shapes.ttl")
    parameters = {"datatype", "hasValue", "in", "maxCount", "minCount", "minExclusive", "minInclusive", "node",
                  "nodeKind", "or"}
    used = {str(p).removeprefix(str(SH)) for p in shapes.predicates() if str(p).removeprefix(str(SH)) in parameters}
    assert used == parameters, "a new kind of constraint in the shapes needs a case in tests/shape_cases.py"
    seen = set()
    for name in CASES:
        for result in results(case(name), kb, ENGINES[0]):
            seen.add(result[3][1].removeprefix(str(SH)).removesuffix("ConstraintComponent"))
    assert {p[0].upper() + p[1:] for p in parameters} <= seen


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_patient_conforms_under_every_engine(path, kb):
    data = load_patient(path)
    assert all(validate_shapes(data, kb, engine=engine) == [] for engine in ENGINES)


def test_the_messages_name_patient_fact_field_and_value(kb):
    lines = validate_shapes(PatientData(path=Path("x.ttl"), triples=case("result-value-negative")), kb)
    assert ("x.ttl: patient <https://example.org/b12kg/seed-case#patient>, <https://example.org/b12kg/seed-case#b12>: "
            "field b12:value: value must not be negative (got -5)") in lines
    lines = validate_shapes(PatientData(path=Path("x.ttl"), triples=case("result-blank-node")), kb)
    assert lines == ["x.ttl: patient <https://example.org/b12kg/seed-case#patient>: field b12:hasLabResult: each lab "
                     "result must be an IRI with one value, one unit, one date and a code or analyte (got a blank node)"]


def test_an_unknown_engine_is_refused(kb):
    assert ENGINES[0] == "sparql"
    with pytest.raises(ValueError, match="unknown SHACL engine 'rudof'"):
        validate_shapes(PatientData(path=Path("x.ttl"), triples=case("valid")), kb, engine="rudof")


@pytest.mark.parametrize("constraint, feature", [
    ('sh:property [ sh:path ex:p ; sh:pattern "^a" ; sh:flags "i" ]', "sh:flags"),
    ("sh:property [ sh:path ex:p ; sh:lessThan ex:q ]", "sh:lessThan"),
    ("sh:closed true", "sh:closed"),
    ("sh:property [ sh:path ( ex:p ex:q ) ; sh:minCount 1 ]", "a property path other than one IRI"),
    ("sh:property [ sh:path ex:p ; sh:minCount 2 ]", "sh:minCount 2"),
])
def test_a_feature_outside_the_compiled_subset_is_refused_not_skipped(constraint, feature):
    """The compiler refuses what it does not cover (then pyshacl-turbo validates), never drops it."""
    shapes = rdflib.Graph().parse(data="@prefix sh: <http://www.w3.org/ns/shacl#> . @prefix ex: <http://example.org/> .\n"
                                       f"ex:S a sh:NodeShape ; sh:targetClass ex:C ; {constraint} .", format="turtle")
    with pytest.raises(shacl_sparql.Unsupported, match=feature.replace("(", r"\(")):
        shacl_sparql.compile_shapes(shapes)

"""Seeded defects in temporary copies of the knowledge base: `check` reports each one with the right
check id and location (mutation testing of the quality gate)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from b12kg.check import Severity, run_checks

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    stages: tuple[str, ...]
    check_id: str
    expect_file: str
    expect_entity: str | None = None
    expect_line_of: str | None = None  #: text whose line in the mutated file the finding must point at


MUTATIONS = [
    Mutation("drop an evidence link", "ontology/guideline.ttl",
             "    b12:hasEvidence gl:ref-6 ; dcterms:source gl:article .", "    dcterms:source gl:article .",
             ("shacl",), "shacl-statement-evidence", "ontology/guideline.ttl",
             "https://w3id.org/b12kg/guideline#stmt-additional-2", "gl:stmt-additional-2 a"),
    Mutation("let a contraindicated product satisfy a regimen", "queries/derive/05-permitted-products.rq",
             "  MINUS { ?ci a b12:ContraindicationFinding ; b12:forPatient ?patient ; b12:instantiates/b12:product ?product . }\n",
             "",
             ("logic",), "logic-conflict-contraindicated", "ontology/guideline.ttl",
             "https://w3id.org/b12kg/guideline#regimen-oral-daily"),
    Mutation("make the injection regimen cyanocobalamin", "ontology/guideline.ttl",
             "    b12:allowedProduct b12:hydroxocobalamin ;", "    b12:allowedProduct b12:cyanocobalamin ;",
             ("logic",), "logic-gap", "ontology/guideline.ttl"),
    Mutation("make two B12 bands overlap", "ontology/b12kg.ttl",
             "    b12:upperThreshold <https://w3id.org/b12kg/guideline#threshold-b12-metabolic> .",
             "    b12:upperThreshold <https://w3id.org/b12kg/guideline#threshold-b12-stroke-risk> .",
             ("logic",), "logic-band-overlap", "ontology/b12kg.ttl"),
    Mutation("leave untreated patients without a decision", "ontology/guideline.ttl",
             "gl:exclusion-untreated a owl:NamedIndividual , b12:ScopeExclusion ;",
             "gl:exclusion-untreated a owl:NamedIndividual ;",
             ("logic",), "logic-gap", "ontology/guideline.ttl"),
    Mutation("drop the rendering of a case-specific statement", "ontology/guideline.ttl",
             "    b12:rendering gl:render-treatment-1-recorded-absent , gl:render-treatment-1-assumed-absent ;\n", "",
             ("logic",), "logic-case-specific-unworded", "ontology/guideline.ttl",
             "https://w3id.org/b12kg/guideline#stmt-treatment-1", "gl:stmt-treatment-1 a"),
    Mutation("put a patient state in the patient vocabulary", "ontology/b12kg.ttl",
             "b12:TreatmentPreference b12:patientVocabulary true .\n",
             "b12:TreatmentPreference b12:patientVocabulary true .\nb12:PatientWithKnownRenalStatus b12:patientVocabulary true .\n",
             ("qc",), "qc-patient-vocabulary-decided", "ontology/b12kg.ttl",
             "https://w3id.org/b12kg/ontology#PatientWithKnownRenalStatus"),
    Mutation("use a patient-shape feature the SPARQL compiler does not cover", "shapes/patient-shapes.ttl",
             '    sh:message "a patient must be an IRI, not a blank node" ;\n',
             '    sh:message "a patient must be an IRI, not a blank node" ;\n'
             '    sh:property [ sh:path b12:birthDate ; sh:lessThan b12:onsetDate ] ;\n',
             ("shacl",), "shacl-patient-shapes-not-compiled", "shapes/patient-shapes.ttl"),
    Mutation("delete a label", "ontology/b12kg.ttl",
             '    rdfs:label "folate" ; b12:canonicalUnit "nmol/L" .', '    b12:canonicalUnit "nmol/L" .',
             ("qc",), "qc-missing-label", "ontology/b12kg.ttl",
             "https://w3id.org/b12kg/ontology#folate", "b12:folate a"),
    Mutation("make a class disjoint with its parent", "ontology/b12kg.ttl",
             "b12:IschemicStroke a owl:Class ;\n    rdfs:subClassOf b12:Stroke ;",
             "b12:IschemicStroke a owl:Class ;\n    rdfs:subClassOf b12:Stroke ;\n    owl:disjointWith b12:Stroke ;",
             ("owl",), "owl-unsatisfiable-class", "ontology/b12kg.ttl",
             "https://w3id.org/b12kg/ontology#IschemicStroke", "b12:IschemicStroke a"),
    Mutation("type a product with two disjoint forms", "ontology/b12kg.ttl",
             "b12:hydroxocobalamin a owl:NamedIndividual , b12:Hydroxocobalamin ;",
             "b12:hydroxocobalamin a owl:NamedIndividual , b12:Hydroxocobalamin , b12:Cyanocobalamin ;",
             ("owl",), "owl-inconsistent", "ontology/b12kg.ttl",
             "https://w3id.org/b12kg/ontology#hydroxocobalamin", "b12:hydroxocobalamin a"),
    Mutation("misspell an IRI in a query", "queries/derive/07-not-covered.rq",
             "?exclusion a b12:ScopeExclusion .", "?exclusion a b12:ScopeExclusoin .",
             ("qc",), "qc-query-undeclared-iri", "queries/derive/07-not-covered.rq",
             "https://w3id.org/b12kg/ontology#ScopeExclusoin", "?exclusion a b12:ScopeExclusoin ."),
    Mutation("give a threshold no unit", "ontology/guideline.ttl",
             'b12:thresholdValue 10.0 ; b12:unit "umol/L" ;', "b12:thresholdValue 10.0 ;",
             ("shacl",), "shacl-threshold-unit", "ontology/guideline.ttl",
             "https://w3id.org/b12kg/guideline#threshold-homocysteine-target", "gl:threshold-homocysteine-target a"),
    Mutation("break Turtle syntax", "ontology/guideline.ttl",
             'rdfs:label "Form of Vitamin B12" ; b12:sequence 3 .', 'rdfs:label "Form of Vitamin B12" ; b12:sequence 3',
             ("syntax",), "syntax-turtle", "ontology/guideline.ttl"),
    Mutation("remove a regimen's interval", "ontology/guideline.ttl",
             '    b12:intervalMin 2.0 ; b12:intervalMax 3.0 ; b12:intervalUnit "mo" ; b12:duration b12:lifelong ;',
             '    b12:intervalUnit "mo" ; b12:duration b12:lifelong ;',
             ("shacl",), "shacl-regimen-interval", "ontology/guideline.ttl",
             "https://w3id.org/b12kg/guideline#regimen-hydroxocobalamin-im", "gl:regimen-hydroxocobalamin-im a"),
    Mutation("change a competency question's expected answer", "queries/competency/treatment-2-regimen.expected.csv",
             "b12:hydroxocobalamin,1,mg,b12:intramuscular,2,3,mo", "b12:hydroxocobalamin,1,mg,b12:intramuscular,2,4,mo",
             ("competency",), "cq-mismatch", "queries/competency/treatment-2-regimen.expected.csv",
             None, "b12:hydroxocobalamin,1,mg,b12:intramuscular,2,4,mo"),
    Mutation("point at a missing evidence reference", "ontology/guideline.ttl",
             "    b12:hasEvidence gl:ref-4 ; dcterms:source gl:article .",
             "    b12:hasEvidence gl:ref-40 ; dcterms:source gl:article .",
             ("shacl",), "shacl-statement-evidence-resolves", "ontology/guideline.ttl",
             "https://w3id.org/b12kg/guideline#stmt-monitoring-3", "gl:stmt-monitoring-3 a"),
    Mutation("break a query's syntax", "queries/derive/02-contraindications.rq",
             "  FILTER (?held = ?required)",
             "  FILTER (?held = ?required)\n  FILTER (",
             ("syntax",), "syntax-sparql", "queries/derive/02-contraindications.rq"),
    Mutation("break an update's syntax", "queries/cohort/delete-derived.ru",
             "  GRAPH <urn:b12kg:graph:derived> { ?patient ?p ?o }\n",
             "  GRAPH <urn:b12kg:graph:derived> { ?patient ?p ?o \n",
             ("syntax",), "syntax-sparql", "queries/cohort/delete-derived.ru"),
    Mutation("misspell an IRI in an update", "queries/cohort/delete-derived.ru",
             "{ ?node b12:forPatient ?patient ; ?p ?o }", "{ ?node b12:forPatent ?patient ; ?p ?o }",
             ("qc",), "qc-query-undeclared-iri", "queries/cohort/delete-derived.ru",
             "https://w3id.org/b12kg/ontology#forPatent", "{ ?node b12:forPatent ?patient ; ?p ?o }"),
    Mutation("make a property chain functional", "ontology/b12kg.ttl",
             "b12:analyte a owl:ObjectProperty ;", "b12:analyte a owl:ObjectProperty , owl:FunctionalProperty ;",
             ("owl",), "owl-dl-non-simple-property", "ontology/b12kg.ttl",
             "https://w3id.org/b12kg/ontology#analyte", "b12:analyte a"),
    Mutation("select two regimens at once", "ontology/guideline.ttl",
             "    b12:selectedWhen b12:PatientPreferringOralTreatment ;",
             "    b12:selectedUnless b12:PatientPreferringOralTreatment ;",
             ("logic",), "logic-conflict-regimens", "ontology/guideline.ttl"),
    Mutation("misspell a superclass", "ontology/b12kg.ttl",
             "b12:HemorrhagicStroke a owl:Class ;\n    rdfs:subClassOf b12:Stroke ;",
             "b12:HemorrhagicStroke a owl:Class ;\n    rdfs:subClassOf b12:Strok ;",
             ("owl",), "owl-dl-undeclared", "ontology/b12kg.ttl",
             "https://w3id.org/b12kg/ontology#Strok", "    rdfs:subClassOf b12:Strok ;"),
    Mutation("give a date property a range outside the OWL 2 datatype map", "ontology/b12kg.ttl",
             "    rdfs:domain b12:Patient ; rdfs:range xsd:dateTime ;", "    rdfs:domain b12:Patient ; rdfs:range xsd:date ;",
             ("owl",), "owl-api-profile", "ontology/b12kg.ttl",
             "http://www.w3.org/2001/XMLSchema#date", "    rdfs:domain b12:Patient ; rdfs:range xsd:date ;"),
    Mutation("use a Dublin Core term without declaring it", "ontology/guideline.ttl",
             '    dcterms:modified "2025-10-31"^^xsd:date ;',
             '    dcterms:modified "2025-10-31"^^xsd:date ;\n    dcterms:publisher "a reviewer" ;',
             ("owl",), "owl-api-profile", "ontology/guideline.ttl",
             "http://purl.org/dc/terms/publisher", '    dcterms:publisher "a reviewer" ;'),
    Mutation("make every route an injection route (a subclass cycle)", "ontology/b12kg.ttl",
             "b12:Route a owl:Class ;\n", "b12:Route a owl:Class ;\n    rdfs:subClassOf b12:InjectionRoute ;\n",
             ("owl",), "owl-class-cycle", "ontology/b12kg.ttl",
             "https://w3id.org/b12kg/ontology#InjectionRoute", "b12:InjectionRoute a owl:Class ;"),
    Mutation("make cobalamin a kind of hydroxocobalamin (a subclass cycle)", "ontology/b12kg.ttl",
             "b12:Cobalamin a owl:Class ;\n    rdfs:subClassOf b12:DrugSubstance ;",
             "b12:Cobalamin a owl:Class ;\n    rdfs:subClassOf b12:DrugSubstance , b12:Hydroxocobalamin ;",
             ("owl",), "owl-class-cycle", "ontology/b12kg.ttl",
             "https://w3id.org/b12kg/ontology#Cobalamin", "b12:Cobalamin a owl:Class ;"),
    Mutation("change the metabolic threshold and leave the words behind", "ontology/guideline.ttl",
             "b12:thresholdValue 258.0 ;", "b12:thresholdValue 250.0 ;",
             ("qc",), "qc-statement-number", "ontology/guideline.ttl",
             "https://w3id.org/b12kg/guideline#stmt-pitfall-1", "gl:stmt-pitfall-1 a"),
    Mutation("change a regimen's interval and leave the words behind", "ontology/guideline.ttl",
             "b12:intervalMin 2.0 ; b12:intervalMax 3.0 ;", "b12:intervalMin 2.0 ; b12:intervalMax 4.0 ;",
             ("qc",), "qc-statement-number", "ontology/guideline.ttl",
             "https://w3id.org/b12kg/guideline#stmt-treatment-2", "gl:stmt-treatment-2 a"),
    Mutation("state a threshold in the wrong unit", "ontology/guideline.ttl",
             'b12:thresholdValue 258.0 ; b12:unit "pmol/L" ;', 'b12:thresholdValue 258.0 ; b12:unit "pg/mL" ;',
             ("qc",), "qc-threshold-unit", "ontology/guideline.ttl",
             "https://w3id.org/b12kg/guideline#threshold-b12-metabolic", "gl:threshold-b12-metabolic a"),
]


def _copy(tmp_path: Path) -> Path:
    for folder in ("ontology", "shapes", "queries", "schema"):
        if (REPO / folder).is_dir():
            shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def _line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith(text) or text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def test_at_least_twelve_distinct_defects():
    assert len({m.check_id for m in MUTATIONS}) >= 12
    assert len(MUTATIONS) >= 12


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_check_reports_seeded_defect(mutation: Mutation, tmp_path: Path):
    root = _copy(tmp_path)
    target = root / mutation.file
    text = target.read_text(encoding="utf-8")
    assert text.count(mutation.old) >= 1, f"mutation anchor not found in {mutation.file}"
    target.write_text(text.replace(mutation.old, mutation.new, 1), encoding="utf-8")

    report = run_checks(root, stages=mutation.stages)
    hits = [f for f in report.findings if f.check_id == mutation.check_id]
    assert hits, f"{mutation.check_id} not reported; got {[(f.check_id, f.message) for f in report.findings]}"
    assert any(f.file == mutation.expect_file for f in hits), [(f.file, f.message) for f in hits]
    hits = [f for f in hits if f.file == mutation.expect_file]
    if mutation.expect_entity:
        assert any(f.entity == mutation.expect_entity for f in hits), [(f.entity, f.message) for f in hits]
        hits = [f for f in hits if f.entity == mutation.expect_entity]
    if mutation.expect_line_of:
        line = _line_of(target, mutation.expect_line_of)
        assert any(f.line == line for f in hits), [(f.line, line, f.message) for f in hits]
    assert report.exit_code(Severity.ERROR) == (1 if any(f.severity is Severity.ERROR for f in hits) else 0)


def test_turtle_syntax_error_points_at_line_and_column(tmp_path: Path):
    root = _copy(tmp_path)
    target = root / "ontology/guideline.ttl"
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace('rdfs:label "Assessment" ; b12:sequence 1 .', 'rdfs:label "Assessment" ; b12:sequence 1', 1),
                      encoding="utf-8")
    report = run_checks(root, stages=["syntax", "owl"])
    [finding] = [f for f in report.findings if f.check_id == "syntax-turtle"]
    broken = _line_of(target, 'rdfs:label "Assessment" ; b12:sequence 1')
    assert finding.line in (broken, broken + 1) and finding.column is not None
    # later stages are skipped, not crashed
    assert any(f.check_id == "check-stage-skipped" for f in report.findings)
    assert not report.could_not_run


def test_sparql_syntax_error_points_at_line(tmp_path: Path):
    root = _copy(tmp_path)
    target = root / "queries/report/states.rq"
    lines = target.read_text(encoding="utf-8").splitlines()
    lines[-2] = lines[-2] + " }}"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_checks(root, stages=["syntax"])
    [finding] = [f for f in report.findings if f.check_id == "syntax-sparql"]
    assert finding.file == "queries/report/states.rq"
    assert finding.line is not None and abs(finding.line - (len(lines) - 1)) <= 1


def test_a_misspelt_shape_path_is_one_error_not_one_per_statement(tmp_path: Path):
    root = _copy(tmp_path)
    target = root / "shapes/guideline-shapes.ttl"
    text = target.read_text(encoding="utf-8")
    anchor = "    sh:path b12:hasEvidence ; sh:minCount 1 ;"
    assert anchor in text
    target.write_text(text.replace(anchor, "    sh:path b12:hasEvidnce ; sh:minCount 1 ;", 1), encoding="utf-8")
    report = run_checks(root, stages=["shacl"])
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    assert [f.check_id for f in errors] == ["shacl-undeclared-path"], [(f.check_id, f.message) for f in errors]
    (finding,) = errors
    assert finding.file == "shapes/guideline-shapes.ttl" and finding.line == _line_of(target, "sh:path b12:hasEvidnce")
    assert "b12:hasEvidnce" in finding.message


def test_an_inconsistency_names_the_axioms_that_cause_it_and_no_others(tmp_path: Path):
    """An individual typed with two of three disjoint forms: the finding lists exactly the two type
    assertions and the owl:AllDisjointClasses axiom, each at its line (a minimal justification)."""
    root = _copy(tmp_path)
    target = root / "ontology" / "b12kg.ttl"
    text = target.read_text(encoding="utf-8")
    old = "b12:hydroxocobalamin a owl:NamedIndividual , b12:Hydroxocobalamin ;"
    target.write_text(text.replace(old, "b12:hydroxocobalamin a owl:NamedIndividual , b12:Hydroxocobalamin , b12:Cyanocobalamin ;"),
                      encoding="utf-8")
    report = run_checks(root, stages=("owl",))
    [finding] = [f for f in report.findings if f.check_id == "owl-inconsistent"]
    individual, disjoint = _line_of(target, "b12:hydroxocobalamin a"), _line_of(target, "a owl:AllDisjointClasses")
    axioms = finding.message.split("these axioms together cause it (remove or change one): ", 1)[1].split(" | ")
    assert sorted(axioms) == sorted([
        f"b12:hydroxocobalamin a b12:Cyanocobalamin, b12:Hydroxocobalamin . (ontology/b12kg.ttl:{individual})",
        f"[] a owl:AllDisjointClasses ; owl:members ( b12:Hydroxocobalamin b12:Cyanocobalamin b12:Methylcobalamin ) . "
        f"(ontology/b12kg.ttl:{disjoint})",
    ]), axioms

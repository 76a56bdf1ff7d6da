"""The ontology loads in rdflib and owlready2, has an IRI and version IRI, documents every term,
keeps numbers in one place, marks unverified codes, and the closed namespace matches it."""

from __future__ import annotations

import io
import re

import owlready2
import rdflib
from rdflib.namespace import OWL, RDF, RDFS, SKOS

from b12kg.namespaces import B12

from conftest import ontology_graph

B12NS = "https://w3id.org/b12kg/ontology#"


def test_every_module_parses_and_the_catalog_lists_the_imports(kb):
    g = ontology_graph(kb)
    main = rdflib.URIRef("https://w3id.org/b12kg/ontology")
    assert (main, RDF.type, OWL.Ontology) in g
    assert g.value(main, OWL.versionIRI) is not None
    imports = {str(o) for o in g.objects(main, OWL.imports)}
    assert imports | {str(main)} == set(kb.ontology_files)


def test_loads_in_owlready2(kb):
    world = owlready2.World()
    for iri, path in kb.ontology_files.items():
        g = rdflib.Graph().parse(path, format="turtle")
        g.remove((None, OWL.imports, None))
        data = g.serialize(format="nt", encoding="utf-8")
        world.get_ontology(iri).load(fileobj=io.BytesIO(data), format="ntriples")
    patient = world["https://w3id.org/b12kg/ontology#Patient"]
    assert patient is not None and isinstance(patient, owlready2.ThingClass)
    world.close()


def test_every_class_and_property_has_a_label_and_a_definition(kb):
    g = ontology_graph(kb)
    kinds = [OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.AnnotationProperty]
    missing = []
    for kind in kinds:
        for term in g.subjects(RDF.type, kind):
            if isinstance(term, rdflib.URIRef) and str(term).startswith(B12NS):
                if g.value(term, RDFS.label) is None or g.value(term, SKOS.definition) is None:
                    missing.append(str(term))
    assert missing == []


def test_guideline_numbers_live_only_in_the_ontology(kb):
    """No guideline number in Python or in query text (the article's own wording in b12:text is data)."""
    numbers = re.compile(r"(?<![\w.])(322|258|436|133|1000|0\.738|2\.266|30\.4375)(?![\w.])")
    offenders = []
    for path in list((kb.root / "src").rglob("*.py")) + list(kb.queries_dir.rglob("*.r[qu]")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if numbers.search(line):
                offenders.append(f"{path}:{lineno}: {line.strip()}")
    assert offenders == []


def test_each_threshold_value_is_stated_once(kb):
    g = ontology_graph(kb)
    values = [str(o) for o in g.objects(None, rdflib.URIRef(B12NS + "thresholdValue"))]
    assert len(values) == len(set(values)) == 5


def test_codes_not_verified_in_the_clinical_reference_are_marked_unverified(kb):
    g = ontology_graph(kb)
    status = {str(s): str(o) for s, o in g.subject_objects(rdflib.URIRef(B12NS + "verificationStatus"))}
    for code in ["http://snomed.info/id/422504002", "http://snomed.info/id/236423003", "http://snomed.info/id/275526006"]:
        assert status[code] == B12NS + "Unverified", code
    for code in ["http://loinc.org/rdf#2132-9", "http://loinc.org/rdf#14685-2", "http://snomed.info/id/230690007"]:
        assert status[code] == B12NS + "Verified", code


def test_closed_namespace_terms_exist_in_the_ontology(kb):
    g = ontology_graph(kb)
    declared = {str(s) for s in g.subjects() if isinstance(s, rdflib.URIRef) and str(s).startswith(B12NS)}
    for name in B12.__annotations__:
        assert B12NS + name in declared, name


def test_the_article_and_its_references(kb):
    g = ontology_graph(kb)
    gl = rdflib.Namespace("https://w3id.org/b12kg/guideline#")
    assert str(g.value(gl.article, rdflib.URIRef("http://purl.org/dc/terms/modified"))) == "2025-10-31"
    assert str(g.value(gl.article, rdflib.URIRef(B12NS + "reviewStatus"))) == "pending human review"
    numbers = sorted(int(o) for o in g.objects(None, rdflib.URIRef(B12NS + "referenceNumber")))
    assert numbers == [1, 2, 3, 4, 5, 6, 7]
    statements = set(g.subjects(RDF.type, rdflib.URIRef(B12NS + "GuidelineStatement")))
    assert len(statements) == 18  # 3 assessment, 2 treatment, 3 form, 4 monitoring, 3 additional, 3 pitfalls
    for s in statements:
        assert g.value(s, rdflib.URIRef(B12NS + "hasEvidence")) is not None
        assert g.value(s, rdflib.URIRef(B12NS + "category")) is not None
        assert g.value(s, rdflib.URIRef(B12NS + "population")) is not None


def test_statement_texts_are_the_articles_words(kb, shared_dir):
    article = (shared_dir / "source" / "b12-post-stroke-guideline.txt").read_text()
    g = ontology_graph(kb)
    for s in g.subjects(RDF.type, rdflib.URIRef(B12NS + "GuidelineStatement")):
        text = str(g.value(s, rdflib.URIRef(B12NS + "text")))
        assert text in article, s


def test_the_owl_api_finds_the_closure_and_each_module_owl2_dl(kb):
    """The OWL API's OWL2DLProfile (Debian libowlapi-java), the reference implementation under Protégé
    and ROBOT: no violation in the imports closure nor in any module opened alone."""
    from conftest import require_binary

    from b12kg.owl_profile import OWLAPI_JAR, check_profile

    require_binary("javac", "apt-get install libowlapi-java default-jdk-headless")
    assert OWLAPI_JAR.is_file(), f"{OWLAPI_JAR}: apt-get install libowlapi-java"
    files = [p.name for p in kb.ontology_files.values()]
    assert "b12kg.ttl" in files and len(files) == 4
    violations = check_profile(kb.ontology_dir, files)
    assert violations == [], "\n".join(f"{v.module}: {v.kind} {v.axiom}" for v in violations[:20])


def test_hermit_classifies_with_no_datatype_workaround():
    """HermiT (owlready2) is called without ignore_unsupported_datatypes: every datatype of the
    ontology is in the OWL 2 datatype map (date ranges are xsd:dateTime)."""
    import inspect

    from b12kg import check, reason

    for module in (reason, check):
        assert "ignore_unsupported_datatypes" not in inspect.getsource(module)

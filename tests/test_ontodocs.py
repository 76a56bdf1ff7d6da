"""``b12kg docs``: ontology pages (pyLODE) and the decision diagram (Graphviz), generated from the ontology."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import rdflib
from rdflib.namespace import OWL, RDF, RDFS

from b12kg.ontodocs import build, decision_dot

from conftest import cli, ontology_graph, require_binary

require_binary("dot", "apt-get install graphviz")

B12 = "https://w3id.org/b12kg/ontology#"
GL = "https://w3id.org/b12kg/guideline#"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from b12kg.kb import KnowledgeBase

    out = tmp_path_factory.mktemp("docs")
    return out, build(KnowledgeBase(), out)


def test_the_pages_document_every_class_property_and_individual(kb, built):
    out, result = built
    html = (out / "ontology.html").read_text(encoding="utf-8") + (out / "individuals.html").read_text(encoding="utf-8")
    graph = ontology_graph(kb)
    kinds = (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.NamedIndividual)
    entities = {s for k in kinds for s in graph.subjects(RDF.type, k)
                if isinstance(s, rdflib.URIRef) and str(s).startswith((B12, GL))}
    assert len(entities) > 200
    missing = sorted(str(e) for e in entities if str(e) not in html)
    assert missing == []
    assert result.classes == sum(1 for c in graph.subjects(RDF.type, OWL.Class) if isinstance(c, rdflib.URIRef))
    assert "<script src=\"http" not in html  # self-contained: nothing fetched at view time
    assert result.individuals == sum(1 for e in graph.subjects(RDF.type, OWL.NamedIndividual) if isinstance(e, rdflib.URIRef))
    # a statement's page entry holds its words and links its evidence
    people = (out / "individuals.html").read_text(encoding="utf-8")
    assert str(graph.value(rdflib.URIRef(GL + "stmt-treatment-2"), rdflib.URIRef(B12 + "text"))) in people
    assert 'href="#ref-1"' in people


def test_the_diagram_shows_every_regimen_contraindication_and_exclusion(kb, built):
    out, _ = built
    svg = ET.parse(out / "decision.svg").getroot()
    assert svg.tag.endswith("svg")
    text = " ".join(t.text or "" for t in svg.iter() if t.tag.endswith("text"))
    graph = ontology_graph(kb)
    for kind in ("Regimen", "Contraindication", "ScopeExclusion"):
        members = list(graph.subjects(RDF.type, rdflib.URIRef(B12 + kind)))
        assert members, kind
        for member in members:
            assert str(member).rsplit("#", 1)[1] in text, member
            assert str(graph.value(member, RDFS.label)) in text, member


def test_an_edit_of_the_ontology_changes_the_diagram(kb_copy):
    path = kb_copy.ontology_dir / "guideline.ttl"
    path.write_text(path.read_text(encoding="utf-8") + '''
gl:contra-methylcobalamin-edit a owl:NamedIndividual , b12:Contraindication ;
    rdfs:label "methylcobalamin, an edit for a test" ;
    b12:product b12:methylcobalamin ; b12:population b12:PatientWithLowFolate .
''', encoding="utf-8")
    source, edges = decision_dot(kb_copy)
    assert "methylcobalamin, an edit for a test" in source
    before, before_edges = decision_dot(type(kb_copy)())
    assert "an edit for a test" not in before and edges == before_edges + 2


def test_the_command_writes_the_three_files(tmp_path):
    done = cli("docs", "--output", str(tmp_path / "site"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == ["decision.dot", "decision.svg", "individuals.html",
                                                                 "ontology.html"]
    assert "DEBUG" not in done.stderr and "INFO" not in done.stderr

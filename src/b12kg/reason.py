"""Classification: which patient states hold. Two engines, shown identical by the tests.

* ``rules`` (default, fast): the OWL 2 RL rules the ontology needs, as SPARQL CONSTRUCT queries in
  ``queries/reason/``, run to a fixpoint, plus the threshold-band rule that OWL 2 RL lacks.
* ``hermit``: the OWL 2 DL reasoner HermiT through owlready2. Band classes get their datatype
  restriction (``xsd:decimal[>= lower, < upper]``) built here from the threshold individuals, so every
  number is still stated once, in ``ontology/guideline.ttl``.

Both write ``rdf:type`` triples for the patient-side individuals into the ``inferred`` graph.
"""

from __future__ import annotations

import io
import shutil
from enum import Enum

import pyoxigraph as ox

from b12kg.engine import Workspace
from b12kg.errors import KnowledgeBaseError, ReasonerError

OWL = "http://www.w3.org/2002/07/owl#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"
B12 = "https://w3id.org/b12kg/ontology#"
MAX_ROUNDS = 50

_BANDS_QUERY = """
PREFIX b12: <https://w3id.org/b12kg/ontology#>
SELECT ?band ?base ?lower ?upper WHERE {
  ?band b12:bandBase ?base .
  OPTIONAL { ?band b12:lowerThreshold/b12:thresholdValue ?lower }
  OPTIONAL { ?band b12:upperThreshold/b12:thresholdValue ?upper }
}
"""


class Reasoner(str, Enum):
    rules = "rules"
    hermit = "hermit"


def classify(ws: Workspace, reasoner: Reasoner = Reasoner.rules) -> None:
    if reasoner is Reasoner.hermit:
        classify_hermit(ws)
    else:
        classify_rules(ws)


def classify_rules(ws: Workspace) -> int:
    """Apply ``queries/reason/*.rq`` until nothing new is inferred; returns the number of rounds."""
    rules = ws.kb.queries("reason")
    if not rules:
        raise KnowledgeBaseError(f"{ws.kb.queries_dir / 'reason'}: no reasoning rules found")
    for round_number in range(1, MAX_ROUNDS + 1):
        added = 0
        for _, text in rules:
            added += ws.add_triples("inferred", ws.construct(text))
        if added == 0:
            return round_number
    raise KnowledgeBaseError(f"reasoning rules did not reach a fixpoint in {MAX_ROUNDS} rounds")


# ---------------------------------------------------------------------------------------- HermiT
def band_axioms(ws: Workspace) -> list[ox.Triple]:
    """OWL axioms ``band ≡ base ⊓ ∃canonicalValue.xsd:decimal[>= lower, < upper]`` from the thresholds."""
    triples: list[ox.Triple] = []

    def node(iri: str) -> ox.NamedNode:
        return ox.NamedNode(iri)

    def rdf_list(items: list) -> ox.BlankNode | ox.NamedNode:
        head: ox.BlankNode | ox.NamedNode = node(RDF + "nil")
        for item in reversed(items):
            cell = ox.BlankNode()
            triples.append(ox.Triple(cell, node(RDF + "first"), item))
            triples.append(ox.Triple(cell, node(RDF + "rest"), head))
            head = cell
        return head

    for row in ws.select_text(_BANDS_QUERY):
        facets = []
        for key, facet in (("lower", "minInclusive"), ("upper", "maxExclusive")):
            if key in row:
                f = ox.BlankNode()
                value = ox.Literal(row[key].value, datatype=node(XSD + "decimal"))
                triples.append(ox.Triple(f, node(XSD + facet), value))
                facets.append(f)
        if not facets:
            raise KnowledgeBaseError(f"band {row['band'].value} has neither a lower nor an upper threshold")
        datatype = ox.BlankNode()
        triples += [
            ox.Triple(datatype, node(RDF + "type"), node(RDFS + "Datatype")),
            ox.Triple(datatype, node(OWL + "onDatatype"), node(XSD + "decimal")),
            ox.Triple(datatype, node(OWL + "withRestrictions"), rdf_list(facets)),
        ]
        restriction = ox.BlankNode()
        triples += [
            ox.Triple(restriction, node(RDF + "type"), node(OWL + "Restriction")),
            ox.Triple(restriction, node(OWL + "onProperty"), node(B12 + "canonicalValue")),
            ox.Triple(restriction, node(OWL + "someValuesFrom"), datatype),
        ]
        intersection = ox.BlankNode()
        triples += [
            ox.Triple(intersection, node(RDF + "type"), node(OWL + "Class")),
            ox.Triple(intersection, node(OWL + "intersectionOf"), rdf_list([row["base"], restriction])),
            ox.Triple(row["band"], node(OWL + "equivalentClass"), intersection),
        ]
    return triples


def _reasoner_input(ws: Workspace) -> bytes:
    """Ontology + band axioms + patient data as N-Triples, without imports and without dates
    (HermiT does not support xsd:date; date logic is done before reasoning)."""
    skip_types = {XSD + "date", XSD + "dateTime", XSD + "gYear"}
    keep = []
    for name in ("ontology", "patients", "normalised"):
        for t in ws.triples(name):
            if t.predicate.value == OWL + "imports":
                continue
            if isinstance(t.object, ox.Literal) and t.object.datatype.value in skip_types:
                continue
            keep.append(t)
    keep += band_axioms(ws)
    return ox.serialize(keep, format=ox.RdfFormat.N_TRIPLES)


def classify_hermit(ws: Workspace) -> None:
    """Classify with HermiT through owlready2 and copy the patient-side types into ``inferred``."""
    import owlready2

    if shutil.which(owlready2.JAVA_EXE) is None and shutil.which("java") is None:
        raise ReasonerError("HermiT needs Java: install a JRE (Debian: apt-get install default-jre-headless)")
    world = owlready2.World()
    try:
        onto = world.get_ontology("urn:b12kg:reasoner-input")
        onto.load(fileobj=io.BytesIO(_reasoner_input(ws)), format="ntriples")
        # Date ranges (xsd:date) are outside the OWL 2 datatype map; date values are stripped above
        # and date logic runs before reasoning, so HermiT may ignore those range axioms.
        owlready2.sync_reasoner_hermit(world, infer_property_values=False, debug=0, ignore_unsupported_datatypes=True)
    except owlready2.OwlReadyInconsistentOntologyError:
        raise ReasonerError("HermiT: the ontology with this patient data is inconsistent") from None
    except owlready2.OwlReadyJavaError as exc:
        raise ReasonerError(f"HermiT failed: {_java_message(exc)}") from None
    subjects = {
        t.subject.value
        for name in ("patients", "normalised")
        for t in ws.triples(name)
        if isinstance(t.subject, ox.NamedNode)
    }
    inferred = []
    rdf_type = ox.NamedNode(RDF + "type")
    for iri in sorted(subjects):
        entity = world[iri]
        if entity is None or not isinstance(entity, owlready2.Thing):
            continue
        for cls in entity.INDIRECT_is_a:
            cls_iri = getattr(cls, "iri", None)
            if isinstance(cls, owlready2.ThingClass) and cls_iri and not cls_iri.startswith(OWL):
                inferred.append(ox.Triple(ox.NamedNode(iri), rdf_type, ox.NamedNode(cls_iri)))
    world.close()
    ws.add_triples("inferred", inferred)


def _java_message(exc: Exception) -> str:
    """The first line of a Java error that says what went wrong (not a stack frame)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith("at ") and "Java error message" not in line:
            return line
    return "unknown Java error"

"""The project's namespaces. ``B12`` is closed: a misspelt term raises instead of minting an IRI.

``tests/test_namespaces.py`` keeps the closed list in step with the ontology.
"""

from __future__ import annotations

from rdflib import Namespace, URIRef
from rdflib.namespace import DefinedNamespace

GRAPH_ONTOLOGY = "urn:b12kg:graph:ontology"
GRAPH_PATIENTS = "urn:b12kg:graph:patients"
GRAPH_NORMALISED = "urn:b12kg:graph:normalised"
GRAPH_INFERRED = "urn:b12kg:graph:inferred"
GRAPH_DERIVED = "urn:b12kg:graph:derived"

RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"

GL = Namespace("https://w3id.org/b12kg/guideline#")
PROV = Namespace("http://www.w3.org/ns/prov#")


class B12(DefinedNamespace):
    """Terms of the b12kg core ontology that the engine names directly."""

    _fail = True
    _NS = Namespace("https://w3id.org/b12kg/ontology#")

    Patient: URIRef
    LabResult: URIRef
    Recommendation: URIRef
    NotCoveredFinding: URIRef
    MissingDataFinding: URIRef
    ContraindicationFinding: URIRef
    Derivation: URIRef
    InScopePatient: URIRef
    UnitConversion: URIRef
    ResultCurrencyPolicy: URIRef
    Threshold: URIRef
    hasLabResult: URIRef
    hasAdministration: URIRef
    hasCondition: URIRef
    hasNeurologicalAssessment: URIRef
    hasTreatmentPreference: URIRef
    forPatient: URIRef
    instantiates: URIRef
    recommendationStatus: URIRef
    selected: URIRef
    alternative: URIRef
    applies: URIRef
    recommendsRegimen: URIRef
    hasFollowUp: URIRef
    anchor: URIRef
    maintenanceStart: URIRef
    nextDueEarliest: URIRef
    nextDueLatest: URIRef
    windowStart: URIRef
    windowEnd: URIRef
    intervalMin: URIRef
    intervalMax: URIRef
    intervalUnit: URIRef
    maxAge: URIRef
    maxAgeUnit: URIRef
    fromUnit: URIRef
    toUnit: URIRef
    factor: URIRef
    bandBase: URIRef
    lowerThreshold: URIRef
    upperThreshold: URIRef
    thresholdValue: URIRef
    canonicalValue: URIRef
    effectiveDate: URIRef
    stateOf: URIRef

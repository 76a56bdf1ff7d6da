"""HermiT runs leave nothing in the temp folder, whatever HermiT answers.

owlready2 writes HermiT's input (the ontology, and for a patient the patient's data) to a temp file
and deletes it only when HermiT succeeds; an inconsistent or rejected input used to leave the file
behind: one per `recommend --reasoner hermit` on inconsistent data, up to one per justification run of
`b12kg check` on an inconsistent edit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyoxigraph as ox
import pytest

from b12kg.check import _consistent_hermit
from b12kg.engine import Workspace
from b12kg.errors import ReasonerError
from b12kg.reason import _reasoner_input, classify_hermit
from conftest import EXAMPLES, require_binary

B12 = "https://w3id.org/b12kg/ontology#"
RDF_TYPE = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")

pytestmark = pytest.mark.hermit

require_binary("java", "HermiT needs Java: apt-get install default-jre-headless")


@pytest.fixture
def temp_folder(tmp_path: Path, monkeypatch) -> Path:
    """The process's temp folder, moved to an empty folder of the test's own."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def patient_workspace(kb, extra: list[ox.Triple]) -> Workspace:
    ws = Workspace(kb)
    ws.load_nt("patients", ox.serialize(ox.parse(path=EXAMPLES / "seed-case.ttl"), format=ox.RdfFormat.N_TRIPLES))
    ws.add_triples("patients", extra)
    return ws


def test_an_inconsistent_patient_leaves_no_temp_file(kb, temp_folder):
    # the product individual typed with two of its disjoint forms: HermiT finds the data inconsistent
    product = ox.NamedNode(B12 + "hydroxocobalamin")
    ws = patient_workspace(kb, [ox.Triple(product, RDF_TYPE, ox.NamedNode(B12 + "Cyanocobalamin"))])
    with pytest.raises(ReasonerError, match="inconsistent"):
        classify_hermit(ws)
    assert list(temp_folder.iterdir()) == []


def test_a_consistent_patient_leaves_no_temp_file(kb, temp_folder):
    ws = patient_workspace(kb, [])
    classify_hermit(ws)
    assert ws.size("inferred") > 0
    assert list(temp_folder.iterdir()) == []


def test_the_checks_consistency_runs_leave_no_temp_file(kb, temp_folder):
    ontology = list(ox.parse(_reasoner_input(Workspace(kb)), format=ox.RdfFormat.N_TRIPLES))  # what check reasons on
    product = ox.NamedNode(B12 + "hydroxocobalamin")
    clash = ox.Triple(product, RDF_TYPE, ox.NamedNode(B12 + "Cyanocobalamin"))
    assert _consistent_hermit(ontology) is True
    assert _consistent_hermit(ontology + [clash]) is False
    assert list(temp_folder.iterdir()) == []

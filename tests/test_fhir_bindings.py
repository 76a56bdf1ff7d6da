"""The FHIR importer's code and unit bindings are data in the ontology, not Python."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from b12kg.fhir import Bindings, import_fhir

SCT = "http://snomed.info/id/"
B12 = "https://w3id.org/b12kg/ontology#"
SYNTHEA_CKD = "Coleman_Ortiz_70e00093-a3d5-42bc-8186-eface8432c02.json"


def test_bindings_come_from_the_ontology(kb):
    bindings = Bindings.load(kb)
    (stroke,) = bindings.codes[("http://snomed.info/sct", "422504002")]
    assert (stroke.kind, stroke.target, stroke.verified) == ("condition", B12 + "IschemicStroke", False)
    (cva,) = bindings.codes[("http://snomed.info/sct", "230690007")]
    assert cva.verified is True
    assert bindings.convertible[B12 + "serum-b12"] == {"pg/mL", "ng/L", "pmol/L"}
    assert (B12 + "egfr", "mL/min") in bindings.rejected


def test_every_mapping_code_not_in_the_clinical_reference_is_unverified(kb, shared_dir):
    reference = (shared_dir / "docs" / "clinical-reference.md").read_text()
    verified_section = reference.split("Likely but not verified")[0]
    for rows in Bindings.load(kb).codes.values():
        for b in rows:
            notation = b.code.rsplit("/", 1)[-1].rsplit("#", 1)[-1]
            if b.verified:
                assert f"| {notation} |" in verified_section, b.code


def test_a_new_value_set_binding_in_turtle_changes_the_import(kb_copy, shared_dir):
    path = shared_dir / "data" / "fhir" / "synthea" / SYNTHEA_CKD
    before = import_fhir([path], kb=kb_copy)
    assert SCT + "127013003" not in {t.object.value for t in before.triples}
    mapping = Path(kb_copy.ontology_dir) / "fhir-mapping.ttl"
    mapping.write_text(mapping.read_text() + (
        "\nsct:127013003 a owl:NamedIndividual , b12:Code ; b12:codeSystem b12:SNOMEDCT ; skos:notation \"127013003\" ;"
        " b12:verificationStatus b12:Unverified .\n"
        "[ a owl:Restriction ; owl:onProperty b12:code ; owl:hasValue sct:127013003 ] rdfs:subClassOf b12:RenalImpairment .\n"))
    after = import_fhir([path], kb=kb_copy)
    assert SCT + "127013003" in {t.object.value for t in after.triples}


def test_removing_the_unit_rejection_gives_the_generic_unusable_reason(kb_copy, shared_dir):
    mapping = Path(kb_copy.ontology_dir) / "fhir-mapping.ttl"
    text = mapping.read_text()
    mapping.write_text(text[: text.index("fm:reject-egfr-ml-per-min")])
    result = import_fhir([shared_dir / "data" / "fhir" / "synthea" / SYNTHEA_CKD], kb=kb_copy)
    (report,) = result.reports.values()
    reasons = [s["reason"] for s in report.skipped]
    assert reasons and all("cannot be converted" in r for r in reasons)


@pytest.mark.slow
def test_importing_the_24_synthea_patients_takes_at_most_10_seconds(shared_dir, kb):
    start = time.perf_counter()
    result = import_fhir([shared_dir / "data" / "fhir" / "synthea"], kb=kb)
    assert time.perf_counter() - start <= 10.0
    assert len(result.patients) == 24

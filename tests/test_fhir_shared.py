"""FHIR data nobody here wrote: the 24 Synthea patients and the 196 official HL7 R4 examples."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from b12kg.derive import recommend
from b12kg.fhir import import_fhir
from b12kg.report import reports

B12 = "https://w3id.org/b12kg/ontology#"
SCT = "http://snomed.info/id/"
LOINC = "http://loinc.org/rdf#"
AS_OF = date(2025, 10, 31)

STROKE_PATIENTS = {
    "Brant_Jacobson", "Christopher_Abshire", "Elisha_Schroeder", "Eugenia_Schuster", "Evelyn_McCullough",
    "Josue_Sipes", "Martina_Murazik", "Paris_Jaskolski", "Reba_Nolan", "Trey_Berge",
}
# CKD stage codes per stroke patient (SOURCES.md: only Evelyn and Josue of the stroke patients have CKD)
STROKE_CKD = {"Evelyn_McCullough": {"431855005"}, "Josue_Sipes": {"431855005", "431856006"}}
# (usable eGFR results in mL/min/{1.73_m2}, eGFR results in plain mL/min) per stroke patient
STROKE_EGFR = {
    "Brant_Jacobson": (13, 0), "Christopher_Abshire": (9, 0), "Elisha_Schroeder": (0, 0), "Eugenia_Schuster": (0, 0),
    "Evelyn_McCullough": (35, 2), "Josue_Sipes": (26, 3), "Martina_Murazik": (0, 1), "Paris_Jaskolski": (0, 2),
    "Reba_Nolan": (9, 0), "Trey_Berge": (11, 0),
}


def _name(path: Path) -> str:
    return "_".join(path.stem.split("_")[:2])


def _objects(triples, predicate: str) -> list[str]:
    return [t.object.value for t in triples if t.predicate.value == predicate]


@pytest.fixture(scope="module")
def synthea(shared_dir):
    folder = shared_dir / "data" / "fhir" / "synthea"
    return {_name(f): (f, import_fhir([f])) for f in sorted(folder.glob("*.json"))}


@pytest.fixture(scope="module")
def hl7(shared_dir):
    return import_fhir([shared_dir / "data" / "fhir" / "hl7-examples"])


def test_all_220_shared_fhir_files_import_without_errors(shared_dir, synthea, hl7):
    assert len(synthea) == 24
    assert all(not result.errors for _, result in synthea.values())
    assert len(hl7.files) == 196 and not hl7.errors
    assert len(synthea) + len(hl7.files) == 220


def test_synthea_has_24_patients_and_ten_with_stroke(synthea):
    stroke = set()
    for name, (_, result) in synthea.items():
        assert len(_objects(result.triples, B12 + "birthDate")) == 1, name
        if SCT + "230690007" in _objects(result.triples, B12 + "code"):
            stroke.add(name)
    assert stroke == STROKE_PATIENTS


def test_synthea_ckd_stage_codes_map_and_diabetic_renal_disease_is_not_bound(synthea):
    with_ckd = {n for n, (_, r) in synthea.items() if SCT + "431855005" in _objects(r.triples, B12 + "code")}
    assert len(with_ckd) == 10
    for name, (_, result) in synthea.items():
        assert SCT + "127013003" not in _objects(result.triples, B12 + "code"), name
    for name in STROKE_PATIENTS:
        codes = {c.rsplit("/", 1)[1] for c in _objects(synthea[name][1].triples, B12 + "code") if c.startswith(SCT)}
        assert codes - {"230690007"} == STROKE_CKD.get(name, set()), name


def test_synthea_egfr_in_two_units_plain_ml_per_min_is_reported_not_used(synthea):
    usable = plain = 0
    for name, (_, result) in synthea.items():
        (report,) = result.reports.values()
        n_usable = _objects(result.triples, B12 + "code").count(LOINC + "33914-3")
        n_plain = sum("mL/min is not eGFR per 1.73" in s["reason"] for s in report.skipped)
        assert _objects(result.triples, B12 + "unit").count("mL/min") == 0
        usable, plain = usable + n_usable, plain + n_plain
        if name in STROKE_EGFR:
            assert (n_usable, n_plain) == STROKE_EGFR[name], name
    assert (usable, plain) == (246, 29)


def test_synthea_has_no_b12_result(synthea):
    for name, (_, result) in synthea.items():
        codes = _objects(result.triples, B12 + "code")
        assert LOINC + "2132-9" not in codes and LOINC + "14685-2" not in codes, name


def test_synthea_medication_requests_are_not_administrations(synthea):
    for name, (_, result) in synthea.items():
        assert not _objects(result.triples, B12 + "hasAdministration"), name
        (report,) = result.reports.values()
        assert report.mapped["administrations"] == 0


@pytest.mark.parametrize("name", sorted(STROKE_PATIENTS))
def test_each_synthea_stroke_patient_needs_serum_b12_measured(synthea, name):
    path, _ = synthea[name]
    (doc,) = reports(recommend(path, as_of=AS_OF))
    missing = {m["id"]: m for m in doc["missing_data"]}
    assert "missing-b12" in missing
    assert missing["missing-b12"]["what_to_record"].startswith("Measure serum vitamin B12")
    assert any(s["id"] == "PostStrokePatient" for s in doc["assessment"]["states"])
    renal = any(s["id"] == "PatientWithRenalImpairment" for s in doc["assessment"]["states"])
    assert renal == (name in STROKE_CKD)


def test_hl7_examples_found_facts(hl7):
    codes = Counter(_objects(hl7.triples, B12 + "code"))
    assert codes[SCT + "422504002"] == 1  # Condition-stroke: ischemic stroke
    assert codes[SCT + "36225005"] == 0  # acute renal insufficiency: not CKD, not bound
    assert codes[LOINC + "48642-3"] == 1  # Observation-f205 component without comparator
    assert "urn:b12kg:patient:example" in hl7.reports
    example = hl7.reports["urn:b12kg:patient:example"]
    assert example.mapped["conditions"] == 1
    f201 = hl7.reports["urn:b12kg:patient:f201"]
    reasons = {s["resource"]: s["reason"] for s in f201.skipped}
    assert "entered-in-error" in reasons["Observation/f202"]
    assert "bound" in reasons["Observation/f205 component-1"]
    assert any(n["resource"] == "Observation/f205" and "issued" in n["note"] for n in f201.notes)
    assert not _objects(hl7.triples, B12 + "hasAdministration")  # no B12 medication in the examples


def test_hl7_ischemic_stroke_makes_a_post_stroke_patient(shared_dir, tmp_path):
    (doc,) = reports(recommend(shared_dir / "data/fhir/hl7-examples/Condition-stroke.json", as_of=AS_OF))
    assert any(s["id"] == "PostStrokePatient" for s in doc["assessment"]["states"])
    assert "missing-b12" in {m["id"] for m in doc["missing_data"]}

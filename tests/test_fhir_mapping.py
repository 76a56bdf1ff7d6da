"""FHIR mapping behaviour on small hand-made resources: seed case, units, statuses, dates, intent, errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyoxigraph as ox
import pytest

from b12kg.derive import recommend
from b12kg.errors import InputError
from b12kg.fhir import import_fhir
from b12kg.patient import load_patient
from b12kg.report import reports

REPO = Path(__file__).resolve().parents[1]
FHIR = REPO / "examples" / "fhir"
SEED_TTL = REPO / "examples" / "patients" / "seed-case.ttl"
AS_OF = date(2025, 10, 31)
B12 = "https://w3id.org/b12kg/ontology#"
BIN = Path(sys.executable).parent / "b12kg"


def _summary(path: Path) -> dict:
    (doc,) = reports(recommend(path, as_of=AS_OF))
    return {
        "recommendations": [(r["id"], r["status"], r.get("next_due")) for r in doc["recommendations"]],
        "missing": [m["id"] for m in doc["missing_data"]],
        "contraindicated": [c["id"] for c in doc["contraindicated_products"]],
        "in_scope": doc["in_scope"],
        "states": sorted(s["id"] for s in doc["assessment"]["states"]),
    }


@pytest.fixture(scope="module")
def seed_summary():
    return _summary(SEED_TTL)


@pytest.mark.parametrize("name", ["seed-case-bundle", "seed-case-bundle-pmol", "seed-case-bundle-ng-per-l"])
def test_fhir_seed_case_gives_the_same_recommendations_as_the_turtle_seed_case(name, seed_summary):
    assert _summary(FHIR / f"{name}.json") == seed_summary


def test_the_articles_patient_as_an_ehr_exports_it_gets_the_articles_answer_with_the_assumption():
    """A stroke Condition, a B12 Observation, one cyanocobalamin MedicationAdministration and no
    neurological record (examples/fhir/seed-case-ehr-export.json): covered, hydroxocobalamin 1 mg IM
    every 2-3 months for life, and the absence of neurological symptoms stated as an assumption."""
    (doc,) = reports(recommend(FHIR / "seed-case-ehr-export.json", as_of=AS_OF))
    assert doc["in_scope"] is True
    (selected,) = [r for r in doc["recommendations"] if r["status"] == "selected"]
    assert (selected["id"], selected["product"]["id"], selected["dose"], selected["route"], selected["interval_months"],
            selected["duration"]) == ("stmt-treatment-2", "hydroxocobalamin", {"value": 1, "unit": "mg"}, "intramuscular",
                                      {"min": 2, "max": 3}, "for life")
    assert selected["evidence"] == [1]
    assert [a["id"] for a in doc["assumptions"]] == ["assumption-no-neurological-symptoms"]
    assert doc["assessment"]["neurological"] == []
    seed = {k: v for k, v in _summary(SEED_TTL).items() if k != "states"}
    assert {k: v for k, v in _summary(FHIR / "seed-case-ehr-export.json").items() if k != "states"} == seed


def test_every_neurological_assessment_is_kept(tmp_path):
    """Which assessments count after the stroke is the engine's decision: an earlier report of symptoms
    is imported beside a later absence, and it keeps the patient outside the article."""
    bundle = _seed()
    assessment = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
                      and e["resource"]["code"]["coding"][0]["code"] == "102957003")
    earlier = copy.deepcopy(assessment)
    earlier["fullUrl"] = "urn:uuid:5eed0000-0000-4000-8000-000000000099"
    earlier["resource"]["id"] = "5eed0000-0000-4000-8000-000000000099"
    earlier["resource"]["effectiveDateTime"] = "2025-07-01"
    earlier["resource"]["valueBoolean"] = True
    earlier["resource"].pop("valueCodeableConcept", None)
    bundle["entry"].append(earlier)
    path = _write(tmp_path, bundle)
    result = import_fhir([path])
    assert len([t for t in result.triples if t.predicate.value == B12 + "hasNeurologicalAssessment"]) == 2
    (doc,) = reports(recommend(path, as_of=AS_OF))
    assert [r["id"] for r in doc["not_covered_reasons"]] == ["exclusion-neurological-symptoms"]


def test_pmol_variant_keeps_the_exact_decimal():
    result = import_fhir([FHIR / "seed-case-bundle-pmol.json"])
    values = [t.object for t in result.triples if t.predicate.value == B12 + "value"]
    assert [v.value for v in values] == ["215.496"]
    assert values[0].datatype.value.endswith("#decimal")


def test_recommendation_sources_name_the_fhir_resources():
    (doc,) = reports(recommend(FHIR / "seed-case-bundle.json", as_of=AS_OF))
    selected = next(r for r in doc["recommendations"] if r["status"] == "selected")
    assert "urn:uuid:5eed0000-0000-4000-8000-000000000003" in selected["sources"]  # the B12 Observation
    assert "urn:uuid:5eed0000-0000-4000-8000-000000000004" in selected["sources"]  # the injection


# ------------------------------------------------------------------ hand-made variants of the seed bundle
def _seed() -> dict:
    return json.loads((FHIR / "seed-case-bundle.json").read_text(), parse_float=Decimal)


def _resource(bundle: dict, rtype: str, index: int = 0) -> dict:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype][index]


def _write(tmp_path: Path, doc: dict, name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, default=str))
    return path


def _report(result):
    (report,) = result.reports.values()
    return report


def test_b12_in_international_units_is_unusable_with_reason(tmp_path):
    doc = _seed()
    obs = _resource(doc, "Observation")
    obs["valueQuantity"] = {"value": 300, "unit": "[IU]/L", "system": "http://unitsofmeasure.org", "code": "[IU]/L"}
    result = import_fhir([_write(tmp_path, doc)])
    report = _report(result)
    assert report.mapped["lab results"] == 0
    (skip,) = report.skipped
    assert "[IU]/L" in skip["reason"] and "unusable" in skip["reason"]


def test_unit_code_wins_over_unit_text(tmp_path):
    doc = _seed()
    _resource(doc, "Observation")["valueQuantity"] = {
        "value": 292, "unit": "picograms per millilitre", "system": "http://unitsofmeasure.org", "code": "pg/mL"}
    result = import_fhir([_write(tmp_path, doc)])
    assert [t.object.value for t in result.triples if t.predicate.value == B12 + "unit"] == ["pg/mL"]


def test_entered_in_error_and_cancelled_are_ignored(tmp_path):
    doc = _seed()
    _resource(doc, "Observation")["status"] = "entered-in-error"
    report = _report(import_fhir([_write(tmp_path, doc)]))
    assert report.mapped["lab results"] == 0
    assert any("entered-in-error" in s["reason"] for s in report.skipped)
    doc["entry"][2]["resource"]["status"] = "cancelled"
    report = _report(import_fhir([_write(tmp_path, doc)]))
    assert any("cancelled" in s["reason"] for s in report.skipped)


def test_observation_without_effective_date_uses_issued(tmp_path):
    doc = _seed()
    obs = _resource(doc, "Observation")
    del obs["effectiveDateTime"]
    obs["issued"] = "2025-10-25T09:30:00+01:00"
    result = import_fhir([_write(tmp_path, doc)])
    dates = [t.object.value for t in result.triples
             if t.predicate.value == B12 + "effectiveDate" and "Observation/5eed0000-0000-4000-8000-000000000003" in t.subject.value]
    assert dates == ["2025-10-25T09:30:00+01:00"]
    assert any("issued" in n["note"] for n in _report(result).notes)


def test_observation_without_any_date_is_reported_as_undated(tmp_path):
    doc = _seed()
    del _resource(doc, "Observation")["effectiveDateTime"]
    report = _report(import_fhir([_write(tmp_path, doc)]))
    assert report.mapped["lab results"] == 0
    assert any("undated" in s["reason"] for s in report.skipped)


def test_latest_usable_b12_counts_and_older_stays_for_history(tmp_path):
    doc = _seed()
    older = copy.deepcopy(_resource(doc, "Observation"))
    older["id"] = "older-b12"
    older["effectiveDateTime"] = "2025-09-01"
    older["valueQuantity"]["value"] = 500
    doc["entry"].append({"fullUrl": "urn:uuid:5eed0000-0000-4000-8000-0000000000aa", "resource": older})
    path = _write(tmp_path, doc)
    (report,) = reports(recommend(path, as_of=AS_OF))
    assert report["assessment"]["results"]["serum-b12"]["value"] == 292
    assert len([t for t in import_fhir([path]).triples if t.predicate.value == B12 + "hasLabResult"]) == 2


def test_medication_request_is_intent_never_given(tmp_path):
    doc = _seed()
    admin = _resource(doc, "MedicationAdministration")
    request = {
        "resourceType": "MedicationRequest", "id": "rx1", "status": "active", "intent": "order",
        "medicationCodeableConcept": admin["medicationCodeableConcept"],
        "subject": admin["subject"], "authoredOn": "2025-08-30",
    }
    doc["entry"] = [e for e in doc["entry"] if e["resource"]["resourceType"] != "MedicationAdministration"]
    doc["entry"].append({"fullUrl": "urn:uuid:5eed0000-0000-4000-8000-0000000000bb", "resource": request})
    path = _write(tmp_path, doc)
    result = import_fhir([path])
    assert _report(result).mapped["medication requests (intent)"] == 1
    assert not [t for t in result.triples if t.predicate.value == B12 + "hasAdministration"]
    states = {s["id"] for s in reports(recommend(path, as_of=AS_OF))[0]["assessment"]["states"]}
    assert "PatientOnB12Treatment" not in states and "PatientWithPriorB12Injection" not in states


def test_medication_statement_not_taken_is_skipped_and_completed_is_given(tmp_path):
    doc = _seed()
    admin = _resource(doc, "MedicationAdministration")
    statement = {
        "resourceType": "MedicationStatement", "id": "ms1", "status": "not-taken",
        "medicationCodeableConcept": admin["medicationCodeableConcept"], "subject": admin["subject"],
        "effectiveDateTime": "2025-07-01", "dosage": [{"route": admin["dosage"]["route"]}],
    }
    doc["entry"].append({"fullUrl": "urn:uuid:5eed0000-0000-4000-8000-0000000000cc", "resource": statement})
    report = _report(import_fhir([_write(tmp_path, doc)]))
    assert report.mapped["administrations"] == 1
    assert any(s["resource"] == "MedicationStatement/ms1" for s in report.skipped)
    statement["status"] = "completed"
    report = _report(import_fhir([_write(tmp_path, doc)]))
    assert report.mapped["administrations"] == 2


def test_fact_and_patient_iris_are_deterministic_and_carry_provenance():
    a = import_fhir([FHIR / "seed-case-bundle.json"])
    b = import_fhir([FHIR / "seed-case-bundle.json"])
    assert set(a.triples) == set(b.triples)
    facts = {t.object.value for t in a.triples if t.predicate.value.startswith(B12 + "has")}
    derived = {t.subject.value for t in a.triples if t.predicate.value == "http://www.w3.org/ns/prov#wasDerivedFrom"}
    assert facts and facts <= derived


def test_ndjson_bulk_file_imports(tmp_path):
    doc = _seed()
    lines = [json.dumps(e["resource"], default=str) for e in doc["entry"]]
    # NDJSON has no fullUrls: references become Patient/<id>
    path = tmp_path / "bulk.ndjson"
    path.write_text("\n".join(lines).replace("urn:uuid:5eed0000-0000-4000-8000-000000000001",
                                             "Patient/5eed0000-0000-4000-8000-000000000001") + "\n")
    report = _report(import_fhir([path]))
    assert report.mapped == {"patient": 1, "conditions": 1, "lab results": 1, "administrations": 1,
                             "neurological assessments": 1}


def test_json_ld_still_loads_as_json_ld(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"@context": {"b12": B12}, "@id": "https://example.org/p", "@type": "b12:Patient"}))
    data = load_patient(path)
    assert any(t.object == ox.NamedNode(B12 + "Patient") for t in data.triples)


# ------------------------------------------------------------------ bad FHIR
@pytest.fixture
def bad_folder(tmp_path):
    (tmp_path / "broken.json").write_text('{"resourceType": "Patient",\n  "id": }')
    (tmp_path / "foo.json").write_text('{"resourceType": "Foo", "id": "x"}')
    (tmp_path / "obs.json").write_text('{"resourceType": "Observation", "id": "bad", "status": "final"}')
    (tmp_path / "good.json").write_text((FHIR / "seed-case-bundle.json").read_text())
    return tmp_path


def test_bad_fhir_is_reported_per_file_and_the_rest_imports(bad_folder):
    result = import_fhir([bad_folder])
    assert sorted(result.errors) == sorted([
        f"{bad_folder / 'broken.json'}: not valid JSON at line 2 column 9",
        f"{bad_folder / 'foo.json'}: resource #1: unknown resourceType 'Foo'",
        f"{bad_folder / 'obs.json'}: Observation/bad: code: Field required",
    ])
    assert _report(result).mapped["lab results"] == 1


def test_recommend_on_invalid_fhir_is_an_input_error_naming_file_and_resource(bad_folder):
    with pytest.raises(InputError, match=r"obs\.json: Observation/bad: code: Field required"):
        load_patient(bad_folder / "obs.json")
    with pytest.raises(InputError, match="unknown resourceType 'Foo'"):
        load_patient(bad_folder / "foo.json")


def test_import_fhir_command_writes_good_output_and_exits_3(bad_folder, tmp_path):
    out = tmp_path / "out.ttl"
    report = tmp_path / "report.json"
    proc = subprocess.run([str(BIN), "import-fhir", str(bad_folder), "--out", str(out), "--report", str(report)],
                          capture_output=True, text=True)
    assert proc.returncode == 3
    assert "unknown resourceType 'Foo'" in proc.stderr and "mapped" in proc.stderr
    graph = list(ox.parse(path=str(out), format=ox.RdfFormat.TURTLE))
    assert any(t.predicate.value == B12 + "hasLabResult" for t in graph)
    assert len(json.loads(report.read_text())["errors"]) == 3


def test_import_fhir_command_store_writes_a_dataset_that_derive_reads(tmp_path):
    store_dir = tmp_path / "store"
    proc = subprocess.run([str(BIN), "import-fhir", str(FHIR / "seed-case-bundle.json"), "--store", str(store_dir),
                           "--dataset", "seed-fhir"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    def graphs() -> list[str]:
        from b12kg.store import EmbeddedStore

        with EmbeddedStore(store_dir, read_only=True) as store:
            return store.graphs()

    assert graphs() == ["urn:b12kg:dataset:seed-fhir"]
    again = subprocess.run([str(BIN), "import-fhir", str(FHIR / "seed-case-bundle.json"), "--store", str(store_dir),
                            "--dataset", "seed-fhir"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "derived graph" not in again.stderr  # there was none to clear
    derived = subprocess.run([str(BIN), "derive", "--store", str(store_dir), "--as-of", "2025-10-31"],
                             capture_output=True, text=True)
    assert derived.returncode == 0, derived.stderr
    assert "derived 1 of 1 patient(s)" in derived.stderr and "1 in scope" in derived.stderr
    assert "urn:b12kg:graph:derived" in graphs()
    # importing the same data again keeps the patient's results (its input did not change)
    third = subprocess.run([str(BIN), "import-fhir", str(FHIR / "seed-case-bundle.json"), "--store", str(store_dir),
                            "--dataset", "seed-fhir"], capture_output=True, text=True)
    assert third.returncode == 0, third.stderr
    assert "the derived results of 0 patient(s) whose data this import changed were deleted" in third.stderr
    assert "urn:b12kg:graph:derived" in graphs()
    kept = subprocess.run([str(BIN), "derive", "--store", str(store_dir), "--as-of", "2025-10-31"],
                          capture_output=True, text=True)
    assert kept.returncode == 0 and "evaluated 0 patient(s) without results; kept the results of 1" in kept.stderr
    # the same patient with other data: its results go, and as it is every patient, the whole derived graph
    fourth = subprocess.run([str(BIN), "import-fhir", str(FHIR / "seed-case-bundle-pmol.json"), "--store",
                             str(store_dir), "--dataset", "seed-fhir"], capture_output=True, text=True)
    assert fourth.returncode == 0, fourth.stderr
    assert "derived graph urn:b12kg:graph:derived was cleared" in fourth.stderr and "b12kg derive" in fourth.stderr
    assert graphs() == ["urn:b12kg:dataset:seed-fhir", "urn:b12kg:graph:ontology"]


def test_recommend_command_accepts_a_fhir_bundle():
    proc = subprocess.run([str(BIN), "recommend", str(FHIR / "seed-case-bundle.json"), "--as-of", "2025-10-31",
                           "--format", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["in_scope"] is True

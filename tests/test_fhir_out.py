"""FHIR out: ``recommend --format fhir`` (one Bundle per patient) and ``export-guideline --format fhir``
(PlanDefinition + ActivityDefinitions). Every resource validates with fhir.resources (R4B models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from b12kg.derive import recommend
from b12kg.fhir.write import bundles
from b12kg.report import reports
from conftest import EXAMPLES, REPO, SEED_AS_OF, cli

FHIR_EXAMPLES = sorted((REPO / "examples" / "fhir").glob("*.json"))
SEED = REPO / "examples" / "fhir" / "seed-case-bundle.json"


def fhir_out(path: Path, kb, as_of=SEED_AS_OF) -> dict:
    evaluation = recommend(path, as_of=as_of, kb=kb)
    return bundles(evaluation, reports(evaluation))


def resources(bundle: dict, kind: str | None = None) -> list[dict]:
    found = [e["resource"] for e in bundle["entry"]]
    return [r for r in found if kind is None or r["resourceType"] == kind]


def codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


def valid(bundle: dict) -> dict:
    Bundle.model_validate(bundle)  # raises on any invalid resource
    return bundle


@pytest.mark.parametrize("path", FHIR_EXAMPLES + sorted(EXAMPLES.glob("*.ttl")), ids=lambda p: p.name)
def test_every_example_gives_valid_fhir(path, kb):
    bundle = valid(fhir_out(path, kb))
    kinds = {r["resourceType"] for r in resources(bundle)}
    assert {"GuidanceResponse", "RequestGroup", "Provenance"} <= kinds
    ids = [r["id"] for r in resources(bundle)]
    assert len(ids) == len(set(ids))
    # every reference to another resource of the bundle resolves
    urls = {e["fullUrl"] for e in bundle["entry"]}
    text = json.dumps(bundle)
    for ref in {part.split('"')[0] for part in text.split('"reference": "urn:uuid:')[1:]}:
        assert f"urn:uuid:{ref}" in urls


def test_the_seed_bundle_proposes_the_articles_regimen(kb):
    bundle = valid(fhir_out(SEED, kb))
    (response,) = resources(bundle, "GuidanceResponse")
    assert response["status"] == "success"
    assert response["subject"] == {"reference": "Patient/5eed0000-0000-4000-8000-000000000001"}
    proposals = [m for m in resources(bundle, "MedicationRequest") if "regimen-hydroxocobalamin-im" in
                 m["instantiatesCanonical"][0]]
    (im,) = proposals
    assert im["intent"] == "proposal" and im["status"] == "draft"
    assert ("http://www.nlm.nih.gov/research/umls/rxnorm", "317106") in codes(im["medicationCodeableConcept"])
    assert ("http://www.whocc.no/atc", "B03BA03") in codes(im["medicationCodeableConcept"])
    dosage = im["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"] == {"value": 1, "unit": "mg", "system": "http://unitsofmeasure.org",
                                                        "code": "mg"}
    assert ("http://snomed.info/sct", "78421000") in codes(dosage["route"])
    repeat = dosage["timing"]["repeat"]
    assert (repeat["period"], repeat["periodMax"], repeat["periodUnit"]) == (2, 3, "mo")
    window = {x["url"]: x for x in im["extension"][0]["extension"]}
    assert window["window"]["valuePeriod"] == {"start": "2025-10-31", "end": "2025-11-30"}
    assert window["status"]["valueCode"] == "dueNow"
    (group,) = resources(bundle, "RequestGroup")
    action = next(a for a in group["action"] if a["id"] == "stmt-treatment-2")
    assert action["resource"]["reference"] == next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is im)
    assert [d["label"] for d in action["documentation"] if d["type"] == "citation"] == ["1"]
    assert action["timingPeriod"] == {"start": "2025-10-31", "end": "2025-11-30"}


def test_the_seed_bundle_asks_for_the_missing_labs_in_loinc(kb):
    bundle = valid(fhir_out(SEED, kb))
    (response,) = resources(bundle, "GuidanceResponse")
    wanted = {c["code"] for r in response["dataRequirement"] for f in r["codeFilter"] for c in f["code"]}
    assert wanted == {"98979-8", "13965-9", "2284-8"}
    ordered = {c for s in resources(bundle, "ServiceRequest") for c in codes(s["code"])}
    assert {("http://loinc.org", code) for code in wanted} <= ordered
    assert ("http://loinc.org", "2132-9") in ordered  # the B12 recheck
    # renal function unknown: cyanocobalamin is possibly contraindicated, and the patient's own dose is implicated
    (issue,) = resources(bundle, "DetectedIssue")
    assert (issue["status"], issue["severity"]) == ("preliminary", "moderate")
    assert issue["implicated"] == [{"reference": "MedicationAdministration/5eed0000-0000-4000-8000-000000000004"}]


def test_provenance_points_at_the_patients_own_resources_and_the_guideline(kb):
    bundle = valid(fhir_out(SEED, kb))
    guidance = next(p for p in resources(bundle, "Provenance")
                    if any(t["reference"].endswith(resources(bundle, "GuidanceResponse")[0]["id"]) for t in p["target"]))
    what = [e["what"].get("reference") for e in guidance["entity"]]
    assert "Observation/5eed0000-0000-4000-8000-000000000003" in what
    assert "MedicationAdministration/5eed0000-0000-4000-8000-000000000004" in what
    assert what[-1] == "https://w3id.org/b12kg/fhir/PlanDefinition/b12-post-stroke"
    targets = {t["reference"] for p in resources(bundle, "Provenance") for t in p["target"]}
    for kind in ("MedicationRequest", "ServiceRequest", "DetectedIssue", "GuidanceResponse", "RequestGroup"):
        for r in resources(bundle, kind):
            assert f"urn:uuid:{r['id']}" in targets, f"{kind} without Provenance"


def test_a_contraindication_is_a_detected_issue_and_never_proposed(kb):
    bundle = valid(fhir_out(EXAMPLES / "ckd-diagnosis.ttl", kb))
    (issue,) = resources(bundle, "DetectedIssue")
    assert (issue["status"], issue["severity"]) == ("final", "high")
    assert issue["code"]["coding"][0]["code"] == "contra-cyanocobalamin-renal"
    assert issue["evidence"][0]["detail"]
    for request in resources(bundle, "MedicationRequest"):
        assert ("http://www.whocc.no/atc", "B03BA01") not in codes(request["medicationCodeableConcept"])
        assert request["medicationCodeableConcept"]["text"] != "cyanocobalamin"


def test_an_oral_proposal_carries_no_injectable_product_code(kb):
    """b12:formulationRoute: the RxNorm codes name injectable solutions, so an oral proposal has only
    the substance's ATC code; the intramuscular proposal keeps them."""
    bundle = valid(fhir_out(EXAMPLES / "oral-preference.ttl", kb))
    oral = [m for m in resources(bundle, "MedicationRequest") if "regimen-oral-daily" in m["instantiatesCanonical"][0]]
    assert oral
    for m in oral:
        assert all(system != "http://www.nlm.nih.gov/research/umls/rxnorm" for system, _ in codes(m["medicationCodeableConcept"]))
    im = [m for m in resources(bundle, "MedicationRequest") if "regimen-hydroxocobalamin-im" in m["instantiatesCanonical"][0]]
    assert all(("http://www.nlm.nih.gov/research/umls/rxnorm", "317106") in codes(m["medicationCodeableConcept"]) for m in im)
    (group,) = resources(bundle, "RequestGroup")
    choice = next(a for a in group["action"] if a["id"] == "stmt-additional-2")
    assert choice["selectionBehavior"] == "exactly-one" and len(choice["action"]) == len(oral)


def test_not_covered_says_why_and_proposes_nothing(kb):
    bundle = valid(fhir_out(EXAMPLES / "no-stroke.ttl", kb))
    (response,) = resources(bundle, "GuidanceResponse")
    assert [c["coding"][0]["code"] for c in response["reasonCode"]] == ["exclusion-no-stroke"]
    assert not resources(bundle, "MedicationRequest")


def test_missing_b12_is_data_required(kb):
    bundle = valid(fhir_out(EXAMPLES / "no-b12-result.ttl", kb))
    (response,) = resources(bundle, "GuidanceResponse")
    assert response["status"] == "data-required"
    wanted = {c["code"] for r in response["dataRequirement"] for f in r["codeFilter"] for c in f["code"]}
    assert {"2132-9", "14685-2"} <= wanted
    assert not resources(bundle, "MedicationRequest")


def test_unverified_codes_stay_marked(kb):
    bundle = valid(fhir_out(SEED, kb))
    route = next(m for m in resources(bundle, "MedicationRequest"))["dosageInstruction"][0]["route"]
    (coding,) = route["coding"]
    assert coding["extension"] == [{"url": "https://w3id.org/b12kg/fhir/StructureDefinition/unverified-code",
                                    "valueBoolean": True}]


def test_output_is_stable(kb):
    first, second = fhir_out(SEED, kb), fhir_out(SEED, kb)
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in second["entry"]]


def test_synthea_and_hl7_records_give_valid_fhir(shared_dir, kb):
    """Every Synthea record, and every HL7 example that is patient data b12kg reads (the others, with no
    Patient or with a resource fhir.resources refuses, are refused with their reason)."""
    from b12kg.errors import B12kgError

    synthea = sorted((shared_dir / "data" / "fhir" / "synthea").glob("*.json"))
    assert synthea
    for path in synthea:
        valid(fhir_out(path, kb, as_of=SEED_AS_OF))
    answered = 0
    for path in sorted((shared_dir / "data" / "fhir" / "hl7-examples").glob("*.json")):
        try:
            evaluation = recommend(path, as_of=SEED_AS_OF, kb=kb)
        except B12kgError:
            continue
        valid(bundles(evaluation, reports(evaluation)))
        answered += 1
    assert answered >= 150  # 164 of the 197 files on 2026-12-03


def test_recommend_format_fhir_on_the_command_line(tmp_path):
    done = cli("recommend", str(SEED), "--as-of", "2025-10-31", "--format", "fhir")
    assert done.returncode == 0, done.stderr
    bundle = valid(json.loads(done.stdout))
    assert bundle["type"] == "collection"
    two = tmp_path / "two.ttl"
    two.write_text((EXAMPLES / "seed-case.ttl").read_text() + "\n" + (EXAMPLES / "no-stroke.ttl").read_text())
    done = cli("recommend", str(two), "--as-of", "2025-10-31", "--format", "fhir")
    assert done.returncode == 0, done.stderr
    outer = valid(json.loads(done.stdout))  # two patients: a collection of the patients' Bundles
    assert [e["resource"]["resourceType"] for e in outer["entry"]] == ["Bundle", "Bundle"]
    assert cli("recommend", str(SEED), "--as-of", "2025-10-31", "--format", "fhir-xml").returncode == 2


# ------------------------------------------------------------------------------ the guideline as FHIR
def guideline(kb) -> dict:
    from b12kg.engine import Workspace
    from b12kg.fhir.guideline import guideline_bundle

    return valid(guideline_bundle(Workspace(kb)))


def test_the_guideline_is_a_plan_definition_with_its_activities(kb):
    import rdflib

    bundle = guideline(kb)
    (plan,) = resources(bundle, "PlanDefinition")
    assert plan["url"] == "https://w3id.org/b12kg/fhir/PlanDefinition/b12-post-stroke"
    statements = [a for group in plan["action"] for a in group["action"]]
    g = rdflib.Graph()
    for path in kb.ontology_files.values():
        g.parse(path)
    declared = {str(s) for s in g.subjects(rdflib.RDF.type, rdflib.URIRef("https://w3id.org/b12kg/ontology#GuidelineStatement"))}
    assert len(statements) == len(declared) == 18
    assert [g["title"] for g in plan["action"]][:2] == ["Assessment", "Treatment Recommendations"]
    assert [r["label"] for r in plan["relatedArtifact"]] == [str(n) for n in range(1, 8)]
    treatment = next(a for a in statements if a["id"] == "stmt-treatment-2")
    assert treatment["definitionCanonical"].endswith("/ActivityDefinition/regimen-hydroxocobalamin-im")
    assert treatment["condition"][0]["kind"] == "applicability"
    activities = {r["url"]: r for r in resources(bundle, "ActivityDefinition")}
    im = activities[treatment["definitionCanonical"]]
    assert im["kind"] == "MedicationRequest"
    assert im["dosage"][0]["timing"]["repeat"] == {"frequency": 1, "period": 2, "periodMax": 3, "periodUnit": "mo"}


def test_patient_outputs_point_at_the_guidelines_artifacts(kb):
    artifacts = {r["url"] for r in resources(guideline(kb)) if "url" in r}
    for path in (SEED, EXAMPLES / "oral-preference.ttl", EXAMPLES / "no-b12-result.ttl"):
        bundle = fhir_out(path, kb)
        for r in resources(bundle):
            for url in r.get("instantiatesCanonical", []) + ([r["moduleCanonical"]] if "moduleCanonical" in r else []):
                assert url in artifacts, f"{path.name}: {r['resourceType']} points at {url}, which is not exported"


def test_export_guideline_on_the_command_line(tmp_path):
    out = tmp_path / "guideline.json"
    done = cli("export-guideline", "--format", "fhir", "-o", str(out))
    assert done.returncode == 0, done.stderr
    valid(json.loads(out.read_text()))
    assert cli("export-guideline", "--format", "xml").returncode == 2


# ------------------------------------------------------------------------------ population mode
def _comparable(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "recorded"}  # Provenance.recorded: when it was written


def test_bulk_ndjson_gives_the_same_resources_as_recommend(tmp_path, kb):
    """export --format fhir-ndjson on a store of the examples: per patient, exactly the resources
    recommend --format fhir gives for the patient's own file."""
    from fhir.resources.R4B import get_fhir_model_class

    files = [SEED, *(EXAMPLES / f"{name}.ttl" for name in ("ckd-diagnosis", "oral-preference", "no-stroke",
                                                            "no-b12-result", "overdue-dose"))]
    store = tmp_path / "store"
    done = cli("import-fhir", str(SEED), "--store", str(store), "--dataset", "fhir")
    assert done.returncode == 0, done.stderr
    for path in files[1:]:
        done = cli("load", str(path), "--store", str(store), "--dataset", path.stem)
        assert done.returncode == 0, done.stderr
    assert cli("derive", "--store", str(store), "--as-of", "2025-10-31").returncode == 0
    out = tmp_path / "bulk"
    done = cli("export", "--store", str(store), "--format", "fhir-ndjson", "-o", str(out))
    assert done.returncode == 0, done.stderr
    exported = {}
    for f in sorted(out.glob("*.ndjson")):
        for line in f.read_text().splitlines():
            resource = json.loads(line)
            assert resource["resourceType"] == f.stem
            get_fhir_model_class(f.stem).model_validate(resource)
            exported[resource["id"]] = _comparable(resource)
    expected = {}
    for path in files:
        for r in resources(fhir_out(path, kb)):
            expected[r["id"]] = _comparable(r)
    assert exported == expected
    again = cli("export", "--store", str(store), "--format", "fhir-ndjson", "-o", str(out))
    assert again.returncode == 3 and "already exists" in again.stderr
    assert cli("export", "--store", str(store), "--format", "fhir-ndjson").returncode == 3

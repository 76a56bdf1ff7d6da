"""The CDS Hooks 2.0 service over HTTP on loopback: discovery, patient-view, order-select/order-sign,
412 without data, feedback and the override-rate query; the specification's own example requests
(tests/cds_hooks/, Apache-2.0, see its README) are among the inputs."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
import uuid
from datetime import date
from pathlib import Path

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from conftest import REPO, cli

SPEC = Path(__file__).parent / "cds_hooks"
SEED = json.loads((REPO / "examples" / "fhir" / "seed-case-bundle.json").read_text())
PATIENT_ID = "5eed0000-0000-4000-8000-000000000001"
KEYS = ("patient", "conditions", "observations", "administrations", "statements", "requests")
CKD = {"resourceType": "Condition", "id": "ckd-1",
       "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
       "code": {"coding": [{"system": "http://snomed.info/sct", "code": "709044004"}]},
       "subject": {"reference": f"Patient/{PATIENT_ID}"}, "onsetDateTime": "2021-02-01"}
CYANO_DRAFT = {"resourceType": "MedicationRequest", "id": "draft-cyano", "status": "draft", "intent": "order",
               "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                         "code": "309594"}], "text": "cyanocobalamin 1 mg/mL"},
               "subject": {"reference": f"Patient/{PATIENT_ID}"}}
HYDROXO_DRAFT = {**CYANO_DRAFT, "id": "draft-hydroxo", "medicationCodeableConcept": {
    "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "317106"}]}}


def seed_resources(drop: tuple[str, ...] = ()) -> list[dict]:
    found = []
    for entry in SEED["entry"]:
        r = copy.deepcopy(entry["resource"])
        for field in ("subject", "patient"):
            if field in r:
                r[field] = {"reference": f"Patient/{PATIENT_ID}"}
        if r["resourceType"] == "Condition" and "stroke" in drop:
            continue
        found.append(r)
    return found


def prefetch(resources: list[dict]) -> dict:
    def searchset(kind):
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in resources if r["resourceType"] == kind]}

    patient = next(r for r in resources if r["resourceType"] == "Patient")
    return {"patient": patient, "conditions": searchset("Condition"), "observations": searchset("Observation"),
            "administrations": searchset("MedicationAdministration"), "statements": None, "requests": None}


def hook(name: str, resources: list[dict], **context) -> dict:
    return {"hook": name, "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/example", "patientId": PATIENT_ID, **context},
            "prefetch": prefetch(resources)}


def post(url: str, body, *, content_type="application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from b12kg.cds_hooks import CdsConfig, CdsServer

    log = tmp_path_factory.mktemp("cds") / "feedback.nt"
    with CdsServer(CdsConfig(as_of=date(2025, 10, 31), feedback=log, max_body_bytes=2 * 1024 * 1024,
                             fhir_servers=("http://127.0.0.1:",)),
                   host="127.0.0.1", port=0) as server:
        server.log = log
        yield server


def test_discovery_lists_two_services_with_prefetch(service):
    with urllib.request.urlopen(service.url, timeout=10) as response:
        found = json.loads(response.read())
    spec = json.loads((SPEC / "discovery-response.json").read_text())
    assert set(spec["services"][0]) - {"prefetch"} <= set(found["services"][0])  # the specification's fields
    services = {s["id"]: s for s in found["services"]}
    assert services["b12-post-stroke"]["hook"] == "patient-view"
    assert services["b12-order-check"]["hook"] == "order-select"
    prefetch = services["b12-post-stroke"]["prefetch"]
    assert set(prefetch) == set(KEYS)
    assert "http://loinc.org|2132-9" in prefetch["observations"]  # the ontology's lab codes
    assert prefetch["patient"] == "Patient/{{context.patientId}}"


def test_seed_like_patient_gets_an_info_card_with_the_regimen(service):
    status, answer = post(f"{service.url}/b12-post-stroke", hook("patient-view", seed_resources()))
    assert status == 200, answer
    card = answer["cards"][0]
    assert card["indicator"] == "info"
    assert len(card["summary"]) < 140
    assert "hydroxocobalamin 1 mg IM every 2-3 months for life" in card["summary"]
    assert "[1]" in card["detail"]
    assert card["source"]["label"] and card["source"]["url"].startswith("https://")
    assert card["source"]["topic"]["code"] == "stmt-treatment-2"
    assert card["overrideReasons"] and all(r["display"] for r in card["overrideReasons"])
    assert any(link["url"].endswith("#stmt-treatment-2") for link in card["links"])
    created = [a["resource"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"]
    medication = [r for r in created if r["resourceType"] == "MedicationRequest"]
    assert medication and all(MedicationRequest.model_validate(r) for r in medication)
    assert medication[0]["medicationCodeableConcept"]["coding"][0]["code"] == "317106"
    assert card["selectionBehavior"] == "any"
    # missing labs: one ServiceRequest suggestion each (the answer to "ask for the missing observation")
    labs = {c["code"] for r in created if r["resourceType"] == "ServiceRequest" for c in r["code"]["coding"]}
    assert labs == {"98979-8", "13965-9", "2284-8"}
    assert all(ServiceRequest.model_validate(r) for r in created if r["resourceType"] == "ServiceRequest")


def test_not_covered_patient_gets_a_card_saying_why_and_no_regimen(service):
    status, answer = post(f"{service.url}/b12-post-stroke", hook("patient-view", seed_resources(drop=("stroke",))))
    assert status == 200, answer
    (card,) = answer["cards"]
    assert "does not apply" in card["summary"] and "no stroke on record" in card["summary"]
    assert "post-stroke patients only" in card["detail"]
    created = [a["resource"] for s in card.get("suggestions", []) for a in s["actions"]]
    assert not [r for r in created if r["resourceType"] == "MedicationRequest"]


def test_ckd_patient_drafting_cyanocobalamin_gets_a_critical_card_with_the_switch(service):
    body = hook("order-select", seed_resources() + [CKD], selections=["MedicationRequest/draft-cyano"],
                draftOrders={"resourceType": "Bundle", "type": "collection", "entry": [{"resource": CYANO_DRAFT}]})
    status, answer = post(f"{service.url}/b12-order-check", body)
    assert status == 200, answer
    (card,) = answer["cards"]
    assert card["indicator"] == "critical"
    assert "[3]" in card["detail"]
    (suggestion,) = card["suggestions"]
    kinds = [a["type"] for a in suggestion["actions"]]
    assert kinds == ["delete", "create"]
    assert suggestion["actions"][0]["resourceId"] == "MedicationRequest/draft-cyano"
    created = suggestion["actions"][1]["resource"]
    MedicationRequest.model_validate(created)
    assert created["medicationCodeableConcept"]["text"] == "hydroxocobalamin"


def test_a_draft_in_line_with_the_guideline_gets_no_card(service):
    body = hook("order-sign", seed_resources() + [CKD],
                draftOrders={"resourceType": "Bundle", "type": "collection", "entry": [{"resource": HYDROXO_DRAFT}]})
    status, answer = post(f"{service.url}/b12-order-check", body)
    assert (status, answer) == (200, {"cards": []})


def test_renal_function_unknown_and_cyanocobalamin_is_a_warning(service):
    body = hook("order-sign", seed_resources(),
                draftOrders={"resourceType": "Bundle", "type": "collection", "entry": [{"resource": CYANO_DRAFT}]})
    status, answer = post(f"{service.url}/b12-order-check", body)
    assert status == 200, answer
    (card,) = answer["cards"]
    assert card["indicator"] == "warning"
    created = [a["resource"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"]
    assert any(c["code"] == "98979-8" for r in created if r["resourceType"] == "ServiceRequest" for c in r["code"]["coding"])


def test_the_specifications_order_select_example_gets_no_card(service):
    body = json.loads((SPEC / "order-select-context.json").read_text())
    context = body["context"]
    request = {"hook": "order-select", "hookInstance": str(uuid.uuid4()), "context": context,
               "prefetch": {**{k: None for k in KEYS}, "patient": {"resourceType": "Patient", "id": context["patientId"]}}}
    status, answer = post(f"{service.url}/b12-order-check", request)
    assert (status, answer) == (200, {"cards": []})  # amoxicillin and a diet: nothing for this guideline
    sign = json.loads((SPEC / "order-sign-context.json").read_text())
    request = {**request, "hook": "order-sign", "context": sign["context"]}
    assert post(f"{service.url}/b12-order-check", request) == (200, {"cards": []})


def test_the_specifications_patient_view_example(service, tmp_path):
    from b12kg.serve import free_port

    body = json.loads((SPEC / "patient-view-request.json").read_text())
    # as published: our prefetch keys are missing, so the service fetches from fhirServer, which it
    # cannot reach (pointed at a closed loopback port here: tests stay off the network): 412
    body["fhirServer"] = f"http://127.0.0.1:{free_port()}/fhir"
    status, answer = post(f"{service.url}/b12-post-stroke", body)
    assert status == 412 and "cannot fetch" in answer["error"]
    # the same request with its patient in our prefetch keys and nothing else on record: not covered
    del body["fhirServer"]
    body["prefetch"] = {**{k: None for k in KEYS}, "patient": body["prefetch"]["patientToGreet"]}
    status, answer = post(f"{service.url}/b12-post-stroke", body)
    assert status == 200, answer
    assert "no stroke on record" in answer["cards"][0]["summary"]


def test_missing_prefetch_without_a_fhir_server_is_412(service):
    body = hook("patient-view", seed_resources())
    del body["prefetch"]["observations"]
    status, answer = post(f"{service.url}/b12-post-stroke", body)
    assert status == 412 and "observations" in answer["error"]


def test_a_fhir_server_not_allowed_is_never_contacted(service):
    from fhir_server import FhirServer

    resources = seed_resources()
    with FhirServer(resources) as fhir:
        body = hook("patient-view", resources)
        body["prefetch"] = {"patient": body["prefetch"]["patient"]}
        body["fhirServer"] = fhir.url.replace("127.0.0.1", "localhost")  # the same server, not on the allow-list
        status, answer = post(f"{service.url}/b12-post-stroke", body)
        assert status == 412 and "--allow-fhir-server" in answer["error"]
        assert not fhir.searched and not fhir.authorizations


def test_prefetch_missing_is_fetched_from_the_fhir_server(service):
    from fhir_server import FhirServer

    resources = seed_resources()
    with FhirServer(resources) as fhir:
        body = hook("patient-view", resources)
        body["prefetch"] = {"patient": body["prefetch"]["patient"]}
        body["fhirServer"] = fhir.url
        body["fhirAuthorization"] = {"access_token": "opaque", "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "b12kg"}
        status, answer = post(f"{service.url}/b12-post-stroke", body)
        assert status == 200, answer
        assert "hydroxocobalamin" in answer["cards"][0]["summary"]
        assert fhir.authorizations == {"Bearer opaque"}
        assert {"Observation", "Condition", "MedicationAdministration"} <= fhir.searched


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not JSON"),
    ({"hookInstance": "x", "context": {"patientId": "1"}}, 400, "hook: missing"),
    ({"hook": "order-select", "hookInstance": "x", "context": {"patientId": "1"}}, 400, "not answered by"),
    ({"hook": "patient-view", "hookInstance": "x", "context": {}}, 400, "context.patientId"),
    ({"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "1"}, "prefetch": {"patient": [1]}},
     400, "prefetch.patient"),
    (b"[" * 5000, 400, "nest"),
    ({"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "1"},
      "prefetch": {"patient": {"resourceType": "Patient", "id": "1", "birthDate": "not a date"},
                   **{k: None for k in KEYS[1:]}}}, 422, "cannot be used"),
])
def test_malformed_hooks_are_400_with_a_message(service, body, status, words):
    got, answer = post(f"{service.url}/b12-post-stroke", body)
    assert got == status and words in answer["error"], answer


def test_other_errors(service):
    assert post(f"{service.url}/nope", {})[0] == 404
    assert post(f"{service.url}/b12-post-stroke", b"{}", content_type="text/plain")[0] == 415
    # too large: refused from its Content-Length, before the body is read (the client may still be sending)
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    connection.putrequest("POST", "/cds-services/b12-post-stroke")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(3 * 1024 * 1024))
    connection.endheaders()
    try:
        connection.send(b" " * (3 * 1024 * 1024))
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = connection.getresponse()
    assert response.status == 413 and "larger than" in json.loads(response.read())["error"]
    connection.close()


def test_feedback_is_recorded_and_override_rates_are_a_research_query(service, tmp_path):
    status, answer = post(f"{service.url}/b12-post-stroke", hook("patient-view", seed_resources()))
    card = answer["cards"][0]
    accepted = json.loads((SPEC / "feedback-accepted.json").read_text())  # the specification's examples
    accepted["feedback"][0]["card"] = card["uuid"]
    accepted["feedback"][0]["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    assert post(f"{service.url}/b12-post-stroke/feedback", accepted) == (200, {"recorded": 1})
    ignored = json.loads((SPEC / "feedback-overridden.json").read_text())  # a card never issued: recorded,
    assert post(f"{service.url}/b12-post-stroke/feedback", ignored) == (200, {"recorded": 1})  # counted nowhere
    status, answer = post(f"{service.url}/b12-post-stroke", hook("patient-view", seed_resources()))
    second = answer["cards"][0]
    example = json.loads((SPEC / "feedback-overridden-reason.json").read_text())  # the specification's
    example["feedback"][0]["card"] = second["uuid"]
    assert post(f"{service.url}/b12-post-stroke/feedback", example) == (200, {"recorded": 1})
    assert post(f"{service.url}/b12-post-stroke/feedback", {"feedback": [{"card": "x"}]})[0] == 400
    before = service.log.read_bytes()
    store = tmp_path / "store"
    done = cli("load", str(service.log), "--store", str(store), "--dataset", "feedback")
    assert done.returncode == 0, done.stderr
    done = cli("query", "card-outcomes", "--store", str(store), "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    row = next(r for r in rows if r["about"].endswith("#stmt-treatment-2"))
    issued = before.count(b"<https://w3id.org/b12kg/guideline#stmt-treatment-2>")  # by every test on this service
    assert (int(row["cards"]), int(row["accepted"]), int(row["overridden"])) == (issued, 1, 1)
    assert float(row["overrideRate"]) == 0.5
    assert service.log.read_bytes().startswith(before)  # append-only


def test_the_command_serves_and_stops_on_sigterm(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from b12kg.serve import free_port

    port = free_port()
    log = tmp_path / "feedback.nt"
    process = subprocess.Popen([sys.executable, "-m", "b12kg.cli", "cds-hooks", "--port", str(port), "--as-of",
                                "2025-10-31", "--feedback", str(log)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/cds-services", timeout=5) as response:
                    assert len(json.loads(response.read())["services"]) == 2
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
                time.sleep(0.2)
        status, answer = post(f"http://127.0.0.1:{port}/cds-services/b12-post-stroke",
                              hook("patient-view", seed_resources()))
        assert status == 200 and answer["cards"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert "CDS Hooks service" in process.stderr.read()
    assert cli("cds-hooks", "--as-of", "not-a-date").returncode == 2

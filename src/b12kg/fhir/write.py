"""FHIR R4 out: one Bundle per patient from the derived graph (``b12kg recommend --format fhir``).

Every resource is built from the patient's report (:func:`b12kg.report.patient_report`, itself read
from the derived graph by ``queries/report/``) and from what the knowledge base says about FHIR output
(``queries/fhir/output-*.rq``: codes of products, routes, labs and follow-ups; the guideline's
canonical URL and references; the FHIR references of the patient's own records). Nothing clinical is
written here: which products, doses, intervals, windows, codes and texts appear is the ontology's.

The Bundle (type ``collection``) holds:

* ``GuidanceResponse`` — ``success``, or ``data-required`` when the patient is not covered and
  data is missing; ``dataRequirement`` names each observation to record (LOINC), ``reasonCode`` the
  reasons the guideline does not apply, ``note`` the assumptions the answer rests on;
* ``RequestGroup`` — one action per recommendation (in the report's order) and one per observation to
  record, each documented with the article's numbered references and its statement;
* ``MedicationRequest`` proposals for each regimen (selected and alternative), one per product that
  may satisfy it (a regimen that any of several products satisfies becomes an ``exactly-one`` group);
* ``ServiceRequest`` proposals for each observation to record and each follow-up test (LOINC), with
  the follow-up window when it is known;
* ``DetectedIssue`` for each contraindicated product (``final``, high) and each possible
  contraindication (``preliminary``, moderate: the data that decides it is not recorded), implicating
  the patient's own medication records of that product;
* ``Provenance`` for each of the above: the patient's source resources and the guideline.

See docs/fhir.md for the profile, with the seed case's Bundle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from b12kg import namespaces as ns
from b12kg.engine import Workspace

UCUM = "http://unitsofmeasure.org"
IDENTITY = "urn:ietf:rfc:3986"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_NAMESPACE = uuid.UUID("7c1f0c1e-5b2a-4f53-9a51-b12cb12cb12c")


def _local(iri: str) -> str:
    return iri.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


@dataclass
class OutputTerms:
    """What the knowledge base says about FHIR output: codes, the guideline's canonical URL and references."""

    codings: dict[str, list[dict[str, Any]]]  #: local id of a product, route, rule or statement -> codings
    base: str
    plan_id: str
    title: str
    version: str | None
    short_title: str = ""
    references: dict[int, str] = field(default_factory=dict)
    activity_labels: dict[str, str] = field(default_factory=dict)  #: regimen, rule or statement -> label
    statement_labels: dict[str, str] = field(default_factory=dict)  #: statement -> label
    routes: dict[tuple[str, str], set[str]] = field(default_factory=dict)  #: (system, code) -> routes of its formulation

    def product_codings(self, product: str, route: str | None) -> list[dict[str, Any]]:
        """The product's codings that fit ``route``: a code naming one formulation only for that formulation's routes."""
        return [c for c in self.codings.get(product, [])
                if (c["system"], c["code"]) not in self.routes or route in self.routes[(c["system"], c["code"])]]

    @property
    def plan_url(self) -> str:
        return f"{self.base}/PlanDefinition/{self.plan_id}"

    def activity_url(self, local: str) -> str:
        return f"{self.base}/ActivityDefinition/{local}"

    @property
    def guideline_system(self) -> str:
        """Code system of the guideline's own identifiers (statements, rules, exclusions, contraindications)."""
        return str(ns.GL).rstrip("#")

    @property
    def unverified_extension(self) -> str:
        return f"{self.base}/StructureDefinition/unverified-code"

    @property
    def window_extension(self) -> str:
        return f"{self.base}/StructureDefinition/next-dose-window"

    @property
    def status_system(self) -> str:
        return f"{self.base}/CodeSystem/recommendation-status"


def output_terms(ws: Workspace) -> OutputTerms:
    """Read once per workspace (memoised): the terms FHIR output takes from the knowledge base."""
    if "fhir-output" in ws.memo:
        return ws.memo["fhir-output"]
    codings: dict[str, list[tuple[dict[str, Any], bool]]] = {}
    routes: dict[tuple[str, str], set[str]] = {}
    for row in ws.select("fhir/output-codes"):
        coding: dict[str, Any] = {"system": row["system"].value, "code": row["code"].value}
        if row["display"].value:
            coding["display"] = row["display"].value
        if "route" in row:
            routes.setdefault((coding["system"], coding["code"]), set()).add(_local(row["route"].value))
        pairs = codings.setdefault(_local(row["subject"].value), [])
        if (coding, row["verified"].value == "true") not in pairs:
            pairs.append((coding, row["verified"].value == "true"))
    rows = ws.select("fhir/output-artifact")
    if not rows:
        from b12kg.errors import KnowledgeBaseError

        raise KnowledgeBaseError("the guideline document has no b12:fhirCanonicalBase / b12:fhirId (ontology/fhir-mapping.ttl)")
    first = rows[0]
    terms = OutputTerms(
        codings={},
        base=first["base"].value.rstrip("/"),
        plan_id=first["id"].value,
        title=first["title"].value,
        version=first["version"].value if "version" in first else None,
        references={int(r["number"].value): r["reference"].value for r in rows if "number" in r},
        routes=routes,
        short_title=first["short"].value if "short" in first else first["title"].value,
        activity_labels={_local(r["activity"].value): r["label"].value for r in ws.select("fhir/plan-activities")},
        statement_labels={_local(r["statement"].value): r["label"].value for r in ws.select("fhir/plan-statements")},
    )
    for local, pairs in codings.items():
        terms.codings[local] = [
            c if verified else {**c, "extension": [{"url": terms.unverified_extension, "valueBoolean": True}]}
            for c, verified in pairs
        ]
    ws.memo["fhir-output"] = terms
    return terms


@dataclass
class PatientRecords:
    """The patient's own records as FHIR output refers to them."""

    patient: dict[str, Any]  #: Reference to the patient
    by_source: dict[str, dict[str, Any]]  #: source entity IRI -> Reference
    by_fact: dict[str, list[dict[str, Any]]]  #: fact IRI -> References of its sources
    by_product: dict[str, list[dict[str, Any]]]  #: product local id -> References of the medication records


def _by_iri(iri: str, display: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"identifier": {"system": IDENTITY, "value": iri}}
    if display:
        ref["display"] = display
    return ref


def patient_records(ws: Workspace, patient: str) -> PatientRecords:
    import pyoxigraph as ox

    patient_ref: dict[str, Any] | None = None
    by_source: dict[str, dict[str, Any]] = {}
    by_fact: dict[str, list[dict[str, Any]]] = {}
    by_product: dict[str, list[dict[str, Any]]] = {}
    for row in ws.select("fhir/output-references", {"patient": ox.NamedNode(patient)}):
        node = row["node"].value
        ref = None
        if "source" in row:
            ref = {"reference": row["reference"].value} if "reference" in row else _by_iri(row["source"].value)
            by_source[row["source"].value] = ref
        if node == patient:
            if ref is not None and "reference" in ref and ref["reference"].startswith("Patient/"):
                patient_ref = ref
            continue
        refs = by_fact.setdefault(node, [])
        if ref is not None and ref not in refs:
            refs.append(ref)
        if "product" in row:
            mine = by_product.setdefault(_local(row["product"].value), [])
            for r in refs or [_by_iri(node)]:
                if r not in mine:
                    mine.append(r)
    return PatientRecords(patient_ref or _by_iri(patient), by_source, by_fact, by_product)


class _BundleBuilder:
    def __init__(self, doc: dict[str, Any], terms: OutputTerms, records: PatientRecords) -> None:
        self.doc = doc
        self.t = terms
        self.r = records
        self.entries: list[dict[str, Any]] = []
        self.as_of = doc["as_of"]
        self.recorded = datetime.now(timezone.utc).replace(microsecond=0).isoformat()

    # ---- helpers
    def uid(self, *parts: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, "\x1f".join([self.doc["patient"], self.as_of, *parts])))

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.entries.append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})
        return {"reference": f"urn:uuid:{resource['id']}"}

    def sources(self, facts: list[str], sources: list[str]) -> list[dict[str, Any]]:
        refs: list[dict[str, Any]] = []
        for s in sources:
            ref = self.r.by_source.get(s) or _by_iri(s)
            if ref not in refs:
                refs.append(ref)
        for f in facts:
            for ref in self.r.by_fact.get(f) or [_by_iri(f)]:
                if ref not in refs and not sources:
                    refs.append(ref)
        return refs

    def documentation(self, evidence: list[int], statement: str | None) -> list[dict[str, Any]]:
        docs = [{"type": "citation", "label": str(n), "display": self.t.references.get(n, f"reference {n}")}
                for n in evidence]
        if statement:
            docs.append({"type": "documentation", "display": self.t.title, "url": statement})
        return docs

    def concept(self, local: str, text: str, codings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        concept: dict[str, Any] = {"text": text}
        codings = self.t.codings.get(local) if codings is None else codings
        if codings:
            concept["coding"] = codings
        return concept

    def provenance(self, targets: list[dict[str, Any]], sources: list[dict[str, Any]], what: str) -> None:
        prov = self.doc.get("provenance") or {}
        agent = f"b12kg {prov.get('engine_version', '')} ({prov.get('reasoner', '')} reasoner)".replace("  ", " ")
        entity = [{"role": "source", "what": ref} for ref in sources]
        entity.append({"role": "source", "what": {"reference": self.t.plan_url, "display": self.t.title}})
        self.add({
            "resourceType": "Provenance",
            "id": self.uid("provenance", what),
            "target": targets,
            "occurredDateTime": self.as_of,
            "recorded": self.recorded,
            "agent": [{
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler"}]},
                "who": {"display": agent},
            }],
            "entity": entity,
        })

    # ---- resources
    def medication_request(self, rec: dict[str, Any], product: dict[str, str]) -> dict[str, Any]:
        interval = rec.get("interval") or {}
        repeat: dict[str, Any] = {"frequency": 1}
        if interval:
            repeat["period"] = interval["min"]
            if interval["max"] != interval["min"]:
                repeat["periodMax"] = interval["max"]
            repeat["periodUnit"] = interval["unit"]
        due = rec.get("next_due")
        if due:
            repeat["boundsPeriod"] = {"start": due["earliest"]}
        dosage: dict[str, Any] = {"sequence": 1, "text": rec["text"], "timing": {"repeat": repeat}}
        if rec.get("route"):
            dosage["route"] = self.concept(rec["route"], rec["route"])
        if rec.get("dose"):
            unit = rec["dose"]["unit"]
            dosage["doseAndRate"] = [{"doseQuantity": {"value": rec["dose"]["value"], "unit": unit,
                                                       "system": UCUM, "code": unit}}]
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self.uid("MedicationRequest", rec["id"], product["id"]),
            "status": "draft",
            "intent": "proposal",
            "medicationCodeableConcept": self.concept(product["id"], product["label"],
                                                      self.t.product_codings(product["id"], rec.get("route"))),
            "subject": self.r.patient,
            "authoredOn": self.as_of,
            "instantiatesCanonical": [self.t.activity_url(rec["regimen"])],
            "dosageInstruction": [dosage],
        }
        notes = []
        if rec.get("duration"):
            notes.append({"text": f"Duration: {rec['duration']}"})
        if due:
            window = [{"url": "window", "valuePeriod": {"start": due["earliest"], "end": due["latest"]}},
                      {"url": "status", "valueCode": due["status"]}]
            if due.get("overdue_since"):
                window.append({"url": "overdueSince", "valueDate": due["overdue_since"]})
            resource["extension"] = [{"url": self.t.window_extension, "extension": window}]
            from b12kg.report import next_due_text

            notes.append({"text": next_due_text(due)})
        if notes:
            resource["note"] = notes
        return resource

    def service_request(self, key: str, code_of: str, text: str, *, reason: str | None = None,
                        note: str | None = None, window: dict[str, str] | None = None) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": self.uid("ServiceRequest", key),
            "status": "draft",
            "intent": "proposal",
            "code": self.concept(code_of, text),
            "subject": self.r.patient,
            "authoredOn": self.as_of,
            "instantiatesCanonical": [self.t.activity_url(code_of)],
        }
        if window:
            resource["occurrencePeriod"] = {"start": window["start"], "end": window["end"]}
        if reason:
            resource["reasonCode"] = [{"text": reason}]
        if note:
            resource["note"] = [{"text": note}]
        return resource

    def detected_issue(self, c: dict[str, Any], *, known: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        facts = c.get("derived_from") or []
        evidence = self.sources(facts, [])
        resource: dict[str, Any] = {
            "resourceType": "DetectedIssue",
            "id": self.uid("DetectedIssue", c["id"]),
            "status": "final" if known else "preliminary",
            "code": {"coding": [{"system": self.t.guideline_system, "code": c["id"], "display": c["label"]}],
                     "text": c["label"]},
            "severity": "high" if known else "moderate",
            "patient": self.r.patient,
            "identifiedDateTime": self.as_of,
            "detail": c["reason"],
            "reference": self.t.plan_url,
        }
        implicated = self.r.by_product.get(c["product"]["id"], [])
        if implicated:
            resource["implicated"] = implicated
        if evidence:
            resource["evidence"] = [{"detail": evidence}]
        return resource, evidence

    # ---- the bundle
    def build(self) -> dict[str, Any]:
        doc = self.doc
        actions: list[dict[str, Any]] = []
        for rec in doc["recommendations"]:
            sources = self.sources(rec.get("derived_from", []), rec.get("sources", []))
            action: dict[str, Any] = {
                "id": rec["id"],
                "title": rec["category"],
                "description": rec["text"],
                "code": [{"coding": [{"system": self.t.status_system, "code": rec["status"]}]}],
                "documentation": self.documentation(rec.get("evidence", []), rec.get("statement")),
            }
            if rec.get("regimen"):
                products = rec.get("permitted_products") or ([rec["product"]] if rec.get("product") else [])
                refs = []
                for product in products:
                    ref = self.add(self.medication_request(rec, product))
                    refs.append((product, ref))
                    self.provenance([ref], sources, f"{rec['id']}/{product['id']}")
                if rec.get("next_due"):
                    action["timingPeriod"] = {"start": rec["next_due"]["earliest"], "end": rec["next_due"]["latest"]}
                if len(refs) == 1:
                    action["resource"] = refs[0][1]
                elif refs:
                    action["selectionBehavior"] = "exactly-one"
                    action["action"] = [{"title": p["label"], "resource": ref} for p, ref in refs]
            elif self.t.codings.get(rec["id"]) or self.t.codings.get(_local(rec.get("statement") or "")):
                code_of = rec["id"] if self.t.codings.get(rec["id"]) else _local(rec["statement"])
                window = rec.get("window")
                ref = self.add(self.service_request(rec["id"], code_of, rec["text"], window=window))
                self.provenance([ref], sources, rec["id"])
                if window:
                    action["timingPeriod"] = {"start": window["start"], "end": window["end"]}
                action["resource"] = ref
            actions.append(action)

        requirements = []
        record_notes = []
        seen_codes: dict[tuple, dict[str, Any]] = {}
        for m in doc.get("missing_data", []):
            codings = self.t.codings.get(m["id"])
            if not codings:
                record_notes.append({"text": f"To record: {m['what_to_record']} (affects {m['affects']})"})
                continue
            key = tuple((c["system"], c["code"]) for c in codings)
            if key in seen_codes:
                continue
            ref = self.add(self.service_request(m["id"], m["id"], m["label"], reason=m["affects"], note=m["what_to_record"]))
            seen_codes[key] = ref
            self.provenance([ref], [], m["id"])
            actions.append({"id": m["id"], "title": m["label"], "description": m["what_to_record"],
                            "code": [{"coding": [{"system": self.t.status_system, "code": "record"}]}],
                            "resource": ref})
            requirements.append({"type": "Observation",
                                 "codeFilter": [{"path": "code", "code": codings}]})

        issues = []
        for c in doc.get("contraindicated_products", []):
            issue, evidence = self.detected_issue(c, known=True)
            ref = self.add(issue)
            issues.append(ref)
            self.provenance([ref], evidence, c["id"])
        for c in doc.get("contraindications_unknown", []):
            issue, evidence = self.detected_issue(c, known=False)
            ref = self.add(issue)
            issues.append(ref)
            self.provenance([ref], evidence, c["id"] + "/unknown")

        group: dict[str, Any] = {
            "resourceType": "RequestGroup",
            "id": self.uid("RequestGroup"),
            "instantiatesCanonical": [self.t.plan_url],
            "status": "draft",
            "intent": "proposal",
            "subject": self.r.patient,
            "authoredOn": self.as_of,
        }
        if actions:
            group["action"] = actions
        group_ref = self.add(group)

        covered = doc["in_scope"]
        response: dict[str, Any] = {
            "resourceType": "GuidanceResponse",
            "id": self.uid("GuidanceResponse"),
            "requestIdentifier": {"system": IDENTITY, "value": f"urn:uuid:{self.uid('request')}"},
            "moduleCanonical": self.t.plan_url,
            "status": "success" if covered or not doc.get("missing_data") else "data-required",
            "subject": self.r.patient,
            "occurrenceDateTime": self.as_of,
            "result": group_ref,
        }
        if not covered:
            response["reasonCode"] = [
                {"coding": [{"system": self.t.guideline_system, "code": r["id"], "display": r["label"]}],
                 "text": f"Not covered: {r['reason']}"}
                for r in doc.get("not_covered_reasons", [])
            ]
        notes = [{"text": f"Assumption: {a['text']}. {a['what_to_record']}"} for a in doc.get("assumptions", [])]
        notes += record_notes
        if notes:
            response["note"] = notes
        if requirements:
            response["dataRequirement"] = requirements
        response_ref = self.add(response)
        every_source = []
        for rec in doc["recommendations"]:
            for ref in self.sources(rec.get("derived_from", []), rec.get("sources", [])):
                if ref not in every_source:
                    every_source.append(ref)
        self.provenance([response_ref, group_ref], every_source, "guidance")
        # the GuidanceResponse first: a reader sees the outcome before the details
        order = {"GuidanceResponse": 0, "RequestGroup": 1, "MedicationRequest": 2, "ServiceRequest": 3,
                 "DetectedIssue": 4, "Provenance": 5}
        self.entries.sort(key=lambda e: order[e["resource"]["resourceType"]])
        return {
            "resourceType": "Bundle",
            "id": self.uid("Bundle"),
            "type": "collection",
            "timestamp": self.recorded,
            "entry": self.entries,
        }


def patient_bundle(ws: Workspace, doc: dict[str, Any]) -> dict[str, Any]:
    """The FHIR Bundle for one patient's report."""
    return _BundleBuilder(doc, output_terms(ws), patient_records(ws, doc["patient"])).build()


def bundles(evaluation, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One Bundle for one patient; for several, a collection Bundle of the patients' Bundles."""
    ws = evaluation.workspace
    per_patient = [patient_bundle(ws, doc) for doc in docs]
    if len(per_patient) == 1:
        return per_patient[0]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{b['id']}", "resource": b} for b in per_patient],
    }

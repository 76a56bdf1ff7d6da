"""A CDS Hooks 2.0 service (``b12kg cds-hooks``): the guideline's answer as cards where clinicians work.

Starlette on uvicorn (the hardened HTTP/1.1 protocol of :mod:`b12kg.serve`), one process; evaluations
run in a bounded thread pool. Endpoints:

* ``GET /cds-services`` — discovery: two services with their prefetch templates (the lab codes are
  the ontology's).
* ``POST /cds-services/b12-post-stroke`` (``patient-view``) — one card with the guideline's answer: the
  selected regimen (suggestion: the MedicationRequest proposal), the reasons the guideline does not
  apply when it does not, the assumptions it rests on, the observations to record (suggestions:
  ServiceRequests), links to the statements, override reasons; a ``warning`` card per contraindicated
  product.
* ``POST /cds-services/b12-order-check`` (``order-select`` and ``order-sign``) — a draft
  MedicationRequest for a product contraindicated for the patient gets a ``critical`` card with a
  suggestion that deletes the draft and creates the guideline's proposal; a product whose
  contraindication cannot be decided (data not recorded) a ``warning`` card. Anything else, no card.
* ``POST /cds-services/{id}/feedback`` — accepted and overridden cards, appended to a log (N-Triples,
  append-only, with the cards issued) that ``b12kg load`` reads and ``queries/research/card-outcomes.rq``
  counts.

Patient data comes from ``prefetch``; a template not satisfied is fetched from ``fhirServer`` with
fhirpy when one is given, else the answer is 412 as the specification says. Errors are JSON
``{"error": "..."}`` with 400 (malformed hook), 404 (no such service), 412, 413, 415 or 422 (the
patient data cannot be read), never a traceback. See docs/cds-hooks.md.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyoxigraph as ox
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from b12kg import namespaces as ns
from b12kg.errors import B12kgError
from b12kg.kb import KnowledgeBase
from b12kg.serve import HttpService, listen

SERVICE_PATIENT = "b12-post-stroke"
SERVICE_ORDER = "b12-order-check"
HOOKS = {SERVICE_PATIENT: ("patient-view",), SERVICE_ORDER: ("order-select", "order-sign")}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_NAMESPACE = uuid.UUID("5d7f3c2a-9b1e-4c66-8e0f-cd5b12cd5b12")
_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z]+)\s*\}\}")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_XSD_DATETIME = ox.NamedNode("http://www.w3.org/2001/XMLSchema#dateTime")


class HookError(Exception):
    """A request the service answers with an error status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class CdsConfig:
    as_of: date | None = None  #: evaluation date; None: the day of each request
    feedback: Path = Path("cds-feedback.nt")
    max_body_bytes: int = 8 * 1024 * 1024
    evaluations: int = 2  #: evaluations at once; more requests wait
    fhir_seconds: float = 10.0
    allowed_hosts: tuple[str, ...] = ()
    cors: tuple[str, ...] = ()
    fhir_servers: tuple[str, ...] = ()  #: URL prefixes of the FHIR servers it may fetch from (none: it fetches nothing)
    kb: KnowledgeBase = field(default_factory=KnowledgeBase)


# ------------------------------------------------------------------------------------------ prefetch
def prefetch_templates(kb: KnowledgeBase) -> dict[str, str]:
    """The prefetch templates: the patient, conditions, the observations coded with the lab and
    assessment codes the importer binds, and the medication records."""
    from b12kg.fhir.read import Bindings

    codes = sorted(f"{system}|{code}" for (system, code), bound in Bindings.load(kb).codes.items()
                   if any(b.kind in ("analyte", "assessment") for b in bound))
    patient = "{{context.patientId}}"
    return {
        "patient": f"Patient/{patient}",
        "conditions": f"Condition?patient={patient}",
        "observations": f"Observation?patient={patient}&code={','.join(codes)}",
        "administrations": f"MedicationAdministration?patient={patient}",
        "statements": f"MedicationStatement?patient={patient}",
        "requests": f"MedicationRequest?patient={patient}",
    }


def _resources(value: Any, key: str) -> list[dict[str, Any]] | None:
    """The resources of one prefetch value; None when it is an OperationOutcome (not satisfied)."""
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise HookError(400, f"prefetch.{key}: not a FHIR resource or Bundle")
    if value["resourceType"] == "OperationOutcome":
        return None
    if value["resourceType"] != "Bundle":
        return [value]
    entries = value.get("entry") or []
    if not isinstance(entries, list):
        raise HookError(400, f"prefetch.{key}.entry: not a list")
    found = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise HookError(400, f"prefetch.{key}.entry[{i}]: no resource")
        if resource.get("resourceType") == "OperationOutcome":  # a search's warnings (search mode outcome)
            continue
        found.append(resource)
    return found


def _fetch(server: str, authorization: dict | None, queries: dict[str, str], seconds: float) -> dict[str, list]:
    """Run prefetch queries against the client's FHIR server with fhirpy."""
    from urllib.parse import parse_qsl

    from fhirpy import SyncFHIRClient

    headers = {}
    if authorization and authorization.get("access_token"):
        headers["Authorization"] = f"{authorization.get('token_type', 'Bearer')} {authorization['access_token']}"
    client = SyncFHIRClient(server, authorization=headers.get("Authorization"), requests_config={"timeout": seconds})
    found: dict[str, list] = {}
    for key, query in queries.items():
        try:
            if "?" in query:
                kind, params = query.split("?", 1)
                search = client.resources(kind).search(**{k: v for k, v in parse_qsl(params)})
                found[key] = [r.serialize() for r in search.fetch_all()]
            else:
                kind, rid = query.split("/", 1)
                found[key] = [client.reference(kind, rid).to_resource().serialize()]
        except Exception as exc:  # fhirpy raises its own and requests' errors
            if "ResourceNotFound" in type(exc).__name__:
                found[key] = []
                continue
            raise HookError(412, f"cannot fetch {query} from {server}: {type(exc).__name__}: {exc}") from None
    return found


# ------------------------------------------------------------------------------------------ the service
class Service:
    def __init__(self, config: CdsConfig) -> None:
        from b12kg.fhir.read import Bindings

        self.config = config
        self.kb = config.kb
        self.templates = prefetch_templates(self.kb)
        self.bindings = Bindings.load(self.kb)
        self._log_lock = threading.Lock()
        self._slots = asyncio.Semaphore(config.evaluations)
        self.overrides = self._override_reasons()

    def _override_reasons(self) -> list[dict[str, str]]:
        from b12kg.engine import Workspace

        rows = Workspace(self.kb).select("fhir/override-reasons")
        return [{"system": r["system"].value, "code": r["code"].value, "display": r["display"].value} for r in rows]

    # ---- discovery
    def discovery(self) -> dict[str, Any]:
        return {"services": [
            {
                "hook": "patient-view",
                "id": SERVICE_PATIENT,
                "title": "Vitamin B12 after stroke",
                "description": "What the vitamin B12 post-stroke guideline says for this patient, and why: the "
                               "regimen, the reasons it does not apply, the data to record.",
                "prefetch": self.templates,
            },
            {
                "hook": "order-select",
                "id": SERVICE_ORDER,
                "title": "Vitamin B12 order check",
                "description": "Checks a drafted B12 product against the guideline's contraindications (also "
                               "answers order-sign).",
                "prefetch": self.templates,
            },
        ]}

    # ---- a call
    def check_request(self, service: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HookError(400, "the request body is not a JSON object")
        hook = body.get("hook")
        if not isinstance(hook, str):
            raise HookError(400, "hook: missing (a string such as 'patient-view')")
        if hook not in HOOKS[service]:
            raise HookError(400, f"hook: {hook!r} is not answered by {service} (it answers {', '.join(HOOKS[service])})")
        if not isinstance(body.get("hookInstance"), str) or not body["hookInstance"]:
            raise HookError(400, "hookInstance: missing (a UUID string)")
        context = body.get("context")
        if not isinstance(context, dict):
            raise HookError(400, "context: missing (an object)")
        patient = context.get("patientId")
        if not isinstance(patient, str) or not _ID.match(patient):
            raise HookError(400, "context.patientId: missing or not a FHIR id")
        if hook != "patient-view":
            drafts = context.get("draftOrders")
            if not isinstance(drafts, dict) or drafts.get("resourceType") != "Bundle":
                raise HookError(400, "context.draftOrders: missing (a FHIR Bundle)")
            if hook == "order-select" and not isinstance(context.get("selections"), list):
                raise HookError(400, "context.selections: missing (a list of Type/id)")
        prefetch = body.get("prefetch", {})
        if not isinstance(prefetch, dict):
            raise HookError(400, "prefetch: not an object")
        for name in ("fhirServer",):
            if name in body and not isinstance(body[name], str):
                raise HookError(400, f"{name}: not a string")
        if "fhirAuthorization" in body and not isinstance(body["fhirAuthorization"], dict):
            raise HookError(400, "fhirAuthorization: not an object")
        return body

    def patient_resources(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        context, prefetch = body["context"], body.get("prefetch") or {}
        resources: list[dict[str, Any]] = []
        missing: dict[str, str] = {}
        for key, template in self.templates.items():
            found = _resources(prefetch[key], key) if key in prefetch else None
            if found is None:
                missing[key] = _TOKEN.sub(lambda m: str(context.get(m.group(1), "")), template)
            else:
                resources += found
        if missing:
            server = body.get("fhirServer")
            if not server:
                raise HookError(412, f"prefetch {', '.join(sorted(missing))} not given and no fhirServer to fetch "
                                     "them from")
            if not any(server.startswith(prefix) for prefix in self.config.fhir_servers):
                raise HookError(412, f"prefetch {', '.join(sorted(missing))} not given, and fhirServer {server} is not "
                                     "one this service may fetch from (b12kg cds-hooks --allow-fhir-server)")
            fetched = _fetch(server, body.get("fhirAuthorization"), missing, self.config.fhir_seconds)
            for key in missing:
                resources += fetched[key]
        patient = context["patientId"]
        if not any(r.get("resourceType") == "Patient" and r.get("id") == patient for r in resources):
            resources.insert(0, {"resourceType": "Patient", "id": patient})
        return resources

    def evaluate(self, service: str, body: dict[str, Any]) -> dict[str, Any]:
        from b12kg.derive import recommend
        from b12kg.fhir.write import output_terms, patient_bundle, patient_records
        from b12kg.report import patient_report

        resources = self.patient_resources(body)
        as_of = self.config.as_of or date.today()
        with tempfile.TemporaryDirectory(prefix="b12kg-cds-") as folder:
            path = Path(folder) / "prefetch.json"
            path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": r} for r in resources]}), encoding="utf-8")
            try:
                evaluation = recommend(path, as_of=as_of, kb=self.kb)
            except B12kgError as exc:
                message = str(exc.problems[0] if exc.problems else exc).replace(str(path), "prefetch")
                raise HookError(422, f"the patient data cannot be used: {message}") from None
        ws = evaluation.workspace
        wanted = f"Patient/{body['context']['patientId']}"
        doc = None
        for p in evaluation.patients:
            if patient_records(ws, p).patient.get("reference") == wanted:
                doc = patient_report(evaluation, p)
        if doc is None:
            raise HookError(422, f"the prefetch data is not about {wanted}")
        bundle = patient_bundle(ws, doc)
        cards = Cards(self, body, doc, bundle, output_terms(ws))
        result = cards.patient_view() if service == SERVICE_PATIENT else cards.order_check()
        self.record_cards(service, body, result)
        return {"cards": result}

    # ---- the log: cards issued and their outcomes, append-only
    def _append(self, triples: list[ox.Triple]) -> None:
        data = ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES)
        with self._log_lock:
            fd = os.open(self.config.feedback, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def record_cards(self, service: str, body: dict[str, Any], cards: list[dict[str, Any]]) -> None:
        b12 = ns.B12
        now = ox.Literal(datetime.now(timezone.utc).isoformat(timespec="seconds"), datatype=_XSD_DATETIME)
        triples = []
        for card in cards:
            node = ox.NamedNode(f"urn:uuid:{card['uuid']}")
            triples += [
                ox.Triple(node, ox.NamedNode(ns.RDF_TYPE), ox.NamedNode(f"{b12}CdsCard")),
                ox.Triple(node, ox.NamedNode(f"{b12}cdsService"), ox.Literal(service)),
                ox.Triple(node, ox.NamedNode(f"{b12}cdsHook"), ox.Literal(body["hook"])),
                ox.Triple(node, ox.NamedNode(f"{b12}cardAbout"), ox.NamedNode(card["_about"])),
                ox.Triple(node, ox.NamedNode(f"{b12}cardIndicator"), ox.Literal(card["indicator"])),
                ox.Triple(node, ox.NamedNode(str(ns.PROV) + "generatedAtTime"), now),
            ]
            del card["_about"]
        if triples:
            self._append(triples)

    def feedback(self, service: str, body: Any) -> int:
        if not isinstance(body, dict) or not isinstance(body.get("feedback"), list):
            raise HookError(400, "feedback: missing (a list)")
        b12 = ns.B12
        triples: list[ox.Triple] = []
        for i, item in enumerate(body["feedback"]):
            where = f"feedback[{i}]"
            if not isinstance(item, dict):
                raise HookError(400, f"{where}: not an object")
            card, outcome, when = item.get("card"), item.get("outcome"), item.get("outcomeTimestamp")
            if not isinstance(card, str) or not re.match(r"^[0-9a-fA-F-]{36}$", card):
                raise HookError(400, f"{where}.card: missing or not a card uuid")
            if outcome not in ("accepted", "overridden"):
                raise HookError(400, f"{where}.outcome: {outcome!r} is not 'accepted' or 'overridden'")
            try:
                stamp = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
            except ValueError:
                raise HookError(400, f"{where}.outcomeTimestamp: {when!r} is not an ISO 8601 date-time") from None
            accepted = item.get("acceptedSuggestions") or []
            if outcome == "accepted" and (not isinstance(accepted, list) or not accepted):
                raise HookError(400, f"{where}.acceptedSuggestions: required for an accepted card")
            node = ox.NamedNode(f"urn:uuid:{uuid.uuid5(_NAMESPACE, json.dumps(item, sort_keys=True))}")
            triples += [
                ox.Triple(node, ox.NamedNode(ns.RDF_TYPE), ox.NamedNode(f"{b12}CdsFeedback")),
                ox.Triple(node, ox.NamedNode(f"{b12}aboutCard"), ox.NamedNode(f"urn:uuid:{card.lower()}")),
                ox.Triple(node, ox.NamedNode(f"{b12}cdsService"), ox.Literal(service)),
                ox.Triple(node, ox.NamedNode(f"{b12}cardOutcome"), ox.Literal(outcome)),
                ox.Triple(node, ox.NamedNode(str(ns.PROV) + "generatedAtTime"),
                          ox.Literal(stamp.isoformat(), datatype=_XSD_DATETIME)),
            ]
            for s in accepted if isinstance(accepted, list) else []:
                if isinstance(s, dict) and isinstance(s.get("id"), str):
                    triples.append(ox.Triple(node, ox.NamedNode(f"{b12}acceptedSuggestion"), ox.Literal(s["id"])))
            reason = item.get("overrideReason")
            if isinstance(reason, dict):
                coding = reason.get("reason")
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    triples.append(ox.Triple(node, ox.NamedNode(f"{b12}overrideReason"), ox.Literal(coding["code"])))
                if isinstance(reason.get("userComment"), str):
                    triples.append(ox.Triple(node, ox.NamedNode(f"{b12}overrideComment"), ox.Literal(reason["userComment"])))
        if triples:
            self._append(triples)
        return len(body["feedback"])


# ------------------------------------------------------------------------------------------ cards
def _summary(text: str) -> str:
    """At most 139 characters (the specification: a summary of fewer than 140), cut at a word."""
    if len(text) < 140:
        return text
    cut = text[:138].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def _refs(numbers: list[int]) -> str:
    return f" [{', '.join(str(n) for n in numbers)}]" if numbers else ""


class Cards:
    def __init__(self, service: Service, body: dict, doc: dict, bundle: dict, terms) -> None:
        self.s, self.body, self.doc, self.t = service, body, doc, terms
        self.resources = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
        self.by_type: dict[str, list[dict]] = {}
        for e in bundle["entry"]:
            self.by_type.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
        self.group = self.by_type["RequestGroup"][0]

    def uid(self, *parts: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, "\x1f".join([self.body["hookInstance"], *parts])))

    def source(self, topic: str | None, display: str | None) -> dict[str, Any]:
        source: dict[str, Any] = {"label": self.t.short_title, "url": self.t.plan_url}
        if topic:
            source["topic"] = {"system": self.t.guideline_system, "code": topic,
                               "display": display or self.t.statement_labels.get(topic, topic)}
        return source

    def action_for(self, rec_id: str) -> dict[str, Any] | None:
        return next((a for a in self.group.get("action", []) if a["id"] == rec_id), None)

    def resource(self, ref: dict[str, Any]) -> dict[str, Any]:
        resource = dict(self.resources[ref["reference"]])
        return resource

    def proposals(self, rec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The MedicationRequest proposals of a regimen recommendation, with the product's label."""
        action = self.action_for(rec["id"]) or {}
        if "resource" in action:
            r = self.resource(action["resource"])
            return [(r["medicationCodeableConcept"]["text"], r)]
        return [(a["title"], self.resource(a["resource"])) for a in action.get("action", [])]

    def record_suggestions(self) -> list[dict[str, Any]]:
        suggestions = []
        for m in self.doc.get("missing_data", []):
            action = self.action_for(m["id"])
            if not action or "resource" not in action:
                continue
            request = self.resource(action["resource"])
            suggestions.append({
                "label": _summary(m["what_to_record"]),
                "uuid": self.uid("suggest", m["id"]),
                "actions": [{"type": "create", "description": m["what_to_record"], "resource": request}],
            })
        return suggestions

    def statement_links(self, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        links, seen = [], set()
        for rec in recs:
            if rec.get("statement") and rec["statement"] not in seen:
                seen.add(rec["statement"])
                label = self.t.statement_labels.get(rec["statement"].rsplit("#", 1)[-1], rec["id"])
                links.append({"label": f"Guideline statement: {label}", "url": rec["statement"], "type": "absolute"})
        return links

    # ---- patient-view
    def patient_view(self) -> list[dict[str, Any]]:
        doc = self.doc
        cards = []
        recs = doc["recommendations"]
        selected = [r for r in recs if r["status"] == "selected"]
        lines: list[str] = []
        suggestions: list[dict[str, Any]] = []
        if not doc["in_scope"]:
            reasons = doc.get("not_covered_reasons", [])
            summary = f"{self.t.short_title}: guideline does not apply: " + "; ".join(r["label"] for r in reasons)
            lines.append("**Not covered by the guideline.**")
            lines += [f"- {r['reason']}" for r in reasons]
            about = f"{ns.GL}{reasons[0]['id']}" if reasons else self.t.plan_url
            topic = reasons[0]["id"] if reasons else None
            topic_label = reasons[0]["label"] if reasons else None
            indicator = "info"
        elif selected:
            rec = selected[0]
            proposals = self.proposals(rec)
            due = rec.get("next_due") or {}
            when = {"overdue": f"overdue since {due.get('overdue_since')}", "dueNow": "due now"}.get(
                due.get("status", ""), f"next from {due['earliest']}" if due else "")
            regimen = self.t.activity_labels.get(rec["regimen"], rec["text"])
            products = "" if len(proposals) != 1 or proposals[0][0] in regimen else f" ({proposals[0][0]})"
            summary = f"{self.t.short_title}: {regimen}{products}" + (f"; {when}" if when else "")
            indicator = "warning" if due.get("status") == "overdue" else "info"
            about, topic, topic_label = rec["statement"], rec["id"], None
            for label, request in proposals:
                suggestions.append({
                    "label": _summary(f"Propose {label} {rec['dose_text']} {rec['route']}"),
                    "uuid": self.uid("suggest", rec["id"], label),
                    "isRecommended": True,
                    "actions": [{"type": "create", "description": rec["text"], "resource": request}],
                })
        else:
            summary = f"{self.t.short_title}: guideline applies, no regimen can be selected on this record"
            indicator, about, topic, topic_label = "warning", self.t.plan_url, None, None
        if doc["in_scope"]:
            lines.append("**What the guideline says for this patient**")
            for rec in recs:
                if rec["status"] == "informs":
                    continue
                marker = {"selected": "**Selected regimen:** ", "alternative": "Alternative: "}.get(rec["status"], "")
                lines.append(f"- {marker}{rec['text']}{_refs(rec.get('evidence', []))}")
        for c in doc.get("contraindicated_products", []):
            lines.append(f"\n**Contraindicated:** {c['label']}: {c['reason']}{_refs(c.get('evidence', []))}")
        for c in doc.get("contraindications_unknown", []):
            lines.append(f"\n**Possibly contraindicated:** {c['label']}: {c['reason']}")
        if doc.get("assumptions"):
            lines.append("\n**Assumed (nothing on record says otherwise)**")
            lines += [f"- {a['text']}. {a['what_to_record']}" for a in doc["assumptions"]]
        if doc.get("missing_data"):
            lines.append("\n**Record**")
            lines += [f"- {m['what_to_record']} (affects {m['affects']})" for m in doc["missing_data"]]
        lines.append(f"\nEvaluated on {doc['as_of']}. Evidence numbers are the source article's references.")
        suggestions += self.record_suggestions()
        card: dict[str, Any] = {
            "uuid": self.uid("guidance"),
            "summary": _summary(summary),
            "indicator": indicator,
            "detail": "\n".join(lines),
            "source": self.source(topic, topic_label),
            "overrideReasons": self.s.overrides,
            "links": self.statement_links([r for r in recs if r["status"] != "informs"][:5]),
            "_about": about,
        }
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = "any"
        if not card["links"]:
            del card["links"]
        cards.append(card)
        for c in doc.get("contraindicated_products", []):
            cards.append({
                "uuid": self.uid("contraindicated", c["id"]),
                "summary": _summary(f"Contraindicated: {c['label']}"),
                "indicator": "warning",
                "detail": f"{c['reason']}{_refs(c.get('evidence', []))}",
                "source": self.source(c["id"], c["label"]),
                "overrideReasons": self.s.overrides,
                "_about": f"{ns.GL}{c['id']}",
            })
        return cards

    # ---- order-select / order-sign
    def order_check(self) -> list[dict[str, Any]]:
        context = self.body["context"]
        drafts = [e.get("resource") for e in context["draftOrders"].get("entry") or [] if isinstance(e, dict)]
        if self.body["hook"] == "order-select":
            chosen = {s for s in context.get("selections") or [] if isinstance(s, str)}
            drafts = [d for d in drafts if isinstance(d, dict) and f"{d.get('resourceType')}/{d.get('id')}" in chosen]
        contraindicated = {c["product"]["id"]: (c, True) for c in self.doc.get("contraindicated_products", [])}
        for c in self.doc.get("contraindications_unknown", []):
            contraindicated.setdefault(c["product"]["id"], (c, False))
        regimen = next((r for r in self.doc["recommendations"] if r["status"] == "selected"), None)
        cards = []
        for draft in drafts:
            if not isinstance(draft, dict) or draft.get("resourceType") != "MedicationRequest":
                continue
            found = self.s.bindings.find(draft.get("medicationCodeableConcept"), "substance")
            products = {b.target.rsplit("#", 1)[-1] for b in found}
            for product in sorted(products & set(contraindicated)):
                c, known = contraindicated[product]
                draft_ref = f"MedicationRequest/{draft.get('id')}"
                suggestions = []
                for label, request in (self.proposals(regimen) if regimen and self.doc["in_scope"] else []):
                    actions = [{"type": "delete", "description": f"Remove the {c['product']['label']} order",
                                "resourceId": draft_ref},
                               {"type": "create", "description": regimen["text"], "resource": request}]
                    suggestions.append({"label": _summary(f"Replace with {label} {regimen['dose_text']} {regimen['route']}"),
                                        "uuid": self.uid("replace", draft_ref, label),
                                        "isRecommended": True, "actions": actions})
                if not known:
                    suggestions += [s for s in self.record_suggestions()]
                lines = [f"{c['reason']}{_refs(c.get('evidence', []))}"]
                if regimen and self.doc["in_scope"]:
                    lines.append(f"\nThe guideline's regimen for this patient: {regimen['text']}{_refs(regimen.get('evidence', []))}")
                card = {
                    "uuid": self.uid("order", draft_ref, c["id"]),
                    "summary": _summary(f"Contraindicated: {c['label']}" if known else
                                        f"Possibly contraindicated: {c['label']} (the data that decides it is not recorded)"),
                    "indicator": "critical" if known else "warning",
                    "detail": "\n".join(lines),
                    "source": self.source(c["id"], c["label"]),
                    "overrideReasons": self.s.overrides,
                    "_about": f"{ns.GL}{c['id']}",
                }
                if suggestions:
                    card["suggestions"] = suggestions
                    card["selectionBehavior"] = "at-most-one" if known else "any"
                cards.append(card)
        return cards


# ------------------------------------------------------------------------------------------ HTTP
def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request, limit: int) -> Any:
    from b12kg.inputs import check_json

    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HookError(415, f"Content-Type {kind or '(none)'}: send application/json")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HookError(413 if length.isdigit() else 400,
                        f"the request body is larger than {limit} bytes" if length.isdigit() else "bad Content-Length")
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise HookError(413, f"the request body is larger than {limit} bytes")
    except ClientDisconnect:
        raise HookError(400, "the client left before sending the whole body") from None
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HookError(400, f"the request body is not UTF-8 (byte {exc.start})") from None
    try:
        check_json(bytes(data), Path("the request body"))
    except B12kgError as exc:
        raise HookError(400, str(exc.problems[0] if exc.problems else exc)) from None
    try:
        return json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(f"{name} is not JSON")))
    except ValueError as exc:
        raise HookError(400, f"the request body is not JSON: {exc}") from None


def make_app(service: Service) -> Starlette:
    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse(service.discovery())

    async def call(request: Request) -> JSONResponse:
        name = request.path_params["service"]
        if name not in HOOKS:
            return _error(404, f"no CDS service {name!r}; GET /cds-services lists them")
        try:
            body = service.check_request(name, await _json_body(request, service.config.max_body_bytes))
            async with service._slots:
                answer = await run_in_threadpool(service.evaluate, name, body)
        except HookError as exc:
            return _error(exc.status, exc.message)
        return JSONResponse(answer)

    async def feedback(request: Request) -> JSONResponse:
        name = request.path_params["service"]
        if name not in HOOKS:
            return _error(404, f"no CDS service {name!r}")
        try:
            count = await run_in_threadpool(service.feedback, name, await _json_body(request, service.config.max_body_bytes))
        except HookError as exc:
            return _error(exc.status, exc.message)
        return JSONResponse({"recorded": count})

    routes = [
        Route("/cds-services", discovery, methods=["GET"]),
        Route("/cds-services/{service}", call, methods=["POST"]),
        Route("/cds-services/{service}/feedback", feedback, methods=["POST"]),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(service.config.allowed_hosts))]
    if service.config.cors:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(service.config.cors),
                                     allow_methods=["GET", "POST"], allow_headers=["Content-Type", "Authorization"]))
    return Starlette(routes=routes, middleware=middleware)


class CdsServer(HttpService):
    """The service on uvicorn (the guarded protocol and signal handling of :mod:`b12kg.serve`)."""

    def __init__(self, config: CdsConfig, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.config, self.host, self.port = config, host, port
        self.config.allowed_hosts = tuple(dict.fromkeys((*LOOPBACK_HOSTS, host, *config.allowed_hosts)))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/cds-services"

    def start(self) -> None:
        service = Service(self.config)
        sock = listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.run_app(make_app(service), sock, request_seconds=10.0)

"""The guideline itself as FHIR R4: a CPG-style PlanDefinition with its ActivityDefinitions
(``b12kg export-guideline --format fhir``), generated from the ontology.

* ``PlanDefinition`` (type clinical-protocol, status draft while the article is pending review): one
  action group per section of the article, one action per statement in the article's order, with its
  words, its evidence (``documentation``, the article's numbered references), and its applicability
  (``condition``: the populations the statement names, as their labels and as a SPARQL ASK over the
  classified patient graph), and ``definitionCanonical`` to the activity it proposes.
* ``ActivityDefinition`` per regimen (kind MedicationRequest: product coded, dose in UCUM, route,
  timing) and per test to order (kind ServiceRequest, LOINC): the follow-up recheck and each
  missing-data rule with a code.

The patient Bundles of :mod:`b12kg.fhir.write` point at these by canonical URL.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from b12kg.engine import Workspace
from b12kg.fhir.write import UCUM, _local, output_terms

PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"


def _num(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _applicability(populations: list[tuple[str, str]]) -> dict[str, Any]:
    classes = " , ".join(f"<{iri}>" for iri, _ in populations)
    return {
        "kind": "applicability",
        "expression": {
            "description": " and ".join(label for _, label in populations),
            "language": "application/sparql-query",
            "expression": f"ASK {{ ?patient a {classes} }}",
        },
    }


def guideline_bundle(ws: Workspace) -> dict[str, Any]:
    terms = output_terms(ws)
    sections: OrderedDict[str, dict[str, Any]] = OrderedDict()
    statements: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for row in ws.select("fhir/plan-statements"):
        cat = row["category"].value
        section = sections.setdefault(cat, {"title": row["categoryLabel"].value, "statements": []})
        iri = row["statement"].value
        if iri not in statements:
            statements[iri] = {"label": row["label"].value, "text": row["text"].value, "populations": [],
                               "evidence": [], "activity": None}
            section["statements"].append(iri)
        s = statements[iri]
        if "population" in row:
            pair = (row["population"].value, row["populationLabel"].value if "populationLabel" in row
                    else _local(row["population"].value))
            if pair not in s["populations"]:
                s["populations"].append(pair)
        if "number" in row and int(row["number"].value) not in s["evidence"]:
            s["evidence"].append(int(row["number"].value))
        if "regimen" in row:
            s["activity"] = _local(row["regimen"].value)
        if "followUp" in row:
            s["activity"] = _local(iri)

    groups = []
    for section in sections.values():
        actions = []
        for iri in section["statements"]:
            s = statements[iri]
            action: dict[str, Any] = {
                "id": _local(iri),
                "title": s["label"],
                "description": s["text"],
                "documentation": [{"type": "citation", "label": str(n), "display": terms.references.get(n, str(n))}
                                  for n in sorted(s["evidence"])],
            }
            if s["populations"]:
                action["condition"] = [_applicability(s["populations"])]
            if s["activity"]:
                action["definitionCanonical"] = terms.activity_url(s["activity"])
            actions.append(action)
        groups.append({"title": section["title"], "action": actions})

    activities: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for row in ws.select("fhir/plan-activities"):
        local = _local(row["activity"].value)
        if local in activities:
            continue
        resource: dict[str, Any] = {
            "resourceType": "ActivityDefinition",
            "id": local,
            "url": terms.activity_url(local),
            "name": "".join(part.capitalize() for part in local.replace("_", "-").split("-")),
            "title": row["label"].value,
            "status": "draft",
            "intent": "proposal",
        }
        if terms.version:
            resource["version"] = terms.version.rsplit("/", 1)[-1]
        if row["kind"].value == "regimen":
            product = _local(row["product"].value)
            unit = row["doseUnit"].value
            repeat: dict[str, Any] = {"frequency": 1, "period": _num(row["intervalMin"].value),
                                      "periodUnit": row["intervalUnit"].value}
            if row["intervalMax"].value != row["intervalMin"].value:
                repeat["periodMax"] = _num(row["intervalMax"].value)
            route = _local(row["route"].value)
            codings = terms.product_codings(product, route)
            resource.update({
                "kind": "MedicationRequest",
                "productCodeableConcept": {
                    **({"coding": codings} if codings else {}),
                    "text": row["productLabel"].value if "productLabel" in row else product,
                },
                "dosage": [{
                    "text": row["label"].value,
                    "timing": {"repeat": repeat},
                    "route": {**({"coding": terms.codings[route]} if terms.codings.get(route) else {}),
                              "text": row["routeLabel"].value if "routeLabel" in row else route},
                    "doseAndRate": [{"doseQuantity": {"value": _num(row["dose"].value), "unit": unit,
                                                      "system": UCUM, "code": unit}}],
                }],
            })
            if "durationLabel" in row:
                resource["description"] = f"{row['label'].value}; duration: {row['durationLabel'].value}"
        else:
            resource["kind"] = "ServiceRequest"
            resource["code"] = {**({"coding": terms.codings[local]} if terms.codings.get(local) else {}),
                                "text": row["label"].value}
            if "text" in row:
                resource["description"] = row["text"].value
        activities[local] = resource

    plan: dict[str, Any] = {
        "resourceType": "PlanDefinition",
        "id": terms.plan_id,
        "url": terms.plan_url,
        "name": "".join(part.capitalize() for part in terms.plan_id.split("-")),
        "title": terms.title,
        "type": {"coding": [{"system": PLAN_TYPE, "code": "clinical-protocol"}]},
        "status": "draft",
        "relatedArtifact": [{"type": "citation", "label": str(n), "display": text}
                            for n, text in sorted(terms.references.items())],
        "action": groups,
    }
    if terms.version:
        plan["version"] = terms.version.rsplit("/", 1)[-1]
    entries = [plan, *activities.values()]
    return {
        "resourceType": "Bundle",
        "id": terms.plan_id,
        "type": "collection",
        "entry": [{"fullUrl": r["url"], "resource": r} for r in entries],
    }

"""Reporting one evaluation: a JSON-ready dict per patient (the single source), rendered as text;
the derived graph with its provenance as Turtle or JSON-LD.

Everything shown comes from the derived graph and the ontology through ``queries/report/``; this
module only arranges and formats it.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from enum import Enum
from typing import Any

import pyoxigraph as ox

from b12kg.derive import Evaluation

B12 = "https://w3id.org/b12kg/ontology#"


class OutputFormat(str, Enum):
    text = "text"
    json = "json"
    turtle = "turtle"
    jsonld = "jsonld"


def _local(iri: str) -> str:
    return iri.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def _num(term: ox.Literal) -> int | float:
    """A JSON number for an exact decimal: an int when whole, otherwise a float of the decimal text."""
    value = Decimal(term.value)
    return int(value) if value == value.to_integral_value() else float(value)


def _show(value: Decimal | int | float) -> str:
    """A number for people: whole numbers as they are, others to one decimal (≥ 100: whole)."""
    value = Decimal(str(value))
    if value == value.to_integral_value():
        return str(int(value))
    if abs(value) >= 100:
        return str(int(value.quantize(Decimal(1), rounding="ROUND_HALF_UP")))
    return str(value.quantize(Decimal("0.1"), rounding="ROUND_HALF_UP")).rstrip("0").rstrip(".")


def patient_report(evaluation: Evaluation, patient: str) -> dict[str, Any]:
    """Everything the guideline says for one patient, as a dict matching ``schema/recommendation.schema.json``."""
    ws = evaluation.workspace
    subject = {"patient": ox.NamedNode(patient)}
    links: dict[str, dict[str, list]] = defaultdict(lambda: {"evidence": [], "fact": [], "source": []})
    for row in ws.select("report/links", subject):
        value = _num(row["value"]) if row["kind"].value == "evidence" else row["value"].value
        links[row["finding"].value][row["kind"].value].append(value)

    # ---- assessment: results, threshold comparisons, states
    thresholds: dict[str, dict[str, Any]] = {}
    for row in ws.select("report/thresholds"):
        t = thresholds.setdefault(
            row["threshold"].value,
            {
                "id": _local(row["threshold"].value),
                "label": row["label"].value,
                "value": _num(row["value"]),
                "unit": row["unit"].value,
                "analyte": _local(row["analyte"].value),
                "equivalents": [],
            },
        )
        if "otherUnit" in row:
            other = Decimal(row["value"].value) / Decimal(row["factor"].value)
            t["equivalents"].append({"value": float(round(other, 1)), "unit": row["otherUnit"].value})
    results: dict[str, dict[str, Any]] = {}
    stale: list[dict[str, Any]] = []
    for row in ws.select("report/results", subject):
        key = _local(row["analyte"].value)
        entry = {
            "result": row["result"].value,
            "analyte": row["analyteLabel"].value,
            "value": _num(row["value"]),
            "unit": row["unit"].value,
            "date": row["date"].value[:10],
            "canonical": {"value": _num(row["canonical"]), "unit": row["canonicalUnit"].value}
            if "canonical" in row
            else None,
        }
        if "interpretation" in row:
            entry["interpretation"] = row["interpretation"].value
        if row["current"].value == "true":
            entry["comparisons"] = [
                {
                    "threshold": t["id"],
                    "label": t["label"],
                    "threshold_value": t["value"],
                    "unit": t["unit"],
                    "equivalents": t["equivalents"],
                    "relation": "below"
                    if Decimal(str(entry["canonical"]["value"])) < Decimal(str(t["value"]))
                    else "at or above",
                }
                for t in thresholds.values()
                if t["analyte"] == key and entry["canonical"]
            ]
            results[key] = entry
        elif key not in results:
            stale.append(entry)
    states = [
        {"id": _local(r["state"].value), "label": r["label"].value, "topic": r["topic"].value,
         "definition": r["definition"].value}
        for r in ws.select("report/states", subject)
    ]

    # ---- recommendations
    recommendations = []
    for row in ws.select("report/recommendations", subject):
        rec = row["rec"].value
        item: dict[str, Any] = {
            "id": _local(row["source"].value),
            "iri": rec,
            "statement": row["statement"].value,
            "category": row["category"].value,
            "text": row["text"].value,
            "status": _local(row["status"].value),
            "evidence": sorted(links[rec]["evidence"]),
            "derived_from": sorted(links[rec]["fact"]),
            "sources": sorted(links[rec]["source"]),
        }
        if "regimen" in row:
            unit = row["intervalUnit"].value
            item["regimen"] = _local(row["regimen"].value)
            item["product"] = {"id": _local(row["product"].value), "label": row["productLabel"].value}
            item["dose"] = {"value": _num(row["doseValue"]), "unit": row["doseUnit"].value}
            item["route"] = row["routeLabel"].value
            item["interval"] = {"min": _num(row["intervalMin"]), "max": _num(row["intervalMax"]), "unit": unit}
            item["interval_months"] = (
                {"min": _num(row["intervalMin"]), "max": _num(row["intervalMax"])} if unit == "mo" else None
            )
            item["duration"] = row["durationLabel"].value
            item["next_due"] = (
                {"earliest": row["nextDueEarliest"].value, "latest": row["nextDueLatest"].value}
                if "nextDueEarliest" in row
                else None
            )
        if "windowStart" in row:
            item["window"] = {"start": row["windowStart"].value, "end": row["windowEnd"].value}
        recommendations.append(item)

    # ---- findings
    not_covered, missing, contraindicated = [], [], []
    for row in ws.select("report/findings", subject):
        finding = row["finding"].value
        kind = _local(row["type"].value)
        base = {"id": _local(row["source"].value), "label": row["label"].value, "text": row["text"].value}
        if kind == "NotCoveredFinding":
            not_covered.append({**base, "reason": base.pop("text")})
        elif kind == "MissingDataFinding":
            missing.append({**base, "what_to_record": row["whatToRecord"].value, "affects": base.pop("text")})
        else:
            contraindicated.append(
                {
                    **base,
                    "product": {"id": _local(row["product"].value), "label": row["productLabel"].value},
                    "reason": base.pop("text"),
                    "evidence": sorted(links[finding]["evidence"]),
                    "derived_from": sorted(links[finding]["fact"]),
                }
            )
    run = ws.select("report/derivation", subject)
    provenance = {}
    guideline = {}
    if run:
        r = run[0]
        provenance = {
            "derivation": r["run"].value,
            "as_of": r["asOf"].value,
            "ontology_version": r["ontologyVersion"].value,
            "engine_version": r["engineVersion"].value,
            "reasoner": evaluation.reasoner.value,
        }
        guideline = {"title": r["title"].value, "last_updated": r["modified"].value,
                     "review_status": r["reviewStatus"].value}
    return {
        "patient": patient,
        "as_of": evaluation.as_of.isoformat(),
        "guideline": guideline,
        "in_scope": not not_covered,
        "not_covered_reasons": not_covered,
        "assessment": {
            "results": results,
            "b12_pmol_per_l": results["serum-b12"]["canonical"]["value"] if "serum-b12" in results else None,
            "states": states,
            "results_not_used": stale,
            "thresholds": list(thresholds.values()),
        },
        "recommendations": recommendations,
        "contraindicated_products": contraindicated,
        "missing_data": missing,
        "provenance": provenance,
    }


def reports(evaluation: Evaluation) -> list[dict[str, Any]]:
    return [patient_report(evaluation, p) for p in evaluation.patients]


# ------------------------------------------------------------------------------------------ text
def _refs(numbers: list[int]) -> str:
    return f" [{', '.join(str(n) for n in numbers)}]" if numbers else ""


def render_text(report: dict[str, Any]) -> str:
    """A clinician-readable page for one patient."""
    out: list[str] = []
    g = report["guideline"]
    out.append("What the guideline says for this patient")
    out.append(f"  Patient    {report['patient']}")
    out.append(f"  As of      {report['as_of']}")
    if g:
        out.append(f"  Guideline  {g['title']} (last updated {g['last_updated']}; {g['review_status']})")
    if report["in_scope"]:
        out.append("  Covered    yes: the guideline's maintenance recommendation applies")
    else:
        out.append("  Covered    NO: the guideline does not cover this patient")
        for reason in report["not_covered_reasons"]:
            out.append(f"    - {reason['reason']}")

    out.append("")
    out.append("ASSESSMENT")
    results = report["assessment"]["results"]
    if not results:
        out.append("  No usable lab results.")
    for r in results.values():
        canon = r["canonical"]
        same = canon and canon["unit"] == r["unit"]
        conv = "" if same or not canon else f" = {_show(canon['value'])} {canon['unit']}"
        flag = f" ({r['interpretation']})" if "interpretation" in r else ""
        out.append(f"  {r['analyte']}: {_show(r['value'])} {r['unit']} on {r['date']}{conv}{flag}")
        for c in r.get("comparisons", []):
            eq = "".join(f" ≈ {_show(e['value'])} {e['unit']}" for e in c["equivalents"])
            sign = "<" if c["relation"] == "below" else "≥"
            out.append(
                f"    {c['relation']} the {c['label']}: {_show(canon['value'])} {sign} "
                f"{_show(c['threshold_value'])} {c['unit']}{f' ({eq.strip()})' if eq else ''}"
            )
    for r in report["assessment"]["results_not_used"]:
        out.append(f"  not used (too old): {r['analyte']} {_show(r['value'])} {r['unit']} on {r['date']}")
    if report["assessment"]["states"]:
        out.append("  States:")
        for s in report["assessment"]["states"]:
            out.append(f"    - {s['label']}: {s['definition']}")

    if report["recommendations"]:
        out.append("")
        out.append("RECOMMENDATIONS (reference numbers of the source article in brackets)")
        category = None
        for rec in report["recommendations"]:
            if rec["category"] != category:
                category = rec["category"]
                out.append(f"  {category}")
            marker = {"selected": "SELECTED REGIMEN: ", "alternative": "ALTERNATIVE REGIMEN: "}.get(rec["status"], "")
            out.append(f"    - {marker}{rec['text']}{_refs(rec['evidence'])}")
            if "product" in rec:
                interval = rec["interval"]
                every = (
                    f"every {_show(interval['min'])}–{_show(interval['max'])} {interval['unit']}"
                    if interval["min"] != interval["max"]
                    else f"every {_show(interval['min'])} {interval['unit']}"
                )
                out.append(
                    f"        {rec['product']['label']} {_show(rec['dose']['value'])} {rec['dose']['unit']} "
                    f"{rec['route']}, {every}, duration: {rec['duration']}"
                )
                if rec.get("next_due"):
                    out.append(
                        f"        next dose due between {rec['next_due']['earliest']} and {rec['next_due']['latest']}"
                    )
            if rec.get("window"):
                out.append(f"        due between {rec['window']['start']} and {rec['window']['end']}")

    out.append("")
    out.append("CONTRAINDICATED PRODUCTS")
    if not report["contraindicated_products"]:
        out.append("  none found in the recorded data")
    for c in report["contraindicated_products"]:
        out.append(f"  - {c['product']['label']}: {c['reason']}{_refs(c['evidence'])}")

    out.append("")
    out.append("MISSING DATA")
    if not report["missing_data"]:
        out.append("  none")
    for m in report["missing_data"]:
        out.append(f"  - {m['what_to_record']}: decides {m['affects']}")

    p = report["provenance"]
    if p:
        out.append("")
        out.append(
            f"Provenance: derivation {p['derivation']} (ontology {p['ontology_version']}, "
            f"engine {p['engine_version']}, reasoner {p['reasoner']})"
        )
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------- RDF
def derived_graph(evaluation: Evaluation, fmt: OutputFormat) -> str:
    """The derived findings and their provenance as Turtle or JSON-LD."""
    triples = evaluation.workspace.triples("derived")
    prefixes = {
        "b12": B12,
        "gl": "https://w3id.org/b12kg/guideline#",
        "prov": "http://www.w3.org/ns/prov#",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "derived": "https://w3id.org/b12kg/derived/",
    }
    rdf_format = ox.RdfFormat.TURTLE if fmt is OutputFormat.turtle else ox.RdfFormat.JSON_LD
    kwargs = {"prefixes": prefixes} if rdf_format is ox.RdfFormat.TURTLE else {}
    return ox.serialize(triples, format=rdf_format, **kwargs).decode("utf-8")

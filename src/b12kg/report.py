"""Reporting one evaluation: a JSON-ready dict per patient (the single source), rendered as text;
the derived graph with its provenance as Turtle or JSON-LD.

Everything shown comes from the derived graph and the ontology through ``queries/report/``; this
module only arranges and formats it.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from enum import Enum
from string import Formatter
from typing import Any

import pyoxigraph as ox

from b12kg.dates import describe
from b12kg.derive import Evaluation, age_policy, oldest_counted
from b12kg.errors import KnowledgeBaseError

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


def _unit_display(ws) -> dict[str, str]:
    if "unit-display" not in ws.memo:
        ws.memo["unit-display"] = {r["ucum"].value: r["text"].value for r in ws.select("report/unit-display")}
    return ws.memo["unit-display"]


def _count(n: int, singular: str, plural: str) -> str:
    return f"one {singular}" if n == 1 else f"{n} {plural}"


def _joined(items: list[str], word: str = "or") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def _result_text(entry: dict[str, Any]) -> str:
    """``292 pg/mL (215 pmol/L)``: the value as recorded, and in the canonical unit when that differs."""
    canon = entry["canonical"]
    text = f"{_show(entry['value'])} {entry['unit']}"
    if canon and canon["unit"] != entry["unit"]:
        text += f" ({_show(canon['value'])} {canon['unit']})"
    return text


def _results_on(entries: list[dict[str, Any]]) -> str:
    """Several results of one day: ``292 pg/mL (215 pmol/L) and 300 pg/mL (221 pmol/L) on 2025-10-24``."""
    return f"{_joined([_result_text(e) for e in entries], 'and')} on {entries[0]['date']}"


class _Values(dict):
    """The patient's own values a rendering's placeholders name; a value not on record reads as such."""

    KNOWN = ("b12", "injections", "last_injection", "switch_from", "switch_to", "conflicts", "lapse")

    def __missing__(self, key: str) -> str:
        return "(not recorded)"


def _render(template: str, values: _Values, source: str) -> str:
    """``template`` with its placeholders filled; a placeholder the report does not know is a knowledge-base error."""
    names = [field for _, field, _, _ in Formatter().parse(template) if field is not None]
    unknown = [n for n in names if n not in _Values.KNOWN]
    if unknown:
        raise KnowledgeBaseError(f"rendering of {source}: unknown placeholder {{{unknown[0]}}} "
                                 f"(known: {', '.join('{' + k + '}' for k in _Values.KNOWN)})")
    return template.format_map(values)


def _show_against(value: Decimal | int | float, threshold: Decimal | int | float) -> str:
    """``value`` for people beside ``threshold``: with as many decimals as it takes to tell them apart
    (a value just below a whole threshold is not shown rounded up to it)."""
    shown = _show(value)
    places = 1
    while Decimal(str(value)) != Decimal(str(threshold)) and shown == _show(threshold) and places <= 4:
        shown = str(Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding="ROUND_HALF_UP"))
        places += 1
    return shown


def patient_report(evaluation: Evaluation, patient: str) -> dict[str, Any]:
    """Everything the guideline says for one patient, as a dict matching ``schema/recommendation.schema.json``."""
    ws = evaluation.workspace
    as_of = evaluation.as_of
    units = _unit_display(ws)
    subject = {"patient": ox.NamedNode(patient)}
    links: dict[str, dict[str, list]] = defaultdict(lambda: {"evidence": [], "fact": [], "source": []})
    for row in ws.select("report/links", subject):
        value = _num(row["value"]) if row["kind"].value == "evidence" else row["value"].value
        links[row["finding"].value][row["kind"].value].append(value)

    # ---- assessment: results, threshold comparisons, conflicts, states
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
    oldest_usable = oldest_counted(ws, "ResultCurrencyPolicy", as_of).isoformat()
    currency = describe(*age_policy(ws, "ResultCurrencyPolicy"))
    results: dict[str, dict[str, Any]] = {}
    same_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    conflicts: dict[str, dict[str, Any]] = {}
    not_used: list[dict[str, Any]] = []
    all_results: dict[str, dict[str, Any]] = {}
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
        all_results[entry["result"]] = entry
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
            if key in results:
                same_day[key].append(entry)
            else:
                results[key] = entry
        elif row["conflicting"].value == "true":
            conflict = conflicts.setdefault(key, {"analyte": entry["analyte"], "date": entry["date"], "results": []})
            conflict["results"].append(entry)
        else:
            entry["reason"] = (f"older than the result-currency policy ({currency})"
                               if entry["date"] < oldest_usable else "a later result is used")
            not_used.append(entry)
    for key, extra in same_day.items():
        results[key]["also_on_the_same_day"] = extra
    states = [
        {"id": _local(r["state"].value), "label": r["label"].value, "topic": r["topic"].value,
         "definition": r["definition"].value}
        for r in ws.select("report/states", subject)
    ]
    doses = [
        {
            "administration": r["administration"].value,
            "date": r["day"].value,
            "product": r["productLabel"].value,
            "route": r["routeLabel"].value,
            "injection": r["injection"].value == "true",
            "dose": {"value": _num(r["doseValue"]), "unit": r["doseUnit"].value} if "doseValue" in r else None,
        }
        for r in ws.select("report/doses", {**subject, "asOf": as_of})
    ]
    injections = [d for d in doses if d["injection"]]
    lapse = describe(*age_policy(ws, "TreatmentLapsePolicy"))
    treatment = {
        "doses": len(doses),
        "injections": len(injections),
        "last_dose": doses[-1] if doses else None,
        "last_injection": injections[-1] if injections else None,
        "lapse_period": lapse,
        "current_since": oldest_counted(ws, "TreatmentLapsePolicy", as_of).isoformat(),
    }
    neurological = [
        {"record": r["record"].value, "kind": r["kind"].value, "status": r["statusLabel"].value,
         "date": r["day"].value if "day" in r else None, "counts": r["counts"].value == "true"}
        for r in ws.select("report/neurological", subject)
    ]

    # ---- the patient's own values, for renderings
    values = _Values(lapse=lapse)
    if "serum-b12" in results:
        values["b12"] = _results_on([results["serum-b12"], *same_day.get("serum-b12", [])])
    if injections:
        values["injections"] = _count(len(injections), "B12 injection", "B12 injections")
        values["last_injection"] = injections[-1]["date"]
    if "serum-b12" in conflicts:
        values["conflicts"] = _results_on(conflicts["serum-b12"]["results"])
    renderings: dict[str, str] = {}
    for row in ws.select("report/renderings", subject):
        renderings.setdefault(row["finding"].value, row["template"].value)  # ordered by sequence
    switches: dict[str, dict[str, Any]] = {}
    for row in ws.select("report/switch-targets", subject):
        item = switches.setdefault(row["rec"].value, {"from": row["fromLabel"].value, "to": []})
        if "toLabel" in row:
            item["to"].append(row["toLabel"].value)
    products: dict[str, list[tuple[str, str, bool]]] = defaultdict(list)
    for row in ws.select("report/regimen-products", subject):
        products[row["rec"].value].append((_local(row["product"].value), row["label"].value,
                                           row["permitted"].value == "true"))

    def worded(finding: str, source: str, text: str, extra: dict[str, str] | None = None) -> str:
        template = renderings.get(finding)
        if template is None:
            return text
        return _render(template, _Values({**values, **(extra or {})}), source)

    # ---- recommendations
    recommendations = []
    for row in ws.select("report/recommendations", subject):
        rec = row["rec"].value
        source = row["source"].value
        extra = {}
        if rec in switches:
            extra = {"switch_from": switches[rec]["from"], "switch_to": _joined(switches[rec]["to"])
                     if switches[rec]["to"] else "(no permitted form)"}
        derived = "derivedFrom" in row
        if rec not in renderings and "caseSpecific" in row and row["caseSpecific"].value == "true":
            raise KnowledgeBaseError(  # never the article's own case as facts about this patient
                f"{source}: the statement describes the article's own case (b12:caseSpecific) and none of its "
                f"renderings applies to patient <{patient}>: its words are not printed as facts about the patient "
                "(b12kg check reports such a gap)")
        text = worded(rec, source, row["text"].value, extra)
        item: dict[str, Any] = {
            "id": _local(source),
            "iri": rec,
            "statement": row["statement"].value,
            "category": row["category"].value,
            "text": text,
            "quote": None if derived else row["text"].value,
            "worded_for_patient": not derived and rec in renderings,
            "derived": derived,
            "status": _local(row["status"].value),
            "evidence": sorted(links[rec]["evidence"]),
            "derived_from": sorted(links[rec]["fact"]),
            "sources": sorted(links[rec]["source"]),
        }
        if derived:
            item["derived_from_statement"] = {"id": _local(row["derivedFrom"].value), "label": row["statementLabel"].value}
        if "regimen" in row:
            unit = row["intervalUnit"].value
            allowed = products.get(rec, [])
            permitted = [(pid, label) for pid, label, ok in allowed if ok]
            item["regimen"] = _local(row["regimen"].value)
            item["product"] = {"id": _local(row["product"].value), "label": row["productLabel"].value}
            item["permitted_products"] = [{"id": pid, "label": label} for pid, label in permitted]
            item["product_text"] = (row["productLabel"].value if len(permitted) == len(allowed)
                                    else _joined([label for _, label in permitted]))
            item["dose"] = {"value": _num(row["doseValue"]), "unit": row["doseUnit"].value}
            item["dose_text"] = f"{_show(item['dose']['value'])} {units.get(item['dose']['unit'], item['dose']['unit'])}"
            item["route"] = row["routeLabel"].value
            item["interval"] = {"min": _num(row["intervalMin"]), "max": _num(row["intervalMax"]), "unit": unit}
            item["interval_months"] = (
                {"min": _num(row["intervalMin"]), "max": _num(row["intervalMax"])} if unit == "mo" else None
            )
            item["duration"] = row["durationLabel"].value
            item["next_due"] = (
                {"earliest": row["nextDueEarliest"].value, "latest": row["nextDueLatest"].value,
                 "status": _local(row["doseStatus"].value),
                 "overdue_since": row["overdueSince"].value if "overdueSince" in row else None}
                if "nextDueEarliest" in row
                else None
            )
        if "windowStart" in row:
            item["window"] = {"start": row["windowStart"].value, "end": row["windowEnd"].value}
        recommendations.append(item)

    # ---- findings
    not_covered, missing, contraindicated, unknown, assumptions = [], [], [], [], []
    for row in ws.select("report/findings", subject):
        finding = row["finding"].value
        source = row["source"].value
        kind = _local(row["type"].value)
        base = {"id": _local(source), "label": row["label"].value}
        text = row["text"].value
        if kind == "NotCoveredFinding":
            not_covered.append({**base, "reason": worded(finding, source, text)})
        elif kind == "MissingDataFinding":
            missing.append({**base, "what_to_record": row["whatToRecord"].value, "affects": text})
        elif kind == "AssumptionFinding":
            assumptions.append({**base, "text": worded(finding, source, text),
                                "what_to_record": row["whatToRecord"].value if "whatToRecord" in row else None})
        elif kind == "PossibleContraindicationFinding":
            unknown.append({**base, "product": {"id": _local(row["product"].value), "label": row["productLabel"].value},
                            "reason": text})
        else:
            based_on = []
            for fact in sorted(links[finding]["fact"]):
                entry = all_results.get(fact)
                if entry is not None:
                    based_on.append({"fact": fact, "text": f"{entry['analyte']} {_result_text(entry)} on {entry['date']}",
                                     "date": entry["date"], "old": entry["date"] < oldest_usable})
                else:
                    based_on.append({"fact": fact, "text": None, "date": None, "old": False})
            contraindicated.append(
                {
                    **base,
                    "product": {"id": _local(row["product"].value), "label": row["productLabel"].value},
                    "reason": text,
                    "evidence": sorted(links[finding]["evidence"]),
                    "derived_from": sorted(links[finding]["fact"]),
                    "based_on": based_on,
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
        "as_of": as_of.isoformat(),
        "guideline": guideline,
        "in_scope": not not_covered,
        "not_covered_reasons": not_covered,
        "assumptions": assumptions,
        "assessment": {
            "results": results,
            "b12_pmol_per_l": results["serum-b12"]["canonical"]["value"] if "serum-b12" in results else None,
            "conflicts": list(conflicts.values()),
            "states": states,
            "results_not_used": not_used,
            "thresholds": list(thresholds.values()),
            "treatment": treatment,
            "neurological": neurological,
        },
        "recommendations": recommendations,
        "contraindicated_products": contraindicated,
        "contraindications_unknown": unknown,
        "missing_data": missing,
        "provenance": provenance,
    }


def reports(evaluation: Evaluation) -> list[dict[str, Any]]:
    return [patient_report(evaluation, p) for p in evaluation.patients]


# ------------------------------------------------------------------------------------------ text
def _refs(numbers: list[int]) -> str:
    return f" [{', '.join(str(n) for n in numbers)}]" if numbers else ""


def _dose_line(dose: dict[str, Any]) -> str:
    amount = f" {_show(dose['dose']['value'])} {dose['dose']['unit']}" if dose["dose"] else ""
    return f"{dose['product']}{amount} {dose['route']} on {dose['date']}"


def next_due_text(due: dict[str, Any]) -> str:
    """The next-dose window in words (the text page and FHIR notes)."""
    window = f"{due['earliest']} to {due['latest']}"
    if due["status"] == "overdue":
        return f"next dose due now — OVERDUE since {due['overdue_since']} (its window was {window})"
    if due["status"] == "dueNow":
        return f"next dose due now (window {window})"
    return f"next dose due between {due['earliest']} and {due['latest']}"


def _rec_lines(rec: dict[str, Any]) -> list[str]:
    marker = {"selected": "SELECTED REGIMEN: ", "alternative": "ALTERNATIVE REGIMEN: "}.get(rec["status"], "")
    star = " *" if rec.get("worded_for_patient") else ""
    if rec.get("derived"):
        origin = rec["derived_from_statement"]
        lines = [f"    - {marker}{rec['text']}",
                 f"        (derived by b12kg from statement {origin['label']}{_refs(rec['evidence'])}; not the article's words)"]
    else:
        lines = [f"    - {marker}{rec['text']}{_refs(rec['evidence'])}{star}"]
    if "product" in rec:
        interval = rec["interval"]
        every = (
            f"every {_show(interval['min'])}–{describe(interval['max'], interval['unit'])}"
            if interval["min"] != interval["max"]
            else f"every {describe(interval['min'], interval['unit'])}"
        )
        lines.append(f"        {rec['product_text']} {rec['dose_text']} {rec['route']}, {every}, duration: {rec['duration']}")
        if rec.get("next_due"):
            lines.append(f"        {next_due_text(rec['next_due'])}")
    if rec.get("window"):
        lines.append(f"        due between {rec['window']['start']} and {rec['window']['end']}")
    return lines


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
    for assumption in report["assumptions"]:
        out.append(f"  ASSUMES    {assumption['text']}")
        if assumption.get("what_to_record"):
            out.append(f"             to confirm: {assumption['what_to_record']}")

    out.append("")
    out.append("ASSESSMENT")
    assessment = report["assessment"]
    results = assessment["results"]
    if not results and not assessment["conflicts"]:
        out.append("  No usable lab results.")
    for r in results.values():
        flag = f" ({r['interpretation']})" if "interpretation" in r else ""
        out.append(f"  {r['analyte']}: {_results_on([r, *r.get('also_on_the_same_day', [])])}{flag}")
        canon = r["canonical"]
        for c in r.get("comparisons", []):
            eq = "".join(f" ≈ {_show(e['value'])} {e['unit']}" for e in c["equivalents"])
            sign = "<" if c["relation"] == "below" else "≥"
            out.append(
                f"    {c['relation']} the {c['label']}: {_show_against(canon['value'], c['threshold_value'])} {sign} "
                f"{_show(c['threshold_value'])} {c['unit']}{f' ({eq.strip()})' if eq else ''}"
            )
    for c in assessment["conflicts"]:
        out.append(f"  CONFLICT {c['analyte']}: {_results_on(c['results'])} fall on different sides of a "
                   "decision threshold; none is used until one is confirmed")
    for r in assessment["results_not_used"]:
        out.append(f"  not used: {r['analyte']} {_result_text(r)} on {r['date']} ({r['reason']})")
    t = assessment["treatment"]
    if t["doses"]:
        last = t["last_dose"]
        out.append(f"  B12 treatment: {_count(t['doses'], 'dose', 'doses')} on record "
                   f"({_count(t['injections'], 'injection', 'injections')}); last: {_dose_line(last)}"
                   + ("" if last["date"] >= t["current_since"] else
                      f" — more than {t['lapse_period']} ago: treatment has lapsed"))
    else:
        out.append("  B12 treatment: none on record")
    for n in assessment["neurological"]:
        when = f" on {n['date']}" if n["date"] else " (undated)"
        if n["kind"] == "diagnosis":
            out.append(f"  Neurological record: diagnosis {n['status']}{when} (counts at any date)")
        else:
            use = "counts: since the stroke" if n["counts"] else "not used: before the stroke, or not placeable after it"
            out.append(f"  Neurological record: symptoms {n['status']}{when} ({use})")
    if not assessment["neurological"]:
        out.append("  Neurological record: none")
    if assessment["states"]:
        out.append("  States:")
        for s in assessment["states"]:
            out.append(f"    - {s['label']}: {s['definition']}")

    informs = [r for r in report["recommendations"] if r["status"] == "informs"]
    if not report["in_scope"] and informs:
        out.append("")
        out.append("WHAT THE ARTICLE SAYS ABOUT THIS PATIENT'S B12 LEVEL (information only; no recommendation applies)")
        for rec in informs:
            out += _rec_lines(rec)
    actionable = report["recommendations"] if report["in_scope"] else []
    if actionable:
        out.append("")
        out.append("RECOMMENDATIONS (reference numbers of the source article in brackets)")
        category = None
        for rec in actionable:
            if rec["category"] != category:
                category = rec["category"]
                out.append(f"  {category}")
            out += _rec_lines(rec)
    if any(r.get("worded_for_patient") for r in actionable or informs):
        out.append("  * the article's statement worded with this patient's own values (JSON: \"quote\" holds the article's words)")

    out.append("")
    out.append("CONTRAINDICATED PRODUCTS")
    if not report["contraindicated_products"] and not report["contraindications_unknown"]:
        out.append("  none found in the recorded data")
    for c in report["contraindicated_products"]:
        out.append(f"  - {c['product']['label']}: {c['reason']}{_refs(c['evidence'])}")
        for b in c["based_on"]:
            if b["text"]:
                old = " — an old result, older than the result-currency policy; still counted" if b["old"] else ""
                out.append(f"      based on {b['text']}{old}")
    for c in report["contraindications_unknown"]:
        out.append(f"  - {c['product']['label']}: {c['reason']}")

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

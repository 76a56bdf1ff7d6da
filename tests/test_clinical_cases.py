"""The clinical case table: named patients, each with the article's sentence or the encoding choice
that decides it, and what the engine must answer (``tests/clinical-cases.toml``).

Each case is a small patient record built from the table's facts (defaults: the article's own case
as ``examples/patients/seed-case.ttl`` records it), run through ``recommend`` at its evaluation date.
Only the expectations a case names are checked. Besides, every case's text page must never assert
the article's case-specific words about a patient they do not describe: "292 pg/mL" unless the
patient's B12 is 292 pg/mL, "one B12 injection" unless the patient has exactly one on record.
"""

from __future__ import annotations

import tomllib
from datetime import date
from functools import lru_cache
from pathlib import Path

import pytest

from b12kg.derive import recommend
from b12kg.patient import load_patient
from b12kg.report import render_text, reports

TABLE = Path(__file__).with_name("clinical-cases.toml")
CASES = tomllib.loads(TABLE.read_text(encoding="utf-8"))["case"]
DEFAULT_AS_OF = "2025-10-31"
DEFAULTS = {
    "stroke": ["230690007", "2025-06-14"],
    "b12": [[292, "pg/mL", "2025-10-24"]],
    "doses": [["cyanocobalamin", "intramuscular", "2025-08-31"]],
    "neuro": [["absent", "2025-10-24"]],
}
LOINC = {"pg/mL": "2132-9", "ng/L": "2132-9", "pmol/L": "14685-2"}
KNOWN_KEYS = {"name", "decided_by", "as_of", "stroke", "b12", "egfr", "ckd", "homocysteine", "folate", "doses",
              "neuro", "neuropathy", "oral", "expect"}
KNOWN_EXPECT = {"covered", "not_covered", "selected", "alternative", "permitted", "contraindicated", "unknown",
                "assumptions", "missing", "missing_includes", "dose_status", "next_due", "overdue_since", "recheck",
                "text_includes", "text_excludes", "states_in", "states_out", "recommendations_include",
                "recommendations_exclude", "informs", "conflicts", "b12_pmol"}


def _turtle(case: dict) -> str:
    """The case's patient record in the patient vocabulary (docs/patient-data.md)."""
    facts: list[str] = []
    links: list[str] = []

    def add(link: str, node: str, body: str) -> None:
        links.append(f"b12:{link} :{node}")
        facts.append(f":{node} {body} .")

    stroke = case.get("stroke", DEFAULTS["stroke"])
    if stroke:
        code, onset = stroke
        dated = f' ; b12:onsetDate "{onset}"^^xsd:date' if onset else ""
        add("hasCondition", "stroke", f"a b12:Condition ; b12:code sct:{code}{dated}")
    if case.get("ckd"):
        add("hasCondition", "ckd", f'a b12:Condition ; b12:code sct:709044004 ; b12:onsetDate "{case["ckd"]}"^^xsd:date')
    if case.get("neuropathy"):
        add("hasCondition", "neuropathy",
            f'a b12:Condition ; b12:code sct:302226006 ; b12:onsetDate "{case["neuropathy"]}"^^xsd:date')
    for n, (value, unit, day) in enumerate(case.get("b12", DEFAULTS["b12"])):
        add("hasLabResult", f"b12-{n}", f'a b12:LabResult ; b12:code loinc:{LOINC[unit]} ; b12:value {value} ; '
                                        f'b12:unit "{unit}" ; b12:effectiveDate "{day}"^^xsd:date')
    for n, (value, day) in enumerate(case.get("egfr", [])):
        add("hasLabResult", f"egfr-{n}", f'a b12:LabResult ; b12:code loinc:98979-8 ; b12:value {value} ; '
                                         f'b12:unit "mL/min/{{1.73_m2}}" ; b12:effectiveDate "{day}"^^xsd:date')
    for n, (value, day) in enumerate(case.get("homocysteine", [])):
        add("hasLabResult", f"hcy-{n}", f'a b12:LabResult ; b12:code loinc:13965-9 ; b12:value {value} ; '
                                        f'b12:unit "umol/L" ; b12:effectiveDate "{day}"^^xsd:date')
    if case.get("folate"):
        flag, day = case["folate"]
        add("hasLabResult", "folate", f'a b12:LabResult ; b12:code loinc:2284-8 ; b12:value 2.1 ; b12:unit "ng/mL" ; '
                                      f'b12:effectiveDate "{day}"^^xsd:date ; b12:interpretation b12:{flag}')
    for n, (substance, route, day) in enumerate(case.get("doses", DEFAULTS["doses"])):
        add("hasAdministration", f"dose-{n}", f'a b12:MedicationAdministration ; b12:substance b12:{substance} ; '
                                              f'b12:doseValue 1 ; b12:doseUnit "mg" ; b12:route b12:{route} ; '
                                              f'b12:effectiveDate "{day}"^^xsd:date')
    for n, (status, day) in enumerate(case.get("neuro", DEFAULTS["neuro"])):
        dated = f' ; b12:effectiveDate "{day}"^^xsd:date' if day else ""
        add("hasNeurologicalAssessment", f"neuro-{n}", f"a b12:NeurologicalAssessment ; b12:symptomStatus b12:{status}{dated}")
    if case.get("oral"):
        add("hasTreatmentPreference", "preference", "a b12:TreatmentPreference ; b12:preferredRoute b12:oral")
    patient = ":patient a b12:Patient" + "".join(f" ;\n    {link}" for link in links) + " ."
    return "\n".join([
        "@prefix b12: <https://w3id.org/b12kg/ontology#> .",
        "@prefix sct: <http://snomed.info/id/> .",
        "@prefix loinc: <http://loinc.org/rdf#> .",
        "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .",
        "@prefix : <https://example.org/b12kg/case#> .",
        "", patient, *facts, "",
    ])


@lru_cache(maxsize=None)
def _run(index: int) -> tuple[dict, str]:
    case = CASES[index]
    path = Path(f"/tmp/b12kg-case-{index}.ttl")
    path.write_text(_turtle(case), encoding="utf-8")
    try:
        data = load_patient(path)
    finally:
        path.unlink()
    as_of = date.fromisoformat(case.get("as_of", DEFAULT_AS_OF))
    (doc,) = reports(recommend(data, as_of=as_of))
    return doc, render_text(doc)


def _body(page: str) -> str:
    """The text page without its Guideline header line (the article's title names its own case)."""
    return "\n".join(line for line in page.splitlines() if not line.lstrip().startswith("Guideline "))


def _ids(items: list[dict]) -> set[str]:
    return {i["id"] for i in items}


def test_the_table_has_at_least_40_named_cases_each_with_what_decides_it():
    assert len(CASES) >= 40
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in CASES:
        assert case.get("decided_by", "").strip(), f"{case['name']}: say which sentence or encoding choice decides it"
        assert set(case) <= KNOWN_KEYS, f"{case['name']}: unknown keys {set(case) - KNOWN_KEYS}"
        assert set(case["expect"]) <= KNOWN_EXPECT, f"{case['name']}: unknown expectations {set(case['expect']) - KNOWN_EXPECT}"


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_clinical_case(index):
    case = CASES[index]
    expect = case["expect"]
    doc, page = _run(index)
    text = _body(page)
    recs = {r["id"]: r for r in doc["recommendations"]}
    selected = [r for r in doc["recommendations"] if r["status"] == "selected"]
    if "covered" in expect:
        assert doc["in_scope"] is expect["covered"]
        if not expect["covered"]:
            assert all(r["status"] == "informs" for r in doc["recommendations"]), "no advice for a patient not covered"
    if "not_covered" in expect:
        assert _ids(doc["not_covered_reasons"]) == set(expect["not_covered"])
    if "selected" in expect:
        assert [r["id"] for r in selected] == ([expect["selected"]] if expect["selected"] else [])
    if "alternative" in expect:
        assert [r["id"] for r in doc["recommendations"] if r["status"] == "alternative"] == \
            ([expect["alternative"]] if expect["alternative"] else [])
    if "permitted" in expect:
        assert [p["id"] for p in selected[0]["permitted_products"]] == expect["permitted"]
    if "contraindicated" in expect:
        assert _ids(doc["contraindicated_products"]) == set(expect["contraindicated"])
    if "unknown" in expect:
        assert _ids(doc["contraindications_unknown"]) == set(expect["unknown"])
    if "assumptions" in expect:
        assert _ids(doc["assumptions"]) == set(expect["assumptions"])
    if "missing" in expect:
        assert _ids(doc["missing_data"]) == set(expect["missing"])
    if "missing_includes" in expect:
        assert set(expect["missing_includes"]) <= _ids(doc["missing_data"])
    due = selected[0].get("next_due") if selected else None
    if "dose_status" in expect:
        assert due is not None and due["status"] == expect["dose_status"]
    if "next_due" in expect:
        assert due is not None and [due["earliest"], due["latest"]] == expect["next_due"]
    if "overdue_since" in expect:
        assert due is not None and due["overdue_since"] == expect["overdue_since"]
    if "recheck" in expect:
        window = recs["stmt-monitoring-3"]["window"]
        assert [window["start"], window["end"]] == expect["recheck"]
    states = _ids(doc["assessment"]["states"])
    assert set(expect.get("states_in", [])) <= states
    assert not set(expect.get("states_out", [])) & states
    assert set(expect.get("recommendations_include", [])) <= set(recs)
    assert not set(expect.get("recommendations_exclude", [])) & set(recs)
    if "informs" in expect:
        informs = {r["id"] for r in doc["recommendations"] if r["status"] == "informs"}
        assert bool(informs) is expect["informs"]
    if "conflicts" in expect:
        assert sorted(c["analyte"] for c in doc["assessment"]["conflicts"]) == expect["conflicts"]
    if "b12_pmol" in expect:
        assert doc["assessment"]["b12_pmol_per_l"] == (pytest.approx(expect["b12_pmol"]) if expect["b12_pmol"] else None)
    for needle in expect.get("text_includes", []):
        assert needle in text, needle
    for needle in expect.get("text_excludes", []):
        assert needle not in text, needle


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_the_articles_case_specific_words_are_never_asserted_about_another_patient(index):
    case = CASES[index]
    doc, page = _run(index)
    body = _body(page)
    asserted = [r["text"] for r in doc["recommendations"]] + [r["reason"] for r in doc["not_covered_reasons"]] + \
        [a["text"] for a in doc["assumptions"]]
    b12 = case.get("b12", DEFAULTS["b12"])
    if not any(value == 292 and unit == "pg/mL" for value, unit, _ in b12):
        assert "292 pg/mL" not in body
        assert not any("292 pg/mL" in t for t in asserted)
    injections = [d for d in case.get("doses", DEFAULTS["doses"]) if d[1] in ("intramuscular", "subcutaneous")]
    if len(injections) != 1:
        assert "one B12 injection" not in body
        assert not any("one B12 injection" in t for t in asserted)
    for rec in doc["recommendations"]:
        if rec["quote"] and rec["quote"] != rec["text"]:
            assert rec["worded_for_patient"]
        assert rec["quote"] is None or not rec["derived"]

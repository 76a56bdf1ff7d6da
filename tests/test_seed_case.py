"""The article's own case, in full: every element the article gives, with its numbers, dates and
evidence, in JSON and in text."""

from __future__ import annotations

import re
from datetime import date

import pytest

from b12kg.derive import recommend
from b12kg.report import render_text, reports
from conftest import EXAMPLES, SEED_AS_OF

ARTICLE_EVIDENCE = {
    "stmt-assessment-1": [1], "stmt-assessment-2": [2], "stmt-assessment-3": [1],
    "stmt-treatment-1": [1], "stmt-treatment-2": [1],
    "stmt-form-1": [1, 3], "stmt-form-3": [1, 4],
    "stmt-monitoring-1": [1], "stmt-monitoring-2": [1], "stmt-monitoring-3": [4], "stmt-monitoring-4": [5],
    "stmt-additional-1": [1], "stmt-additional-2": [6], "stmt-additional-3": [5],
    "stmt-pitfall-1": [1], "stmt-pitfall-2": [3], "stmt-pitfall-3": [1, 7],
    "action-switch-from-cyanocobalamin": [1, 3],
}


@pytest.fixture(scope="module")
def seed():
    evaluation = recommend(EXAMPLES / "seed-case.ttl", as_of=SEED_AS_OF)
    (doc,) = reports(evaluation)
    return doc, render_text(doc)


def recs(doc):
    return {r["id"]: r for r in doc["recommendations"]}


def test_assessment_numbers(seed):
    doc, _ = seed
    b12 = doc["assessment"]["results"]["serum-b12"]
    assert (b12["value"], b12["unit"]) == (292, "pg/mL")
    assert doc["assessment"]["b12_pmol_per_l"] == pytest.approx(215.496)
    comparisons = {c["threshold"]: c for c in b12["comparisons"]}
    assert comparisons["threshold-b12-stroke-risk"]["relation"] == "below"
    assert comparisons["threshold-b12-stroke-risk"]["threshold_value"] == 322
    assert {"value": 436.3, "unit": "pg/mL"} in comparisons["threshold-b12-stroke-risk"]["equivalents"]
    assert comparisons["threshold-b12-metabolic"]["relation"] == "below"
    assert comparisons["threshold-b12-metabolic"]["threshold_value"] == 258
    states = {s["id"] for s in doc["assessment"]["states"]}
    assert {"PatientWithB12BelowStrokeRiskThreshold", "PatientWithB12BelowMetabolicThreshold"} <= states
    assert "PatientWithMetabolicB12Deficiency" not in states  # homocysteine decides, and it is missing
    missing = {m["id"]: m for m in doc["missing_data"]}
    assert "metabolic B12 deficiency" in missing["missing-homocysteine"]["affects"]


def test_regimen_and_next_dose(seed):
    doc, _ = seed
    regimen = recs(doc)["stmt-treatment-2"]
    assert regimen["status"] == "selected"
    assert regimen["product"]["id"] == "hydroxocobalamin"
    assert regimen["dose"] == {"value": 1, "unit": "mg"}
    assert regimen["route"] == "intramuscular"
    assert regimen["interval_months"] == {"min": 2, "max": 3}
    assert regimen["duration"] == "for life"
    # last injection 2025-08-31; 2 and 3 calendar months later (CQL/FHIRPath: the 31st clamped to the 30th)
    assert regimen["next_due"] == {"earliest": "2025-10-31", "latest": "2025-11-30", "status": "dueNow",
                                   "overdue_since": None}
    assert "https://example.org/b12kg/seed-case#injection-1" in regimen["derived_from"]
    assert "stmt-treatment-1" in recs(doc)  # continue maintenance, no repeated loading doses
    switch = recs(doc)["action-switch-from-cyanocobalamin"]
    assert switch["text"] == "Switch from cyanocobalamin to hydroxocobalamin for the maintenance doses"
    assert switch["derived"] and switch["quote"] is None
    assert switch["derived_from_statement"]["id"] == "stmt-form-1"


def test_monitoring_folate_oral_and_pitfalls(seed):
    doc, _ = seed
    r = recs(doc)
    assert "<10 μmol/L" in r["stmt-monitoring-2"]["text"]
    assert r["stmt-monitoring-3"]["window"] == {"start": "2026-01-31", "end": "2026-04-30"}
    assert "neurological" in r["stmt-monitoring-4"]["text"]
    assert "folate" in r["stmt-additional-1"]["text"]
    oral = r["stmt-additional-2"]
    assert oral["status"] == "alternative"
    assert oral["dose"] == {"value": 1000, "unit": "ug"} and oral["route"] == "oral"
    pitfalls = [x for x in doc["recommendations"] if x["category"] == "Common Pitfalls to Avoid"]
    assert [p["id"] for p in pitfalls] == ["stmt-pitfall-1", "stmt-pitfall-2", "stmt-pitfall-3"]


def test_every_line_carries_the_articles_reference_numbers(seed):
    doc, _ = seed
    r = recs(doc)
    for source, numbers in ARTICLE_EVIDENCE.items():
        assert r[source]["evidence"] == numbers, source
    for rec in doc["recommendations"]:
        assert rec["evidence"], f"{rec['id']} has no evidence"


def test_text_shows_every_element(seed):
    _, text = seed
    for needle in [
        "292 pg/mL (215 pmol/L) on 2025-10-24",
        "below the B12 stroke-risk threshold: 215 < 322 pmol/L",
        "436 pg/mL",
        "below the B12 threshold of metabolic B12 deficiency: 215 < 258 pmol/L",
        "borderline low",
        "SELECTED REGIMEN",
        "hydroxocobalamin 1 mg intramuscular, every 2–3 months, duration: for life",
        "next dose due now (window 2025-10-31 to 2025-11-30)",
        "rather than repeating loading doses [1]",
        "Switch from cyanocobalamin to hydroxocobalamin",
        "Target homocysteine level should be <10 μmol/L for optimal stroke prevention [1]",
        "due between 2026-01-31 and 2026-04-30",
        "ALTERNATIVE REGIMEN",
        "1000 mcg oral",
        "B12 treatment: one dose on record (one injection); last: cyanocobalamin 1 mg intramuscular on 2025-08-31",
        "(derived by b12kg from statement Form 1: hydroxocobalamin preferred [1, 3]; not the article's words)",
        "Do not discontinue B12 supplementation after normalization",
        "[1, 7]",
        "Measure homocysteine",
    ]:
        assert needle in text, needle


def test_next_dose_window_follows_the_last_injection(tmp_path):
    text = (EXAMPLES / "seed-case.ttl").read_text().replace('"2025-08-31"', '"2025-09-10"')
    path = tmp_path / "later-injection.ttl"
    path.write_text(text)
    (doc,) = reports(recommend(path, as_of=SEED_AS_OF))
    assert recs(doc)["stmt-treatment-2"]["next_due"] == {"earliest": "2025-11-10", "latest": "2025-12-10",
                                                        "status": "notYetDue", "overdue_since": None}
    # maintenance starts at the first maintenance dose, so the B12 recheck moves with it
    assert recs(doc)["stmt-monitoring-3"]["window"] == {"start": "2026-02-10", "end": "2026-05-10"}


def test_overdue_dose_starts_maintenance_on_the_evaluation_date():
    (doc,) = reports(recommend(EXAMPLES / "seed-case.ttl", as_of=date(2025, 12, 15)))
    r = recs(doc)
    assert r["stmt-treatment-2"]["next_due"] == {"earliest": "2025-10-31", "latest": "2025-11-30",
                                                "status": "overdue", "overdue_since": "2025-12-01"}
    assert r["stmt-monitoring-3"]["window"]["start"] == "2026-03-15"
    assert "next dose due now — OVERDUE since 2025-12-01 (its window was 2025-10-31 to 2025-11-30)" in render_text(doc)


def test_changing_the_threshold_in_the_ontology_changes_the_assessment(kb_copy):
    guideline = kb_copy.ontology_dir / "guideline.ttl"
    text = guideline.read_text()
    assert text.count("b12:thresholdValue 322.0") == 1
    guideline.write_text(text.replace("b12:thresholdValue 322.0", "b12:thresholdValue 200.0"))
    (doc,) = reports(recommend(EXAMPLES / "seed-case.ttl", as_of=SEED_AS_OF, kb=kb_copy))
    states = {s["id"] for s in doc["assessment"]["states"]}
    assert "PatientWithB12BelowStrokeRiskThreshold" not in states
    assert "PatientWithB12AtOrAboveStrokeRiskThreshold" in states
    comparison = {c["threshold"]: c for c in doc["assessment"]["results"]["serum-b12"]["comparisons"]}
    assert comparison["threshold-b12-stroke-risk"]["relation"] == "at or above"
    assert "stmt-assessment-1" not in recs(doc)
    assert "borderline low" not in render_text(doc)
    text_report = render_text(doc)
    assert re.search(r"at or above the B12 stroke-risk threshold: 215 ≥ 200 pmol/L", text_report)

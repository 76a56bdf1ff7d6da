"""Each example patient's expected outcome, and positive/negative coverage of every statement,
derived action and contraindication in the ontology."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import jsonschema
import pytest

from b12kg.derive import recommend
from b12kg.report import reports
from conftest import EXAMPLES, REPO, SEED_AS_OF

import json

IN_SCOPE_ALWAYS = {
    "stmt-treatment-2", "stmt-form-1", "stmt-form-3", "stmt-monitoring-1", "stmt-monitoring-2",
    "stmt-monitoring-3", "stmt-monitoring-4", "stmt-additional-1", "stmt-additional-2",
    "stmt-pitfall-1", "stmt-pitfall-2", "stmt-pitfall-3",
}
BELOW_THRESHOLD = {"stmt-assessment-1", "stmt-assessment-2", "stmt-assessment-3", "stmt-additional-3"}


@dataclass
class Expected:
    in_scope: bool
    not_covered: set[str] = field(default_factory=set)
    recs: set[str] = field(default_factory=set)  #: exactly these recommendation ids
    selected: str | None = None  #: the selected regimen statement
    contraindicated: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    states_in: set[str] = field(default_factory=set)
    states_out: set[str] = field(default_factory=set)


SEED_RECS = IN_SCOPE_ALWAYS | BELOW_THRESHOLD | {"stmt-treatment-1", "action-switch-to-hydroxocobalamin"}
SEED_MISSING = {"missing-renal-function", "missing-homocysteine", "missing-folate"}
SEED_STATES = {"PatientWithB12BelowStrokeRiskThreshold", "PatientWithB12BelowMetabolicThreshold",
               "PatientLastTreatedWithCyanocobalamin", "PatientWithPriorB12Injection", "PostStrokePatient"}
NOT_COVERED_STATES = {"PatientWithB12BelowStrokeRiskThreshold"}

CASES: dict[str, Expected] = {
    "seed-case": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2", missing=SEED_MISSING,
                          states_in=SEED_STATES, states_out={"PatientWithRenalImpairment", "PatientWithMetabolicB12Deficiency"}),
    "seed-case-pmol": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2", missing=SEED_MISSING, states_in=SEED_STATES),
    "seed-case-ng-per-l": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2", missing=SEED_MISSING, states_in=SEED_STATES),
    "ckd-diagnosis": Expected(True, recs=SEED_RECS | {"stmt-form-2"}, selected="stmt-treatment-2",
                              contraindicated={"contra-cyanocobalamin-renal"},
                              missing={"missing-homocysteine", "missing-folate"},
                              states_in={"PatientWithRenalImpairment"}),
    "egfr-35": Expected(True, recs=SEED_RECS | {"stmt-form-2"}, selected="stmt-treatment-2",
                        contraindicated={"contra-cyanocobalamin-renal"},
                        missing={"missing-homocysteine", "missing-folate"},
                        states_in={"PatientWithRenalImpairment"}),
    "egfr-75": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2",
                        missing={"missing-homocysteine", "missing-folate"},
                        states_out={"PatientWithRenalImpairment"}),
    "neurological-symptoms": Expected(False, not_covered={"exclusion-neurological-symptoms"},
                                      missing={"missing-renal-function"},
                                      states_in={"PatientWithNeurologicalSymptoms"}),
    "neurological-status-not-recorded": Expected(False, not_covered={"exclusion-neurological-status-unknown"},
                                                 missing={"missing-neurological-status", "missing-renal-function"}),
    "normal-b12-on-maintenance": Expected(True, recs=IN_SCOPE_ALWAYS | {"stmt-treatment-1"}, selected="stmt-treatment-2",
                                          missing={"missing-renal-function", "missing-homocysteine-target", "missing-folate"},
                                          states_in={"PatientWithB12AtOrAboveStrokeRiskThreshold", "PatientOnB12Treatment"},
                                          states_out={"PatientWithB12BelowStrokeRiskThreshold", "PatientLastTreatedWithCyanocobalamin"}),
    "normal-b12-untreated": Expected(False, not_covered={"exclusion-b12-normal-untreated"},
                                     missing={"missing-renal-function"},
                                     states_in={"PatientWithB12AtOrAboveStrokeRiskThreshold"}),
    "metabolic-deficiency": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2",
                                     missing={"missing-renal-function", "missing-folate"},
                                     states_in={"PatientWithMetabolicB12Deficiency", "PatientWithHomocysteineAboveTarget"}),
    "homocysteine-at-target": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2",
                                       missing={"missing-renal-function", "missing-folate"},
                                       states_in={"PatientWithHomocysteineAtTarget", "PatientWithB12BelowMetabolicThreshold"},
                                       states_out={"PatientWithMetabolicB12Deficiency", "PatientWithHomocysteineAboveTarget"}),
    "oral-preference": Expected(True, recs=SEED_RECS, selected="stmt-additional-2", missing=SEED_MISSING,
                                states_in={"PatientPreferringOralTreatment"}),
    "low-folate": Expected(True, recs=SEED_RECS | {"action-treat-b12-before-folate"}, selected="stmt-treatment-2",
                           missing={"missing-renal-function", "missing-homocysteine"}, states_in={"PatientWithLowFolate"}),
    "no-stroke": Expected(False, not_covered={"exclusion-no-stroke"}, states_out={"PostStrokePatient"}),
    "no-b12-result": Expected(False, not_covered={"exclusion-no-usable-b12"},
                              missing={"missing-b12", "missing-renal-function"}),
    "old-b12-result": Expected(False, not_covered={"exclusion-no-usable-b12"},
                               missing={"missing-b12", "missing-renal-function"},
                               states_out={"PatientWithB12BelowStrokeRiskThreshold"}),
    "no-prior-injection": Expected(True, recs=IN_SCOPE_ALWAYS | BELOW_THRESHOLD, selected="stmt-treatment-2",
                                   missing=SEED_MISSING, states_out={"PatientWithPriorB12Injection", "PatientOnB12Treatment"}),
}


@lru_cache(maxsize=None)
def report_of(name: str) -> dict:
    (doc,) = reports(recommend(EXAMPLES / f"{name}.ttl", as_of=SEED_AS_OF))
    return doc


def test_every_example_file_has_an_expected_outcome():
    files = {p.stem for p in EXAMPLES.glob("*.ttl")}
    assert files == set(CASES), "add the new example to CASES with its expected outcome"
    assert len(files) >= 11


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_outcome(name):
    doc, exp = report_of(name), CASES[name]
    assert doc["in_scope"] is exp.in_scope
    assert {r["id"] for r in doc["not_covered_reasons"]} == exp.not_covered
    recs = {r["id"]: r for r in doc["recommendations"]}
    assert set(recs) == exp.recs
    selected = [r["id"] for r in doc["recommendations"] if r["status"] == "selected"]
    assert selected == ([exp.selected] if exp.selected else [])
    assert {c["id"] for c in doc["contraindicated_products"]} == exp.contraindicated
    assert {m["id"] for m in doc["missing_data"]} == exp.missing
    states = {s["id"] for s in doc["assessment"]["states"]}
    assert exp.states_in <= states
    assert not (exp.states_out & states)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_json_matches_the_schema(name):
    schema = json.loads((REPO / "schema" / "recommendation.schema.json").read_text())
    jsonschema.validate(report_of(name), schema)


@pytest.mark.parametrize("name", sorted(CASES))
def test_out_of_scope_patients_get_no_recommendation(name):
    doc = report_of(name)
    if not doc["in_scope"]:
        assert doc["recommendations"] == []
        assert doc["not_covered_reasons"], "an out-of-scope patient must say why"


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_selected_product_is_contraindicated(name):
    doc = report_of(name)
    forbidden = {c["product"]["id"] for c in doc["contraindicated_products"]}
    for rec in doc["recommendations"]:
        if rec["status"] in ("selected", "alternative") and "product" in rec:
            assert rec["product"]["id"] not in forbidden


def test_every_statement_action_and_contraindication_has_a_positive_and_a_negative_example(kb):
    from b12kg.engine import Workspace

    ws = Workspace(kb)
    sources = {
        r["s"].value.rsplit("#", 1)[-1]
        for r in ws.select_text(
            "PREFIX b12: <https://w3id.org/b12kg/ontology#> SELECT ?s WHERE { "
            "{ ?s a b12:GuidelineStatement } UNION { ?s a b12:DerivedAction } UNION { ?s a b12:Contraindication } "
            "UNION { ?s a b12:ScopeExclusion } UNION { ?s a b12:MissingDataRule } }"
        )
    }
    applied: dict[str, set[str]] = {name: set() for name in CASES}
    for name in CASES:
        doc = report_of(name)
        applied[name] |= {r["id"] for r in doc["recommendations"]}
        applied[name] |= {c["id"] for c in doc["contraindicated_products"]}
        applied[name] |= {r["id"] for r in doc["not_covered_reasons"]}
        applied[name] |= {m["id"] for m in doc["missing_data"]}
    for source in sorted(sources):
        positives = [n for n in CASES if source in applied[n]]
        negatives = [n for n in CASES if source not in applied[n]]
        assert positives, f"no example patient for whom {source} applies"
        assert negatives, f"no example patient for whom {source} does not apply"

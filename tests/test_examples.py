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
    "stmt-treatment-1", "stmt-treatment-2", "stmt-form-1", "stmt-form-3", "stmt-monitoring-1", "stmt-monitoring-2",
    "stmt-monitoring-3", "stmt-monitoring-4", "stmt-additional-1", "stmt-additional-2",
    "stmt-pitfall-1", "stmt-pitfall-2", "stmt-pitfall-3",
}
ASSESSMENT = {"stmt-assessment-1", "stmt-assessment-2", "stmt-assessment-3"}  #: status informs, covered or not
BELOW_THRESHOLD = ASSESSMENT | {"stmt-additional-3"}
RENAL_UNKNOWN = {"contra-cyanocobalamin-renal"}


@dataclass
class Expected:
    in_scope: bool
    not_covered: set[str] = field(default_factory=set)
    recs: set[str] = field(default_factory=set)  #: exactly these recommendation ids
    selected: str | None = None  #: the selected regimen statement
    contraindicated: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)  #: possible contraindications (data not recorded)
    missing: set[str] = field(default_factory=set)
    assumptions: set[str] = field(default_factory=set)
    states_in: set[str] = field(default_factory=set)
    states_out: set[str] = field(default_factory=set)


SWITCH = "action-switch-from-cyanocobalamin"
SEED_RECS = IN_SCOPE_ALWAYS | BELOW_THRESHOLD | {SWITCH}
SEED_MISSING = {"missing-renal-function", "missing-homocysteine", "missing-folate"}
SEED_STATES = {"PatientWithB12BelowStrokeRiskThreshold", "PatientWithBorderlineLowB12", "PatientWithB12BelowMetabolicThreshold",
               "PatientLastTreatedWithCyanocobalamin", "PatientWithPriorB12Injection", "PostStrokePatient",
               "PatientWithNoReportedNeurologicalSymptoms", "PatientWithoutNeurologicalSymptoms"}
NO_NEURO_ASSUMED = {"assumption-no-neurological-symptoms"}

CASES: dict[str, Expected] = {
    "seed-case": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2", missing=SEED_MISSING, unknown=RENAL_UNKNOWN,
                          states_in=SEED_STATES, states_out={"PatientWithRenalImpairment", "PatientWithMetabolicB12Deficiency"}),
    "seed-case-pmol": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2", missing=SEED_MISSING,
                               unknown=RENAL_UNKNOWN, states_in=SEED_STATES),
    "seed-case-ng-per-l": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2", missing=SEED_MISSING,
                                   unknown=RENAL_UNKNOWN, states_in=SEED_STATES),
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
    "stale-low-egfr": Expected(True, recs=SEED_RECS | {"stmt-form-2"}, selected="stmt-treatment-2",
                               contraindicated={"contra-cyanocobalamin-renal"},
                               missing={"missing-homocysteine", "missing-folate"},
                               states_in={"PatientWithRenalImpairment"}),
    "neurological-symptoms": Expected(False, not_covered={"exclusion-neurological-symptoms"}, recs=ASSESSMENT,
                                      missing={"missing-renal-function"}, unknown=RENAL_UNKNOWN,
                                      states_in={"PatientWithNeurologicalSymptoms"}),
    "neuropathy-diagnosis": Expected(False, not_covered={"exclusion-neurological-symptoms"}, recs=ASSESSMENT,
                                     missing={"missing-renal-function"}, unknown=RENAL_UNKNOWN,
                                     states_in={"PatientWithNeurologicalSymptoms"}),
    "neurological-status-not-recorded": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2", missing=SEED_MISSING,
                                                 unknown=RENAL_UNKNOWN, assumptions=NO_NEURO_ASSUMED,
                                                 states_in={"PatientWithNoReportedNeurologicalSymptoms"},
                                                 states_out={"PatientWithoutNeurologicalSymptoms"}),
    "neurological-assessment-before-stroke": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2",
                                                      missing=SEED_MISSING, unknown=RENAL_UNKNOWN,
                                                      assumptions=NO_NEURO_ASSUMED,
                                                      states_out={"PatientWithoutNeurologicalSymptoms"}),
    "normal-b12-on-maintenance": Expected(True, recs=IN_SCOPE_ALWAYS, selected="stmt-treatment-2", unknown=RENAL_UNKNOWN,
                                          missing={"missing-renal-function", "missing-homocysteine-target", "missing-folate"},
                                          states_in={"PatientWithB12AtOrAboveStrokeRiskThreshold", "PatientOnB12Treatment"},
                                          states_out={"PatientWithB12BelowStrokeRiskThreshold", "PatientLastTreatedWithCyanocobalamin"}),
    "normal-b12-untreated": Expected(False, not_covered={"exclusion-untreated"}, unknown=RENAL_UNKNOWN,
                                     missing={"missing-renal-function"},
                                     states_in={"PatientWithB12AtOrAboveStrokeRiskThreshold"}),
    "metabolic-deficiency": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2", unknown=RENAL_UNKNOWN,
                                     missing={"missing-renal-function", "missing-folate"},
                                     states_in={"PatientWithMetabolicB12Deficiency", "PatientWithHomocysteineAboveTarget"}),
    "homocysteine-at-target": Expected(True, recs=SEED_RECS, selected="stmt-treatment-2", unknown=RENAL_UNKNOWN,
                                       missing={"missing-renal-function", "missing-folate"},
                                       states_in={"PatientWithHomocysteineAtTarget", "PatientWithB12BelowMetabolicThreshold"},
                                       states_out={"PatientWithMetabolicB12Deficiency", "PatientWithHomocysteineAboveTarget"}),
    "oral-preference": Expected(True, recs=SEED_RECS, selected="stmt-additional-2", missing=SEED_MISSING,
                                unknown=RENAL_UNKNOWN, states_in={"PatientPreferringOralTreatment"}),
    "renal-oral-preference": Expected(True, recs=SEED_RECS | {"stmt-form-2"}, selected="stmt-additional-2",
                                      contraindicated={"contra-cyanocobalamin-renal"},
                                      missing={"missing-homocysteine", "missing-folate"},
                                      states_in={"PatientPreferringOralTreatment", "PatientWithRenalImpairment"}),
    "low-folate": Expected(True, recs=SEED_RECS | {"action-treat-b12-before-folate"}, selected="stmt-treatment-2",
                           unknown=RENAL_UNKNOWN, missing={"missing-renal-function", "missing-homocysteine"},
                           states_in={"PatientWithLowFolate"}),
    "no-stroke": Expected(False, not_covered={"exclusion-no-stroke"}, unknown=RENAL_UNKNOWN, states_out={"PostStrokePatient"}),
    "no-b12-result": Expected(False, not_covered={"exclusion-no-usable-b12"}, unknown=RENAL_UNKNOWN,
                              missing={"missing-b12", "missing-renal-function"}),
    "old-b12-result": Expected(False, not_covered={"exclusion-no-usable-b12"}, unknown=RENAL_UNKNOWN,
                               missing={"missing-b12", "missing-renal-function"},
                               states_out={"PatientWithB12BelowStrokeRiskThreshold"}),
    "same-day-conflicting-b12": Expected(False, not_covered={"exclusion-conflicting-b12"}, unknown=RENAL_UNKNOWN,
                                         missing={"missing-confirm-conflict", "missing-renal-function"},
                                         states_in={"PatientWithConflictingB12Results"},
                                         states_out={"PatientWithCurrentB12Result"}),
    "b12-below-borderline": Expected(False, not_covered={"exclusion-b12-below-borderline"}, recs=ASSESSMENT,
                                     unknown=RENAL_UNKNOWN, missing={"missing-renal-function"},
                                     states_in={"PatientWithB12BelowBorderlineRange"}),
    "no-prior-injection": Expected(False, not_covered={"exclusion-untreated"}, recs=ASSESSMENT, unknown=RENAL_UNKNOWN,
                                   missing={"missing-renal-function"},
                                   states_out={"PatientWithPriorB12Injection", "PatientOnB12Treatment"}),
    "lapsed-treatment": Expected(False, not_covered={"exclusion-treatment-lapsed"}, recs=ASSESSMENT, unknown=RENAL_UNKNOWN,
                                 missing={"missing-renal-function"},
                                 states_out={"PatientWithPriorB12Injection", "PatientOnB12Treatment"}),
    "overdue-dose": Expected(True, recs=IN_SCOPE_ALWAYS | BELOW_THRESHOLD, selected="stmt-treatment-2",
                             missing=SEED_MISSING, unknown=RENAL_UNKNOWN, states_in={"PatientWithPriorB12Injection"}),
}


@lru_cache(maxsize=None)
def report_of(name: str) -> dict:
    (doc,) = reports(recommend(EXAMPLES / f"{name}.ttl", as_of=SEED_AS_OF))
    return doc


def test_every_example_file_has_an_expected_outcome():
    files = {p.stem for p in EXAMPLES.glob("*.ttl")}
    assert files == set(CASES), "add the new example to CASES with its expected outcome"
    assert len(files) >= 26


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
    assert {c["id"] for c in doc["contraindications_unknown"]} == exp.unknown
    assert {m["id"] for m in doc["missing_data"]} == exp.missing
    assert {a["id"] for a in doc["assumptions"]} == exp.assumptions
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
        assert all(r["status"] == "informs" for r in doc["recommendations"]), "only what the article says of the B12 level"
        assert doc["not_covered_reasons"], "an out-of-scope patient must say why"


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_recommended_regimen_can_be_satisfied_by_a_contraindicated_product(name):
    doc = report_of(name)
    forbidden = {c["product"]["id"] for c in doc["contraindicated_products"] + doc["contraindications_unknown"]}
    for rec in doc["recommendations"]:
        if rec["status"] in ("selected", "alternative") and "product" in rec:
            permitted = {p["id"] for p in rec["permitted_products"]}
            assert permitted, rec["id"]
            assert not permitted & forbidden, (rec["id"], permitted & forbidden)


def test_every_statement_action_and_contraindication_has_a_positive_and_a_negative_example(kb):
    from b12kg.engine import Workspace

    ws = Workspace(kb)
    sources = {
        r["s"].value.rsplit("#", 1)[-1]
        for r in ws.select_text(
            "PREFIX b12: <https://w3id.org/b12kg/ontology#> SELECT ?s WHERE { "
            "{ ?s a b12:GuidelineStatement } UNION { ?s a b12:DerivedAction } UNION { ?s a b12:Contraindication } "
            "UNION { ?s a b12:ScopeExclusion } UNION { ?s a b12:MissingDataRule } UNION { ?s a b12:Assumption } }"
        )
    }
    applied: dict[str, set[str]] = {name: set() for name in CASES}
    for name in CASES:
        doc = report_of(name)
        applied[name] |= {r["id"] for r in doc["recommendations"]}
        applied[name] |= {c["id"] for c in doc["contraindicated_products"]}
        applied[name] |= {r["id"] for r in doc["not_covered_reasons"]}
        applied[name] |= {m["id"] for m in doc["missing_data"]}
        applied[name] |= {a["id"] for a in doc["assumptions"]}
    for source in sorted(sources):
        positives = [n for n in CASES if source in applied[n]]
        negatives = [n for n in CASES if source not in applied[n]]
        assert positives, f"no example patient for whom {source} applies"
        assert negatives, f"no example patient for whom {source} does not apply"

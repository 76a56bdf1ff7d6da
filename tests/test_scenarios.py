"""The scenario space: read from the knowledge base, valid patient data, and the batch evaluation
agrees with `recommend` on single patients."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from b12kg.derive import recommend
from b12kg.kb import KnowledgeBase
from b12kg.patient import PatientData
from b12kg.report import reports
from b12kg.scenarios import ScenarioSpace, build_patient, covering, evaluate
from b12kg.validate import validate_shapes

AS_OF = date(2025, 10, 31)


@pytest.fixture(scope="module")
def space(kb) -> ScenarioSpace:
    return ScenarioSpace.from_kb(kb, as_of=AS_OF)


def test_dimensions_cover_the_guideline_states(space):
    names = {d.name: [level.name for level in d.levels] for d in space.dimensions}
    assert list(names) == ["b12", "homocysteine", "renal", "neuro", "treatment", "oral_preference", "folate", "stroke"]
    assert "not recorded" in names["b12"] and "older than the result-currency policy" in names["b12"]
    assert "conflicting results on one day" in names["b12"] and "B12BelowBorderlineRangeResult" in names["b12"]
    assert {"present since the stroke", "absent since the stroke", "absent before the stroke",
            "neurological involvement diagnosis", "not recorded"} == set(names["neuro"])
    assert {"none", "hydroxocobalamin IM, next dose overdue", "cyanocobalamin IM, lapsed",
            "oral cyanocobalamin only, recent"} <= set(names["treatment"])
    assert "EGFRIndicatingRenalImpairmentResult older than the result-currency policy" in names["renal"]
    assert len(space) == len(list(space.scenarios()))


def test_band_samples_lie_inside_their_band_and_follow_the_thresholds(space, kb_copy):
    for items in space.bands.values():
        for band in items:
            value = band.sample()
            assert band.lower_value is None or value >= band.lower_value
            assert band.upper_value is None or value < band.upper_value
    path = kb_copy.ontology_dir / "guideline.ttl"
    path.write_text(path.read_text(encoding="utf-8").replace("b12:thresholdValue 133.0", "b12:thresholdValue 100.0"),
                    encoding="utf-8")
    moved = ScenarioSpace.from_kb(kb_copy, as_of=AS_OF)
    b12 = next(v for k, v in moved.bands.items() if k.endswith("#serum-b12"))
    assert min(b.upper_value for b in b12 if b.upper_value is not None) == Decimal("100.0")


@pytest.mark.parametrize("strength", [2, 3, 4])
def test_covering_set_covers_every_combination_of_strength_dimensions(space, strength):
    import itertools
    import math

    rows = covering(space, strength)
    dims = space.dimensions
    assert len(rows) < len(space)
    for combo in itertools.combinations(range(len(dims)), strength):
        seen = {tuple(r.levels[i][1].name for i in combo) for r in rows}
        assert len(seen) == math.prod(len(dims[i].levels) for i in combo)


def test_built_patients_pass_the_patient_shapes(space, kb):
    for scenario in covering(space, 2)[:25]:
        triples = build_patient("https://example.org/scenario/", scenario, AS_OF)
        assert validate_shapes(PatientData(path=__import__("pathlib").Path(scenario.id), triples=triples), kb) == []


def _single(kb: KnowledgeBase, scenario):
    data = PatientData(path=__import__("pathlib").Path(scenario.id),
                       triples=build_patient("https://example.org/scenario/", scenario, AS_OF))
    [doc] = reports(recommend(data, as_of=AS_OF, kb=kb))
    return doc


def test_batch_evaluation_agrees_with_recommend(space, kb):
    sample = covering(space, 2)[:12]
    decisions = evaluate(kb, sample, as_of=AS_OF, batch_size=5)
    assert len(decisions) == len(sample)
    for decision in decisions:
        doc = _single(kb, decision.scenario)
        selected = sorted(r["regimen"] for r in doc["recommendations"] if r.get("status") == "selected")
        assert selected == sorted(s.rsplit("#", 1)[-1] for s in decision.selected), decision.scenario.id
        assert bool(doc["in_scope"]) == decision.in_scope, decision.scenario.id
        assert len(doc["not_covered_reasons"]) == len(decision.not_covered), decision.scenario.id

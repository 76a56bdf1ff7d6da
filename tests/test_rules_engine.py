"""The rules engine's running order: with no cycle among the rules one pass reaches the fixpoint, and
a rule set with a cycle still runs to it; and the rules' in-memory plans infer what their SPARQL does."""

from __future__ import annotations

import io

import pyoxigraph as ox
import pytest

from b12kg.derive import normalise
from b12kg.engine import Workspace
from b12kg.kb import KnowledgeBase
from b12kg.patient import load_patient
from b12kg.reason import Rule, RuleSet, _order, classify_rules, classify_rules_sparql, rule_set
from b12kg.scenarios import ScenarioSpace, build_patient, covering
from b12kg.synth import generate
from conftest import EXAMPLES, SEED_AS_OF


def synthetic(kb: KnowledgeBase) -> Workspace:
    out = io.StringIO()
    generate(out, patients=300, seed=11, as_of=SEED_AS_OF)
    ws = Workspace(kb)
    ws.load_nt("patients", out.getvalue().encode())
    return ws


def examples(kb: KnowledgeBase) -> Workspace:
    ws = Workspace(kb)
    for path in sorted(EXAMPLES.glob("*.ttl")):
        ws.add_triples("patients", load_patient(path, kb=kb).triples)
    return ws


def test_the_shipped_rules_have_no_cycle():
    """A rule that produces a class its own body requires of the same individual (a band rule adds the
    band's base class, SerumB12Result) adds nothing new and is no cycle."""
    assert rule_set(Workspace(KnowledgeBase())).one_pass


@pytest.mark.parametrize("data", [synthetic, examples])
def test_one_pass_is_the_fixpoint(data):
    kb = KnowledgeBase()
    ws = data(kb)
    normalise(ws, SEED_AS_OF)
    assert classify_rules(ws) == 1
    inferred = set(ws.triples("inferred"))
    assert len(inferred) > 100
    for rule in rule_set(ws).rules:  # a second round finds nothing new
        ws.construct_text_into("inferred", rule.text, settle=False)
    ws.settle("inferred")
    assert set(ws.triples("inferred")) == inferred


def test_a_cycle_is_found():
    a = Rule("a", produces={"X"}, reads={"Y"})
    b = Rule("b", produces={"Y"}, reads={"X"})
    c = Rule("c", produces={"Z"}, reads={"X"})
    ordered, acyclic = _order([c, a, b])
    assert not acyclic and len(ordered) == 3
    ordered, acyclic = _order([c, a])
    assert acyclic and [r.text for r in ordered] == ["a", "c"]


def test_a_rule_set_with_a_cycle_runs_to_the_fixpoint():
    """Two rules in the wrong order and marked cyclic: the second round finds what the first missed,
    the third sees nothing new."""
    kb = KnowledgeBase()
    ws = Workspace(kb)
    ws.load_nt("patients", b"<urn:x> <urn:p> <urn:y> .\n")
    ws.memo["rules"] = RuleSet([Rule("CONSTRUCT { ?s a <urn:B> } WHERE { ?s a <urn:A> }", {"urn:B"}, {"urn:A"}),
                                Rule("CONSTRUCT { ?s a <urn:A> } WHERE { ?s <urn:p> ?o }", {"urn:A"}, set())],
                               one_pass=False)
    assert classify_rules(ws) == 3
    assert ws.ask_type(ox.NamedNode("urn:x")) == {"urn:A", "urn:B"}


def scenario_space(kb: KnowledgeBase) -> Workspace:
    """Every combination of two scenario dimensions, band values at and beside each threshold."""
    space = ScenarioSpace.from_kb(kb, as_of=SEED_AS_OF)
    ws = Workspace(kb)
    ws.add_triples("patients", [t for s in covering(space, 2) for t in build_patient("urn:b12kg:test:", s, SEED_AS_OF)])
    return ws


def inferred_both_ways(ws_of, kb: KnowledgeBase) -> tuple[set, set, int, int]:
    """The inferred graph from the rules' in-memory plans and from their SPARQL texts, and the rounds."""
    inferred, rounds = [], []
    for classify in (classify_rules, classify_rules_sparql):
        ws = ws_of(kb)
        normalise(ws, SEED_AS_OF)
        rounds.append(classify(ws))
        inferred.append(set(ws.triples("inferred")))
    return inferred[0], inferred[1], *rounds


@pytest.mark.parametrize("data", [synthetic, examples, scenario_space])
def test_the_plans_infer_what_the_sparql_rules_infer(data):
    kb = KnowledgeBase()
    assert all(rule.plan is not None for rule in rule_set(Workspace(kb)).rules)
    planned, sparql, rounds, sparql_rounds = inferred_both_ways(data, kb)
    assert len(sparql) > 500
    assert planned == sparql and rounds == sparql_rounds == 1


BAND_CASE = """
@prefix b12: <https://w3id.org/b12kg/ontology#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
<urn:t:p> a b12:Patient ; b12:hasLabResult {results} .
"""


def test_band_comparisons_follow_sparql_on_every_kind_of_number():
    """A canonical value at a threshold, as a double, an integer, a float, text, an ill-formed number,
    two values at once: the plans put each result in the bands the SPARQL FILTER puts it in."""
    kb = KnowledgeBase()
    threshold = next(float(t.object.value) for t in Workspace(kb).triples("ontology")
                     if t.predicate.value.endswith("#thresholdValue") and str(t.subject).endswith("b12-borderline-lower>"))
    values = [f'"{threshold}"^^xsd:decimal', f'"{threshold:E}"^^xsd:double', f'"{int(threshold)}"^^xsd:integer',
              f'"{threshold - 0.5}"^^xsd:float', '"INF"^^xsd:double', '"NaN"^^xsd:double', f'"{threshold}"',
              '"12x"^^xsd:decimal', f'"{threshold + 1}"^^xsd:decimal , "1.0"^^xsd:decimal', '"-0"^^xsd:integer']
    lines = [BAND_CASE.format(results=" , ".join(f"<urn:t:r{i}>" for i in range(len(values))))]
    for i, value in enumerate(values):
        lines.append(f"<urn:t:r{i}> a b12:LabResult, b12:SerumB12Result ; b12:analyte b12:serum-b12 ; "
                     f"b12:canonicalValue {value} .")

    def ws_of(kb: KnowledgeBase) -> Workspace:
        ws = Workspace(kb)
        ws.add_triples("patients", ox.parse("\n".join(lines), format=ox.RdfFormat.TURTLE))
        return ws

    planned, sparql, _, _ = inferred_both_ways(ws_of, kb)
    banded = {t.subject.value for t in sparql if "Range" in t.object.value or "Threshold" in t.object.value}
    assert {"urn:t:r0", "urn:t:r1", "urn:t:r8"} <= banded  # at the threshold, and the second of two values
    assert planned == sparql


def test_a_planned_rule_set_with_a_cycle_runs_to_the_fixpoint():
    """As above, with plans: the second round finds what the first missed, the third sees nothing new."""
    kb = KnowledgeBase()
    ws = Workspace(kb)
    ws.load_nt("patients", b"<urn:x> <urn:p> <urn:y> .\n")
    a, b, p = (ox.NamedNode(f"urn:{n}") for n in "ABp")
    ws.memo["rules"] = RuleSet([Rule("", {"urn:B"}, {"urn:A"}, plan=("classes", ["urn:B"], [[("a", "?x", a)]])),
                                Rule("", {"urn:A"}, set(), plan=("domain", p, a))], one_pass=False)
    assert classify_rules(ws) == 3
    assert ws.ask_type(ox.NamedNode("urn:x")) == {"urn:A", "urn:B"}
    assert {t.object.value for t in ws.triples("inferred")} == {"urn:A", "urn:B"}

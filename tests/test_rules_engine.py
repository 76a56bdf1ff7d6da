"""The rules engine's running order: with no cycle among the rules one pass reaches the fixpoint, and
a rule set with a cycle still runs to it."""

from __future__ import annotations

import io

import pyoxigraph as ox
import pytest

from b12kg.derive import normalise
from b12kg.engine import Workspace
from b12kg.kb import KnowledgeBase
from b12kg.patient import load_patient
from b12kg.reason import Rule, RuleSet, _order, classify_rules, rule_set
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

"""The fast rules engine and HermiT (OWL 2 DL, via owlready2) classify every example patient into the
same named classes, and so give the same recommendations."""

from __future__ import annotations

import pyoxigraph as ox
import pytest

from b12kg.derive import recommend
from b12kg.reason import Reasoner
from b12kg.report import reports
from conftest import EXAMPLES, SEED_AS_OF, require_binary

B12 = "https://w3id.org/b12kg/ontology#"

pytestmark = pytest.mark.hermit

require_binary("java", "HermiT needs Java: apt-get install default-jre-headless")


def named_types(evaluation) -> set[tuple[str, str]]:
    ws = evaluation.workspace
    subjects = {t.subject for name in ("patients", "normalised") for t in ws.triples(name)
                if isinstance(t.subject, ox.NamedNode)}
    return {(s.value, c) for s in subjects for c in ws.ask_type(s) if c.startswith(B12)}


def decisions(evaluation):
    (doc,) = reports(evaluation)
    doc["provenance"].pop("reasoner")
    return doc


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.ttl")), ids=lambda p: p.stem)
def test_rules_and_hermit_agree(path):
    rules = recommend(path, as_of=SEED_AS_OF, reasoner=Reasoner.rules)
    hermit = recommend(path, as_of=SEED_AS_OF, reasoner=Reasoner.hermit)
    assert named_types(rules) == named_types(hermit)
    assert decisions(rules) == decisions(hermit)

"""Classification: which patient states hold. Two engines, shown identical by the tests.

* ``rules`` (default, fast): the ontology's own axioms compiled into SPARQL CONSTRUCT rules, one
  specific rule per class definition (``C ≡ A ⊓ ∃p.F``, ``C ≡ A ⊔ B``, value restrictions, value-set
  axioms ``∃code.{c} ⊑ C``), run in dependency order, plus property rules (sub-properties, the
  two-step property chain, domains and ranges) and threshold bands. The compiler is generic: it reads
  whatever the ontology says, and rejects a construct it does not understand instead of ignoring it.
  A compiled rule names classes, properties and thresholds by IRI; numbers are joined in from the
  threshold individuals, never written into the rule.
* ``hermit``: the OWL 2 DL reasoner HermiT through owlready2. Band classes get their datatype
  restriction (``xsd:decimal[>= lower, < upper]``) built here from the threshold individuals, so every
  number is still stated once, in ``ontology/guideline.ttl``.

Classes decided on the record (pertinent negatives: ``b12:closedWorldBase`` / ``b12:closedWorldUnless``,
"in the base class and in none of the unless classes") are beyond OWL's open world. Both engines
evaluate them by stratified negation with the same SPARQL rule: the rules engine orders that rule
after every rule producing a class it negates; HermiT classifies, the rule runs over its result, and
HermiT classifies again with the new types asserted, until nothing changes.

Both write ``rdf:type`` triples for the patient-side individuals into the ``inferred`` graph.
"""

from __future__ import annotations

import io
import shutil
from collections import defaultdict
from dataclasses import dataclass
from enum import Enum

import pyoxigraph as ox

from b12kg.engine import Workspace
from b12kg.errors import KnowledgeBaseError, ReasonerError

OWL = "http://www.w3.org/2002/07/owl#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"
B12 = "https://w3id.org/b12kg/ontology#"
MAX_ROUNDS = 20

_BANDS_QUERY = """
PREFIX b12: <https://w3id.org/b12kg/ontology#>
SELECT ?band ?base ?lower ?upper WHERE {
  ?band b12:bandBase ?base .
  OPTIONAL { ?band b12:lowerThreshold/b12:thresholdValue ?lower }
  OPTIONAL { ?band b12:upperThreshold/b12:thresholdValue ?upper }
}
"""


class Reasoner(str, Enum):
    rules = "rules"
    hermit = "hermit"


def classify(ws: Workspace, reasoner: Reasoner = Reasoner.rules) -> None:
    if reasoner is Reasoner.hermit:
        classify_hermit(ws)
    else:
        classify_rules(ws)


# ------------------------------------------------------------------------------ the rule compiler
class _Tbox:
    """The ontology graph as an index: subject -> predicate -> objects."""

    def __init__(self, triples: list[ox.Triple]) -> None:
        self.index: dict[object, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for t in triples:
            self.index[t.subject][t.predicate.value].append(t.object)

    def objects(self, subject: object, predicate: str) -> list:
        return self.index.get(subject, {}).get(predicate, [])

    def one(self, subject: object, predicate: str) -> object | None:
        values = self.objects(subject, predicate)
        return values[0] if values else None

    def subjects(self, predicate: str, obj: object | None = None) -> list:
        return [s for s, ps in self.index.items() for o in ps.get(predicate, []) if obj is None or o == obj]

    def rdf_list(self, head: object) -> list:
        items = []
        while head != ox.NamedNode(RDF + "nil"):
            first = self.one(head, RDF + "first")
            if first is None:
                raise KnowledgeBaseError("malformed RDF list in the ontology")
            items.append(first)
            head = self.one(head, RDF + "rest")
        return items


@dataclass
class Rule:
    """One compiled rule: a CONSTRUCT query, the named classes (for a property rule: properties or
    classes) it can add to an individual that lacks them, and those it reads (``negates``: those it
    reads under negation, a closed-world rule's 'unless' classes)."""

    text: str
    produces: set[str]
    reads: set[str]
    negates: frozenset[str] = frozenset()


@dataclass
class RuleSet:
    """Every rule, in running order: property rules, then class rules. ``one_pass`` says that neither
    part has a cycle, so one pass in this order reaches the fixpoint: every rule runs after all the
    rules producing what it reads (class rules read no property a class rule produces; property rules
    read no class)."""

    rules: list[Rule]
    one_pass: bool


class _Compiler:
    def __init__(self, tbox: _Tbox) -> None:
        self.tbox = tbox
        self.counter = 0
        self.reads: set[str] = set()
        self.required: set[str] = set()

    def var(self) -> str:
        self.counter += 1
        return f"?v{self.counter}"

    def alternatives(self, expr: object, x: str) -> list[list[str]]:
        """The class expression in disjunctive normal form: a list of alternative conjunctions of
        triple patterns, each of which makes ``x`` an instance. Unions are distributed instead of
        nested: a UNION under a join is evaluated as a nested loop by some stores (quadratic)."""
        t = self.tbox
        if isinstance(expr, ox.NamedNode):
            if expr.value == OWL + "Thing":
                return [[]]
            self.reads.add(expr.value)
            return [[f"{x} a {expr} ."]]
        members = t.one(expr, OWL + "intersectionOf")
        if members is not None:
            result: list[list[str]] = [[]]
            for member in t.rdf_list(members):
                result = [a + b for a in result for b in self.alternatives(member, x)]
            return result
        members = t.one(expr, OWL + "unionOf")
        if members is not None:
            return [alt for member in t.rdf_list(members) for alt in self.alternatives(member, x)]
        prop = t.one(expr, OWL + "onProperty")
        if prop is not None:
            value = t.one(expr, OWL + "hasValue")
            if value is not None:
                return [[f"{x} {prop} {value} ."]]
            filler = t.one(expr, OWL + "someValuesFrom")
            if filler is not None:
                y = self.var()
                return [[f"{x} {prop} {y} .", *alt] for alt in self.alternatives(filler, y)]
        raise KnowledgeBaseError(f"the rules engine cannot evaluate the class expression {expr} (use --reasoner hermit)")

    def pattern(self, expr: object, x: str) -> str:
        """A SPARQL group pattern: one conjunction, or a top-level UNION of complete conjunctions."""
        alts = self.alternatives(expr, x)
        # classes x has in every alternative: a rule adds nothing new when it produces one of them
        self.required = set.intersection(*({item[len(x) + 4 : -3] for item in alt
                                            if item.startswith(f"{x} a <") and item.endswith("> .")} for alt in alts))
        if len(alts) == 1:
            return " ".join(alts[0])
        return " UNION ".join("{ " + " ".join(alt) + " }" for alt in alts)


def _superclasses(tbox: _Tbox) -> dict[str, set[str]]:
    """Every named class -> its named superclasses and equivalents (reflexive, transitive)."""
    direct: dict[str, set[str]] = defaultdict(set)
    for s in tbox.subjects(RDFS + "subClassOf"):
        for o in tbox.objects(s, RDFS + "subClassOf"):
            if isinstance(s, ox.NamedNode) and isinstance(o, ox.NamedNode):
                direct[s.value].add(o.value)
    for s in tbox.subjects(OWL + "equivalentClass"):
        for o in tbox.objects(s, OWL + "equivalentClass"):
            if isinstance(s, ox.NamedNode) and isinstance(o, ox.NamedNode):
                direct[s.value].add(o.value)
                direct[o.value].add(s.value)
    closure: dict[str, set[str]] = {}
    for start in list(direct):
        seen, todo = {start}, [start]
        while todo:
            for nxt in direct.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        closure[start] = seen
    return closure


def _construct(classes: set[str], x: str, body: str) -> str:
    head = " ".join(f"{x} a <{c}> ." for c in sorted(classes))
    return f"CONSTRUCT {{ {head} }} WHERE {{ {body} }}"


def compile_rules(ws: Workspace) -> list[Rule]:
    """The class rules for this knowledge base, in an order where each rule runs after those it reads."""
    return _class_rules(ws)[0]


def rule_set(ws: Workspace) -> RuleSet:
    """The property rules and the class rules, each part in dependency order; compiled once per workspace."""
    if "rules" not in ws.memo:
        properties, properties_acyclic = _order(property_rules(ws))
        classes, classes_acyclic = _class_rules(ws)
        ws.memo["rules"] = RuleSet(properties + classes, properties_acyclic and classes_acyclic)
    return ws.memo["rules"]


def _class_rules(ws: Workspace) -> tuple[list[Rule], bool]:
    tbox = _Tbox(ws.triples("ontology"))
    supers = _superclasses(tbox)

    def up(cls: str) -> set[str]:
        return supers.get(cls, {cls})

    rules: list[Rule] = []
    # class definitions: C ≡ expression  (and the expression ⊑ C direction)
    for cls in tbox.subjects(OWL + "equivalentClass"):
        for expr in tbox.objects(cls, OWL + "equivalentClass"):
            if isinstance(cls, ox.NamedNode) and not isinstance(expr, ox.NamedNode):
                c = _Compiler(tbox)
                body = c.pattern(expr, "?x")
                rules.append(Rule(_construct(up(cls.value), "?x", body), up(cls.value) - c.required, c.reads))
    # general class inclusions: expression ⊑ C (value sets such as ∃code.{c} ⊑ Stroke)
    for expr in tbox.subjects(RDFS + "subClassOf"):
        if isinstance(expr, ox.BlankNode):
            for cls in tbox.objects(expr, RDFS + "subClassOf"):
                c = _Compiler(tbox)
                body = c.pattern(expr, "?x")
                rules.append(Rule(_construct(up(cls.value), "?x", body), up(cls.value) - c.required, c.reads))
    # threshold bands: base ⊓ canonical value in [lower, upper)
    for band in tbox.subjects(B12 + "bandBase"):
        base = tbox.one(band, B12 + "bandBase")
        filters = []
        for prop, op in (("lowerThreshold", ">="), ("upperThreshold", "<")):
            threshold = tbox.one(band, B12 + prop)
            if threshold is not None:
                filters.append((f"{threshold} <{B12}thresholdValue> ?{prop} .", f"?value {op} ?{prop}"))
        body = (f"?x a {base} ; <{B12}canonicalValue> ?value . " + " ".join(f[0] for f in filters)
                + f" FILTER ({' && '.join(f[1] for f in filters)})")
        rules.append(Rule(_construct(up(band.value), "?x", body), up(band.value) - {base.value}, {base.value}))
    rules += closed_world_rules(tbox, up)
    ordered, acyclic = _order(rules)
    if not acyclic and any(r.negates for r in rules):
        raise KnowledgeBaseError("the class definitions have a cycle and the ontology has closed-world classes "
                                 "(b12:closedWorldBase): remove the cycle so that negation can be stratified")
    _check_stratified(rules)
    # asserted types first: their superclasses
    asserted = "VALUES (?sub ?super) { " + " ".join(
        f"(<{sub}> <{sup}>)" for sub, sups in sorted(supers.items()) for sup in sorted(sups) if sub != sup
    ) + " }"
    closure = Rule(f"CONSTRUCT {{ ?x a ?super }} WHERE {{ {asserted} ?x a ?sub . }}", set(), set())
    return [closure, *ordered], acyclic


def closed_world_rules(tbox: _Tbox, up) -> list[Rule]:
    """``C`` for every member of its ``b12:closedWorldBase`` classes in none of its ``b12:closedWorldUnless``
    classes (MINUS: absence on the record, not OWL inference)."""
    rules = []
    for cls in sorted(set(tbox.subjects(B12 + "closedWorldBase")), key=str):
        bases = tbox.objects(cls, B12 + "closedWorldBase")
        unless = tbox.objects(cls, B12 + "closedWorldUnless")
        terms = [cls, *bases, *unless]
        if not all(isinstance(t, ox.NamedNode) for t in terms) or not unless:
            raise KnowledgeBaseError(f"closed-world class {cls}: b12:closedWorldBase and b12:closedWorldUnless "
                                     "must name classes (at least one of each)")
        body = " ".join(f"?x a {b} ." for b in bases) + "".join(f" MINUS {{ ?x a {u} . }}" for u in unless)
        produced = up(cls.value) - {b.value for b in bases}
        rules.append(Rule(_construct(up(cls.value), "?x", body), produced,
                          {t.value for t in (*bases, *unless)}, frozenset(u.value for u in unless)))
    return rules


def _check_stratified(rules: list[Rule]) -> None:
    """No class may depend on its own absence: a closed-world rule's 'unless' classes must not be
    produced, directly or through other rules, from what that rule produces."""
    depends: dict[str, set[str]] = defaultdict(set)  # class -> classes it is produced from
    for rule in rules:
        for cls in rule.produces:
            depends[cls] |= rule.reads
    for rule in rules:
        for negated in rule.negates:
            seen, todo = set(), [negated]
            while todo:
                current = todo.pop()
                if current in rule.produces:
                    raise KnowledgeBaseError(f"closed-world classes {sorted(rule.produces)} depend on their own "
                                             f"absence through <{negated}>: negation cannot be stratified")
                for nxt in depends.get(current, ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)


def _order(rules: list[Rule]) -> tuple[list[Rule], bool]:
    """Topological order: a rule after every rule producing something it reads (cycles stay in place);
    and whether there was no cycle."""
    producers: dict[str, list[int]] = defaultdict(list)
    for i, rule in enumerate(rules):
        for cls in rule.produces:
            producers[cls].append(i)
    ordered, state = [], {}
    acyclic = True

    def visit(i: int) -> None:
        nonlocal acyclic
        if state.get(i) == "done":
            return
        if state.get(i) == "active":  # a cycle: the fixpoint loop handles it
            acyclic = False
            return
        state[i] = "active"
        for cls in rules[i].reads:
            for j in producers.get(cls, ()):
                if j != i:
                    visit(j)
        state[i] = "done"
        ordered.append(rules[i])

    for i in range(len(rules)):
        visit(i)
    return ordered, acyclic


def property_rules(ws: Workspace) -> list[Rule]:
    """Sub-properties, two-step property chains, domains and ranges, as CONSTRUCT rules."""
    tbox = _Tbox(ws.triples("ontology"))
    out = []
    for sub in tbox.subjects(RDFS + "subPropertyOf"):
        for sup in tbox.objects(sub, RDFS + "subPropertyOf"):
            out.append(Rule(f"CONSTRUCT {{ ?s {sup} ?o }} WHERE {{ ?s {sub} ?o }}", {sup.value}, {sub.value}))
    for prop in tbox.subjects(OWL + "propertyChainAxiom"):
        chain = tbox.rdf_list(tbox.one(prop, OWL + "propertyChainAxiom"))
        if len(chain) != 2:
            raise KnowledgeBaseError(f"the rules engine handles two-step property chains only ({prop})")
        out.append(Rule(f"CONSTRUCT {{ ?x {prop} ?z }} WHERE {{ ?x {chain[0]} ?y . ?y {chain[1]} ?z }}",
                        {prop.value}, {chain[0].value, chain[1].value}))
    object_properties = set(tbox.subjects(RDF + "type", ox.NamedNode(OWL + "ObjectProperty")))
    for prop in tbox.subjects(RDFS + "domain"):
        for domain in tbox.objects(prop, RDFS + "domain"):
            out.append(Rule(f"CONSTRUCT {{ ?s a {domain} }} WHERE {{ ?s {prop} ?o }}", {domain.value}, {prop.value}))
    for prop in tbox.subjects(RDFS + "range"):
        if prop in object_properties:
            for rng in tbox.objects(prop, RDFS + "range"):
                out.append(Rule(f"CONSTRUCT {{ ?o a {rng} }} WHERE {{ ?s {prop} ?o }}", {rng.value}, {prop.value}))
    return out


def classify_rules(ws: Workspace) -> int:
    """Run the rules until nothing new is inferred; returns the number of rounds. When the rules have
    no cycle (:class:`RuleSet`) the first round is the fixpoint and no second round is run to see it."""
    rules = rule_set(ws)
    size = ws.size("inferred")
    for round_number in range(1, MAX_ROUNDS + 1):
        for rule in rules.rules:
            ws.construct_text_into("inferred", rule.text, settle=False)
        ws.settle("inferred")
        if rules.one_pass:
            return round_number
        size, before = ws.size("inferred"), size
        if size == before:
            return round_number
    raise KnowledgeBaseError(f"reasoning rules did not reach a fixpoint in {MAX_ROUNDS} rounds")


# ---------------------------------------------------------------------------------------- HermiT
def band_axioms(ws: Workspace) -> list[ox.Triple]:
    """OWL axioms ``band ≡ base ⊓ ∃canonicalValue.xsd:decimal[>= lower, < upper]`` from the thresholds."""
    triples: list[ox.Triple] = []

    def node(iri: str) -> ox.NamedNode:
        return ox.NamedNode(iri)

    def rdf_list(items: list) -> ox.BlankNode | ox.NamedNode:
        head: ox.BlankNode | ox.NamedNode = node(RDF + "nil")
        for item in reversed(items):
            cell = ox.BlankNode()
            triples.append(ox.Triple(cell, node(RDF + "first"), item))
            triples.append(ox.Triple(cell, node(RDF + "rest"), head))
            head = cell
        return head

    for row in ws.select_text(_BANDS_QUERY):
        facets = []
        for key, facet in (("lower", "minInclusive"), ("upper", "maxExclusive")):
            if key in row:
                f = ox.BlankNode()
                value = ox.Literal(row[key].value, datatype=node(XSD + "decimal"))
                triples.append(ox.Triple(f, node(XSD + facet), value))
                facets.append(f)
        if not facets:
            raise KnowledgeBaseError(f"band {row['band'].value} has neither a lower nor an upper threshold")
        datatype = ox.BlankNode()
        triples += [
            ox.Triple(datatype, node(RDF + "type"), node(RDFS + "Datatype")),
            ox.Triple(datatype, node(OWL + "onDatatype"), node(XSD + "decimal")),
            ox.Triple(datatype, node(OWL + "withRestrictions"), rdf_list(facets)),
        ]
        restriction = ox.BlankNode()
        triples += [
            ox.Triple(restriction, node(RDF + "type"), node(OWL + "Restriction")),
            ox.Triple(restriction, node(OWL + "onProperty"), node(B12 + "canonicalValue")),
            ox.Triple(restriction, node(OWL + "someValuesFrom"), datatype),
        ]
        intersection = ox.BlankNode()
        triples += [
            ox.Triple(intersection, node(RDF + "type"), node(OWL + "Class")),
            ox.Triple(intersection, node(OWL + "intersectionOf"), rdf_list([row["base"], restriction])),
            ox.Triple(row["band"], node(OWL + "equivalentClass"), intersection),
        ]
    return triples


def _reasoner_input(ws: Workspace, graphs: tuple[str, ...] = ("ontology", "patients", "normalised")) -> bytes:
    """Ontology + band axioms + patient data as N-Triples, without imports and without date values
    (patient dates are xsd:date, which is not in the OWL 2 datatype map; date logic runs before
    reasoning, in SPARQL)."""
    skip_types = {XSD + "date", XSD + "dateTime", XSD + "gYear"}
    keep = []
    for name in graphs:
        for t in ws.triples(name):
            if t.predicate.value == OWL + "imports":
                continue
            if isinstance(t.object, ox.Literal) and t.object.datatype.value in skip_types:
                continue
            keep.append(t)
    keep += band_axioms(ws)
    return ox.serialize(keep, format=ox.RdfFormat.N_TRIPLES)


def classify_hermit(ws: Workspace) -> None:
    """Classify with HermiT through owlready2 and copy the patient-side types into ``inferred``; then
    the closed-world classes, and HermiT again with them asserted, until no closed-world type is new."""
    import owlready2

    if shutil.which(owlready2.JAVA_EXE) is None and shutil.which("java") is None:
        raise ReasonerError("HermiT needs Java: install a JRE (Debian: apt-get install default-jre-headless)")
    tbox = _Tbox(ws.triples("ontology"))
    supers = _superclasses(tbox)
    negation = closed_world_rules(tbox, lambda cls: supers.get(cls, {cls}))
    _hermit_pass(ws, ("ontology", "patients", "normalised"))
    for _ in range(MAX_ROUNDS):
        before = ws.size("inferred")
        for rule in negation:
            ws.construct_text_into("inferred", rule.text)
        if ws.size("inferred") == before:
            return
        _hermit_pass(ws, ("ontology", "patients", "normalised", "inferred"))
    raise KnowledgeBaseError(f"closed-world classes did not settle in {MAX_ROUNDS} rounds")


def _hermit_pass(ws: Workspace, graphs: tuple[str, ...]) -> None:
    import owlready2

    world = owlready2.World()
    try:
        onto = world.get_ontology("urn:b12kg:reasoner-input")
        onto.load(fileobj=io.BytesIO(_reasoner_input(ws, graphs)), format="ntriples")
        # The ontology's date ranges are xsd:dateTime (in the OWL 2 datatype map); patient dates
        # (xsd:date, outside it) are stripped above: date logic runs in SPARQL before reasoning.
        owlready2.sync_reasoner_hermit(world, infer_property_values=False, debug=0)
    except owlready2.OwlReadyInconsistentOntologyError:
        raise ReasonerError("HermiT: the ontology with this patient data is inconsistent") from None
    except owlready2.OwlReadyJavaError as exc:
        raise ReasonerError(f"HermiT failed: {_java_message(exc)}") from None
    subjects = {
        t.subject.value
        for name in ("patients", "normalised")
        for t in ws.triples(name)
        if isinstance(t.subject, ox.NamedNode)
    }
    inferred = []
    rdf_type = ox.NamedNode(RDF + "type")
    for iri in sorted(subjects):
        entity = world[iri]
        if entity is None or not isinstance(entity, owlready2.Thing):
            continue
        for cls in entity.INDIRECT_is_a:
            cls_iri = getattr(cls, "iri", None)
            if isinstance(cls, owlready2.ThingClass) and cls_iri and not cls_iri.startswith(OWL):
                inferred.append(ox.Triple(ox.NamedNode(iri), rdf_type, ox.NamedNode(cls_iri)))
    world.close()
    ws.add_triples("inferred", inferred)


def _java_message(exc: Exception) -> str:
    """The first line of a Java error that says what went wrong (not a stack frame)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith("at ") and "Java error message" not in line:
            return line
    return "unknown Java error"

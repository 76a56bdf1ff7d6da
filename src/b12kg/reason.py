"""Classification: which patient states hold. Two engines, shown identical by the tests.

* ``rules`` (default, fast): the ontology's own axioms compiled into SPARQL CONSTRUCT rules, one
  specific rule per class definition (``C ≡ A ⊓ ∃p.F``, ``C ≡ A ⊔ B``, value restrictions, value-set
  axioms ``∃code.{c} ⊑ C``), run in dependency order, plus property rules (sub-properties, the
  two-step property chain, domains and ranges) and threshold bands. The compiler is generic: it reads
  whatever the ontology says, and rejects a construct it does not understand instead of ignoring it.
  A compiled rule names classes, properties and thresholds by IRI; numbers are joined in from the
  threshold individuals, never written into the rule. Each rule is compiled twice from the same
  axioms: as its SPARQL text, and as a plan that :class:`_Facts` evaluates set-at-a-time on indexes
  of the workspace's types and properties (the default: a batch's SPARQL rules and the settling of
  their results cost more than twice as much). The tests show the two infer the same triples.
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
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

import pyoxigraph as ox

from b12kg.engine import Workspace
from b12kg.errors import KnowledgeBaseError, ReasonerError
from b12kg.inputs import NUMERIC_TYPES, outside_lexical_space

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
    plan: tuple | None = None  # the same rule for :class:`_Facts` (None: SPARQL only)


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

    def alternatives(self, expr: object, x: str) -> list[list[tuple]]:
        """The class expression in disjunctive normal form: a list of alternative conjunctions of
        atoms — ``("a", x, C)``, ``("value", x, p, v)``, ``("edge", x, p, y)`` — each of which makes ``x``
        an instance. Unions are distributed instead of nested: a UNION under a join is evaluated as a
        nested loop by some stores (quadratic)."""
        t = self.tbox
        if isinstance(expr, ox.NamedNode):
            if expr.value == OWL + "Thing":
                return [[]]
            self.reads.add(expr.value)
            return [[("a", x, expr)]]
        members = t.one(expr, OWL + "intersectionOf")
        if members is not None:
            result: list[list[tuple]] = [[]]
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
                return [[("value", x, prop, value)]]
            filler = t.one(expr, OWL + "someValuesFrom")
            if filler is not None:
                y = self.var()
                return [[("edge", x, prop, y), *alt] for alt in self.alternatives(filler, y)]
        raise KnowledgeBaseError(
            f"the rules engine cannot evaluate the class expression {expr} (use --reasoner hermit)")

    def pattern(self, expr: object, x: str) -> tuple[str, list[list[tuple]]]:
        """A SPARQL group pattern (one conjunction, or a top-level UNION of complete conjunctions), and
        the alternatives it renders."""
        alts = self.alternatives(expr, x)
        # classes x has in every alternative: a rule adds nothing new when it produces one of them
        self.required = set.intersection(*({atom[2].value for atom in alt if atom[0] == "a" and atom[1] == x}
                                           for alt in alts))
        texts = [" ".join(_atom_text(atom) for atom in alt) for alt in alts]
        if len(alts) == 1:
            return texts[0], alts
        return " UNION ".join("{ " + text + " }" for text in texts), alts


def _atom_text(atom: tuple) -> str:
    if atom[0] == "a":
        return f"{atom[1]} a {atom[2]} ."
    return f"{atom[1]} {atom[2]} {atom[3]} ."


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
                body, alts = c.pattern(expr, "?x")
                rules.append(Rule(_construct(up(cls.value), "?x", body), up(cls.value) - c.required, c.reads,
                                  plan=("classes", sorted(up(cls.value)), alts)))
    # general class inclusions: expression ⊑ C (value sets such as ∃code.{c} ⊑ Stroke)
    for expr in tbox.subjects(RDFS + "subClassOf"):
        if isinstance(expr, ox.BlankNode):
            for cls in tbox.objects(expr, RDFS + "subClassOf"):
                c = _Compiler(tbox)
                body, alts = c.pattern(expr, "?x")
                rules.append(Rule(_construct(up(cls.value), "?x", body), up(cls.value) - c.required, c.reads,
                                  plan=("classes", sorted(up(cls.value)), alts)))
    # threshold bands: base ⊓ canonical value in [lower, upper)
    for band in tbox.subjects(B12 + "bandBase"):
        base = tbox.one(band, B12 + "bandBase")
        filters, bounds = [], []
        for prop, op in (("lowerThreshold", ">="), ("upperThreshold", "<")):
            threshold = tbox.one(band, B12 + prop)
            if threshold is not None:
                filters.append((f"{threshold} <{B12}thresholdValue> ?{prop} .", f"?value {op} ?{prop}"))
                bounds.append((threshold, op))
        body = (f"?x a {base} ; <{B12}canonicalValue> ?value . " + " ".join(f[0] for f in filters)
                + f" FILTER ({' && '.join(f[1] for f in filters)})")
        rules.append(Rule(_construct(up(band.value), "?x", body), up(band.value) - {base.value}, {base.value},
                          plan=("band", sorted(up(band.value)), base, bounds)))
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
    closure = Rule(f"CONSTRUCT {{ ?x a ?super }} WHERE {{ {asserted} ?x a ?sub . }}", set(), set(),
                   plan=("superclasses", {sub: sorted(sups - {sub}) for sub, sups in supers.items() if sups - {sub}}))
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
                          {t.value for t in (*bases, *unless)}, frozenset(u.value for u in unless),
                          plan=("closed", sorted(up(cls.value)), bases, unless)))
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
            out.append(Rule(f"CONSTRUCT {{ ?s {sup} ?o }} WHERE {{ ?s {sub} ?o }}", {sup.value}, {sub.value},
                            plan=("chain", sup, [sub])))
    for prop in tbox.subjects(OWL + "propertyChainAxiom"):
        chain = tbox.rdf_list(tbox.one(prop, OWL + "propertyChainAxiom"))
        if len(chain) != 2:
            raise KnowledgeBaseError(f"the rules engine handles two-step property chains only ({prop})")
        out.append(Rule(f"CONSTRUCT {{ ?x {prop} ?z }} WHERE {{ ?x {chain[0]} ?y . ?y {chain[1]} ?z }}",
                        {prop.value}, {chain[0].value, chain[1].value}, plan=("chain", prop, chain)))
    object_properties = set(tbox.subjects(RDF + "type", ox.NamedNode(OWL + "ObjectProperty")))
    for prop in tbox.subjects(RDFS + "domain"):
        for domain in tbox.objects(prop, RDFS + "domain"):
            out.append(Rule(f"CONSTRUCT {{ ?s a {domain} }} WHERE {{ ?s {prop} ?o }}", {domain.value}, {prop.value},
                            plan=("domain", prop, domain) if isinstance(domain, ox.NamedNode) else None))
    for prop in tbox.subjects(RDFS + "range"):
        if prop in object_properties:
            for rng in tbox.objects(prop, RDFS + "range"):
                out.append(Rule(f"CONSTRUCT {{ ?o a {rng} }} WHERE {{ ?s {prop} ?o }}", {rng.value}, {prop.value},
                                plan=("range", prop, rng) if isinstance(rng, ox.NamedNode) else None))
    return out


def classify_rules(ws: Workspace) -> int:
    """Run the rules until nothing new is inferred; returns the number of rounds. When the rules have
    no cycle (:class:`RuleSet`) the first round is the fixpoint and no second round is run to see it.
    Every compiled rule also has a plan, which :class:`_Facts` evaluates in memory with the same
    result as the rule's SPARQL text (tests compare the two on the examples, a synthetic cohort and the
    scenario space);
    a rule set with a rule lacking a plan runs as SPARQL (:func:`classify_rules_sparql`)."""
    rules = rule_set(ws)
    if any(rule.plan is None for rule in rules.rules):
        return classify_rules_sparql(ws)
    facts = _Facts(ws)
    for round_number in range(1, MAX_ROUNDS + 1):
        before = len(facts.new)
        for rule in rules.rules:
            facts.apply(rule.plan)
        if rules.one_pass or len(facts.new) == before:
            facts.write()
            return round_number
    raise KnowledgeBaseError(f"reasoning rules did not reach a fixpoint in {MAX_ROUNDS} rounds")


def classify_rules_sparql(ws: Workspace) -> int:
    """:func:`classify_rules` with every rule run as its SPARQL CONSTRUCT on the workspace."""
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


_FLOATING = (XSD + "double", XSD + "float")


def _number(term: object) -> Decimal | float | None:
    """A numeric literal's value as SPARQL compares it (None: not a number, so a comparison is an error
    and the filter fails)."""
    if not isinstance(term, ox.Literal):
        return None
    datatype, text = term.datatype.value, term.value
    if datatype not in NUMERIC_TYPES or outside_lexical_space(text, datatype):
        return None
    return float(text.replace("INF", "inf")) if datatype in _FLOATING else Decimal(text)


def _compare(value: Decimal | float, op: str, bound: Decimal | float) -> bool:
    if isinstance(value, float) or isinstance(bound, float):  # decimal promoted to double
        value, bound = float(value), float(bound)
    return value >= bound if op == ">=" else value < bound


class _Facts:
    """The workspace's triples that a rule set reads, from every graph (as the rules' SPARQL reads the
    union), indexed for set-at-a-time evaluation of the compiled rules' plans: individuals by class,
    and each property's triples as far as a rule needs them (subjects, objects, or both ways), read
    from the store when a rule first needs them. What the rules add is collected in ``new`` and
    written to the ``inferred`` graph by :meth:`write`; a triple some graph already holds is not new
    (as ``settle`` leaves it out of the SPARQL rules' result)."""

    TYPE = ox.NamedNode(RDF + "type")

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.members: dict[str, set] = defaultdict(set)  # class IRI -> individuals
        self.forward: dict[ox.NamedNode, dict[object, set]] = {}  # p -> s -> objects
        self.backward: dict[ox.NamedNode, dict[object, set]] = {}  # p -> o -> subjects
        self.added: dict[ox.NamedNode, list[tuple]] = defaultdict(list)  # p -> (s, o) the rules added
        self.numbers: dict[ox.Literal, Decimal | float | None] = {}
        self.new: list[ox.Quad] = []
        self.graph = ws.graph["inferred"]
        for quad in ws.store.quads_for_pattern(None, self.TYPE, None, None):
            if isinstance(quad.object, ox.NamedNode):
                self.members[quad.object.value].add(quad.subject)

    # -------------------------------------------------------------- reading
    def _pairs(self, prop: ox.NamedNode) -> list[tuple]:
        stored = self.ws.store.quads_for_pattern(None, prop, None, None)
        return [(q.subject, q.object) for q in stored] + self.added[prop]

    def out(self, prop: ox.NamedNode) -> dict[object, set]:
        """Subject -> objects of ``prop``."""
        return self._index(self.forward, prop, reverse=False)

    def back(self, prop: ox.NamedNode) -> dict[object, set]:
        """Object -> subjects of ``prop``."""
        return self._index(self.backward, prop, reverse=True)

    def _index(self, cache: dict[ox.NamedNode, dict[object, set]], prop: ox.NamedNode, *,
               reverse: bool) -> dict[object, set]:
        if prop not in cache:
            index: dict[object, set] = defaultdict(set)
            for s, o in self._pairs(prop):
                if reverse:
                    index[o].add(s)
                else:
                    index[s].add(o)
            cache[prop] = index
        return cache[prop]

    def ends(self, prop: ox.NamedNode, *, objects: bool) -> set:
        """The subjects (or objects) of ``prop``, without building an index when none is built yet."""
        index = self.backward if objects else self.forward
        if prop in index:
            return set(index[prop])
        stored = self.ws.store.quads_for_pattern(None, prop, None, None)
        return {q.object if objects else q.subject for q in stored} | {pair[objects] for pair in self.added[prop]}

    def number(self, term: object) -> Decimal | float | None:
        if term not in self.numbers:
            self.numbers[term] = _number(term)
        return self.numbers[term]

    # -------------------------------------------------------------- adding
    def add_type(self, individuals: set, classes: list[str]) -> None:
        for cls in classes:
            have = self.members[cls]
            fresh = individuals - have
            if fresh:
                have |= fresh
                node = ox.NamedNode(cls)
                self.new += [ox.Quad(x, self.TYPE, node, self.graph) for x in fresh]

    def add_edges(self, prop: ox.NamedNode, pairs: Iterable[tuple]) -> None:
        existing = self.out(prop)
        for s, o in pairs:
            objects = existing[s]
            if o not in objects:
                objects.add(o)
                if prop in self.backward:
                    self.backward[prop][o].add(s)
                self.added[prop].append((s, o))
                self.new.append(ox.Quad(s, prop, o, self.graph))

    def write(self) -> None:
        self.ws.store.extend(self.new)

    # -------------------------------------------------------------- evaluating
    def apply(self, plan: tuple) -> None:
        kind = plan[0]
        if kind == "classes":
            _, heads, alternatives = plan
            found: set = set()
            for alt in alternatives:
                found |= self.conjunction(alt, "?x") or set()
            self.add_type(found, heads)
        elif kind == "band":
            _, heads, base, bounds = plan
            thresholds = self.out(_THRESHOLD_VALUE)
            limits = [([n for v in thresholds.get(t, ()) if (n := self.number(v)) is not None], op) for t, op in bounds]
            values = self.out(_CANONICAL_VALUE)
            found = set()
            for x in self.members.get(base.value, ()):
                for value in values.get(x, ()):
                    number = self.number(value)
                    if number is not None and all(any(_compare(number, op, b) for b in bs) for bs, op in limits):
                        found.add(x)
                        break
            self.add_type(found, heads)
        elif kind == "closed":
            _, heads, bases, unless = plan
            found = set.intersection(*(self.members.get(b.value, set()) for b in bases))
            for u in unless:
                found = found - self.members.get(u.value, set())
            self.add_type(found, heads)
        elif kind == "superclasses":
            for sub, sups in plan[1].items():
                individuals = self.members.get(sub)
                if individuals:
                    self.add_type(set(individuals), sups)
        elif kind == "chain":
            _, prop, chain = plan
            pairs = [(s, o) for s, objects in self.out(chain[0]).items() for o in objects]
            for step in chain[1:]:
                following = self.out(step)
                pairs = [(s, z) for s, y in pairs for z in following.get(y, ())]
            self.add_edges(prop, pairs)
        elif kind == "domain":
            self.add_type(self.ends(plan[1], objects=False), [plan[2].value])
        elif kind == "range":
            nodes = {o for o in self.ends(plan[1], objects=True) if isinstance(o, (ox.NamedNode, ox.BlankNode))}
            self.add_type(nodes, [plan[2].value])
        else:
            raise KnowledgeBaseError(f"unknown rule plan {kind!r}")

    def conjunction(self, atoms: list[tuple], var: str) -> set | None:
        """The individuals ``var`` can be in one alternative (a tree of atoms rooted at ``var``);
        None when nothing constrains it."""
        found: set | None = None
        for atom in atoms:
            if atom[1] != var:
                continue
            if atom[0] == "a":
                part = self.members.get(atom[2].value, set())
            elif atom[0] == "value":
                part = self.back(atom[2]).get(atom[3], set())
            else:
                fillers = self.conjunction(atoms, atom[3])
                if fillers is None:
                    part = self.ends(atom[2], objects=False)
                else:
                    back = self.back(atom[2])
                    part = set().union(*(back.get(y, ()) for y in fillers)) if fillers else set()
            found = set(part) if found is None else found & part
            if not found:
                return set()
        return found


_THRESHOLD_VALUE = ox.NamedNode(B12 + "thresholdValue")
_CANONICAL_VALUE = ox.NamedNode(B12 + "canonicalValue")


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


class _TempFilesIn:
    """Stands for the ``tempfile`` module inside owlready2's reasoning module: its temp files go into
    ``folder``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def NamedTemporaryFile(self, *args, **kwargs):  # noqa: N802 (the name owlready2 calls)
        kwargs["dir"] = self.folder
        return tempfile.NamedTemporaryFile(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(tempfile, name)


_HERMIT = threading.Lock()  # one HermiT run at a time in a process: owlready2's module is patched during it


def run_hermit(world) -> None:
    """``owlready2.sync_reasoner_hermit`` on ``world``, leaving nothing in the temp folder. owlready2
    writes HermiT's input (the ontology, and a patient's data) to a temp file and deletes it only when
    HermiT succeeds: each inconsistent or rejected input would leave a copy behind. Its temp files go
    into a folder of their own here, removed after the run whatever HermiT answered. Raises what
    ``sync_reasoner_hermit`` raises."""
    import owlready2
    import owlready2.reasoning

    with _HERMIT, tempfile.TemporaryDirectory(prefix="b12kg-hermit-") as folder:
        module = owlready2.reasoning.tempfile
        owlready2.reasoning.tempfile = _TempFilesIn(folder)
        try:
            owlready2.sync_reasoner_hermit(world, infer_property_values=False, debug=0)
        finally:
            owlready2.reasoning.tempfile = module


def _hermit_pass(ws: Workspace, graphs: tuple[str, ...]) -> None:
    import owlready2

    world = owlready2.World()
    try:
        onto = world.get_ontology("urn:b12kg:reasoner-input")
        onto.load(fileobj=io.BytesIO(_reasoner_input(ws, graphs)), format="ntriples")
        # The ontology's date ranges are xsd:dateTime (in the OWL 2 datatype map); patient dates
        # (xsd:date, outside it) are stripped above: date logic runs in SPARQL before reasoning.
        try:
            run_hermit(world)
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
    finally:
        world.close()
    ws.add_triples("inferred", inferred)


def _java_message(exc: Exception) -> str:
    """The first line of a Java error that says what went wrong (not a stack frame)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith("at ") and "Java error message" not in line:
            return line
    return "unknown Java error"

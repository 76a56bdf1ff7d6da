"""``b12kg check``: one quality gate over a working copy of the knowledge base.

Stages, in order: ``syntax`` (every Turtle and SPARQL file parses), ``owl`` (OWL 2 DL checks,
HermiT consistency and unsatisfiable classes), ``shacl`` (guideline shapes in
``shapes/guideline-shapes.ttl``), ``qc`` (``queries/qc/*-violation.rq`` and undeclared project IRIs
in queries and shapes), ``logic`` (threshold bands partition the number line; patient scenarios run
through the real pipeline have a decision and no conflict) and ``competency`` (competency questions
against their expected answers).

Every stage returns :class:`Finding` objects. The severity of a check is data: ``checks.toml`` beside
this module for the built-in checks, ``sh:severity`` for shapes, a ``#+ severity:`` header line for
QC queries.
"""

from __future__ import annotations

import os

import csv
import io
import re
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cached_property
from pathlib import Path

import pyoxigraph as ox

from b12kg.engine import Workspace
from b12kg.errors import B12kgError, KnowledgeBaseError, ReasonerError
from b12kg.kb import KnowledgeBase
from b12kg.scenarios import common_values

__all__ = ["DEFAULT_STAGES", "STAGES", "CheckReport", "Finding", "Severity", "registry", "run_checks"]

OWL = "http://www.w3.org/2002/07/owl#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
SH = "http://www.w3.org/ns/shacl#"
B12 = "https://w3id.org/b12kg/ontology#"
GL = "https://w3id.org/b12kg/guideline#"
PROJECT_NAMESPACES = (B12, GL)
GUIDELINE_SHAPES = "guideline-shapes.ttl"

STAGES = ("syntax", "owl", "shacl", "qc", "logic", "competency", "impact")
#: the stages a run has by default; "impact" runs when there is a revision to compare with (--against)
DEFAULT_STAGES = STAGES[:-1]


class Severity(str, Enum):
    ERROR = "ERROR"
    WARN = "WARN"
    INFO = "INFO"

    @property
    def rank(self) -> int:
        return {"ERROR": 3, "WARN": 2, "INFO": 1}[self.value]


@dataclass(frozen=True)
class CheckInfo:
    id: str
    stage: str
    severity: Severity
    title: str
    fix: str


@dataclass
class Finding:
    """One problem found by one check. ``file`` is relative to the checked folder."""

    check_id: str
    severity: Severity
    stage: str
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    entity: str | None = None
    fix: str | None = None

    @property
    def location(self) -> str:
        if not self.file:
            return ""
        parts = [self.file] + [str(v) for v in (self.line, self.column) if v is not None]
        return ":".join(parts)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


def registry() -> dict[str, CheckInfo]:
    """The built-in checks, from ``checks.toml``."""
    path = Path(__file__).with_name("checks.toml")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {
        key: CheckInfo(key, v["stage"], Severity(v["severity"]), v["title"], v["fix"]) for key, v in data.items()
    }


@dataclass
class CheckReport:
    root: Path
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)
    could_not_run: bool = False
    scenario_count: int = 0

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Severity}
        for f in self.findings:
            out[f.severity.value] += 1
        return out

    def exit_code(self, fail_on: Severity = Severity.ERROR) -> int:
        if self.could_not_run:
            return 2
        return 1 if any(f.severity.rank >= fail_on.rank for f in self.findings) else 0


# ------------------------------------------------------------------------------------ context
class Context:
    """What the stages share: the knowledge base, a locator for entities, parsed graphs."""

    def __init__(self, kb: KnowledgeBase, *, as_of: date, strength: int | None, scenarios_out: Path | None,
                 against: str | None = None) -> None:
        self.kb = kb
        self.against = against  # the revision or folder the impact stage compares with
        self.root = kb.root
        self.as_of = as_of
        self.strength = strength  # None: the full cross product
        self.scenarios_out = scenarios_out
        self.registry = registry()
        self.broken_turtle: set[Path] = set()
        self.scenario_count = 0

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def finding(self, check_id: str, message: str, **where) -> Finding:
        info = self.registry[check_id]
        return Finding(check_id=check_id, severity=info.severity, stage=info.stage, message=message,
                       fix=where.pop("fix", None) or info.fix, **where)

    @cached_property
    def ontology_paths(self) -> list[Path]:
        return list(self.kb.ontology_files.values())

    @cached_property
    def workspace(self) -> Workspace:
        return Workspace(self.kb)

    @cached_property
    def ontology_triples(self) -> list[ox.Triple]:
        return self.workspace.triples("ontology")

    @cached_property
    def declared(self) -> set[str]:
        """Project IRIs with an rdf:type in the ontology (declared classes, properties, individuals)."""
        rdf_type = RDF + "type"
        return {
            t.subject.value
            for t in self.ontology_triples
            if t.predicate.value == rdf_type and isinstance(t.subject, ox.NamedNode)
        }

    @cached_property
    def _turtle_index(self) -> list[tuple[Path, list[str], dict[str, str]]]:
        out = []
        for path in self.ontology_paths + self.kb.shape_files():
            text = path.read_text(encoding="utf-8")
            prefixes = {ns: p for p, ns in re.findall(r"@prefix\s+([\w-]*):\s*<([^>]*)>", text)}
            out.append((path, text.splitlines(), prefixes))
        return out

    def locate(self, iri: str) -> tuple[str | None, int | None]:
        """File and line where ``iri`` is defined (first as a subject at a line start, else anywhere)."""
        if not iri or iri.startswith("_:"):
            return None, None
        best = None
        for path, lines, prefixes in self._turtle_index:
            names = [f"<{iri}>"]
            for ns, prefix in prefixes.items():
                if iri.startswith(ns) and len(iri) > len(ns):
                    names.append(f"{prefix}:{iri[len(ns):]}")
            patterns = [re.compile(rf"^{re.escape(n)}(?=[\s;,.])") for n in names]
            anywhere = [re.compile(rf"(?<![\w:/#-]){re.escape(n)}(?![\w-])") for n in names]
            for number, line in enumerate(lines, start=1):
                if any(p.search(line) for p in patterns):
                    return self.rel(path), number
                if best is None and not line.lstrip().startswith("#") and any(p.search(line) for p in anywhere):
                    best = (self.rel(path), number)
        return best if best else (None, None)

    def compact(self, iri: str) -> str:
        return compact(iri)


def compact(iri: str) -> str:
    """``b12:Patient`` for the project's and OWL/RDF(S) IRIs; any other IRI as it is."""
    for prefix, ns in (("b12", B12), ("gl", GL), ("owl", OWL), ("rdfs", RDFS), ("rdf", RDF)):
        if iri.startswith(ns):
            return f"{prefix}:{iri[len(ns):]}"
    return iri


# ------------------------------------------------------------------------------------ syntax
_QUERY_POS = re.compile(r"at (\d+):(\d+)")


def stage_syntax(ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    try:
        paths = list(ctx.kb.ontology_files.values())
    except KnowledgeBaseError as exc:
        out.append(ctx.finding("syntax-catalog", exc.message, file=ctx.rel(ctx.kb.ontology_dir / "catalog-v001.xml")))
        paths = []
    turtle = sorted(set(paths) | set(ctx.kb.ontology_dir.glob("*.ttl")) | set(ctx.kb.shape_files()))
    for path in turtle:
        try:
            list(ox.parse(path=str(path), format=ox.RdfFormat.TURTLE, base_iri=path.resolve().as_uri()))
        except SyntaxError as exc:
            ctx.broken_turtle.add(path)
            out.append(ctx.finding("syntax-turtle", f"Turtle syntax error: {exc.msg}", file=ctx.rel(path),
                                   line=exc.lineno, column=exc.offset))
    for path in sorted(ctx.kb.queries_dir.rglob("*.rq")) + sorted(ctx.kb.queries_dir.rglob("*.ru")):
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix == ".ru":  # an update, run on an empty store of its own
                ox.Store().update(text)
            else:
                ox.Store().query(text)
        except SyntaxError as exc:
            match = _QUERY_POS.search(str(exc))
            line, column = (int(match.group(1)), int(match.group(2))) if match else (None, None)
            out.append(ctx.finding("syntax-sparql", f"SPARQL syntax error: {exc}", file=ctx.rel(path), line=line,
                                   column=column))
        except (ValueError, OSError) as exc:  # evaluation errors on an empty store are not syntax errors
            if "parse" in str(exc).lower():
                out.append(ctx.finding("syntax-sparql", f"SPARQL error: {exc}", file=ctx.rel(path)))
    return out


# ------------------------------------------------------------------------------------ owl
_CARDINALITY = {OWL + p for p in ("cardinality", "minCardinality", "maxCardinality", "qualifiedCardinality",
                                  "minQualifiedCardinality", "maxQualifiedCardinality", "hasSelf")}
_NEEDS_SIMPLE_TYPES = {OWL + p for p in ("FunctionalProperty", "InverseFunctionalProperty", "IrreflexiveProperty",
                                         "AsymmetricProperty")}
_PROPERTY_KINDS = {OWL + "ObjectProperty", OWL + "DatatypeProperty", OWL + "AnnotationProperty"}
_AXIOM_BOTH_SIDES = {RDFS + "subClassOf", OWL + "equivalentClass", OWL + "disjointWith"}
_CLASS_POSITIONS = {RDFS + "subClassOf", OWL + "equivalentClass", OWL + "disjointWith", OWL + "someValuesFrom",
                    OWL + "allValuesFrom", OWL + "complementOf", RDFS + "domain"}


def stage_owl(ctx: Context) -> list[Finding]:
    found = _owl_dl(ctx) + _owl_api(ctx) + _class_cycles(ctx)
    if any(f.severity is Severity.ERROR for f in found):
        return found + [ctx.finding("check-stage-skipped", "HermiT not run: the ontology is not OWL 2 DL (see above)")]
    return found + _hermit(ctx)


def _class_cycles(ctx: Context) -> list[Finding]:
    """Named classes made equivalent by a cycle of rdfs:subClassOf / owl:equivalentClass axioms between
    named classes (A ⊑ B ⊑ A): every class of the cycle gets every other's instances, which no edit
    means to do silently. Each cycle is one finding, with its axioms and their file and line."""
    edges: dict[str, set[str]] = defaultdict(set)
    for t in ctx.ontology_triples:
        p = t.predicate.value
        if p not in (RDFS + "subClassOf", OWL + "equivalentClass"):
            continue
        if not (isinstance(t.subject, ox.NamedNode) and isinstance(t.object, ox.NamedNode)):
            continue
        if t.subject.value == t.object.value or t.object.value in (OWL + "Thing",):
            continue
        edges[t.subject.value].add(t.object.value)
        if p == OWL + "equivalentClass":  # an intended equivalence: both directions, not reported alone
            edges[t.object.value].add(t.subject.value)
    intended = {(t.subject.value, t.object.value) for t in ctx.ontology_triples
                if t.predicate.value == OWL + "equivalentClass" and isinstance(t.object, ox.NamedNode)}
    # strongly connected components (Tarjan), iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    out = []
    for component in components:
        members = set(component)
        axioms = sorted((a, b) for a in component for b in edges.get(a, ()) if b in members
                        and (a, b) not in intended and (b, a) not in intended)
        if not axioms:
            continue  # only owl:equivalentClass axioms: an equivalence stated on purpose
        placed = []
        for a, b in axioms:
            file, line = ctx.locate(a)
            placed.append(f"{ctx.compact(a)} rdfs:subClassOf {ctx.compact(b)}" + (f" ({file}:{line})" if file else ""))
        file, line = ctx.locate(axioms[0][0])
        out.append(ctx.finding("owl-class-cycle",
                               f"{', '.join(ctx.compact(c) for c in component)} are made equivalent by a cycle: "
                               + "; ".join(placed), file=file, line=line, entity=axioms[0][0]))
    return out


def _owl_api(ctx: Context) -> list[Finding]:
    """The OWL API's OWL2DLProfile on the closure and on each module opened alone, each violation with
    its axiom and the file and line of the entity it is about."""
    from b12kg.owl_profile import OwlApiMissing, check_profile

    folder = ctx.kb.ontology_dir
    files = [p.name for p in ctx.ontology_paths]
    try:
        violations = check_profile(folder, files)
    except OwlApiMissing as exc:
        return [ctx.finding("owl-api-not-run", str(exc))]
    except (RuntimeError, OSError) as exc:
        return [ctx.finding("owl-api-profile", f"the OWL API could not load the ontology: {exc}")]
    out, seen = [], set()
    for v in violations:
        key = (v.kind, v.entity, v.axiom)
        if key in seen:  # the closure repeats a module's own violations
            continue
        seen.add(key)
        file, line = ctx.locate(v.entity) if v.entity else (None, None)
        what = f"{v.kind} ({ctx.compact(v.entity)})" if v.entity else v.kind
        out.append(ctx.finding("owl-api-profile", f"{what}: {v.axiom or '(no axiom)'}; in {v.ontology or v.module}",
                               file=file, line=line, entity=v.entity or None))
    return out


def _owl_dl(ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    triples = ctx.ontology_triples
    by_pred: dict[str, list[ox.Triple]] = defaultdict(list)
    types: dict[str, set[str]] = defaultdict(set)
    for t in triples:
        by_pred[t.predicate.value].append(t)
        if t.predicate.value == RDF + "type":
            types[t.subject.value].add(t.object.value)

    def where(iri: str) -> dict:
        file, line = ctx.locate(iri)
        return {"file": file, "line": line, "entity": iri}

    # non-simple properties: chains, transitivity, and their super-properties
    non_simple = {t.subject.value for t in by_pred[OWL + "propertyChainAxiom"]}
    non_simple |= {s for s, ts in types.items() if OWL + "TransitiveProperty" in ts}
    sub_of = [(t.subject.value, t.object.value) for t in by_pred[RDFS + "subPropertyOf"]]
    changed = True
    while changed:
        changed = False
        for sub, sup in sub_of:
            if sub in non_simple and sup not in non_simple:
                non_simple.add(sup)
                changed = True
    for prop in sorted(non_simple):
        bad = sorted(types.get(prop, set()) & _NEEDS_SIMPLE_TYPES)
        for kind in bad:
            out.append(ctx.finding("owl-dl-non-simple-property",
                                   f"{ctx.compact(prop)} is non-simple (property chain or transitive) but declared "
                                   f"{ctx.compact(kind)}", **where(prop)))
    restrictions_on = defaultdict(set)
    for t in by_pred[OWL + "onProperty"]:
        restrictions_on[t.subject].add(t.object.value)
    for t in triples:
        if t.predicate.value in _CARDINALITY:
            for prop in restrictions_on.get(t.subject, ()):
                if prop in non_simple:
                    out.append(ctx.finding("owl-dl-non-simple-property",
                                           f"{ctx.compact(prop)} is non-simple but used in a "
                                           f"{ctx.compact(t.predicate.value)} restriction", **where(prop)))
    for t in by_pred[OWL + "propertyDisjointWith"]:
        for prop in (t.subject.value, t.object.value):
            if prop in non_simple:
                out.append(ctx.finding("owl-dl-non-simple-property",
                                       f"{ctx.compact(prop)} is non-simple but used in owl:propertyDisjointWith",
                                       **where(prop)))
    # property kinds, punning
    for iri, ts in sorted(types.items()):
        kinds = ts & _PROPERTY_KINDS
        if len(kinds) > 1:
            out.append(ctx.finding("owl-dl-property-kind",
                                   f"{ctx.compact(iri)} is declared as {', '.join(sorted(ctx.compact(k) for k in kinds))}",
                                   **where(iri)))
        if OWL + "Class" in ts and (OWL + "NamedIndividual" in ts or any(
                c.startswith(PROJECT_NAMESPACES) for c in ts - {OWL + "Class"})):
            if iri.startswith(PROJECT_NAMESPACES):
                out.append(ctx.finding("owl-dl-punning", f"{ctx.compact(iri)} is both a class and an individual",
                                       **where(iri)))
    object_props = {s for s, ts in types.items() if OWL + "ObjectProperty" in ts}
    data_props = {s for s, ts in types.items() if OWL + "DatatypeProperty" in ts}
    seen_use: set[tuple[str, str]] = set()
    for t in triples:
        p = t.predicate.value
        if p in object_props and isinstance(t.object, ox.Literal):
            problem = "an object property with a literal value"
        elif p in data_props and not isinstance(t.object, ox.Literal):
            problem = "a datatype property with an IRI or blank node value"
        else:
            continue
        if (t.subject.value, p) in seen_use:
            continue
        seen_use.add((t.subject.value, p))
        out.append(ctx.finding("owl-dl-property-use", f"{ctx.compact(t.subject.value)} uses {ctx.compact(p)}, {problem}",
                               **where(t.subject.value)))
    # undeclared classes and properties in axioms
    declared_classes = {s for s, ts in types.items() if OWL + "Class" in ts or RDFS + "Class" in ts}
    declared_props = {s for s, ts in types.items() if ts & _PROPERTY_KINDS}
    firsts = {t.subject: t.object for t in by_pred[RDF + "first"]}
    rests = {t.subject: t.object for t in by_pred[RDF + "rest"]}

    def members(head) -> list:
        items = []
        while head in firsts:
            items.append(firsts[head])
            head = rests.get(head)
        return items

    used_classes: dict[str, str] = {}
    for t in triples:
        p = t.predicate.value
        if p in _CLASS_POSITIONS or (p == RDF + "type" and not t.object.value.startswith((OWL, RDF, RDFS))):
            if p in (OWL + "someValuesFrom", OWL + "allValuesFrom"):
                onp = restrictions_on.get(t.subject, set())
                if onp & data_props:
                    continue
            if isinstance(t.object, ox.NamedNode):
                used_classes.setdefault(t.object.value, p)
            if p in _AXIOM_BOTH_SIDES and isinstance(t.subject, ox.NamedNode):
                used_classes.setdefault(t.subject.value, p)
        if p in (OWL + "intersectionOf", OWL + "unionOf"):
            for m in members(t.object):
                if isinstance(m, ox.NamedNode):
                    used_classes.setdefault(m.value, p)
    for iri, p in sorted(used_classes.items()):
        if iri.startswith(PROJECT_NAMESPACES) and iri not in declared_classes:
            out.append(ctx.finding("owl-dl-undeclared",
                                   f"{ctx.compact(iri)} is used as a class ({ctx.compact(p)}) but not declared owl:Class",
                                   **where(iri)))
    used_props = {t.predicate.value for t in triples} | {o for s in restrictions_on.values() for o in s}
    for iri in sorted(used_props):
        if iri.startswith(PROJECT_NAMESPACES) and iri not in declared_props:
            out.append(ctx.finding("owl-dl-undeclared",
                                   f"{ctx.compact(iri)} is used as a property but not declared", **where(iri)))
    return out


def _hermit(ctx: Context) -> list[Finding]:
    import shutil

    import owlready2

    from b12kg.reason import _java_message, _reasoner_input, run_hermit

    if shutil.which(owlready2.JAVA_EXE) is None and shutil.which("java") is None:
        raise ReasonerError("HermiT needs Java: install a JRE (Debian: apt-get install default-jre-headless)")
    try:
        data = _reasoner_input(ctx.workspace)
    except KnowledgeBaseError as exc:
        return [ctx.finding("owl-reasoner-input", exc.message)]
    world = owlready2.World()
    try:
        onto = world.get_ontology("urn:b12kg:check")
        onto.load(fileobj=io.BytesIO(data), format="ntriples")
        try:
            run_hermit(world)
        except owlready2.OwlReadyInconsistentOntologyError:
            return [_inconsistency(ctx, data)]
        except owlready2.OwlReadyJavaError as exc:  # HermiT rejects the input: a knowledge-base problem
            return [ctx.finding("owl-reasoner-input", f"HermiT rejected the ontology: {_java_message(exc)}")]
        unsat = sorted({c.iri for c in world.inconsistent_classes() if getattr(c, "iri", None)})
    finally:
        world.close()
    out = []
    for iri in unsat:
        if not iri.startswith(PROJECT_NAMESPACES):
            continue
        axioms = _axioms_involving(ctx, iri)
        file, line = ctx.locate(iri)
        listed = "; ".join(axioms[:6]) if axioms else "no asserted axioms: it is unsatisfiable through its superclasses"
        out.append(ctx.finding("owl-unsatisfiable-class", f"{ctx.compact(iri)} is unsatisfiable; axioms involved: {listed}",
                               file=file, line=line, entity=iri))
    return out


MAX_JUSTIFICATION_RUNS = 80  #: HermiT runs spent looking for the axioms behind an inconsistency (~3 s each)
_DECLARATIONS = {OWL + k for k in ("Class", "ObjectProperty", "DatatypeProperty", "AnnotationProperty", "Ontology",
                                   "NamedIndividual")}


def _consistent_hermit(triples: list[ox.Triple]) -> bool:
    import owlready2

    from b12kg.reason import run_hermit

    world = owlready2.World()
    try:
        onto = world.get_ontology("urn:b12kg:justify")
        onto.load(fileobj=io.BytesIO(ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES)), format="ntriples")
        run_hermit(world)
        return True
    except owlready2.OwlReadyInconsistentOntologyError:
        return False
    finally:
        world.close()


def _axiom_groups(triples: list[ox.Triple]) -> tuple[list[ox.Triple], dict[str, list[ox.Triple]]]:
    """Declarations (always kept) and the other triples grouped by the named subject they describe
    (a blank-node structure with the subject it hangs from, or alone when nothing names it)."""
    parents: dict[ox.BlankNode, ox.Term] = {}
    for t in triples:
        if isinstance(t.object, ox.BlankNode):
            parents.setdefault(t.object, t.subject)

    def owner(node):
        seen = set()
        while isinstance(node, ox.BlankNode) and node in parents and node not in seen:
            seen.add(node)
            node = parents[node]
        return node

    kept, groups = [], defaultdict(list)
    for t in triples:
        if t.predicate.value == RDF + "type" and t.object.value in _DECLARATIONS and isinstance(t.subject, ox.NamedNode):
            kept.append(t)
            continue
        root = owner(t.subject)
        groups[root.value if isinstance(root, ox.NamedNode) else f"_:{root.value}"].append(t)
    return kept, dict(groups)


def _quickxplain(consistent: Callable[[list], bool], background: list, candidates: list, budget: list[int]) -> list:
    """A minimal subset of ``candidates`` that makes ``background`` inconsistent (QuickXplain,
    Junker 2004): about k·log(n/k) consistency checks for k culprits among n candidates."""
    def flat(items):
        return [t for item in items for t in item[1]]

    def qx(base: list, delta: bool, items: list) -> list:
        if budget[0] <= 0:
            raise TimeoutError
        if delta:
            budget[0] -= 1
            if not consistent(flat(base)):
                return []
        if len(items) == 1:
            return items
        half = len(items) // 2
        first, second = items[:half], items[half:]
        found2 = qx(base + first, bool(first), second)
        found1 = qx(base + found2, bool(found2), first)
        return found1 + found2

    return qx(background, False, candidates)


def _inconsistency(ctx: Context, data: bytes) -> Finding:
    """The owl-inconsistent finding, with a minimal set of axioms behind it, each at its file:line."""
    triples = list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES))
    kept, groups = _axiom_groups(triples)
    items = [(key, group) for key, group in sorted(groups.items())]
    budget = [MAX_JUSTIFICATION_RUNS]
    try:
        culprits = _quickxplain(_consistent_hermit, [("", kept)], items, budget)
        # within each culprit subject, the triples that matter (the others stay in)
        exact = []
        for n, (key, group) in enumerate(culprits):
            others = [c for i, c in enumerate(culprits) if i != n]
            if key.startswith("_:") or len(group) == 1:
                exact.append((key, group))
                continue
            rest = _quickxplain(_consistent_hermit, [("", kept)] + others, [(key, [t]) for t in group], budget)
            exact.append((key, [t for _, ts in rest for t in ts]))
    except TimeoutError:
        return ctx.finding("owl-inconsistent", "HermiT: the ontology is inconsistent (no model exists); no minimal set "
                           f"of axioms found within {MAX_JUSTIFICATION_RUNS} reasoner runs",
                           file=ctx.rel(ctx.ontology_paths[0]))
    shown, first = [], None
    for key, group in sorted(exact, key=lambda kg: (kg[0].startswith("_:"), kg[0])):  # named subjects first
        file, line = _locate_group(ctx, key, group)
        first = first or (file, line, key)
        text = _turtle(group)
        shown.append(f"{text} ({file}:{line})" if file else text)
    file, line, key = first if first else (ctx.rel(ctx.ontology_paths[0]), None, None)
    return ctx.finding("owl-inconsistent", "HermiT: the ontology is inconsistent (no model exists); these axioms "
                       f"together cause it (remove or change one): {' | '.join(shown)}",
                       file=file, line=line, entity=key if key and not key.startswith("_:") else None)


def _turtle(triples: list[ox.Triple]) -> str:
    """Triples as one line of Turtle with the project's prefixes (RDF lists as ( … ))."""
    import rdflib

    graph = rdflib.Graph()
    for prefix, ns in (("b12", B12), ("gl", GL), ("owl", OWL), ("rdf", RDF), ("rdfs", RDFS),
                       ("xsd", "http://www.w3.org/2001/XMLSchema#")):
        graph.bind(prefix, ns)
    graph.parse(data=ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES).decode("utf-8"), format="nt")
    body = [line.strip() for line in graph.serialize(format="turtle").splitlines()
            if line.strip() and not line.startswith("@prefix")]
    return " ".join(body)


def _locate_group(ctx: Context, key: str, group: list[ox.Triple]) -> tuple[str | None, int | None]:
    """Where a subject's axioms are written: the subject's line; for a blank-node structure (such as
    an owl:AllDisjointClasses), the line that names most of its members."""
    if not key.startswith("_:"):
        return ctx.locate(key)
    names = {t.object.value for t in group if isinstance(t.object, ox.NamedNode)} - {OWL + "AllDisjointClasses"}
    best, best_count = (None, None), 0
    for path, lines, prefixes in ctx._turtle_index:
        forms = [(iri, [f"<{iri}>"] + [f"{p}:{iri[len(ns):]}" for ns, p in prefixes.items() if iri.startswith(ns)])
                 for iri in names]
        for number, line in enumerate(lines, start=1):
            count = sum(1 for _, fs in forms if any(re.search(rf"(?<![\w:/#-]){re.escape(f)}(?![\w-])", line) for f in fs))
            if count > best_count:
                best, best_count = (ctx.rel(path), number), count
    return best


def _axioms_involving(ctx: Context, iri: str) -> list[str]:
    preds = {RDFS + "subClassOf", OWL + "equivalentClass", OWL + "disjointWith"}
    out = []
    for t in ctx.ontology_triples:
        if t.predicate.value in preds and iri in (t.subject.value, t.object.value):
            where_iri = t.subject.value if isinstance(t.subject, ox.NamedNode) else iri
            file, line = ctx.locate(where_iri)
            text = f"{ctx.compact(t.subject.value) if isinstance(t.subject, ox.NamedNode) else '[...]'} " \
                   f"{ctx.compact(t.predicate.value)} " \
                   f"{ctx.compact(t.object.value) if isinstance(t.object, ox.NamedNode) else '[...]'}"
            out.append(f"{text} ({file}:{line})" if file else text)
    return out


# ------------------------------------------------------------------------------------ shacl
def _patient_shapes_compile(ctx: Context) -> list[Finding]:
    """The patient shapes compile to SPARQL (:mod:`b12kg.shacl_sparql`); one INFO finding when they do not
    (patient data is then validated by pyshacl-turbo: the same results, slower)."""
    from b12kg import shacl_sparql
    from b12kg.validate import PATIENT_SHAPES, _shapes_graph

    path = ctx.kb.shapes_dir / PATIENT_SHAPES
    if not path.is_file() or path in ctx.broken_turtle:
        return []
    try:
        shacl_sparql.compile_shapes(_shapes_graph(path, path.stat().st_mtime))
    except shacl_sparql.Unsupported as exc:
        return [ctx.finding("shacl-patient-shapes-not-compiled", f"{PATIENT_SHAPES} uses {exc}, which b12kg does "
                            "not compile to SPARQL: patient data is validated by pyshacl-turbo instead (the same "
                            "results, slower)", file=ctx.rel(path), entity=str(exc))]
    return []


def stage_shacl(ctx: Context) -> list[Finding]:
    import pyshacl
    import rdflib

    shapes_path = ctx.kb.shapes_dir / GUIDELINE_SHAPES
    if not shapes_path.is_file():
        raise KnowledgeBaseError(f"{shapes_path}: guideline shapes not found")
    if shapes_path in ctx.broken_turtle:
        return [ctx.finding("check-stage-skipped", f"{GUIDELINE_SHAPES} does not parse: guideline shapes not run")]
    shapes = rdflib.Graph().parse(shapes_path, format="turtle")
    sh = rdflib.Namespace(SH)
    out = _patient_shapes_compile(ctx)
    # a path that names no declared property (a typo) is one finding, and the shapes using it are not run:
    # otherwise each would report every focus node as missing the value
    declared = ctx.declared | {RDF + "type", RDFS + "label", RDFS + "comment", RDFS + "subClassOf"}
    broken = set()
    for shape, path in shapes.subject_objects(sh.path):
        if isinstance(path, rdflib.URIRef) and str(path) not in declared:
            rel = ctx.rel(shapes_path)
            line = next((n for n, text in enumerate(shapes_path.read_text(encoding="utf-8").splitlines(), start=1)
                         if "sh:path" in text and (ctx.compact(str(path)) in text or f"<{path}>" in text)), None)
            out.append(ctx.finding("shacl-undeclared-path", f"shape path {ctx.compact(str(path))} names no declared "
                                   "property; the shapes using it were not run", file=rel, line=line, entity=str(path)))
            broken.add(shape)
    for shape in broken:  # remove the property shape, and its link from node shapes
        for s, p in list(shapes.subject_predicates(shape)):
            shapes.remove((s, p, shape))
        shapes.remove((shape, None, None))
    data = rdflib.Graph()
    data.parse(data=ox.serialize(ctx.ontology_triples, format=ox.RdfFormat.N_TRIPLES).decode("utf-8"), format="nt")
    _, report, _ = pyshacl.validate(data, shacl_graph=shapes, inference="none", advanced=True)
    for result in report.subjects(rdflib.RDF.type, sh.ValidationResult):
        focus = report.value(result, sh.focusNode)
        source = report.value(result, sh.sourceShape)
        severity = report.value(result, sh.resultSeverity)
        message = report.value(result, sh.resultMessage)
        path = report.value(result, sh.resultPath)
        value = report.value(result, sh.value)
        shape_id = str(source).rsplit("#", 1)[-1] if isinstance(source, rdflib.URIRef) else "shape"
        fix = shapes.value(source, rdflib.RDFS.comment) if source is not None else None
        file, line = ctx.locate(str(focus))
        sev = {"Violation": Severity.ERROR, "Warning": Severity.WARN, "Info": Severity.INFO}[str(severity).rsplit("#", 1)[-1]]
        detail = f" ({ctx.compact(str(path))}" + (f" = {value}" if value is not None and value != focus else "") + ")" \
            if path is not None else ""
        out.append(Finding(check_id=f"shacl-{shape_id}", severity=sev, stage="shacl",
                           message=f"{ctx.compact(str(focus))}: {message}{detail}", file=file, line=line,
                           entity=str(focus), fix=str(fix) if fix else "Add the missing value in the focus node's definition."))
    out.sort(key=lambda f: (f.check_id, f.file or "", f.line or 0))
    return out


# ------------------------------------------------------------------------------------ qc
_HEADER = re.compile(r"^#\+\s*(\w[\w-]*)\s*:\s*(.*)$")


def query_header(text: str) -> dict[str, str]:
    """The ``#+ key: value`` lines at the top of a query (continuation lines ``#+   ...`` are joined)."""
    header: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.startswith("#"):
            if line.strip():
                break
            continue
        match = _HEADER.match(line)
        if match:
            last = match.group(1).lower()
            header[last] = match.group(2).strip()
        elif last and line.startswith("#+"):
            header[last] += " " + line[2:].strip()
    return header


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")  # not the 12 of "B12"


def _statement_numbers(ctx: Context) -> list[Finding]:
    """Every number written in a statement's text is one the statement carries (a threshold it defines,
    in any unit of its analyte, rounded as written; a regimen's dose or interval; a follow-up window)
    or one marked as the article's own case (b12:caseSpecificValue): an edit to a number in the
    ontology that leaves the words behind is an error."""
    carried: dict[str, list[tuple[Decimal, str]]] = defaultdict(list)
    texts: dict[str, str] = {}
    for row in ctx.workspace.select("check/statement-numbers"):
        statement = row["statement"].value
        texts[statement] = row["text"].value
        if "value" in row:
            carried[statement].append((Decimal(row["value"].value), row["what"].value))
    out = []
    for statement, text in sorted(texts.items()):
        for match in _NUMBER.finditer(text):
            written = Decimal(match.group(0))
            step = Decimal(1).scaleb(written.as_tuple().exponent)  # a written integer matches a value that rounds to it
            if any(abs(value - written) <= step / 2 for value, _ in carried[statement]):
                continue
            file, line = ctx.locate(statement)
            offers = ", ".join(sorted({f"{round(value, 1).normalize():f} ({ctx.compact(what.split(' ', 1)[-1]) if ' ' in what else what})"
                                       for value, what in carried[statement]})) or "no number"
            out.append(ctx.finding("qc-statement-number",
                                   f"{ctx.compact(statement)} says {match.group(0)} (\"…{text[max(0, match.start() - 25):match.end() + 10]}…\") "
                                   f"but carries {offers}", file=file, line=line, entity=statement))
    return out


def stage_qc(ctx: Context) -> list[Finding]:
    out: list[Finding] = _statement_numbers(ctx)
    for path in sorted((ctx.kb.queries_dir / "qc").glob("*-violation.rq")):
        text = path.read_text(encoding="utf-8")
        header = query_header(text)
        check_id = "qc-" + path.name[: -len("-violation.rq")]
        try:
            severity = Severity(header.get("severity", "ERROR").upper())
        except ValueError:
            out.append(Finding(check_id, Severity.ERROR, "qc", f"unknown severity {header.get('severity')!r}",
                               file=ctx.rel(path), line=1, fix="Use ERROR, WARN or INFO."))
            continue
        try:
            rows = ctx.workspace.select_text(text)
        except (SyntaxError, ValueError, OSError) as exc:
            out.append(Finding(check_id, Severity.ERROR, "qc", f"query failed: {exc}", file=ctx.rel(path),
                               fix="Correct the query."))
            continue
        for row in rows:
            entity = row.get("entity")
            iri = entity.value if entity is not None else ""
            file, line = ctx.locate(iri) if isinstance(entity, ox.NamedNode) else (None, None)
            prop = row.get("property")
            value = row.get("value")
            evidence = ""
            if prop is not None:
                evidence += f" {ctx.compact(prop.value)}"
            if value is not None:
                evidence += f" {ctx.compact(value.value) if isinstance(value, ox.NamedNode) else repr(value.value)}"
            out.append(Finding(check_id, severity, "qc",
                               f"{ctx.compact(iri) if iri else '(no entity)'}:{evidence}",
                               file=file, line=line, entity=iri or None,
                               fix=header.get("fix") or "See the query header."))
    out += _undeclared_in_queries(ctx)
    return out


_PREFIX_DECL = re.compile(r"(?:PREFIX|@prefix)\s+([\w-]*):\s*<([^>]*)>", re.IGNORECASE)


def _undeclared_in_queries(ctx: Context) -> list[Finding]:
    known = ctx.declared
    out = []
    files = sorted(ctx.kb.queries_dir.rglob("*.rq")) + sorted(ctx.kb.queries_dir.rglob("*.ru")) + [
        p for p in ctx.kb.shape_files() if p.name == GUIDELINE_SHAPES or p not in ctx.broken_turtle
    ]
    for path in files:
        text = path.read_text(encoding="utf-8")
        prefixes = {p: ns for p, ns in _PREFIX_DECL.findall(text) if ns in PROJECT_NAMESPACES}
        patterns = [(re.compile(rf"<({re.escape(ns)}[^>\s]*)>"), None) for ns in PROJECT_NAMESPACES]
        patterns += [(re.compile(rf"(?<![\w:#/<-]){re.escape(p)}:([A-Za-z_][\w.-]*)"), ns) for p, ns in prefixes.items()]
        for number, line in enumerate(text.splitlines(), start=1):
            if line.lstrip().startswith("#") or _PREFIX_DECL.search(line):
                continue
            for pattern, ns in patterns:
                for match in pattern.finditer(line):
                    iri = (ns or "") + match.group(1).rstrip(".")
                    if iri not in known:
                        out.append(ctx.finding("qc-query-undeclared-iri",
                                               f"{ctx.compact(iri)} is not declared in the ontology",
                                               file=ctx.rel(path), line=number, column=match.start() + 1, entity=iri))
    return out


# ------------------------------------------------------------------------------------ logic
def stage_logic(ctx: Context) -> list[Finding]:
    from b12kg import scenarios as sc

    out: list[Finding] = []
    all_bands = sc.bands(ctx.workspace)
    for analyte, items in sorted(all_bands.items()):
        out += _band_findings(ctx, analyte, items)
    if any(f.severity is Severity.ERROR for f in out):
        out.append(ctx.finding("check-stage-skipped", "scenarios not evaluated: the bands are broken"))
        return out
    try:
        space = sc.ScenarioSpace.from_kb(ctx.kb, as_of=ctx.as_of)
        chosen = list(space.scenarios()) if ctx.strength is None else sc.covering(space, ctx.strength)
        decisions = sc.evaluate(ctx.kb, chosen, as_of=ctx.as_of, batch_size=300, workers=os.cpu_count() or 1)
    except KnowledgeBaseError as exc:
        return out + [ctx.finding("logic-evaluation-failed", exc.message)]
    except (SyntaxError, ValueError, OSError) as exc:
        return out + [ctx.finding("logic-evaluation-failed", f"a pipeline query failed: {exc}")]
    ctx.scenario_count = len(decisions)
    out += _decision_findings(ctx, decisions, space)
    if ctx.scenarios_out is not None:
        _write_csv(ctx, decisions, space)
    return out


def _band_findings(ctx: Context, analyte: str, items) -> list[Finding]:
    out = []
    name = ctx.compact(analyte)

    def where(band) -> dict:
        file, line = ctx.locate(band.iri)
        return {"file": file, "line": line, "entity": band.iri}

    def show(v) -> str:
        return "open" if v is None else str(v)

    for band in items:
        for threshold, value in ((band.lower, band.lower_value), (band.upper, band.upper_value)):
            if threshold and value is None:
                out.append(ctx.finding("logic-band-gap", f"{ctx.compact(band.iri)}: threshold {ctx.compact(threshold)} "
                                       "has no b12:thresholdValue", **where(band)))
        for threshold, unit in ((band.lower, band.lower_unit), (band.upper, band.upper_unit)):
            if threshold and band.unit and unit != band.unit:
                out.append(ctx.finding("logic-band-unit", f"{ctx.compact(band.iri)}: threshold {ctx.compact(threshold)} "
                                       f"is in {unit!r}, the canonical unit of {name} is {band.unit!r}",
                                       **where(band)))
    for a, b in zip(items, items[1:]):
        lo_b, hi_a = b.lower_value, a.upper_value
        if hi_a is None or lo_b is None or hi_a > lo_b:
            out.append(ctx.finding(
                "logic-band-overlap",
                f"{name}: {ctx.compact(a.iri)} [{show(a.lower_value)}, {show(hi_a)}) and {ctx.compact(b.iri)} "
                f"[{show(lo_b)}, {show(b.upper_value)}) overlap", **where(b)))
        elif hi_a < lo_b:
            out.append(ctx.finding(
                "logic-band-gap",
                f"{name}: no band covers [{hi_a}, {lo_b}) between {ctx.compact(a.iri)} and {ctx.compact(b.iri)}",
                **where(b)))
    if items and items[0].lower_value is not None:
        out.append(ctx.finding("logic-band-gap", f"{name}: no band covers values below {items[0].lower_value}",
                               **where(items[0])))
    if items and items[-1].upper_value is not None and not any(i.upper_value is None for i in items):
        out.append(ctx.finding("logic-band-gap", f"{name}: no band covers values at or above {items[-1].upper_value}",
                               **where(items[-1])))
    return out


def _common(decisions) -> str:
    return common_values([d.scenario.values() for d in decisions])


def _decision_findings(ctx: Context, decisions, space) -> list[Finding]:
    out: list[Finding] = []
    groups: dict[tuple, list] = defaultdict(list)
    for d in decisions:
        if d.is_gap:
            groups[("logic-gap", d.scenario.values()["b12"])].append(d)
        if len(d.selected) > 1:
            groups[("logic-conflict-regimens", tuple(d.selected))].append(d)
        for regimen, product in d.contraindicated_selected:
            groups[("logic-conflict-contraindicated", regimen, product)].append(d)
        if d.in_scope and d.not_covered:
            groups[("logic-scope-contradiction", tuple(d.not_covered))].append(d)
        for statement in d.unworded:
            groups[("logic-case-specific-unworded", statement)].append(d)
        for action in d.no_switch_target:
            groups[("logic-switch-without-target", action)].append(d)
    for key, items in sorted(groups.items(), key=lambda kv: kv[0]):
        check_id = key[0]
        example = items[0].scenario
        common = _common(items)
        scope = f"{len(items)} scenario(s)" + (f" with {common}" if common else "")
        if check_id == "logic-gap":
            entity = None
            what = f"in scope={items[0].in_scope}, no selected regimen and no not-covered reason"
        elif check_id == "logic-conflict-regimens":
            entity = key[1][0]
            what = f"{len(key[1])} selected regimens ({', '.join(ctx.compact(r) for r in key[1])})"
        elif check_id == "logic-conflict-contraindicated":
            entity = key[1]
            by = items[0].contraindicated.get(key[2]) or items[0].possibly_contraindicated.get(key[2], [])
            what = (f"recommended regimen {ctx.compact(key[1])} may be satisfied by {ctx.compact(key[2])}, "
                    f"(possibly) contraindicated by {', '.join(ctx.compact(c) for c in by)}")
        elif check_id == "logic-case-specific-unworded":
            entity = key[1]
            what = (f"{ctx.compact(key[1])} describes the article's own case (b12:caseSpecific) and no "
                    f"b12:rendering applies, so its words would be asserted about the patient")
        elif check_id == "logic-switch-without-target":
            entity = key[1]
            what = f"{ctx.compact(key[1])} applies but the selected regimen permits no product to switch to"
        else:
            entity = key[1][0]
            what = f"in scope but not covered by {', '.join(ctx.compact(c) for c in key[1])}"
        message = f"{scope}: {what}; e.g. {example.id}: {_describe(example)}"
        if entity is None:
            file, line = ctx.rel(ctx.kb.ontology_files.get("https://w3id.org/b12kg/guideline",
                                                           ctx.ontology_paths[0])), None
        else:
            file, line = ctx.locate(entity)
        out.append(ctx.finding(check_id, message, file=file, line=line, entity=entity))
    return out


def _describe(scenario) -> str:
    return ", ".join(f"{k}={v}" for k, v in scenario.values().items())


def _write_csv(ctx: Context, decisions, space) -> None:
    def names(iris: Iterable[str]) -> str:
        return "; ".join(ctx.compact(i) for i in iris)

    path = ctx.scenarios_out
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        dims = [d.name for d in space.dimensions]
        writer.writerow(["scenario", *dims, "in_scope", "selected_regimens", "permitted_products",
                         "alternative_regimens", "not_covered", "assumptions", "contraindicated_products",
                         "possibly_contraindicated_products", "missing_data", "gap", "conflict"])
        for d in decisions:
            values = d.scenario.values()
            conflict = len(d.selected) > 1 or bool(d.contraindicated_selected)
            permitted = sorted({p for r in d.selected for p in d.products.get(r, set())})
            writer.writerow([d.scenario.id, *(values[k] for k in dims), str(d.in_scope).lower(), names(d.selected),
                             names(permitted), names(d.alternatives), names(d.not_covered), names(d.assumed),
                             names(sorted(d.contraindicated)), names(sorted(d.possibly_contraindicated)),
                             names(d.missing), str(d.is_gap).lower(), str(conflict).lower()])


# ------------------------------------------------------------------------------------ impact
def stage_impact(ctx: Context) -> list[Finding]:
    """What the edit since ``ctx.against`` changes for patients (``b12kg diff``): one WARN per edited
    subject that changes a decision, at its file and line, for clinical review."""
    from b12kg.diff import TOGETHER, UNATTRIBUTED, DiffError, compare, resolve
    from b12kg.diff_cli import summary_lines

    if ctx.against is None:
        return []
    try:
        with resolve(ctx.against, repository=ctx.root) as (old, label):
            report = compare(old, ctx.kb, as_of=ctx.as_of, old_label=label, new_label=str(ctx.root),
                             strength=ctx.strength, workers=os.cpu_count() or 1)
    except DiffError as exc:
        raise KnowledgeBaseError(exc.message) from None
    out = []
    for key, location, lines in summary_lines(report):
        if not lines:
            continue
        file, _, line = location.rpartition(":")
        where = {"file": file, "line": int(line)} if line.isdigit() else {"file": location or None}
        cause = "with other edited subjects" if key == TOGETHER else (
            "the whole edit" if key == UNATTRIBUTED else ctx.compact(key))
        for line in lines:
            out.append(ctx.finding("impact-change", f"edit since {label}, {cause}: {line}",
                                   entity=key if "://" in key else None, **where))
    return out


# ------------------------------------------------------------------------------------ competency
def _render_term(term, prefixes: dict[str, str]) -> str:
    if isinstance(term, ox.NamedNode):
        for prefix, ns in sorted(prefixes.items(), key=lambda kv: -len(kv[1])):
            if term.value.startswith(ns):
                return f"{prefix}:{term.value[len(ns):]}"
        return term.value
    if term is None:
        return ""
    return _normal_value(term.value)


def _normal_value(text: str) -> str:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    if not number.is_finite():
        return text
    normal = number.normalize()
    return format(normal, "f") if normal == normal.to_integral_value() or abs(normal.as_tuple().exponent) < 20 else text


def stage_competency(ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    for path in sorted((ctx.kb.queries_dir / "competency").glob("*.rq")):
        expected_path = path.with_suffix(".expected.csv")
        rel = ctx.rel(path)
        if not expected_path.is_file():
            out.append(ctx.finding("cq-no-expected", f"{path.stem}: no expected answer {expected_path.name}", file=rel))
            continue
        text = path.read_text(encoding="utf-8")
        prefixes = {p: ns for p, ns in _PREFIX_DECL.findall(text)}
        try:
            solutions = ctx.workspace.store.query(text, use_default_graph_as_union=True)
            variables = [v.value for v in solutions.variables]
            actual = [[_render_term(s[v], prefixes) for v in variables] for s in solutions]
        except (SyntaxError, ValueError, OSError) as exc:
            out.append(ctx.finding("cq-error", f"{path.stem}: {exc}", file=rel))
            continue
        with expected_path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        erel = ctx.rel(expected_path)
        header, expected = (rows[0], rows[1:]) if rows else ([], [])
        if header != variables:
            out.append(ctx.finding("cq-mismatch", f"{path.stem}: expected columns {header}, the query returns {variables}",
                                   file=erel, line=1))
            continue
        expected_norm = [[_normal_value(v) for v in row] for row in expected]
        remaining = list(actual)
        for number, row in enumerate(expected_norm, start=2):
            if row in remaining:
                remaining.remove(row)
            else:
                out.append(ctx.finding("cq-mismatch", f"{path.stem}: expected row {row} is not in the answer",
                                       file=erel, line=number))
        for row in remaining:
            out.append(ctx.finding("cq-mismatch", f"{path.stem}: the answer has an unexpected row {row}", file=erel))
    return out


# ------------------------------------------------------------------------------------ running
_STAGE_FUNCS: dict[str, Callable[[Context], list[Finding]]] = {
    "syntax": stage_syntax,
    "owl": stage_owl,
    "shacl": stage_shacl,
    "qc": stage_qc,
    "logic": stage_logic,
    "competency": stage_competency,
    "impact": stage_impact,
}


def run_checks(
    root: Path | None = None,
    *,
    stages: Iterable[str] | None = None,
    as_of: date | None = None,
    strength: int | None = 4,
    scenarios_out: Path | None = None,
    against: str | None = None,
) -> CheckReport:
    """Run the stages over the knowledge base in ``root`` (default: the project's own).

    ``strength``: scenarios cover every combination of values of any ``strength`` dimensions;
    ``None`` evaluates the full cross product. ``scenarios_out``: write the evaluated scenarios as CSV.
    ``against``: a git revision or folder; the impact stage lists what the edit since then changes.
    Raises :class:`KnowledgeBaseError` when ``root`` is not a knowledge-base folder.
    """
    kb = KnowledgeBase(Path(root)) if root is not None else KnowledgeBase()
    missing = [d for d in ("ontology", "shapes", "queries") if not (kb.root / d).is_dir()]
    if not kb.root.is_dir():
        raise KnowledgeBaseError(f"{kb.root}: no such folder")
    if missing:
        raise KnowledgeBaseError(f"{kb.root}: not a knowledge-base folder (missing {', '.join(m + '/' for m in missing)})")
    wanted = set(stages) if stages is not None else set(DEFAULT_STAGES) | ({"impact"} if against else set())
    selected = [s for s in STAGES if s in wanted]
    unknown = set(stages or ()) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))} (known: {', '.join(STAGES)})")
    ctx = Context(kb, as_of=as_of or date.today(), strength=strength, scenarios_out=scenarios_out, against=against)
    report = CheckReport(root=kb.root, stages=selected)
    syntax_broken = False
    for stage in selected:
        started = time.perf_counter()
        try:
            if stage != "syntax" and syntax_broken:
                report.findings.append(ctx.finding("check-stage-skipped",
                                                   f"stage {stage} skipped: the ontology or catalog does not parse"))
                continue
            found = _STAGE_FUNCS[stage](ctx)
            report.findings += found
            if stage == "syntax":
                syntax_broken = any(f.check_id in ("syntax-turtle", "syntax-catalog") and
                                    not (f.file or "").startswith("shapes/") for f in found)
        except ReasonerError as exc:
            report.could_not_run = True
            report.findings.append(ctx.finding("check-stage-crashed", f"stage {stage}: {exc.message}"))
        except KnowledgeBaseError as exc:
            report.findings.append(ctx.finding("check-stage-crashed", f"stage {stage}: {exc.message}",
                                               fix="Follow the message: the knowledge base is missing a part this stage needs."))
        except B12kgError as exc:
            report.could_not_run = True
            report.findings.append(ctx.finding("check-stage-crashed", f"stage {stage}: {exc.message}"))
        finally:
            report.timings[stage] = time.perf_counter() - started
    report.scenario_count = ctx.scenario_count
    return report

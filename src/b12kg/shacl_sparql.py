"""SHACL shapes evaluated as SPARQL queries over the store that already holds the data.

A batch of ``derive`` is in a workspace store before it is validated; a SHACL engine needs its own copy
of it (pyshacl-turbo: written out, parsed and indexed again; that copy is most of its time). Here each
constraint of the shapes is compiled once into a SELECT over the data's graph, giving the focus node and
value of every violation, and the report is built from those rows only. The compiler covers the SHACL
Core features a shapes file uses (targets by class, node, subjects or objects of a property; property
shapes with an IRI path; the value type, cardinality, value range, string, list, shape-based and
logical constraints, with ``sh:minCount``/``sh:maxCount`` 0 or 1); anything else raises
:class:`Unsupported` and the caller uses a full SHACL engine. ``tests/test_shacl_engines.py`` holds it
to pySHACL's results, as it holds pyshacl-turbo.

Numbers are judged as the other engines see them (:meth:`b12kg.patient.PatientData.shacl_triples`): an
exact number past what b12kg compares (:data:`b12kg.inputs.MAX_MAGNITUDE`, more than
:data:`b12kg.inputs.MAX_FRACTION_DIGITS` digits after the point) compares as 1 or -1 by its sign, and a
numeric literal outside its lexical space is not a number.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import pyoxigraph as ox
import rdflib
from rdflib.collection import Collection
from rdflib.namespace import RDF, SH, XSD

from b12kg import inputs

_XSD = str(XSD)  # (plain strings: an rdflib URIRef equals no str)
_DECIMAL, _DOUBLE, _FLOAT = _XSD + "decimal", _XSD + "double", _XSD + "float"
_INTEGER_TYPES = [t for t in inputs.NUMERIC_TYPES if t not in (_DECIMAL, _DOUBLE, _FLOAT)]
_CASTABLE = {_XSD + name for name in ("date", "dateTime", "time", "boolean", "duration", "gYear")}
_LEXICAL = {  # the lexical spaces of the numeric datatypes (XML Schema 1.1), as SPARQL regular expressions
    "decimal": r"^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)$",
    "integer": r"^[+-]?[0-9]+$",
    "double": r"^([+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([Ee][+-]?[0-9]+)?|[+-]?INF|NaN)$",
}
# constraint parameter -> component; the parameters that take the whole set of value nodes are listed apart
_PER_VALUE = {"datatype": "Datatype", "nodeKind": "NodeKind", "in": "In", "node": "Node", "or": "Or", "and": "And",
              "not": "Not", "class": "Class", "minInclusive": "MinInclusive", "minExclusive": "MinExclusive",
              "maxInclusive": "MaxInclusive", "maxExclusive": "MaxExclusive", "pattern": "Pattern",
              "minLength": "MinLength", "maxLength": "MaxLength"}
_KNOWN = {"path", "message", "severity", "name", "description", "order", "group", "targetClass",
          "targetNode", "targetSubjectsOf", "targetObjectsOf", "property", "minCount", "maxCount", "hasValue",
          *_PER_VALUE}
_COMPARISONS = {"minInclusive": ">=", "minExclusive": ">", "maxInclusive": "<=", "maxExclusive": "<"}
_KINDS = {"IRI": "isIRI({v})", "BlankNode": "isBlank({v})", "Literal": "isLiteral({v})",
          "BlankNodeOrIRI": "!isLiteral({v})", "BlankNodeOrLiteral": "!isIRI({v})", "IRIOrLiteral": "!isBlank({v})"}


class Unsupported(Exception):
    """The shapes use a SHACL feature this compiler does not cover."""


@dataclass(frozen=True)
class Check:
    """One constraint of one shape with targets, as a SELECT of ``?focus`` (and ``?value``) per violation."""

    query: str
    path: rdflib.URIRef | None
    component: rdflib.URIRef
    message: rdflib.Literal | None
    severity: rdflib.URIRef
    has_value: bool  # False: the result has no sh:value (cardinality, sh:hasValue on a path)
    violators: tuple[int, ...] = ()  # sh:node: the checks of the nested shape; its results are their foci


def _term(node: rdflib.term.Node) -> str:
    if isinstance(node, rdflib.URIRef):
        return str(ox.NamedNode(str(node)))
    if isinstance(node, rdflib.Literal):
        if node.language:
            return str(ox.Literal(str(node), language=node.language))
        return str(ox.Literal(str(node), datatype=ox.NamedNode(str(node.datatype or XSD.string))))
    raise Unsupported(f"a blank node as a value in the shapes ({node})")


@dataclass(frozen=True)
class _Constraint:
    parameter: str
    argument: object
    path: rdflib.URIRef | None
    owner: object  # the shape whose parameter it is (its message and severity)


class _Compiler:
    def __init__(self, shapes: rdflib.Graph) -> None:
        self.g = shapes
        self.fresh = itertools.count(1)

    def var(self) -> str:
        return f"?_{next(self.fresh)}"

    def one(self, shape, parameter: str):
        values = list(self.g.objects(shape, SH[parameter]))
        if len(values) > 1:
            raise Unsupported(f"more than one sh:{parameter} on a shape")
        return values[0] if values else None

    def shapes_list(self, head) -> list:
        return list(Collection(self.g, head))

    def parameters(self, shape) -> set[str]:
        found = {str(p).removeprefix(str(SH)) for p in self.g.predicates(shape) if str(p).startswith(str(SH))}
        unknown = found - _KNOWN
        if unknown:
            raise Unsupported(f"sh:{sorted(unknown)[0]}")
        if self.g.value(shape, SH.deactivated) is not None:
            raise Unsupported("sh:deactivated")
        return found

    def path(self, shape) -> rdflib.URIRef | None:
        path = self.one(shape, "path")
        if path is not None and not isinstance(path, rdflib.URIRef):
            raise Unsupported("a property path other than one IRI")
        return path

    # ---- the constraints of a shape

    def constraints(self, shape) -> list[_Constraint]:
        """The shape's own constraints and, for a node shape, those of its property shapes."""
        parameters = self.parameters(shape)
        path = self.path(shape)
        out = []
        for name in ("minCount", "maxCount"):
            count = self.one(shape, name)
            if count is not None:
                if path is None:
                    raise Unsupported(f"sh:{name} on a node shape")
                if (name, int(count)) not in (("minCount", 0), ("minCount", 1), ("maxCount", 0), ("maxCount", 1)):
                    raise Unsupported(f"sh:{name} {int(count)}")
                if (name, int(count)) != ("minCount", 0):
                    out.append(_Constraint(name, int(count), path, shape))
        for value in self.g.objects(shape, SH.hasValue):
            out.append(_Constraint("hasValue", value, path, shape))
        for parameter in sorted(parameters & set(_PER_VALUE)):
            for argument in self.g.objects(shape, SH[parameter]):
                out.append(_Constraint(parameter, argument, path, shape))
        props = list(self.g.objects(shape, SH.property))
        if props and path is not None:
            raise Unsupported("sh:property on a property shape")
        for prop in props:
            if self.path(prop) is None:
                raise Unsupported("a property shape without sh:path")
            out += self.constraints(prop)
        return out

    # ---- violations as expressions (inside other constraints) and as query bodies (top level)

    def violates(self, shape, x: str) -> str:
        """A SPARQL expression true iff ``x`` does not conform to ``shape`` (never an error)."""
        exprs = [self.violated(c, x) for c in self.constraints(shape)]
        return "(" + " || ".join(exprs) + ")" if exprs else "false"

    def violated(self, c: _Constraint, x: str) -> str:
        if c.path is None:
            return f"!({self.value_ok(c.parameter, c.argument, x)})"
        if c.parameter == "minCount":
            return f"NOT EXISTS {{ {x} <{c.path}> {self.var()} }}"
        if c.parameter == "maxCount" and c.argument == 0:
            return f"EXISTS {{ {x} <{c.path}> {self.var()} }}"
        if c.parameter == "maxCount":
            a, b = self.var(), self.var()
            return f"EXISTS {{ {x} <{c.path}> {a} , {b} . FILTER (!sameTerm({a}, {b})) }}"
        if c.parameter == "hasValue":
            return f"NOT EXISTS {{ {x} <{c.path}> {_term(c.argument)} }}"
        v = self.var()
        return f"EXISTS {{ {x} <{c.path}> {v} . FILTER (!({self.value_ok(c.parameter, c.argument, v)})) }}"

    def body(self, c: _Constraint, x: str) -> tuple[str, str | None]:
        """Patterns and filter for the query of one constraint at the bound focus ``x``: (text, the value
        node's variable or None)."""
        if c.path is None:
            return f"FILTER (!({self.value_ok(c.parameter, c.argument, x)}))", x
        if c.parameter == "minCount":  # (as set operations: MINUS, a join; cheaper than a FILTER EXISTS per node)
            return f"MINUS {{ {x} <{c.path}> {self.var()} }}", None
        if c.parameter == "hasValue":
            return f"MINUS {{ {x} <{c.path}> {_term(c.argument)} }}", None
        if c.parameter == "maxCount":
            a, b = self.var(), self.var()
            if c.argument == 0:
                return f"{x} <{c.path}> {a} .", None
            return f"{x} <{c.path}> {a} , {b} . FILTER (!sameTerm({a}, {b}))", None
        v = self.var()
        return f"{x} <{c.path}> {v} . FILTER (!({self.value_ok(c.parameter, c.argument, v)}))", v

    # ---- what holds for one value node

    def value_ok(self, parameter: str, argument, v: str) -> str:
        """A SPARQL expression true when the value node ``v`` satisfies ``parameter`` (never an error)."""
        if parameter == "datatype":
            return f"COALESCE({self.well_formed(argument, v)}, false)"
        if parameter == "nodeKind":
            kind = str(argument).removeprefix(str(SH))
            if kind not in _KINDS:
                raise Unsupported(f"sh:nodeKind {argument}")
            return _KINDS[kind].format(v=v)
        if parameter == "hasValue":
            return f"sameTerm({v}, {_term(argument)})"
        if parameter == "in":
            members = self.shapes_list(argument)
            return "(" + " || ".join(f"sameTerm({v}, {_term(m)})" for m in members) + ")" if members else "false"
        if parameter == "node":
            return f"!{self.violates(argument, v)}"
        if parameter == "or":
            return "(" + " || ".join(f"!{self.violates(s, v)}" for s in self.shapes_list(argument)) + ")"
        if parameter == "and":
            return "(" + " && ".join(f"!{self.violates(s, v)}" for s in self.shapes_list(argument)) + ")"
        if parameter == "not":
            return self.violates(argument, v)
        if parameter == "class":
            return (f"EXISTS {{ {v} <{RDF.type}>/<http://www.w3.org/2000/01/rdf-schema#subClassOf>* "
                    f"{_term(argument)} }}")
        if parameter in _COMPARISONS:
            return f"COALESCE({self.number(v)} {_COMPARISONS[parameter]} {_term(argument)}, false)"
        if parameter == "pattern":
            pattern = _term(rdflib.Literal(str(argument)))  # (a shape with sh:flags is not compiled)
            return f"(!isBlank({v}) && COALESCE(REGEX(STR({v}), {pattern}), false))"
        if parameter in ("minLength", "maxLength"):
            op = ">=" if parameter == "minLength" else "<="
            return f"(!isBlank({v}) && STRLEN(STR({v})) {op} {int(argument)})"
        raise Unsupported(f"sh:{parameter}")

    def well_formed(self, datatype, v: str) -> str:
        """``v`` is a literal of ``datatype`` in its lexical space (SHACL's sh:datatype)."""
        same = f"isLiteral({v}) && DATATYPE({v}) = {_term(datatype)}"
        kind = self.numeric_kind(str(datatype))
        if kind is not None:
            return f"({same} && REGEX(STR({v}), \"{_LEXICAL[kind]}\"))"
        if str(datatype) in _CASTABLE:
            return f"({same} && isLiteral({_term(datatype)}(STR({v}))))"  # the cast fails on a bad lexical form
        return f"({same})"

    @staticmethod
    def numeric_kind(datatype: str) -> str | None:
        if datatype in (_DOUBLE, _FLOAT):
            return "double"
        if datatype == _DECIMAL:
            return "decimal"
        return "integer" if datatype in _INTEGER_TYPES else None

    def number(self, v: str) -> str:
        """``v`` as the shapes compare it: an exact number past what b12kg compares as 1 or -1 by its sign,
        a numeric literal outside its lexical space as no number (an error)."""
        exact = " || ".join(f"DATATYPE({v}) = <{t}>" for t in (_DECIMAL, *_INTEGER_TYPES))
        lexical = (f"IF(DATATYPE({v}) = <{_DECIMAL}>, REGEX(STR({v}), \"{_LEXICAL['decimal']}\"), "
                   f"REGEX(STR({v}), \"{_LEXICAL['integer']}\"))")
        double = f"IF(REGEX(STR({v}), \"{_LEXICAL['double']}\"), {v}, 1 + \"\")"  # (1 + "": an error)
        small = (f"COALESCE(ABS({v}) < {inputs.MAX_MAGNITUDE:f} && "
                 f"!REGEX(STR({v}), \"\\\\.[0-9]{{{inputs.MAX_FRACTION_DIGITS}}}[0-9]*[1-9]\"), false)")
        sign = f"IF(STRSTARTS(STR({v}), \"-\"), -1, 1)"
        zero = f"REGEX(STR({v}), \"^[+-]?0*(\\\\.0*)?$\")"
        return (f"IF(isLiteral({v}) && ({exact}), IF({lexical}, IF({zero}, 0, IF({small}, {v}, {sign})), 1 + \"\"), "
                f"IF(isLiteral({v}) && (DATATYPE({v}) = <{_DOUBLE}> || DATATYPE({v}) = <{_FLOAT}>), {double}, {v}))")

    # ---- targets and checks

    def targets(self, shape, var: str) -> str | None:
        branches = []
        for cls in self.g.objects(shape, SH.targetClass):
            branches.append(f"{{ {var} <{RDF.type}>/<http://www.w3.org/2000/01/rdf-schema#subClassOf>* {_term(cls)} }}")
        for node in self.g.objects(shape, SH.targetNode):
            branches.append(f"{{ BIND ({_term(node)} AS {var}) }}")
        for prop in self.g.objects(shape, SH.targetSubjectsOf):
            branches.append(f"{{ {var} {_term(prop)} {self.var()} }}")
        for prop in self.g.objects(shape, SH.targetObjectsOf):
            branches.append(f"{{ {self.var()} {_term(prop)} {var} }}")
        # (each focus node once: a patient is the subject of many of its links)
        return f"{{ SELECT DISTINCT {var} WHERE {{ {' UNION '.join(branches)} }} }}" if branches else None

    def checks(self) -> list[Check]:
        out: list[Check] = []
        shapes = set(self.g.subjects(RDF.type, SH.NodeShape)) | set(self.g.subjects(RDF.type, SH.PropertyShape))
        for shape in sorted(shapes, key=str):
            if (shape, RDF.type, rdflib.RDFS.Class) in self.g or (shape, RDF.type, rdflib.OWL.Class) in self.g:
                raise Unsupported("a shape that is also a class (implicit class target)")
            if self.targets(shape, "?focus") is None:
                continue
            if self.path(shape) is not None:
                raise Unsupported("a property shape with targets")
            self.shape_checks(shape, lambda var, shape=shape: self.targets(shape, var), out, depth=0)
        return out

    def shape_checks(self, shape, focus, out: list[Check], depth: int) -> list[int]:
        """The checks of ``shape`` at the nodes ``focus(var)`` matches, appended to ``out``; returns their
        indexes. A shape a constraint's sh:node names is checked at its value nodes too (SHACL engines
        report the nested shape's own results beside the sh:node result), and the sh:node result is
        taken from those checks: the value nodes that are a focus of one of them."""
        if depth > 8:
            raise Unsupported("sh:node nested more than 8 deep (or recursive)")
        mine: list[int] = []
        for c in self.constraints(shape):
            messages = list(self.g.objects(c.owner, SH.message))
            if len(messages) > 1:
                raise Unsupported("more than one sh:message on a shape")
            severity = self.one(c.owner, "severity") or self.one(shape, "severity") or SH.Violation
            violators: tuple[int, ...] = ()
            if c.parameter == "node":
                def nested(var, c=c, focus=focus):
                    outer = self.var()
                    step = f"{outer} <{c.path}> {var} ." if c.path is not None else f"BIND ({outer} AS {var})"
                    return f"{{ SELECT DISTINCT {var} WHERE {{ {focus(outer)} {step} }} }}"
                violators = tuple(self.shape_checks(c.argument, nested, out, depth + 1))
                mine += violators
                step = f"?focus <{c.path}> ?value ." if c.path is not None else "BIND (?focus AS ?value)"
                query = f"SELECT DISTINCT ?focus ?value WHERE {{ {focus('?focus')} {step} }}"
                has_value = True
            else:
                text, value = self.body(c, "?focus")
                projected = "?focus" + ("" if value is None else f" ({value} AS ?value)")
                query = f"SELECT DISTINCT {projected} WHERE {{ {focus('?focus')} {text} }}"
                has_value = value is not None
            out.append(Check(query, c.path, SH[_component(c.parameter)], messages[0] if messages else None,
                             severity, has_value, violators))
            mine.append(len(out) - 1)
        return mine


def _component(parameter: str) -> str:
    name = _PER_VALUE.get(parameter) or {"minCount": "MinCount", "maxCount": "MaxCount",
                                         "hasValue": "HasValue"}[parameter]
    return f"{name}ConstraintComponent"


@lru_cache(maxsize=8)
def _compiled(shapes: rdflib.Graph) -> tuple[Check, ...] | Unsupported:
    try:
        return tuple(_Compiler(shapes).checks())
    except Unsupported as exc:  # kept too: shapes the compiler refuses are not compiled again per batch
        return exc


def compile_shapes(shapes: rdflib.Graph) -> tuple[Check, ...]:
    """The shapes' constraints as queries (cached per shapes graph, and so is the answer that they cannot
    be compiled); :class:`Unsupported` when a feature is not covered."""
    compiled = _compiled(shapes)
    if isinstance(compiled, Unsupported):
        raise compiled
    return compiled


def validate(store: ox.Store, graph: ox.NamedNode, shapes: rdflib.Graph, *, as_seen=None) -> rdflib.Graph | None:
    """The SHACL validation report of the data in ``graph`` of ``store`` (None: it conforms), built like
    a SHACL engine's (focus node, path, value, constraint component, message, severity per result).
    ``as_seen`` maps a reported value to the term the other engines would report (numbers, see above)."""
    report = rdflib.Graph()
    conforms = True
    foci: list[set] = []
    for check in compile_shapes(shapes):
        if check.violators:
            values = set().union(*(foci[i] for i in check.violators))  # (a blank node cannot be bound)
            rows = [row for row in store.query(check.query, default_graph=graph) if row["value"] in values] \
                if values else []
        else:
            rows = list(store.query(check.query, default_graph=graph))  # the data's graph alone
        foci.append({row["focus"] for row in rows})
        for row in rows:
            conforms = False
            result = rdflib.BNode()
            report.add((result, RDF.type, SH.ValidationResult))
            report.add((result, SH.focusNode, to_rdflib(row["focus"])))
            if check.path is not None:
                report.add((result, SH.resultPath, check.path))
            if check.has_value:
                value = row["value"]
                report.add((result, SH.value, to_rdflib(as_seen(value) if as_seen else value)))
            report.add((result, SH.sourceConstraintComponent, check.component))
            report.add((result, SH.resultSeverity, check.severity))
            if check.message is not None:
                report.add((result, SH.resultMessage, check.message))
    return None if conforms else report


def to_rdflib(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> rdflib.term.Node:
    """A pyoxigraph term as rdflib's, a literal as written (not normalised)."""
    if isinstance(term, ox.NamedNode):
        return rdflib.URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return rdflib.BNode(term.value)
    if term.language:
        return rdflib.Literal(term.value, lang=term.language)
    return rdflib.Literal(term.value, datatype=rdflib.URIRef(term.datatype.value), normalize=False)

"""Parameter binding for SPARQL text, the same on every backend.

Values are bound with a ``VALUES`` block of RDF terms placed at the start of the query's outermost
``WHERE`` group, so every pattern and filter of the query sees them. Terms are serialised by the RDF
library (N-Triples syntax, escaped), never pasted as strings; an IRI is validated when it is built.
pyoxigraph's ``substitutions`` was not used because it returned no rows for CONSTRUCT queries
(pyoxigraph 0.5.13) and rdflib's ``initBindings`` is rdflib-only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date

import pyoxigraph as ox

from b12kg.errors import KnowledgeBaseError

XSD = "http://www.w3.org/2001/XMLSchema#"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WHERE = re.compile(r"\bWHERE\s*\{", re.IGNORECASE)

Term = ox.NamedNode | ox.BlankNode | ox.Literal


def to_term(value: object) -> Term:
    """A Python value as an RDF term: dates become xsd:date, strings plain literals."""
    if isinstance(value, (ox.NamedNode, ox.Literal)):
        return value
    if isinstance(value, bool):
        return ox.Literal("true" if value else "false", datatype=ox.NamedNode(XSD + "boolean"))
    if isinstance(value, date):
        return ox.Literal(value.isoformat(), datatype=ox.NamedNode(XSD + "date"))
    if isinstance(value, int):
        return ox.Literal(str(value), datatype=ox.NamedNode(XSD + "integer"))
    if isinstance(value, str):
        return ox.Literal(value)
    raise TypeError(f"cannot bind {value!r} (blank nodes cannot be bound across queries)")


def _where_brace(text: str) -> int:
    """Offset just after the ``{`` of the first WHERE outside comment lines."""
    offset = 0
    for line in text.splitlines(keepends=True):
        if not line.lstrip().startswith("#"):
            match = _WHERE.search(line)
            if match:
                return offset + match.end()
        offset += len(line)
    raise KnowledgeBaseError("a parameterised query needs an explicit WHERE { ... } group")


def bind(text: str, bindings: Mapping[str, object] | None) -> str:
    """``text`` with ``bindings`` (variable name -> value) as a VALUES block; unchanged when empty."""
    if not bindings:
        return text
    names, terms = [], []
    for name, value in bindings.items():
        if not _NAME.match(name):
            raise ValueError(f"not a SPARQL variable name: {name!r}")
        names.append(f"?{name}")
        terms.append(str(to_term(value)))
    block = f" VALUES ({' '.join(names)}) {{ ({' '.join(terms)}) }} "
    at = _where_brace(text)
    return text[:at] + block + text[at:]

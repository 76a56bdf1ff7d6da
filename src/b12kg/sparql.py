"""Parameter binding for SPARQL text, the same on every backend.

Values are bound with a ``VALUES`` block of RDF terms placed at the start of every ``WHERE`` group
(the query's and each sub-select's, since a sub-select does not see outer bindings), so every pattern
and filter of the query sees them. The groups are found on the query's tokens
(:func:`b12kg.sparql_text.where_groups`, after the codepoint escapes every parser decodes first), so a
block never lands inside a string literal, an IRI or a comment that reads ``WHERE {``. Terms are
serialised by the RDF library (N-Triples syntax, escaped), never pasted as strings; an IRI is
validated when it is built.
pyoxigraph's ``substitutions`` was not used because it returned no rows for CONSTRUCT queries
(pyoxigraph 0.5.13) and rdflib's ``initBindings`` is rdflib-only.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from datetime import date

import pyoxigraph as ox

from b12kg.errors import KnowledgeBaseError
from b12kg.sparql_text import decode_escapes, where_groups

XSD = "http://www.w3.org/2001/XMLSchema#"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^#\+\s*table:\s*(\S+)", re.MULTILINE)
_COLUMNS = re.compile(r"^#\+\s*table-columns:(.*)$", re.MULTILINE)

Term = ox.NamedNode | ox.BlankNode | ox.Literal
Table = tuple[list[str], list[tuple]]


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


def _where_braces(text: str) -> list[int]:
    """Offsets just after the ``{`` of every WHERE group of ``text`` (escapes decoded), on tokens."""
    offsets = where_groups(text)
    if not offsets:
        raise KnowledgeBaseError("a parameterised query needs an explicit WHERE { ... } group")
    return offsets


def bind(text: str, bindings: Mapping[str, object] | None, table: Table | None = None) -> str:
    """``text`` with ``bindings`` (variable name -> value) as a VALUES block; unchanged when empty.
    One binding may be a list: the block then has one row per value. ``table`` (variable names and
    rows of values, None for UNDEF) adds a second VALUES block with those rows."""
    if table is not None:
        text = _insert(text, _table_block(*table))
    if not bindings:
        return text
    names, columns = [], []
    for name, value in bindings.items():
        if not _NAME.match(name):
            raise ValueError(f"not a SPARQL variable name: {name!r}")
        names.append(f"?{name}")
        values = value if isinstance(value, (list, tuple)) else [value]
        columns.append([str(to_term(v)) for v in values])
    if sum(len(c) > 1 for c in columns) > 1:
        raise ValueError("at most one binding may be a list of values")
    rows = max(len(c) for c in columns)
    table = " ".join("(" + " ".join(c[i] if len(c) > 1 else c[0] for c in columns) + ")" for i in range(rows))
    return _insert(text, f" VALUES ({' '.join(names)}) {{ {table} }} ")


def table_name(text: str) -> str | None:
    """The query whose rows a query takes as a VALUES table (its ``#+ table: NAME`` header line)."""
    match = _TABLE.search(text)
    return match.group(1) if match else None


def table_columns(text: str, table: Table) -> Table:
    """``table`` as the query ``text`` takes it: when a ``#+ table-columns: ?a ?b`` header names some of its
    columns, only those, each row once (in the order first seen). A query that joins on fewer columns
    than its table has would otherwise repeat its work once per row that differs only in the others."""
    match = _COLUMNS.search(text)
    if match is None:
        return table
    names, rows = table
    wanted = list(itertools.takewhile(lambda word: word.startswith("?"), match.group(1).split()))  # then prose
    if not wanted or any(w[1:] not in names for w in wanted):
        raise KnowledgeBaseError(f"#+ table-columns: {match.group(1).strip()!r} must name columns of the table "
                                 f"({' '.join('?' + n for n in names)})")
    index = [names.index(w[1:]) for w in wanted]
    return [w[1:] for w in wanted], list(dict.fromkeys(tuple(row[i] for i in index) for row in rows))


def _table_block(names: list[str], rows: list[tuple]) -> str:
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"not a SPARQL variable name: {name!r}")
    for row in rows:
        if len(row) != len(names):
            raise ValueError(f"a table row has {len(row)} values for {len(names)} variables")
    body = " ".join("(" + " ".join("UNDEF" if v is None else str(to_term(v)) for v in row) + ")" for row in rows)
    return f" VALUES ({' '.join('?' + n for n in names)}) {{ {body} }} "


def _insert(text: str, block: str) -> str:
    text = decode_escapes(text)
    for at in reversed(_where_braces(text)):
        text = text[:at] + block + text[at:]
    return text

"""Reading patient data files (Turtle, N-Triples, JSON-LD, FHIR JSON/NDJSON via :mod:`b12kg.fhir`) into RDF.

Syntax errors become one-line :class:`~b12kg.errors.InputError` messages naming file, line and column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox
import rdflib

from b12kg.errors import InputError
from b12kg.inputs import NUMERIC_TYPES, check_json, number_problem, outside_lexical_space, read_input

# rdflib logs a traceback for every ill-typed literal (e.g. "1948-13-45"^^xsd:date); the SHACL
# shapes report those values as one-line errors, so the log would only be noise.
logging.getLogger("rdflib.term").setLevel(logging.ERROR)

EXACT_TYPES = {t for t in NUMERIC_TYPES if not t.endswith(("#double", "#float"))}
FORMATS = {
    ".ttl": ox.RdfFormat.TURTLE,
    ".turtle": ox.RdfFormat.TURTLE,
    ".nt": ox.RdfFormat.N_TRIPLES,
    ".jsonld": ox.RdfFormat.JSON_LD,
    ".json": ox.RdfFormat.JSON_LD,
}


def shacl_term(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> ox.NamedNode | ox.BlankNode | ox.Literal:
    """A term as the SHACL engines see it (:meth:`PatientData.shacl_triples`): a numeric literal outside its
    lexical space as plain text, an exact number past what b12kg compares as 1 or -1 of its datatype."""
    if isinstance(term, ox.Literal) and term.datatype.value in NUMERIC_TYPES:
        if outside_lexical_space(term.value, term.datatype.value):
            return ox.Literal(term.value)
        if term.datatype.value in EXACT_TYPES and number_problem(term.value):
            return ox.Literal("-1" if term.value.lstrip().startswith("-") else "1", datatype=term.datatype)
    return term


@dataclass(frozen=True)
class PatientData:
    """The triples of one patient file, and the same data as an rdflib graph (for SHACL)."""

    path: Path
    triples: list[ox.Triple]

    def shacl_triples(self) -> list[ox.Triple]:
        """The triples as the SHACL engines see them. A numeric literal outside its lexical space goes in
        as plain text (see :meth:`to_rdflib`); an exact number past what b12kg compares (10^15 or more, more
        than 18 digits after the point) goes in as 1 or -1 of its datatype, so that the shapes judge its
        datatype and sign the same way in every engine (a Rust engine holds decimals in 128 bits, Python's
        are unbounded), and the values check (:func:`b12kg.validate.validate_values`) says what is wrong
        with the number. RDF-star quoted triples are refused (an input error)."""
        triples = []
        for t in self.triples:
            if isinstance(t.subject, ox.Triple) or isinstance(t.object, ox.Triple):
                raise InputError(f"{self.path}: unsupported RDF in patient data (a quoted triple: {t}"[:300]
                                 + "); RDF-star quoted triples are not part of the patient vocabulary")
            if isinstance(t.object, ox.Literal) and t.object.datatype.value in NUMERIC_TYPES:
                t = ox.Triple(t.subject, t.predicate, shacl_term(t.object))
            triples.append(t)
        return triples

    def to_rdflib(self) -> rdflib.Graph:
        """The triples as an rdflib graph. A numeric literal outside its lexical space goes in as plain
        text: rdflib would read ``"5e999999999"^^xsd:decimal`` as a number that SHACL then writes out
        digit by digit. (The shapes report it as not a number.)"""
        graph = rdflib.Graph()
        triples = self.shacl_triples()
        data = ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES)
        blanks = {term.value for t in triples for term in (t.subject, t.object) if isinstance(term, ox.BlankNode)}
        try:  # blank nodes keep their labels, so that results name the same nodes as the triples
            graph.parse(data=data.decode("utf-8"), format="nt", bnode_context={b: rdflib.BNode(b) for b in blanks})
        except Exception as exc:  # RDF pyoxigraph reads and rdflib does not (quoted triples are refused above)
            raise InputError(f"{self.path}: unsupported RDF in patient data ({str(exc).splitlines()[0][:120]}); "
                             "RDF-star quoted triples are not part of the patient vocabulary") from None
        return graph


def detect_format(path: Path) -> ox.RdfFormat:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise InputError(f"{path}: unknown file type {path.suffix or '(none)'!r} (known: {known})") from None


def load_patient(path: str | Path, *, kb=None) -> PatientData:
    """Parse one patient file (RDF, or FHIR R4 JSON mapped with ``kb``'s code bindings).
    Raises :class:`InputError` for a missing file or bad syntax."""
    path = Path(path)
    data = read_input(path)
    suffix = path.suffix.lower()
    if suffix in (".json", ".ndjson", ".jsonld"):
        check_json(data, path)  # (JSON and JSON-LD parsers recurse: depth first)
    if suffix in (".json", ".ndjson"):  # FHIR (has resourceType) goes through the FHIR mapper
        from b12kg.fhir import is_fhir_json, load_fhir_patient

        if suffix == ".ndjson" or is_fhir_json(data):
            return PatientData(path=path, triples=load_fhir_patient(path, kb=kb)[0])
    fmt = detect_format(path)
    base = path.resolve().as_uri()
    try:
        triples = list(ox.parse(data, format=fmt, base_iri=base))
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}:{exc.offset}" if exc.lineno else str(path)
        raise InputError(f"{where}: {fmt.name} syntax error: {exc.msg}") from None
    except MemoryError as exc:  # the parser's token buffer (a literal or IRI over 16 MiB)
        raise InputError(f"{path}: {fmt.name}: a literal or IRI is too long ({exc})") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: {fmt.name} syntax error: {exc}") from None
    if not triples:
        raise InputError(f"{path}: contains no RDF triples")
    return PatientData(path=path, triples=triples)

"""Where the knowledge base lives, and loading it.

This is the only module that knows where ``ontology/``, ``shapes/``, ``queries/`` and ``schema/``
are. An installed package carries them as package data (``b12kg/_kb``); a source checkout uses the
repository folders; ``B12KG_HOME`` or an explicit ``root`` points at another working copy (used by
tests that edit a temporary copy, and by ``b12kg check DIR``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pyoxigraph as ox

from b12kg.errors import KnowledgeBaseError

MAIN_ONTOLOGY_IRI = "https://w3id.org/b12kg/ontology"
CATALOG = "catalog-v001.xml"
_CATALOG_NS = "{urn:oasis:names:tc:entity:xmlns:xml:catalog}"


def default_root() -> Path:
    """The knowledge-base folder: ``$B12KG_HOME``, the installed package data, or the source tree."""
    env = os.environ.get("B12KG_HOME")
    if env:
        return Path(env)
    packaged = Path(__file__).resolve().parent / "_kb"
    if (packaged / "ontology").is_dir():
        return packaged
    source = Path(__file__).resolve().parents[2]
    if (source / "ontology").is_dir():
        return source
    raise KnowledgeBaseError(
        "cannot find the knowledge base: set B12KG_HOME to a folder with ontology/, shapes/ and queries/"
    )


@dataclass(frozen=True)
class KnowledgeBase:
    """One working copy of the knowledge base (ontology modules, shapes, queries, schema)."""

    root: Path = field(default_factory=default_root)

    @property
    def ontology_dir(self) -> Path:
        return self.root / "ontology"

    @property
    def shapes_dir(self) -> Path:
        return self.root / "shapes"

    @property
    def queries_dir(self) -> Path:
        return self.root / "queries"

    @property
    def schema_dir(self) -> Path:
        return self.root / "schema"

    @cached_property
    def ontology_files(self) -> dict[str, Path]:
        """Ontology IRI -> file, as listed in the Protégé catalog (the one list of modules)."""
        catalog = self.ontology_dir / CATALOG
        if not catalog.is_file():
            raise KnowledgeBaseError(f"{catalog}: catalog not found")
        try:
            tree = ET.parse(catalog)
        except ET.ParseError as exc:
            raise KnowledgeBaseError(f"{catalog}: {exc}") from None
        files = {}
        for uri in tree.iter(f"{_CATALOG_NS}uri"):
            path = self.ontology_dir / uri.attrib["uri"]
            if not path.is_file():
                raise KnowledgeBaseError(f"{catalog}: {uri.attrib['name']} points at missing file {path}")
            files[uri.attrib["name"]] = path
        if MAIN_ONTOLOGY_IRI not in files:
            raise KnowledgeBaseError(f"{catalog}: no entry for {MAIN_ONTOLOGY_IRI}")
        return files

    def shape_files(self) -> list[Path]:
        return sorted(self.shapes_dir.glob("*.ttl"))

    def query_path(self, name: str, suffix: str = ".rq") -> Path:
        """``derive/02-recommendations`` -> its ``.rq`` file (``.ru``: an update); unknown names are a
        clear error."""
        path = self.queries_dir / f"{name}{suffix}"
        if not path.is_file():
            known = ", ".join(sorted(str(p.relative_to(self.queries_dir))[: -len(suffix)]
                                     for p in self.queries_dir.rglob(f"*{suffix}")))
            raise KnowledgeBaseError(f"unknown {'update' if suffix == '.ru' else 'query'} {name!r} (known: {known})")
        return path

    def query(self, name: str) -> str:
        return _read_text(self.query_path(name))

    def update(self, name: str) -> str:
        """A SPARQL 1.1 Update from ``queries/NAME.ru``."""
        return _read_text(self.query_path(name, ".ru"))

    def queries(self, folder: str) -> list[tuple[str, str]]:
        """All queries of a folder, in file-name order, as (name, text)."""
        paths = sorted((self.queries_dir / folder).glob("*.rq"))
        return [(f"{folder}/{p.stem}", _read_text(p)) for p in paths]

    def described_terms(self) -> list[ox.NamedNode]:
        """The IRIs the ontology modules describe (the subjects of their triples), sorted: the terms
        patient data may not describe (``queries/validate/knowledge-base-terms.rq``, ``load``)."""
        return self._from_ontology("described", lambda triples: sorted(
            {t.subject for t in triples if isinstance(t.subject, ox.NamedNode)}, key=lambda term: term.value))

    def outside_patient_vocabulary(self, *, service_log: bool = False) -> list[ox.NamedNode]:
        """The classes and properties the ontology modules declare that patient data may not use, sorted
        (``queries/validate/outside-patient-vocabulary.rq``, ``load``): all but those marked
        ``b12:patientVocabulary`` (and, with ``service_log``, ``b12:serviceLogVocabulary``: what a dataset
        loaded into a store may also hold, the CDS service's log of cards and feedback) and the annotation
        properties of other vocabularies (documentation: Dublin Core, SKOS). Each class is marked on its
        own: a new subclass is outside until marked."""
        marks = (_MARK_PATIENT, _MARK_LOG) if service_log else (_MARK_PATIENT,)
        return self._from_ontology(marks, lambda triples: _outside_vocabulary(triples, marks))

    def _from_ontology(self, name: object, compute: Callable[[list[ox.Triple]], list]) -> list:
        """``compute`` over every ontology module's triples, cached per ``name`` and state of the files."""
        paths = tuple(self.ontology_files.values())
        key = (name, tuple((path, path.stat().st_mtime) for path in paths))
        if key not in _ONTOLOGY_CACHE:
            _ONTOLOGY_CACHE[key] = compute([t for path in paths for t in _parse_turtle(path)])
        return _ONTOLOGY_CACHE[key]

    def ontology_quads(self, graph: ox.NamedNode) -> list[ox.Quad]:
        """Every ontology module parsed (cached per file), placed in ``graph``."""
        quads: list[ox.Quad] = []
        for path in self.ontology_files.values():
            for triple in _parse_turtle(path):
                quads.append(ox.Quad(triple.subject, triple.predicate, triple.object, graph))
        return quads


_TEXT_CACHE: dict[tuple[Path, float], str] = {}
_TURTLE_CACHE: dict[tuple[Path, float], list[ox.Triple]] = {}
_ONTOLOGY_CACHE: dict[tuple, list] = {}  # KnowledgeBase._from_ontology


def _read_text(path: Path) -> str:
    key = (path, path.stat().st_mtime)
    if key not in _TEXT_CACHE:
        _TEXT_CACHE[key] = path.read_text(encoding="utf-8")
    return _TEXT_CACHE[key]


def _parse_turtle(path: Path) -> list[ox.Triple]:
    key = (path, path.stat().st_mtime)
    if key not in _TURTLE_CACHE:
        try:
            _TURTLE_CACHE[key] = list(ox.parse(path=str(path), format=ox.RdfFormat.TURTLE))
        except SyntaxError as exc:
            raise KnowledgeBaseError(f"{path}: {exc}") from None
    return _TURTLE_CACHE[key]


_OWL = "http://www.w3.org/2002/07/owl#"
_RDFS = "http://www.w3.org/2000/01/rdf-schema#"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_KB_PREFIX = "https://w3id.org/b12kg/"
_MARK_PATIENT = "https://w3id.org/b12kg/ontology#patientVocabulary"
_MARK_LOG = "https://w3id.org/b12kg/ontology#serviceLogVocabulary"
_DECLARED = {_OWL + "Class": "class", _RDFS + "Class": "class", _OWL + "ObjectProperty": "property",
             _OWL + "DatatypeProperty": "property", _RDF + "Property": "property",
             _OWL + "AnnotationProperty": "annotation"}


def _outside_vocabulary(triples: list[ox.Triple], marks: tuple[str, ...]) -> list[ox.NamedNode]:
    declared: dict[ox.NamedNode, str] = {}
    marked = set()
    for t in triples:
        if isinstance(t.subject, ox.NamedNode):
            if t.predicate.value == _RDF + "type" and t.object.value in _DECLARED:
                declared.setdefault(t.subject, _DECLARED[t.object.value])
            elif t.predicate.value in marks and t.object.value == "true":
                marked.add(t.subject)
    return sorted((term for term, kind in declared.items()
                   if term not in marked and (kind != "annotation" or term.value.startswith(_KB_PREFIX))),
                  key=lambda term: term.value)

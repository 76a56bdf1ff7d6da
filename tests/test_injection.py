"""Injection (issue 6, item 2): a user value reaches a query only as a bound RDF term, on every backend.

For every research query with parameters and every parameter, SPARQL injection strings (quotes,
``}``, ``#``, newlines, ``>``, ``UNION``, ``INSERT``, ``SERVICE`` …) are given as the value. Each
one is either refused as a clean :class:`~b12kg.errors.InputError` (not a valid date / IRI) or bound
as one term: the answer is then exactly the answer for a harmless value that matches nothing, and
the store holds exactly the quads it held before. A round-trip query shows the bound value comes
back unchanged (hypothesis over arbitrary text), so it cannot have become query syntax.
Backends: the embedded store, an Oxigraph server and Virtuoso (``tests/servers.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pyoxigraph as ox
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b12kg import cohort
from b12kg.errors import InputError
from b12kg.kb import KnowledgeBase
from b12kg.store import EmbeddedStore, RemoteStore, Store
from conftest import EXAMPLES, SEED_AS_OF
from servers import open_backend

KB = KnowledgeBase()
SEED_PATIENT = "https://example.org/b12kg/seed-case#patient"
INJECTIONS = [
    '"', "'", '"""', "'''", "\\", "}", "} }", "#", "\n", "\r\n", "\u2028", ">", "<", "?patient", "$patient",
    '" } UNION { ?s ?p ?o } #',
    "' } UNION { ?s ?p ?o } #",
    '"^^<http://www.w3.org/2001/XMLSchema#date> } UNION { ?rec ?p ?o } #',
    "2025-01-01\" ) } UNION { ?s ?p ?o } #",
    "2025-11-01\n} INSERT DATA { GRAPH <urn:x> { <urn:a> <urn:b> <urn:c> } } #",
    "} ; DROP ALL ; SELECT * WHERE {",
    'https://example.org/b12kg/seed-case#patient> } UNION { ?s ?p ?o } #',
    "https://example.org/b12kg/seed-case#patient>",
    SEED_PATIENT + "> . ?rec ?p ?o } #",
    "urn:x:a'UNION'b",
    "urn:x#INSERT",
    "http://x/?q=1;DROP%20ALL",
    "urn:x:} SERVICE <http://127.0.0.1:1/> {",
    "SERVICE <http://127.0.0.1:1/sparql> { ?s ?p ?o }",
    "file:///etc/passwd",
    "VALUES ?patient { <" + SEED_PATIENT + "> }",
    "\x00", "",
]
HARMLESS = {"iri": "urn:b12kg:test:nobody", "date": "1900-01-01", "string": "nothing", "integer": "0",
            "decimal": "0"}
#: a real value per parameter, so each query is shown to answer rows for a matching value
REAL = {"patient": SEED_PATIENT, "start": "2025-01-01", "end": "2027-12-31"}


def parameterised_queries() -> list[tuple[str, str, dict[str, str]]]:
    out = []
    for path in sorted((KB.queries_dir / "research").glob("*.rq")):
        text = path.read_text(encoding="utf-8")
        params = cohort.query_parameters(text)
        if params:
            out.append((path.stem, text, params))
    return out


QUERIES = parameterised_queries()


def _load_and_derive(store: Store) -> None:
    files = sorted(EXAMPLES.glob("*.ttl"))
    cohort.load(store, files)
    assert cohort.derive(store, as_of=SEED_AS_OF).problems == []


@pytest.fixture(scope="module", params=["embedded", "oxigraph", "virtuoso"])
def backend(request, tmp_path_factory) -> Iterator[Store]:
    directory = tmp_path_factory.mktemp(request.param)
    with open_backend(request.param, directory) as store:
        _load_and_derive(store)
        yield store


def quads(store: Store) -> set:
    """Every quad without a blank node, and how many quads there are in all."""
    rows = store.select("SELECT ?g ?s ?p ?o WHERE { GRAPH ?g { ?s ?p ?o } FILTER (!isBlank(?s) && !isBlank(?o)) }")
    total = store.select("SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }")[0]["n"].value
    return {(r["g"], r["s"], r["p"], r["o"]) for r in rows} | {("total", total)}


def real_values(store: Store) -> dict[str, str]:
    rows = store.select("PREFIX b12: <https://w3id.org/b12kg/ontology#> "
                        "SELECT ?rec WHERE { ?rec a b12:Recommendation ; b12:forPatient ?p } ORDER BY ?rec LIMIT 1",
                        {"p": ox.NamedNode(SEED_PATIENT)})
    return dict(REAL, rec=rows[0]["rec"].value)


def _answer(store: Store, text: str, params: dict[str, str]) -> list[dict] | str:
    try:
        _, rows = cohort.run_query(store, text, params)
    except InputError as exc:
        return f"refused: {exc.message.splitlines()[0]}"
    return sorted(sorted((k, str(v)) for k, v in r.items()) for r in rows)


def test_there_are_parameterised_queries_of_each_kind():
    kinds = {kind for _, _, params in QUERIES for kind in params.values()}
    assert {"iri", "date"} <= kinds, kinds


def test_injection_strings_change_nothing(backend):
    before = quads(backend)
    assert before
    tried = refused = 0
    values = real_values(backend)
    for name, text, declared in QUERIES:
        real = {p: values[p] for p in declared}
        assert _answer(backend, text, real), f"{name}: no rows for a real value; the test would prove nothing"
        for param, kind in declared.items():
            harmless = dict(real, **{param: HARMLESS[kind]})
            expected = _answer(backend, text, harmless)
            for value in INJECTIONS:
                got = _answer(backend, text, dict(real, **{param: value}))
                tried += 1
                if isinstance(got, str):
                    refused += 1
                    assert got.startswith("refused: --param"), (name, param, value, got)
                else:
                    assert got == expected, (name, param, value)
    assert quads(backend) == before
    assert tried > refused > 0 and tried - refused > 0, (tried, refused)


ROUND_TRIP = "SELECT ?x ?n WHERE { BIND (1 AS ?n) }"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40))
def test_a_bound_string_comes_back_unchanged(backend, value):
    if isinstance(backend, RemoteStore) and "/sparql" in backend.endpoint:
        value = value.replace("\x00", "")  # Virtuoso cuts a string at NUL: test_a_string_with_nul_comes_back_unchanged
    rows = backend.select(ROUND_TRIP, {"x": value})
    assert len(rows) == 1
    assert rows[0]["x"].value == value and rows[0]["n"].value == "1"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30))
def test_a_bound_iri_comes_back_unchanged_or_is_refused(backend, tail):
    try:
        term = cohort.typed_parameter("patient", "iri", "urn:x:" + tail)
    except InputError:
        return
    rows = backend.select(ROUND_TRIP, {"x": term})
    assert len(rows) == 1 and rows[0]["x"] == term


def test_a_bound_date_is_a_date(backend):
    rows = backend.select("SELECT ?x (DATATYPE(?x) AS ?t) WHERE { BIND (1 AS ?n) }", {"x": date(2025, 11, 1)})
    assert rows[0]["t"].value == "http://www.w3.org/2001/XMLSchema#date"


def test_a_string_with_nul_comes_back_unchanged(backend):
    """A NUL in a bound string (hypothesis' smallest failing example on Virtuoso). No research query
    has a string parameter today; a future one would match a different value on Virtuoso."""
    value = "\x00\x80"
    got = backend.select(ROUND_TRIP, {"x": value})[0]["x"].value
    if got != value and isinstance(backend, RemoteStore) and "/sparql" in backend.endpoint:
        pytest.xfail(f"Virtuoso returned {got!r} for {value!r}: a bound string holding NUL is changed there")
    assert got == value


def test_a_result_holding_a_blank_node(backend):
    """Not injection, found here: the ontology graph holds blank nodes (OWL restrictions); a research
    query that returns one must give a term, not crash the remote client."""
    text = "SELECT ?s WHERE { GRAPH ?g { ?s ?p ?o } FILTER (isBlank(?s)) } LIMIT 1"
    try:
        rows = backend.select(text)
    except ValueError as exc:
        if isinstance(backend, RemoteStore) and "/sparql" in backend.endpoint:
            pytest.xfail(f"defect: Virtuoso names blank nodes nodeID://…, which RemoteStore._term turns into "
                         f"ox.BlankNode(...) and pyoxigraph refuses ({exc}); b12kg query then exits 10")
        raise
    assert len(rows) == 1 and isinstance(rows[0]["s"], ox.BlankNode)
    _, streamed = cohort.run_query(backend, text, {})  # b12kg query: rows as they arrive (XML results remotely)
    assert len(streamed) == 1 and isinstance(streamed[0]["s"], ox.BlankNode)


@pytest.mark.parametrize("value", [v for v in INJECTIONS if v])
def test_graph_and_dataset_names_are_refused_or_plain(value):
    """``--graph`` and ``--dataset`` reach update text as IRIs: anything but a valid IRI / plain name
    is refused with a one-line input error (exit 3), never pasted."""
    for make in (lambda v: cohort.graph_alias("urn:x:" + v), lambda v: cohort.graph_alias(v),
                 lambda v: cohort.dataset_graph(v)):
        try:
            iri = make(value)
        except InputError:
            continue
        assert ox.NamedNode(iri).value == iri  # a valid IRI: cannot close the <...> it is put in


def test_cli_refuses_an_injected_graph_name(tmp_path):
    import subprocess
    import sys

    store = EmbeddedStore(tmp_path / "db")
    store.close()
    done = subprocess.run([sys.executable, "-m", "b12kg.cli", "export", "--store", str(tmp_path / "db"),
                           "--graph", "urn:x> } ; DROP ALL #", "-f", "nt"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and done.stderr.startswith("error: --graph"), done.stderr


LITERAL_TRAP = """PREFIX b12: <https://w3id.org/b12kg/ontology#>
#+ param: name string
SELECT ?patient ?lbl WHERE {
  ?patient a b12:Patient .
  BIND ("search WHERE {name}" AS ?lbl)
  FILTER (STR(?patient) = ?name)
}
"""


def test_a_parameter_never_lands_inside_a_string_literal(backend):
    """A query whose string literal reads 'WHERE {' (found by a hostile client: the block of bound values
    was placed inside the literal, and this value then closed it and matched every triple)."""
    value = "name= AS ?z) ?s ?p ?o . BIND("
    _, rows = cohort.run_query(backend, LITERAL_TRAP, {"name": value})
    assert rows == []
    _, rows = cohort.run_query(backend, LITERAL_TRAP, {"name": SEED_PATIENT})
    assert [(r["patient"].value, r["lbl"].value) for r in rows] == [(SEED_PATIENT, "search WHERE {name}")]


@pytest.mark.parametrize(("kind", "value"), [
    ("decimal", "1e2"), ("decimal", "NaN"), ("decimal", "Infinity"), ("decimal", "-INF"), ("decimal", "1_0"),
    ("decimal", " 1"), ("integer", "1_000"), ("integer", " 7"), ("integer", "1.0"), ("date", "20251101"),
    ("date", "2025-11-1"), ("date", "2025-02-30"),
])
def test_a_parameter_outside_its_xsd_lexical_space_is_refused(kind, value):
    with pytest.raises(InputError, match=f"not a valid {kind}"):
        cohort.typed_parameter("p", kind, value)


@pytest.mark.parametrize(("kind", "value", "literal"), [
    ("decimal", "1.50", "1.50"), ("decimal", "-.5", "-0.5"), ("decimal", "+3", "3"), ("integer", "-12", "-12"),
])
def test_a_parameter_in_its_lexical_space_is_bound(kind, value, literal):
    assert cohort.typed_parameter("p", kind, value).value == literal

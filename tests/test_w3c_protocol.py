"""The W3C SPARQL 1.1 Protocol test suite (``tests/w3c/protocol/manifest.ttl``) against ``b12kg serve``.

A small runner of the manifest: for each ``mf:ProtocolTest`` it loads the test's ``ut:graphData`` into
named graphs of a fresh store, serves it, sends each ``ht:Request`` as written (method, path with the
manifest's ``/sparql/`` prefix replaced by the endpoint's, headers, body in its character encoding) and
checks the ``ht:Response`` expectations: the status class, the result format (boolean, tabular or
RDF) and an ASK's value. Every query test must pass. The update tests get 403 by design (the endpoint
is read-only): for them that is what is asserted; the "bad update" tests expect a 4xx and get it.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pyoxigraph as ox
import pytest
import rdflib
from rdflib import RDF, RDFS, Namespace
from rdflib.collection import Collection

from b12kg.serve import Endpoint
from b12kg.store import EmbeddedStore

SUITE = Path(__file__).parent / "w3c" / "protocol"
MF = Namespace("http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#")
HT = Namespace("http://www.w3.org/2011/http#")
CNT = Namespace("http://www.w3.org/2011/content#")
UT = Namespace("http://www.w3.org/2009/sparql/tests/test-update#")
HTS = "http://www.w3.org/2011/http-statusCodes#StatusCode"


def _manifest() -> tuple[rdflib.Graph, list[rdflib.URIRef]]:
    g = rdflib.Graph().parse(SUITE / "manifest.ttl", format="turtle", publicID=(SUITE / "manifest.ttl").as_uri())
    manifest = next(g.subjects(RDF.type, MF.Manifest))
    return g, list(Collection(g, g.value(manifest, MF.entries)))


GRAPH, ENTRIES = _manifest()


def _requests(test) -> list[dict]:
    action = GRAPH.value(test, MF.action)
    out = []
    for req in Collection(GRAPH, GRAPH.value(action, HT.requests)):
        headers = {}
        node = GRAPH.value(req, HT.headers)
        if node is not None:
            for header in Collection(GRAPH, node):
                headers[str(GRAPH.value(header, HT.fieldName))] = str(GRAPH.value(header, HT.fieldValue))
        body = None
        content = GRAPH.value(req, HT.body)
        if content is not None:
            encoding = str(GRAPH.value(content, CNT.characterEncoding) or "UTF-8")
            body = str(GRAPH.value(content, CNT.chars)).encode(encoding)
        resp = GRAPH.value(req, HT.resp)
        out.append({
            "method": str(GRAPH.value(req, HT.methodName)),
            "path": str(GRAPH.value(req, HT.absolutePath)),
            "headers": headers,
            "body": body,
            "status": sorted(str(s)[len(HTS):] for s in GRAPH.objects(resp, MF.expectedStatus)),
            "format": str(GRAPH.value(resp, MF.expectedFormat) or "") or None,
            "boolean": GRAPH.value(resp, MF.expectedBoolean),
        })
    return out


def _is_update(test) -> bool:
    return str(test).rsplit("#", 1)[-1].startswith("update_")


def _format_of(content_type: str, body: bytes) -> str:
    media = content_type.split(";")[0].strip()
    if media in ("application/sparql-results+json", "application/sparql-results+xml"):
        parsed = ox.parse_query_results(body, format=ox.QueryResultsFormat.from_media_type(media))
        return "boolean" if isinstance(parsed, ox.QueryBoolean) else "tabular"
    if media in ("text/csv", "text/tab-separated-values"):
        return "tabular"
    list(ox.parse(body, format=ox.RdfFormat.from_media_type(media)))
    return "RDF"


def _boolean(content_type: str, body: bytes) -> bool:
    media = content_type.split(";")[0].strip()
    return bool(ox.parse_query_results(body, format=ox.QueryResultsFormat.from_media_type(media)))


def test_the_suite_is_the_w3cs():
    assert len(ENTRIES) == 34
    assert sum(_is_update(t) for t in ENTRIES) == 7


@pytest.mark.parametrize("test", ENTRIES, ids=[str(t).rsplit("#", 1)[-1] for t in ENTRIES])
def test_protocol(test, tmp_path):
    store = EmbeddedStore(tmp_path / "db")
    for data in GRAPH.objects(test, UT.graphData):
        path = Path(str(GRAPH.value(data, UT.graph)).removeprefix("file://"))
        store.replace_graph(str(GRAPH.value(data, RDFS.label)), ox.parse(path=str(path), format=ox.RdfFormat.N_TRIPLES))
    store.close()
    with Endpoint(tmp_path / "db", port=0, workers=1) as endpoint:
        for req in _requests(test):
            connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
            path = "/sparql" + req["path"][len("/sparql/"):] if req["path"].startswith("/sparql/") else req["path"]
            headers = {"Host": "localhost", **req["headers"]}
            if req["body"] is not None:
                headers["Content-Length"] = str(len(req["body"]))
            connection.request(req["method"], path, body=req["body"], headers=headers)
            response = connection.getresponse()
            body = response.read()
            connection.close()
            status = f"{response.status // 100}xx"
            kind = req["headers"].get("content-type", "")
            refused_by_design = req["status"] != ["4xx"]  # (a "bad update" expects a 4xx, and gets one)
            if refused_by_design and (kind.startswith("application/sparql-update")
                                      or (req["body"] or b"").startswith(b"update=")):
                assert response.status == 403, (response.status, body)  # read-only by design
                continue
            assert status in req["status"], (req["method"], path, response.status, body[:200])
            if req["format"]:
                assert _format_of(response.getheader("Content-Type"), body) == req["format"]
            if req["boolean"] is not None and not _is_update(test):  # (after a refused update it cannot hold)
                assert _boolean(response.getheader("Content-Type"), body) is bool(req["boolean"].toPython())


def test_the_results_are_those_of_the_named_graphs(tmp_path):
    """Beyond the suite's boolean checks: default-graph-uri picks the graphs the query reads."""
    store = EmbeddedStore(tmp_path / "db")
    for n in (1, 2):
        store.replace_graph(f"http://kasei.us/2009/09/sparql/data/data{n}.rdf",
                            ox.parse(path=str(SUITE / f"data{n}.nt"), format=ox.RdfFormat.N_TRIPLES))
    store.close()
    with Endpoint(tmp_path / "db", port=0, workers=1) as endpoint:
        connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
        connection.request("GET", "/sparql?query=SELECT%20%3Fs%20%7B%20%3Fs%20%3Fp%20%3Fo%20%7D&default-graph-uri="
                                  "http%3A%2F%2Fkasei.us%2F2009%2F09%2Fsparql%2Fdata%2Fdata2.rdf",
                           headers={"Accept": "application/sparql-results+json"})
        rows = json.loads(connection.getresponse().read())["results"]["bindings"]
    assert [r["s"]["value"] for r in rows] == ["http://kasei.us/2009/09/sparql/data/data2.rdf"]

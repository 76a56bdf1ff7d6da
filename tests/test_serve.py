"""``b12kg serve`` against a careless or hostile client: no way out to the network, never wedged, the
standard SPARQL 1.1 Protocol, and the project's own clients through it (see SECURITY.md)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyoxigraph as ox
import pytest

from b12kg import cohort
from b12kg.errors import ExitCode
from b12kg.serve import Endpoint, Policy, Worker, network_isolated
from b12kg.store import EmbeddedStore
from conftest import EXAMPLES, SEED_AS_OF, cli

B12 = "https://w3id.org/b12kg/ontology#"
PATIENTS = f"PREFIX b12: <{B12}> SELECT ?p WHERE {{ ?p a b12:Patient }}"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "db"
    store = EmbeddedStore(path)
    cohort.load(store, sorted(EXAMPLES.glob("*.ttl")))
    assert cohort.derive(store, as_of=SEED_AS_OF).problems == []
    store.close()
    return path


@pytest.fixture(scope="module")
def endpoint(loaded):
    with Endpoint(loaded, port=0, limit=3, timeout=4, max_query_bytes=200_000, request_seconds=2) as e:
        yield e


def patient(url: str, **kwargs) -> tuple[int, bytes, http.client.HTTPMessage]:
    """A request that honours 503 + Retry-After, as a careful client does (up to 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        answer = request(url, **kwargs)
        if answer[0] != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(float(answer[2].get("Retry-After", "1")))


def request(url: str, *, method: str = "POST", accept: str | None = None, headers: dict | None = None,
            body: bytes | None = None, **form) -> tuple[int, bytes, http.client.HTTPMessage]:
    data = body if body is not None else (urllib.parse.urlencode(form).encode() if method == "POST" else None)
    if method == "GET" and form:
        url += "?" + urllib.parse.urlencode(form)
    hdrs = dict(headers or {})
    if accept:
        hdrs["Accept"] = accept
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


@contextmanager
def listener() -> tuple[int, list]:
    """A loopback HTTP server that records every request it gets (a federation target)."""
    hits: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = b'{"head":{"vars":["r"]},"results":{"bindings":[{"r":{"type":"literal","value":"leaked"}}]}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/sparql-results+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port, hits
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------ no way out
@pytest.mark.parametrize("template", [
    "SELECT ?r WHERE {{ SERVICE <http://127.0.0.1:{port}/sparql> {{ ?x ?y ?r }} }}",
    "SELECT ?r WHERE {{ # c\r SERVICE <http://127.0.0.1:{port}/sparql> {{ ?x ?y ?r }} }}",  # rdflib ends comments at \n only
    "SELECT ?r WHERE {{ \\u0053ERVICE <http://127.0.0.1:{port}/sparql> {{ ?x ?y ?r }} }}",
    "SELECT ?r WHERE {{ sErViCe SILENT <http://127.0.0.1:{port}/sparql> {{ ?x ?y ?r }} }}",
])
def test_no_query_reaches_another_endpoint(endpoint, template):
    with listener() as (port, hits):
        status, body, _ = request(endpoint.url, query=template.format(port=port))
    assert status == 403 and b"SERVICE" in body
    assert hits == [] and b"leaked" not in body


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root (CI runs as root)")
def test_a_worker_has_no_network_even_without_the_check(endpoint):
    """The second wall: a query worker sees no network, so even a federated query sent to it directly
    (past the endpoint's check) reaches nothing."""
    assert endpoint.worker_pids and all(network_isolated(pid) for pid in endpoint.worker_pids)
    worker = Worker(endpoint.generation, None, Policy(timeout=10))
    try:
        with listener() as (port, hits):
            header, body = worker.exchange({"query": f"SELECT ?r WHERE {{ SERVICE <http://127.0.0.1:{port}/s> {{ ?x ?y ?r }} }}",
                                            "accept": [], "limit": 3}, 10)
        assert header["status"] == 400 and hits == [] and b"leaked" not in body
    finally:
        worker.kill()


def _listening_ports(pids: list[int]) -> set[int]:
    """TCP ports the processes listen on, from /proc (sockets in state LISTEN)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for pid in pids:
        for table in ("tcp", "tcp6"):
            path = Path(f"/proc/{pid}/net/{table}")
            if not path.exists():
                continue
            for line in path.read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.add(int(fields[1].split(":")[1], 16))
    return ports


def test_the_endpoint_is_the_only_port(endpoint):
    assert _listening_ports([os.getpid(), *endpoint.worker_pids]) == {endpoint.port}


@pytest.mark.parametrize("query", [
    "SELECT ?s ?p ?o FROM <file:///etc/passwd> WHERE { ?s ?p ?o }",
    "SELECT ?s ?p ?o WHERE { GRAPH <file:///etc/passwd> { ?s ?p ?o } }",
    "LOAD <file:///etc/passwd>",
])
def test_no_query_reads_a_file(endpoint, query):
    status, body, _ = request(endpoint.url, query=query)
    assert status in (200, 400) and b"root:" not in body


# ------------------------------------------------------------------------------ never wedged
def _ask_quickly(url: str) -> float:
    started = time.monotonic()
    status, body, _ = request(url, query="ASK {}")
    assert status == 200 and json.loads(body)["boolean"] is True
    return time.monotonic() - started


def test_never_wedged(endpoint):
    """2,000 truncated answers, 200 aborted requests, a query that crashes or outlives its worker,
    a 1 MB query and 500 idle connections: ASK {} is still answered in under a second."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: request(endpoint.url, query=PATIENTS)[0], range(2000)))
    assert statuses == [200] * 2000
    for _ in range(200):  # a request sent and abandoned
        with socket.create_connection(("127.0.0.1", endpoint.port)) as s:
            body = urllib.parse.urlencode({"query": "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f } ORDER BY ?a ?d"}).encode()
            s.sendall(b"POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    deep = "SELECT * WHERE { FILTER(" + "(" * 60_000 + "1" + ")" * 60_000 + ") }"
    assert patient(endpoint.url, query=deep)[0] in (200, 400, 500, 504)
    assert patient(endpoint.url, query="SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i } ORDER BY ?a ?d ?g")[0] == 504
    big = "SELECT * WHERE { ?s ?p ?o FILTER(" + " || ".join(f"?o = {i}" for i in range(100_000)) + ") }"
    assert len(big) > 1_000_000 and request(endpoint.url, query=big)[0] == 413
    idle = [socket.create_connection(("127.0.0.1", endpoint.port)) for _ in range(500)]
    try:
        assert _ask_quickly(endpoint.url) < 1.0
    finally:
        for s in idle:
            s.close()
    assert _ask_quickly(endpoint.url) < 1.0


def test_a_silent_connection_is_closed(endpoint):
    with socket.create_connection(("127.0.0.1", endpoint.port)) as s:
        s.sendall(b"GET /query?query=ASK%7B%7D HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of the head
        s.settimeout(10)
        started = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - started < 6


@pytest.mark.parametrize("length", [b"-1", b"abc", b"99999999999"])
def test_a_bad_content_length_is_refused_at_once(endpoint, length):
    with socket.create_connection(("127.0.0.1", endpoint.port)) as s:
        s.settimeout(10)
        s.sendall(b"POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sparql-query\r\n"
                  b"Content-Length: " + length + b"\r\n\r\nASK {}")
        assert s.recv(100).split(b" ")[1] in (b"400", b"413")


def test_a_client_that_leaves_mid_body_is_no_server_error(endpoint):
    """A client that closes before its declared body arrived (found by fuzz/fuzz_inputs.py) ends the
    request quietly: no "Exception in ASGI application" in the server's log."""
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("uvicorn.error").addHandler(handler)
    try:
        with socket.create_connection(("127.0.0.1", endpoint.port)) as s:
            s.settimeout(10)
            s.sendall(b"POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sparql-query\r\n"
                      b"Content-Length: 100\r\n\r\nASK {}")
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        time.sleep(0.5)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
    assert not [r for r in records if r.exc_info], [r.getMessage() for r in records]
    assert _ask_quickly(endpoint.url) < 1.0


def test_a_dead_worker_is_replaced(endpoint):
    for pid in endpoint.worker_pids:
        os.kill(pid, 9)
    statuses = [request(endpoint.url, query="ASK {}")[0] for _ in range(4)]
    assert statuses[-1] == 200 and set(statuses) <= {200, 500}


@pytest.mark.parametrize("host", ["evil.example", "rebind.attacker.test:80", "127.0.0.1.nip.io"])
def test_a_foreign_host_header_is_refused(endpoint, host):
    """DNS rebinding: a page on another name resolved to 127.0.0.1 sends its own Host."""
    status, _, _ = request(endpoint.url, method="GET", headers={"Host": host}, query="ASK {}")
    assert status == 400


def test_worker_output_goes_nowhere_it_can_block(endpoint):
    """Worker standard error is the server's own (no pipe left unread): thousands of answers cut at
    the limit later, ASK is answered at once (test_never_wedged sends them)."""
    for pid in endpoint.worker_pids:
        assert os.readlink(f"/proc/{pid}/fd/2") == os.readlink("/proc/self/fd/2")


# ------------------------------------------------------------------------------ the protocol
def _rows(body: bytes, parse) -> list:
    if parse == "csv":
        import csv
        import io

        return list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))
    return list(ox.parse_query_results(body, format=parse))


@pytest.mark.parametrize(("accept", "media", "parse"), [
    (None, "application/sparql-results+json", ox.QueryResultsFormat.JSON),
    ("application/sparql-results+json", "application/sparql-results+json", ox.QueryResultsFormat.JSON),
    ("application/sparql-results+xml", "application/sparql-results+xml", ox.QueryResultsFormat.XML),
    ("text/csv", "text/csv", "csv"),  # (pyoxigraph does not parse CSV results)
    ("text/tab-separated-values", "text/tab-separated-values", ox.QueryResultsFormat.TSV),
    ("text/html;q=0.9, application/sparql-results+xml;q=0.8", "application/sparql-results+xml", ox.QueryResultsFormat.XML),
])
def test_select_results_in_every_format(endpoint, accept, media, parse):
    status, body, headers = request(endpoint.url, accept=accept, query=PATIENTS)
    assert status == 200 and headers["Content-Type"].split(";")[0] == media
    assert len(_rows(body, parse)) == 3
    assert headers["X-B12KG-Truncated"] == "true"


@pytest.mark.parametrize(("accept", "fmt"), [
    (None, ox.RdfFormat.N_TRIPLES), ("text/turtle", ox.RdfFormat.TURTLE), ("application/n-triples", ox.RdfFormat.N_TRIPLES),
    ("application/rdf+xml", ox.RdfFormat.RDF_XML), ("application/ld+json", ox.RdfFormat.JSON_LD),
    ("application/n-quads", ox.RdfFormat.N_QUADS), ("application/trig", ox.RdfFormat.TRIG),
])
def test_graph_results_in_every_format(endpoint, accept, fmt):
    status, body, headers = request(endpoint.url, accept=accept, query="CONSTRUCT WHERE { ?s a ?c }")
    assert status == 200 and headers["Content-Type"].split(";")[0] == fmt.media_type
    assert len(list(ox.parse(body, format=fmt))) == 3


def test_nothing_acceptable_is_406(endpoint):
    assert request(endpoint.url, accept="image/png", query="ASK {}")[0] == 406
    assert request(endpoint.url, accept="text/csv", query="CONSTRUCT WHERE { ?s ?p ?o }")[0] == 406


def test_truncation_is_said_in_band(endpoint):
    _, body, _ = request(endpoint.url, query=PATIENTS)
    assert json.loads(body)["head"]["link"] == ["https://w3id.org/b12kg/serve#truncated"]
    _, body, _ = request(endpoint.url, accept="application/sparql-results+xml", query=PATIENTS)
    assert b'<link href="https://w3id.org/b12kg/serve#truncated"/>' in body
    _, body, _ = request(endpoint.url, accept="text/turtle", query="CONSTRUCT WHERE { ?s a ?c }")
    assert body.startswith(b"# b12kg: truncated")
    _, body, headers = request(endpoint.url, query="SELECT ?x WHERE { VALUES ?x { 1 2 } }")
    assert headers["X-B12KG-Truncated"] == "false" and "link" not in json.loads(body)["head"]


def test_get_form_post_and_direct_post(endpoint):
    assert request(endpoint.url, method="GET", query="ASK {}")[0] == 200
    assert request(endpoint.url, query="ASK {}")[0] == 200
    assert request(endpoint.url, body=b"ASK {}", headers={"Content-Type": "application/sparql-query"})[0] == 200
    assert request(endpoint.url, body=b"ASK {}", headers={"Content-Type": "text/plain"})[0] == 415


def test_keep_alive(endpoint):
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    for _ in range(3):
        connection.request("GET", "/query?query=ASK%7B%7D")
        response = connection.getresponse()
        assert response.status == 200 and response.version == 11
        response.read()
    connection.close()


def test_a_get_without_a_query_describes_the_service(endpoint):
    status, body, headers = request(endpoint.url, method="GET", accept="text/turtle")
    assert status == 200
    graph = list(ox.parse(body, format=ox.RdfFormat.TURTLE))
    sd = "http://www.w3.org/ns/sparql-service-description#"
    assert any(t.object == ox.NamedNode(sd + "Service") for t in graph)
    assert any(t.predicate == ox.NamedNode(sd + "resultFormat") for t in graph)


def test_cors_only_when_asked(endpoint, loaded):
    _, _, headers = request(endpoint.url, method="GET", headers={"Origin": "https://tool.example"}, query="ASK {}")
    assert "Access-Control-Allow-Origin" not in headers
    with Endpoint(loaded, port=0, cors=("https://tool.example",)) as open_endpoint:
        _, _, headers = request(open_endpoint.url, method="GET", headers={"Origin": "https://tool.example"}, query="ASK {}")
        assert headers["Access-Control-Allow-Origin"] == "https://tool.example"


@pytest.mark.parametrize("form", [{"update": "DROP ALL"}, {"query": "DROP ALL"}, {"query": "INSERT DATA { <a:a> <a:b> <a:c> }"}])
def test_updates_are_refused(endpoint, form):
    assert request(endpoint.url, **form)[0] in (400, 403)
    assert request(endpoint.url.replace("/query", "/update"), **form)[0] == 403


# ------------------------------------------------------------------------------ named queries as a web API
def test_named_queries_are_listed_and_described(endpoint):
    status, body, _ = request(f"http://127.0.0.1:{endpoint.port}/queries", method="GET")
    names = {q["name"] for q in json.loads(body)}
    assert status == 200 and {"due-in-window", "patient-evidence", "overdue-doses"} <= names
    status, body, _ = request(f"http://127.0.0.1:{endpoint.port}/openapi.json", method="GET")
    spec = json.loads(body)
    assert spec["openapi"].startswith("3.") and {f"/queries/{n}" for n in names} == set(spec["paths"])
    params = spec["paths"]["/queries/due-in-window"]["get"]["parameters"]
    assert {(p["name"], p["schema"]["format"], p["required"]) for p in params} == {("start", "date", True), ("end", "date", True)}


def test_a_named_query_runs_with_typed_parameters(endpoint, loaded):
    url = f"http://127.0.0.1:{endpoint.port}/queries/patient-evidence"
    status, body, _ = request(url, method="GET", accept="text/csv", patient="https://example.org/b12kg/seed-case#patient")
    assert status == 200 and body.startswith(b"rec,source,statement")
    status, body, _ = request(url, method="GET", patient="https://x/p> } UNION { ?rec ?p ?source")
    assert status == 400 and b"not a valid iri" in body
    assert request(url, method="GET")[0] == 400
    assert request(url, method="GET", patient="urn:x", other="1")[0] == 400
    status, body, _ = request(f"http://127.0.0.1:{endpoint.port}/queries/due-in-window", method="GET",
                              start="2025-11-01", end="1e2")
    assert status == 400 and b"xsd:date" in body
    assert request(f"http://127.0.0.1:{endpoint.port}/queries/nope", method="GET")[0] == 404


# ------------------------------------------------------------------------------ the project's own clients
def test_query_endpoint_works_through_serve(loaded, tmp_path):
    with Endpoint(loaded, port=0) as e:
        done = cli("query", "patient-evidence", "--endpoint", e.url, "--param",
                   "patient=https://example.org/b12kg/seed-case#patient", "-f", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rec,source,statement") and done.stdout.count("\n") > 10


def test_export_through_serve_never_exits_0_with_a_partial_export(endpoint, loaded, tmp_path):
    out = tmp_path / "derived.nt"
    done = cli("export", "--endpoint", endpoint.url, "--graph", "derived", "-f", "nt", "-o", str(out))
    assert done.returncode == ExitCode.INPUT, done.stderr
    assert "cut" in done.stderr and done.stderr.count("\n") == 1 and not out.exists()
    with Endpoint(loaded, port=0, limit=10_000_000) as e:
        done = cli("export", "--endpoint", e.url, "--graph", "derived", "-f", "nt", "-o", str(out))
    assert done.returncode == 0, done.stderr
    store = EmbeddedStore(loaded, read_only=True)
    expected = {q.triple for q in store.store.quads_for_pattern(None, None, None, ox.NamedNode("urn:b12kg:graph:derived"))}
    store.close()
    assert {q.triple for q in ox.parse(path=str(out), format=ox.RdfFormat.N_TRIPLES)} == expected


def test_a_refused_large_body_still_gets_its_413(endpoint):
    """A client that sends a body larger than the limit, in pieces, must read the 413 rather than a reset
    connection: the server reads and drops a refused body (up to a bound) before it answers and closes.
    (Closing with the body unread resets the connection under the client as it writes.)"""
    body = urllib.parse.urlencode({"query": "ASK {} #" + "x" * 2_000_000}).encode()
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=30) as s:
        s.sendall(b"POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        for i in range(0, len(body), 65_536):
            s.sendall(body[i : i + 65_536])
            time.sleep(0.002)
        answer = b""
        while chunk := s.recv(65_536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]

"""``b12kg serve``: a read-only SPARQL 1.1 Protocol endpoint for research tools.

The queries are answered by the Oxigraph server (``oxigraph serve-read-only`` from the ``oxigraph``
package) on a private loopback port, with ``--union-default-graph`` and its own query timeout. In
front of it a small policy guard, the only port exposed:

* accepts SPARQL queries only (``GET``/``POST`` on ``/query`` or ``/sparql``); updates are refused
  (403) — the store is opened read-only as well;
* refuses federation: a query with ``SERVICE`` is rejected (403) before it reaches the store;
* enforces the row limit: SELECT results are cut to ``limit`` rows (header ``X-B12KG-Truncated``;
  CSV by records, not lines), graph results to ``limit`` triples; every answer is read from the
  server only that far (JSON as a stream of solutions), so the guard's memory is bounded by the limit
  whatever the query returns;
* answers a small HTML query page on ``/``.

The server reads the embedded store's generation that is current when it starts (holding a shared
lock on it, so writers do not delete it); a later ``load`` or ``derive`` reaches the endpoint when it
is restarted. The Oxigraph server never outlives b12kg: ``serve`` stops it on Ctrl-C, SIGTERM and
SIGHUP, and on Linux it is also sent SIGTERM by the kernel when b12kg dies (SIGKILL, the
out-of-memory killer), so no server is left holding the port, its memory and the generation's lock.

SELECT/ASK results are JSON (``application/sparql-results+json``) or CSV when asked for with
``Accept: text/csv``; CONSTRUCT/DESCRIBE results are N-Triples.
"""

from __future__ import annotations

import csv
import ctypes
import html
import http.client
import io
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyoxigraph as ox

from b12kg.errors import B12kgError, ExitCode


class ServerError(B12kgError):
    exit_code = ExitCode.INPUT


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def oxigraph_binary() -> str:
    candidates = [Path(sys.executable).parent / "oxigraph", shutil.which("oxigraph")]
    for c in candidates:
        if c and Path(c).is_file():
            return str(c)
    raise ServerError("the oxigraph server is not installed: pip install oxigraph")


def wait_for(url: str, seconds: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(f"the server exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise ServerError(f"{url} did not answer within {seconds:.0f} s")


@dataclass(frozen=True)
class Policy:
    limit: int
    timeout: int


class QueryRejected(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


_PARSE_LOCK = threading.Lock()  # rdflib's pyparsing grammar is not thread-safe (found by the load test)


def inspect_query(text: str) -> str:
    """The query form (SelectQuery, AskQuery, ConstructQuery, DescribeQuery); rejects updates and SERVICE."""
    from pyparsing import ParseException, ParseResults
    from rdflib.plugins.sparql.parser import parseQuery

    try:
        with _PARSE_LOCK:
            parsed = parseQuery(text)
    except ParseException as exc:
        raise QueryRejected(HTTPStatus.BAD_REQUEST,
                            f"not a SPARQL query (updates are refused): line {exc.lineno}, column {exc.col}") from None
    except Exception as exc:  # rdflib raises various errors for odd input
        raise QueryRejected(HTTPStatus.BAD_REQUEST, f"not a SPARQL query: {str(exc).splitlines()[0][:200]}") from None

    def walk(node) -> bool:
        if getattr(node, "name", None) == "ServiceGraphPattern":
            return True
        if isinstance(node, dict):
            return any(walk(v) for v in node.values())
        if isinstance(node, (list, tuple, ParseResults)):
            return any(walk(v) for v in node)
        return False

    if walk(parsed):
        raise QueryRejected(HTTPStatus.FORBIDDEN, "federated queries (SERVICE) are not allowed on this endpoint")
    return parsed[1].name


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>b12kg SPARQL</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}textarea{{width:100%;height:16em;font-family:monospace}}</style>
</head><body><h1>b12kg — SPARQL endpoint (read-only)</h1>
<p>The vitamin B12 post-stroke guideline, the loaded patients and the derived recommendations with
their provenance. Endpoint: <code>/query</code> (SPARQL 1.1 Protocol). Queries only; no SERVICE;
at most {limit} rows; timeout {timeout} s.</p>
<form method="post" action="/query"><textarea name="query">{example}</textarea><br>
<button type="submit">Run</button></form></body></html>"""

EXAMPLE = """PREFIX b12: <https://w3id.org/b12kg/ontology#>
SELECT ?statement (COUNT(?rec) AS ?recommendations)
WHERE { ?rec a b12:Recommendation ; b12:instantiates ?statement }
GROUP BY ?statement ORDER BY DESC(?recommendations)"""


def _first_lines(stream, count: int) -> tuple[bytes, bool]:
    """The first ``count`` lines of an N-Triples answer (one triple per line), and whether more follow.
    A line without its line break is an answer the server cut off (http.client does not say so)."""
    lines = list(itertools.islice(stream, count))
    following = stream.readline()
    if not all(line.endswith(b"\n") for line in [*lines, following] if line):
        raise http.client.IncompleteRead(b"".join(lines) + following)
    return b"".join(lines), bool(following)


def _first_csv_records(stream, count: int) -> tuple[bytes, bool]:
    """The first ``count`` records of a SPARQL CSV answer, and whether more follow. Records, not lines:
    a quoted value may hold line breaks."""
    reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
    records = list(itertools.islice(reader, count))
    more = next(reader, None) is not None
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(records)
    return out.getvalue().encode("utf-8"), more


def _json_term(term) -> dict:
    """A term as SPARQL 1.1 (1.2 for triple terms) JSON results write it."""
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, ox.Triple):
        return {"type": "triple", "value": {"subject": _json_term(term.subject),
                                            "predicate": _json_term(term.predicate),
                                            "object": _json_term(term.object)}}
    out = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
        if term.direction:
            out["its:dir"] = term.direction
    elif term.datatype != _XSD_STRING:
        out["datatype"] = term.datatype.value
    return out


_XSD_STRING = ox.NamedNode("http://www.w3.org/2001/XMLSchema#string")


def _first_json_solutions(stream, count: int) -> tuple[bytes, bool]:
    """The first ``count`` solutions of a SPARQL JSON answer, and whether more follow. Parsed as a
    stream: the rest of the answer is never read."""
    solutions = ox.parse_query_results(stream, format=ox.QueryResultsFormat.JSON)
    names = [v.value for v in solutions.variables]
    rows = [{name: _json_term(solution[name]) for name in names if solution[name] is not None}
            for solution in itertools.islice(solutions, count)]
    more = next(solutions, None) is not None
    return json.dumps({"head": {"vars": names}, "results": {"bindings": rows}}).encode("utf-8"), more


def make_handler(backend: str, policy: Policy):
    class Handler(BaseHTTPRequestHandler):
        server_version = "b12kg-guard"

        def log_message(self, fmt, *args):  # quiet by default
            return

        def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path in ("", "/"):
                page = PAGE.format(limit=policy.limit, timeout=policy.timeout, example=html.escape(EXAMPLE))
                return self._send(200, page.encode(), "text/html; charset=utf-8")
            if url.path not in ("/query", "/sparql"):
                return self._error(HTTPStatus.NOT_FOUND, "not found: the endpoint is /query")
            params = urllib.parse.parse_qs(url.query)
            if "update" in params:
                return self._error(HTTPStatus.FORBIDDEN, "updates are refused: this endpoint is read-only")
            if "query" not in params:
                return self._error(HTTPStatus.BAD_REQUEST, "missing query parameter")
            self._answer(params["query"][0])

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path in ("/update",):
                return self._error(HTTPStatus.FORBIDDEN, "updates are refused: this endpoint is read-only")
            if url.path not in ("/query", "/sparql"):
                return self._error(HTTPStatus.NOT_FOUND, "not found: the endpoint is /query")
            length = int(self.headers.get("Content-Length") or 0)
            if length > 1_000_000:
                return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "query too large")
            body = self.rfile.read(length).decode("utf-8", "replace")
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if kind == "application/sparql-update":
                return self._error(HTTPStatus.FORBIDDEN, "updates are refused: this endpoint is read-only")
            if kind == "application/sparql-query":
                return self._answer(body)
            params = urllib.parse.parse_qs(body)
            if "update" in params:
                return self._error(HTTPStatus.FORBIDDEN, "updates are refused: this endpoint is read-only")
            if "query" not in params:
                return self._error(HTTPStatus.BAD_REQUEST, "missing query parameter")
            self._answer(params["query"][0])

        def _answer(self, query: str) -> None:
            try:
                form = inspect_query(query)
            except QueryRejected as exc:
                return self._error(exc.status, str(exc))
            graph_form = form in ("ConstructQuery", "DescribeQuery")
            wants_csv = "text/csv" in (self.headers.get("Accept") or "") and not graph_form
            accept = "application/n-triples" if graph_form else (
                "text/csv" if wants_csv else "application/sparql-results+json")
            request = urllib.request.Request(
                backend, data=query.encode("utf-8"),
                headers={"Content-Type": "application/sparql-query", "Accept": accept}, method="POST")
            truncated = False
            try:
                with urllib.request.urlopen(request, timeout=policy.timeout + 5) as response:
                    # Read only up to the limit: closing the answer there stops the server sending the rest.
                    if graph_form:
                        data, truncated = _first_lines(response, policy.limit)
                    elif wants_csv:
                        data, truncated = _first_csv_records(response, policy.limit + 1)  # and the header
                    elif form == "SelectQuery":
                        data, truncated = _first_json_solutions(response, policy.limit)
                    else:  # ASK: one boolean
                        data = response.read()
            except urllib.error.HTTPError as exc:
                message = exc.read().decode("utf-8", "replace").strip().splitlines()
                return self._error(exc.code, message[0] if message else exc.reason)
            except (TimeoutError, OSError):
                return self._error(HTTPStatus.GATEWAY_TIMEOUT, f"query exceeded the {policy.timeout} s timeout")
            except (UnicodeDecodeError, csv.Error, SyntaxError, http.client.HTTPException):
                # (an answer cut off by the server mid-way, e.g. IncompleteRead, is an HTTPException)
                return self._error(HTTPStatus.BAD_GATEWAY, "the store returned an unreadable result")
            self._send(200, data, accept + ("; charset=utf-8" if accept.startswith("text") else ""),
                       {"X-B12KG-Truncated": "true" if truncated else "false"})

    return Handler


_PR_SET_PDEATHSIG = 1  # prctl(2)


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _dies_with(parent: int):
    """A ``preexec_fn``: in the child, before exec, ask the kernel for SIGTERM when the thread that
    started it ends (the whole of ``b12kg serve``: it starts the server from its main thread), and
    exit at once if that parent is already gone. Only libc is called between fork and exec."""
    def prepare() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)
    return prepare


class Endpoint:
    """The Oxigraph server plus the guard, started together and stopped together."""

    def __init__(self, store_dir: Path, *, host: str = "127.0.0.1", port: int = 7878, timeout: int = 30,
                 limit: int = 10_000) -> None:
        from b12kg.store import current_generation

        current_generation(store_dir)  # a one-line error now when there is no store (or an old layout)
        self.store_dir, self.host, self.port = store_dir, host, port
        self.generation: Path | None = None
        self._lease: int | None = None
        self.policy = Policy(limit=limit, timeout=timeout)
        self.backend_port = free_port()
        self.process: subprocess.Popen | None = None
        self.httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None  # serve_forever() in the background (``with``)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/query"

    def start(self) -> None:
        from b12kg.store import lease_current

        binary = oxigraph_binary()
        name, self._lease = lease_current(self.store_dir)
        self.generation = self.store_dir / name
        # The server inherits the shared lock on its generation, so no writer deletes the generation
        # while the server runs, even if this process is killed first.
        try:
            self.process = subprocess.Popen(
                [binary, "serve-read-only", "--location", str(self.generation),
                 "--bind", f"127.0.0.1:{self.backend_port}", "--union-default-graph",
                 "--timeout-s", str(self.policy.timeout)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(self._lease,),
                preexec_fn=_dies_with(os.getpid()),
            )
        except OSError as exc:
            self.stop()
            raise ServerError(f"cannot start {binary}: {exc.strerror or exc}") from None
        try:
            wait_for(f"http://127.0.0.1:{self.backend_port}/query?query=ASK%7B%7D", process=self.process)
        except ServerError:
            self.stop()
            raise
        try:
            self.httpd = ThreadingHTTPServer((self.host, self.port),
                                             make_handler(f"http://127.0.0.1:{self.backend_port}/query", self.policy))
        except OSError as exc:
            self.stop()
            raise ServerError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        self.port = self.httpd.server_address[1]

    def serve_forever(self) -> None:
        assert self.httpd is not None
        self.httpd.serve_forever()

    def stop(self) -> None:
        if self.httpd is not None:
            # shutdown() waits for a serve_forever() loop to end: only a loop in another thread (the
            # context manager's). When serve_forever() ran in this thread it has ended (or, stopped by
            # a signal just before it began, never started, and shutdown() would wait forever).
            if self._thread is not None:
                self.httpd.shutdown()
                self._thread.join()
                self._thread = None
            self.httpd.server_close()
            self.httpd = None
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._lease is not None:
            os.close(self._lease)
            self._lease = None

    def __enter__(self) -> "Endpoint":
        self.start()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

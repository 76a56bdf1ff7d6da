"""A query worker of ``b12kg serve``: one process, one read-only store, one query at a time.

``b12kg serve`` starts a few of these (``python -m b12kg.query_worker GENERATION``) and talks to each
over its standard input and output: a request is a frame holding JSON, the answer two frames, a JSON
header (HTTP status, media type, truncation) and the body. A frame is a 4-byte big-endian length and
its bytes. The server enforces the time limit by killing a worker that has not answered, and the
memory limit through ``RLIMIT_AS``; a worker that dies (out of memory, a stack overflow on a
pathological query) is replaced. So a query can cost at most one worker for at most the timeout.

Queries are evaluated by pyoxigraph on the store opened read-only. Answers are cut at the request's
row limit; the first ``limit`` rows are serialised in the negotiated format (SELECT/ASK: SPARQL
JSON, XML, CSV, TSV; CONSTRUCT/DESCRIBE: Turtle, N-Triples, RDF/XML, JSON-LD, N-Quads, TriG) with the
cut said in-band where the format has room for it (a ``link`` in SPARQL JSON and XML, a comment in
Turtle, TriG, N-Triples, N-Quads and RDF/XML).
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import sys
import threading
from typing import BinaryIO

import pyoxigraph as ox

TRUNCATED_LINK = "https://w3id.org/b12kg/serve#truncated"

#: media type -> format, for each kind of answer; the first of each is the default
RESULT_FORMATS = {
    "application/sparql-results+json": ox.QueryResultsFormat.JSON,
    "application/json": ox.QueryResultsFormat.JSON,
    "application/sparql-results+xml": ox.QueryResultsFormat.XML,
    "application/xml": ox.QueryResultsFormat.XML,
    "text/xml": ox.QueryResultsFormat.XML,
    "text/csv": ox.QueryResultsFormat.CSV,
    "text/tab-separated-values": ox.QueryResultsFormat.TSV,
}
GRAPH_FORMATS = {
    "application/n-triples": ox.RdfFormat.N_TRIPLES,
    "text/turtle": ox.RdfFormat.TURTLE,
    "application/x-turtle": ox.RdfFormat.TURTLE,
    "application/rdf+xml": ox.RdfFormat.RDF_XML,
    "application/ld+json": ox.RdfFormat.JSON_LD,
    "application/n-quads": ox.RdfFormat.N_QUADS,
    "application/trig": ox.RdfFormat.TRIG,
    "text/plain": ox.RdfFormat.N_TRIPLES,
}
_XSD_STRING = ox.NamedNode("http://www.w3.org/2001/XMLSchema#string")
_STACK = 256 * 1024 * 1024  # deep queries recurse in the evaluator: a large stack, and the rest is the server's timeout


def read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    data = stream.read(size)
    return data if len(data) == size else None


def write_frame(stream: BinaryIO, data: bytes) -> None:
    stream.write(struct.pack(">I", len(data)) + data)


def negotiate(accept: list[str], formats: dict) -> tuple[str, object] | None:
    """The first acceptable (media type, format) for ``accept`` (media types in the client's order of
    preference, ``*/*`` and ``type/*`` allowed); the default when nothing was asked for."""
    if not accept:
        media = next(iter(formats))
        return media, formats[media]
    for wanted in accept:
        if wanted in formats:
            return wanted, formats[wanted]
        if wanted in ("*/*", "*"):
            media = next(iter(formats))
            return media, formats[media]
        if wanted.endswith("/*"):
            for media, fmt in formats.items():
                if media.startswith(wanted[:-1]):
                    return media, fmt
    return None


def json_term(term) -> dict:
    """A term as SPARQL 1.1 (1.2 for triple terms) JSON results write it."""
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, ox.Triple):
        return {"type": "triple", "value": {"subject": json_term(term.subject),
                                            "predicate": json_term(term.predicate),
                                            "object": json_term(term.object)}}
    out = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
        if term.direction:
            out["its:dir"] = term.direction
    elif term.datatype != _XSD_STRING:
        out["datatype"] = term.datatype.value
    return out


def _graphs(names: list[str] | None) -> list | None:
    return None if names is None else [ox.NamedNode(n) for n in names]


def _error(status: int, message: str) -> tuple[dict, bytes]:
    return {"status": status, "content_type": "text/plain; charset=utf-8", "truncated": False}, (message + "\n").encode()


def answer(store: ox.Store, request: dict) -> tuple[dict, bytes]:
    """Evaluate one request; (header, body)."""
    options: dict = {"base_iri": request["base"]} if request.get("base") else {}
    if request.get("default_graphs") is not None:
        options["default_graph"] = _graphs(request["default_graphs"])
    else:
        options["use_default_graph_as_union"] = True
    if request.get("named_graphs") is not None:
        options["named_graphs"] = _graphs(request["named_graphs"])
    try:
        result = store.query(request["query"], **options)
    except SyntaxError as exc:
        return _error(400, f"not a valid SPARQL query: {str(exc).splitlines()[0][:300]}")
    except (OSError, RuntimeError, ValueError) as exc:
        return _error(400, f"the query could not be evaluated: {str(exc).splitlines()[0][:300]}")
    limit = int(request["limit"])
    accept = request.get("accept") or []
    try:
        if isinstance(result, ox.QueryTriples):
            chosen = negotiate(accept, GRAPH_FORMATS)
            if chosen is None:
                return _error(406, "no acceptable format for a graph: use one of " + ", ".join(GRAPH_FORMATS))
            triples = list(itertools.islice(result, limit + 1))
            truncated = len(triples) > limit
            return _graph_answer(triples[:limit], *chosen, truncated)
        chosen = negotiate(accept, RESULT_FORMATS)
        if chosen is None:
            return _error(406, "no acceptable format for query results: use one of " + ", ".join(RESULT_FORMATS))
        media, fmt = chosen
        if isinstance(result, ox.QueryBoolean):
            return ({"status": 200, "content_type": _typed(media), "truncated": False}, result.serialize(format=fmt))
        names = [v.value for v in result.variables]
        rows = [{name: json_term(s[name]) for name in names if s[name] is not None}
                for s in itertools.islice(result, limit + 1)]
    except (OSError, RuntimeError, ValueError) as exc:  # an error while the answer is read (e.g. a bad regex)
        return _error(400, f"the query failed while it ran: {str(exc).splitlines()[0][:300]}")
    truncated = len(rows) > limit
    head: dict = {"vars": names}
    if truncated:
        head["link"] = [TRUNCATED_LINK]
    doc = json.dumps({"head": head, "results": {"bindings": rows[:limit]}}, ensure_ascii=False).encode("utf-8")
    if fmt is not ox.QueryResultsFormat.JSON:
        doc = ox.parse_query_results(doc, format=ox.QueryResultsFormat.JSON).serialize(format=fmt)
        if truncated and fmt is ox.QueryResultsFormat.XML:
            doc = doc.replace(b"</head>", f'<link href="{TRUNCATED_LINK}"/></head>'.encode(), 1)
    return {"status": 200, "content_type": _typed(media), "truncated": truncated}, doc


def _typed(media: str) -> str:
    return media + "; charset=utf-8" if media.startswith("text/") or media.endswith(("json", "xml")) else media


def _graph_answer(triples: list, media: str, fmt, truncated: bool) -> tuple[dict, bytes]:
    items = [ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()) for t in triples] \
        if fmt in (ox.RdfFormat.N_QUADS, ox.RdfFormat.TRIG) else triples
    body = ox.serialize(items, format=fmt) or b""
    if truncated:
        note = f"b12kg: truncated at the endpoint's limit of {len(triples)} triples ({TRUNCATED_LINK})"
        if fmt is ox.RdfFormat.RDF_XML:
            declaration, _, rest = body.partition(b"?>")
            body = declaration + b"?>" + f"<!-- {note} -->".encode() + rest if rest else body
        elif fmt is not ox.RdfFormat.JSON_LD:
            body = f"# {note}\n".encode() + body
    return {"status": 200, "content_type": _typed(media), "truncated": truncated}, body


def serve(store: ox.Store, requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer requests until the input closes; each query runs on a thread with a large stack."""
    threading.stack_size(_STACK)
    while True:
        frame = read_frame(requests)
        if frame is None:
            return
        out: list = []
        runner = threading.Thread(target=lambda: out.append(answer(store, json.loads(frame))))
        runner.start()
        runner.join()
        header, body = out[0] if out else _error(500, "the evaluator stopped without an answer")
        write_frame(answers, json.dumps(header).encode())
        write_frame(answers, body)
        answers.flush()


def main() -> None:
    generation = sys.argv[1]
    # the protocol owns the original standard output; anything else printed goes to standard error
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    store = ox.Store.read_only(generation)
    write_frame(answers, b"ready")
    answers.flush()
    serve(store, sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()

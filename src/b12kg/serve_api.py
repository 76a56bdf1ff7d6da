"""The parts of ``b12kg serve`` beside the protocol endpoint: the named research queries as a web API
(``GET /queries``, ``GET /queries/NAME?param=value``, ``GET /openapi.json``, all generated from the
headers of ``queries/research/*.rq``, as grlc does from its decorators) and the query page.

A named query's parameters are checked against their declared type (:func:`b12kg.cohort.typed_parameter`:
the XSD lexical space) and bound as RDF terms in a VALUES block placed at the WHERE groups found on the
query's tokens (:func:`b12kg.sparql.bind`, as on every other backend): never inside a literal, and a
value is only ever one term. (pyoxigraph's substitutions, SEP-0007, accept only projected variables.)
"""

from __future__ import annotations

import html
import json
from http import HTTPStatus
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from b12kg.errors import InputError

_SCHEMAS = {
    "iri": {"type": "string", "format": "uri"},
    "date": {"type": "string", "format": "date", "pattern": r"^-?[0-9]{4,}-[0-9]{2}-[0-9]{2}$"},
    "integer": {"type": "string", "pattern": r"^[+-]?[0-9]+$"},
    "decimal": {"type": "string", "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"},
    "string": {"type": "string"},
}
RESULT_TYPES = ["application/sparql-results+json", "application/sparql-results+xml", "text/csv",
                "text/tab-separated-values"]


def research_queries(kb) -> dict[str, dict]:
    """Each research query by name: its text, summary, parameters (name -> type) and output columns."""
    from b12kg.check import query_header
    from b12kg.cohort import query_parameters

    out = {}
    for path in sorted((kb.queries_dir / "research").glob("*.rq")):
        text = path.read_text(encoding="utf-8")
        header = query_header(text)
        out[path.stem] = {"text": text, "summary": header.get("summary", ""), "answers": header.get("answers", ""),
                          "params": query_parameters(text), "output": header.get("output", "")}
    return out


def openapi(kb, base: str = "") -> dict:
    """An OpenAPI 3.1 document for the named research queries."""
    paths = {}
    for name, q in research_queries(kb).items():
        paths[f"/queries/{name}"] = {"get": {
            "operationId": name.replace("-", "_"),
            "summary": q["summary"],
            "description": " ".join(filter(None, [q["answers"], f"Output columns: {q['output']}" if q["output"] else ""])),
            "parameters": [{"name": p, "in": "query", "required": True, "schema": _SCHEMAS[kind],
                            "description": f"bound as one RDF term of type {kind}, never pasted into the query"}
                           for p, kind in q["params"].items()],
            "responses": {
                "200": {"description": "the rows, cut at the endpoint's row limit (header X-B12KG-Truncated)",
                        "content": {media: {} for media in RESULT_TYPES}},
                "400": {"description": "a missing, unknown or malformed parameter"},
                "406": {"description": "no acceptable format"},
                "504": {"description": "the query exceeded the endpoint's timeout"},
            },
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "b12kg research queries", "version": "1",
                 "description": "Named SPARQL queries over the derived cohort: vitamin B12 treatment after stroke."},
        "servers": [{"url": base}] if base else [],
        "paths": paths,
    }


def routes(pool, policy, kb) -> list:
    from b12kg.cohort import typed_parameter
    from b12kg.serve import _accept, _plain, answered, still_wanted
    from b12kg.sparql import bind

    queries = research_queries(kb) if kb is not None else {}

    async def listing(request: Request) -> Response:
        return JSONResponse([{"name": n, "summary": q["summary"], "params": q["params"], "output": q["output"],
                              "url": f"/queries/{n}"} for n, q in queries.items()])

    async def named(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in queries:
            return _plain(HTTPStatus.NOT_FOUND, f"no research query {name!r}; GET /queries lists them")
        declared = queries[name]["params"]
        given = list(request.query_params.multi_items())
        names = [k for k, _ in given]
        unknown = sorted(set(names) - set(declared))
        missing = sorted(set(declared) - set(names))
        repeated = sorted({k for k in names if names.count(k) > 1})
        if unknown or missing or repeated:
            parts = ([f"unknown parameter(s) {', '.join(unknown)}"] if unknown else []) + \
                    ([f"missing parameter(s) {', '.join(missing)}"] if missing else []) + \
                    ([f"parameter(s) given twice: {', '.join(repeated)}"] if repeated else [])
            return _plain(HTTPStatus.BAD_REQUEST, f"{name}: " + "; ".join(parts))
        try:
            text = bind(queries[name]["text"], {k: typed_parameter(k, declared[k], v) for k, v in given})
        except InputError as exc:
            return _plain(HTTPStatus.BAD_REQUEST, exc.message.replace("--param ", "parameter "))
        job = {"query": text, "accept": _accept(request.headers.get("accept")), "default_graphs": None,
               "named_graphs": None, "limit": policy.limit}
        return await answered(request, pool.run(job, still_wanted(request)))

    async def spec(request: Request) -> Response:
        return JSONResponse(openapi(kb, str(request.base_url).rstrip("/")))

    out = [
        Route("/queries", listing, methods=["GET"]),
        Route("/queries/{name}", named, methods=["GET"]),
        Route("/openapi.json", spec, methods=["GET"]),
    ]
    ui = yasgui_dir()
    if ui is not None:
        out.append(Mount("/yasgui", app=StaticFiles(directory=ui), name="yasgui"))
    return out


def yasgui_dir() -> Path | None:
    """Where the YASGUI query editor's built files are: ``B12KG_YASGUI``, or the source tree's
    ``ui/node_modules/@zazuko/yasgui/build`` (``npm ci --prefix ui``, which ``.ci/run`` does)."""
    import os

    tree = Path(__file__).resolve().parents[2] / "ui" / "node_modules" / "@zazuko" / "yasgui" / "build"
    for candidate in (os.environ.get("B12KG_YASGUI"), str(tree)):
        if candidate and (Path(candidate) / "yasgui.min.js").is_file():
            return Path(candidate)
    return None


def page(policy, kb=None) -> str:
    """The query page: YASGUI (editor, results table, tabs) with a tab for each research query when its
    files are installed; a plain form otherwise. Everything is served from this endpoint: no network
    at view time (YASGUI's prefix and property lookups, which call other sites, are switched off)."""
    if yasgui_dir() is None:
        return PLAIN_PAGE.format(limit=policy.limit, timeout=policy.timeout, example=html.escape(EXAMPLE))
    tabs = [{"name": "recommendations per statement", "query": EXAMPLE}]
    if kb is not None:
        tabs += [{"name": name, "query": q["text"]} for name, q in research_queries(kb).items()]
    return YASGUI_PAGE.replace("__TABS__", json.dumps(tabs).replace("</", "<\\/")).replace(
        "__LIMIT__", str(policy.limit)).replace("__TIMEOUT__", str(policy.timeout))


EXAMPLE = """PREFIX b12: <https://w3id.org/b12kg/ontology#>
SELECT ?statement (COUNT(?rec) AS ?recommendations)
WHERE { ?rec a b12:Recommendation ; b12:instantiates ?statement }
GROUP BY ?statement ORDER BY DESC(?recommendations)"""

PLAIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>b12kg SPARQL</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}textarea{{width:100%;height:16em;font-family:monospace}}</style>
</head><body><h1>b12kg — SPARQL endpoint (read-only)</h1>
<p>The vitamin B12 post-stroke guideline, the loaded patients and the derived recommendations with
their provenance. Endpoint: <code>/query</code> (SPARQL 1.1 Protocol). Queries only; no SERVICE;
at most {limit} rows; timeout {timeout} s. Named research queries: <a href="/queries">/queries</a>
(<a href="/openapi.json">OpenAPI</a>). (The YASGUI editor is not installed: <code>npm ci --prefix ui</code>.)</p>
<form method="post" action="/query"><textarea name="query" aria-label="SPARQL query">{example}</textarea><br>
<button type="submit">Run</button></form></body></html>"""

YASGUI_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>b12kg SPARQL</title>
<link rel="stylesheet" href="/yasgui/yasgui.min.css">
<style>body{font-family:sans-serif;margin:1em 2em} .yasgui .autocompleteWrapper{display:none !important}</style>
</head><body><h1>b12kg — SPARQL endpoint (read-only)</h1>
<p>The vitamin B12 post-stroke guideline, the loaded patients and the derived recommendations with
their provenance. Endpoint <code>/query</code> (SPARQL 1.1 Protocol): queries only, no SERVICE, at most
__LIMIT__ rows, timeout __TIMEOUT__ s. One tab per research query (bind its parameters, or call it as
<a href="/queries">/queries/NAME</a>; <a href="/openapi.json">OpenAPI</a>).</p>
<main id="yasgui" aria-label="SPARQL query editor and results"></main>
<script src="/yasgui/yasgui.min.js"></script>
<script>
const tabs = __TABS__;
const endpoint = new URL("/query", window.location.href).href;
Yasgui.Yasqe.defaults.autocompleters = [];
const yasgui = new Yasgui(document.getElementById("yasgui"), {
  requestConfig: {endpoint: endpoint, method: "POST", acceptHeaderSelect: "application/sparql-results+json",
                  acceptHeaderGraph: "text/turtle"},
  copyEndpointOnNewTab: true, persistenceId: null, populateFromUrl: false,
  endpointCatalogueOptions: {getData: () => [{endpoint: endpoint}]},
  yasr: {defaultPlugin: "table"},
});
const first = yasgui.getTab();
first.setName(tabs[0].name);
first.setQuery(tabs[0].query);
for (const tab of tabs.slice(1)) {
  yasgui.addTab(false, {name: tab.name, yasqe: {value: tab.query}});
}
</script></body></html>"""

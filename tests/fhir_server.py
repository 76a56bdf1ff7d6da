"""A small FHIR server for tests (Starlette on uvicorn, loopback): read and patient search over a
fixed list of resources, as much of the FHIR REST API as the CDS Hooks service's prefetch templates
use (``Type/id``; ``Type?patient=ID[&code=system|code,...]``). It remembers the Authorization headers
and the resource types searched."""

from __future__ import annotations

import threading

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class FhirServer:
    def __init__(self, resources: list[dict]) -> None:
        self.resources = resources
        self.authorizations: set[str] = set()
        self.searched: set[str] = set()
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def _app(self) -> Starlette:
        def outcome(status: int, text: str) -> JSONResponse:
            return JSONResponse({"resourceType": "OperationOutcome",
                                 "issue": [{"severity": "error", "code": "not-found", "diagnostics": text}]},
                                status_code=status, media_type="application/fhir+json")

        async def read(request: Request) -> JSONResponse:
            self.authorizations.add(request.headers.get("authorization", ""))
            kind, rid = request.path_params["kind"], request.path_params["rid"]
            for r in self.resources:
                if r["resourceType"] == kind and r.get("id") == rid:
                    return JSONResponse(r, media_type="application/fhir+json")
            return outcome(404, f"{kind}/{rid} not found")

        async def search(request: Request) -> JSONResponse:
            self.authorizations.add(request.headers.get("authorization", ""))
            kind = request.path_params["kind"]
            self.searched.add(kind)
            patient = request.query_params.get("patient")
            codes = {c for c in (request.query_params.get("code") or "").split(",") if c}
            found = []
            for r in self.resources:
                if r["resourceType"] != kind:
                    continue
                subject = (r.get("subject") or r.get("patient") or {}).get("reference", "")
                if patient and subject not in (f"Patient/{patient}", patient):
                    continue
                mine = {f"{c.get('system')}|{c.get('code')}" for c in (r.get("code") or {}).get("coding", [])}
                if codes and not (codes & mine):
                    continue
                found.append(r)
            return JSONResponse({"resourceType": "Bundle", "type": "searchset", "total": len(found),
                                 "entry": [{"fullUrl": f"{self.url}/{kind}/{r['id']}", "resource": r,
                                            "search": {"mode": "match"}} for r in found]},
                                media_type="application/fhir+json")

        return Starlette(routes=[Route("/fhir/{kind}", search), Route("/fhir/{kind}/{rid}", read)])

    def __enter__(self) -> "FhirServer":
        from b12kg.serve import free_port

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self._app(), host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *exc) -> None:
        assert self.server is not None and self._thread is not None
        self.server.should_exit = True
        self._thread.join(10)

"""``b12kg serve``: a read-only SPARQL 1.1 Protocol endpoint for research tools.

Design (what it promises is in SECURITY.md, with the tests behind each promise):

* **One port, no way out.** The ASGI app (Starlette on uvicorn) is the only listener. Queries are
  evaluated in :mod:`b12kg.query_worker` processes on the store opened read-only; no backend server,
  no second port. A query naming SERVICE anywhere (after codepoint escapes are decoded; strings and
  comments included) is refused before it reaches a worker (:func:`b12kg.sparql_text.refuse_federation`,
  stricter than any parser). On Linux each worker also runs in a network namespace of its own when the
  kernel allows it (root, or unprivileged user namespaces), so even a federated query that got past
  the check could reach nothing. Updates are refused (403); the store is read-only besides.
* **Never wedged.** A fixed number of workers; requests wait for one in a bounded queue (503 when it
  is full). A worker that does not answer within the timeout is killed and replaced (504); one that
  dies (out of memory under ``RLIMIT_AS``, a stack overflow) is replaced (500). Queries larger than
  ``--max-query-bytes`` are refused (413) without being parsed. Connections that send no complete
  request within a few seconds are closed; bodies must arrive within the same time. Requests whose
  Host is not allowed (loopback by default) are refused (400), which defeats DNS rebinding. Worker
  output goes to the server's own standard error: no pipe is left unread.
* **Standard protocol.** GET, form POST and direct POST (SPARQL 1.1 Protocol), with the protocol's
  ``default-graph-uri`` / ``named-graph-uri`` (otherwise the union of all graphs is the default graph).
  Content negotiation: SELECT/ASK as SPARQL JSON, XML, CSV or TSV; CONSTRUCT/DESCRIBE as N-Triples,
  Turtle, RDF/XML, JSON-LD, N-Quads or TriG; 406 when nothing fits. Answers are cut at ``--limit``
  rows, said in the ``X-B12KG-Truncated`` header and in-band where the format allows. GET without a
  query returns a SPARQL 1.1 Service Description. HTTP/1.1 keep-alive; CORS only with ``--cors``.
* **Named research queries as a web API**: ``GET /queries/NAME?param=value`` runs
  ``queries/research/NAME.rq`` with typed parameters bound as RDF terms in a VALUES block placed on the
  query's tokens (never pasted into the text; :mod:`b12kg.serve_api`); ``/openapi.json`` describes
  them, generated from the query headers.

It serves the store's generation that is current when it starts, holding a shared lock on it (the
workers inherit it) so writers do not delete it; restart it after a ``load`` or ``derive``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

import pyoxigraph as ox
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from b12kg import query_worker
from b12kg.errors import B12kgError, ExitCode, InputError
from b12kg.sparql_text import FederationRefused, refuse_federation

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ServerError(B12kgError):
    exit_code = ExitCode.INPUT


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Policy:
    limit: int = 10_000  #: most rows (or triples) an answer holds
    timeout: int = 30  #: seconds a query may run
    workers: int = 2  #: query worker processes
    max_query_bytes: int = 64 * 1024  #: larger queries are refused unparsed
    max_memory_mb: int = 4096  #: address space of a worker (RLIMIT_AS)
    queue: int = 32  #: requests that may wait for a worker; more get 503 at once
    request_seconds: float = 10.0  #: to send a complete request head, and a body
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    cors: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------ workers
_PR_SET_PDEATHSIG = 1  # prctl(2)
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _dies_with(parent: int, max_memory_mb: int | None = None, isolate: bool = False):
    """A ``preexec_fn``: in the child, before exec, ask the kernel for SIGTERM when the thread that
    started it ends, exit at once if that parent is already gone, cap the address space and, with
    ``isolate``, enter a network namespace of its own (no interface but a down loopback)."""
    def prepare() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)
        if max_memory_mb:
            limit = max_memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if isolate and _LIBC is not None and _LIBC.unshare(_CLONE_NEWNET) != 0:
            _LIBC.unshare(_CLONE_NEWUSER | _CLONE_NEWNET)  # without root: with a user namespace, if allowed
    return prepare


def network_isolated(pid: int) -> bool:
    """Whether process ``pid`` is in a network namespace other than this process's."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except OSError:
        return False


class WorkerGone(Exception):
    pass


class Worker:
    """One query worker process and the blocking exchange with it (run on a thread)."""

    def __init__(self, generation: Path, lease: int | None, policy: Policy) -> None:
        self.generation, self.lease, self.policy = generation, lease, policy
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "b12kg.query_worker", str(self.generation)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
            pass_fds=() if self.lease is None else (self.lease,),
            preexec_fn=_dies_with(os.getpid(), self.policy.max_memory_mb, isolate=True),
        )
        try:
            ready = self._read(4 + 5, 60.0)
        except (WorkerGone, TimeoutError):
            self.kill()
            raise ServerError(f"a query worker could not open {self.generation}") from None
        if ready[4:] != b"ready":
            self.kill()
            raise ServerError("a query worker started badly")

    def interrupt(self) -> None:
        """Stop the query in progress (from another thread): the exchange then replaces the worker."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
            self.process = None

    def _read(self, size: int, seconds: float) -> bytes:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        chunks, left = [], size
        deadline = time.monotonic() + seconds
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise TimeoutError
            data = os.read(fd, min(left, 1 << 20))
            if not data:
                raise WorkerGone
            chunks.append(data)
            left -= len(data)
        return b"".join(chunks)

    def _frame(self, seconds: float) -> bytes:
        deadline = time.monotonic() + seconds
        (size,) = struct.unpack(">I", self._read(4, seconds))
        return self._read(size, max(0.0, deadline - time.monotonic()))

    def exchange(self, request: dict, seconds: float) -> tuple[dict, bytes]:
        """Send one request, read its answer; kill and replace the worker on a timeout or a death."""
        started = time.monotonic()
        try:
            if self.process is None or self.process.poll() is not None:  # never started, or died while idle
                self.kill()
                self.start()
            assert self.process is not None and self.process.stdin is not None
            query_worker.write_frame(self.process.stdin, json.dumps(request).encode())
            self.process.stdin.flush()
            header = json.loads(self._frame(seconds))
            body = self._frame(max(1.0, seconds - (time.monotonic() - started)))
            return header, body
        except TimeoutError:
            self.kill()
            self.start()
            return _error_header(HTTPStatus.GATEWAY_TIMEOUT, f"query exceeded the {self.policy.timeout} s timeout")
        except (WorkerGone, BrokenPipeError, OSError, ValueError):
            self.kill()
            self.start()
            return _error_header(HTTPStatus.INTERNAL_SERVER_ERROR,
                                 "the query stopped its evaluator (too deeply nested, too large, or out of memory) "
                                 "and was not answered")


def _error_header(status: HTTPStatus, message: str) -> tuple[dict, bytes]:
    return ({"status": int(status), "content_type": "text/plain; charset=utf-8", "truncated": False},
            (message + "\n").encode())


@dataclass
class Pool:
    workers: list[Worker]
    policy: Policy
    waiting: int = 0
    idle: asyncio.Queue | None = field(default=None)

    async def run(self, request: dict, wanted=None) -> tuple[dict, bytes]:
        """The answer to ``request`` from the next free worker; ``wanted`` (an async callable) is asked
        once a worker is free, so a request whose client has gone never starts its query."""
        if self.idle is None:
            self.idle = asyncio.Queue()
            for worker in self.workers:
                self.idle.put_nowait(worker)
        if self.waiting >= self.policy.queue:
            return _error_header(HTTPStatus.SERVICE_UNAVAILABLE, "too many queries waiting; try again shortly")
        self.waiting += 1
        try:
            worker = await asyncio.wait_for(self.idle.get(), timeout=self.policy.timeout)
        except asyncio.TimeoutError:
            return _error_header(HTTPStatus.SERVICE_UNAVAILABLE, "no query worker became free in time; try again")
        finally:
            self.waiting -= 1
        if wanted is not None and not await wanted():
            self.idle.put_nowait(worker)
            return _error_header(HTTPStatus.SERVICE_UNAVAILABLE, "the client went away")
        exchange = asyncio.get_running_loop().run_in_executor(None, worker.exchange, request,
                                                              float(self.policy.timeout))
        try:
            return await asyncio.shield(exchange)
        except asyncio.CancelledError:  # the client went away: stop its query, then free the worker
            worker.interrupt()
            while not exchange.done():
                try:
                    await asyncio.shield(exchange)
                except asyncio.CancelledError:
                    continue
            raise
        finally:
            if exchange.done():
                self.idle.put_nowait(worker)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()


# ------------------------------------------------------------------------------------------ HTTP
class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection that has not sent a complete request head
    within ``request_seconds`` of opening or of its last response (uvicorn only times out idle
    keep-alive connections, and any byte restarts that timer)."""

    request_seconds = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        cycle = self.cycle
        self._head_deadline = self.loop.call_later(self.request_seconds, self._no_request, cycle)

    def _no_request(self, cycle) -> None:
        if self.cycle is cycle and not self.transport.is_closing():  # no new request began since armed
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc) -> None:
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)


def _accept(header: str | None) -> list[str]:
    """Media types of an Accept header in the client's order of preference (q=0 dropped)."""
    if not header:
        return []
    items = []
    for position, part in enumerate(header.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if media and q > 0:
            items.append((-q, position, media.lower()))
    return [media for _, _, media in sorted(items)]


class Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name, [])
    if len(values) > 1:
        raise Refused(HTTPStatus.BAD_REQUEST, f"more than one {name} parameter")
    return values[0] if values else None


def _too_large(policy: Policy) -> Refused:
    return Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a query of at most {policy.max_query_bytes} bytes")


DRAIN_BYTES = 16 * 1024 * 1024  #: a refused body up to this size is read and dropped before the 413


async def _drain(request: Request, policy: Policy, already: int) -> None:
    """Read and drop the rest of a refused body (at most DRAIN_BYTES in all, within the request time):
    closing a connection with its body unread resets it under the client, which then sees a reset
    instead of its 413. Nothing is kept, so memory stays bounded."""
    async def read() -> None:
        seen = already
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_BYTES:
                return

    try:
        await asyncio.wait_for(read(), timeout=policy.request_seconds)
    except (asyncio.TimeoutError, ClientDisconnect):
        pass


async def _body(request: Request, policy: Policy) -> bytes:
    most = 3 * policy.max_query_bytes + 4096  # a URL-encoded form may take three bytes a character
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise Refused(HTTPStatus.BAD_REQUEST, "a valid Content-Length")
    if declared is not None and int(declared) > most:
        if int(declared) <= DRAIN_BYTES:
            await _drain(request, policy, 0)
        raise _too_large(policy)
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > most:
                await _drain(request, policy, size)
                raise _too_large(policy)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout=policy.request_seconds)
    except asyncio.TimeoutError:
        raise Refused(HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive in time") from None
    except ClientDisconnect:  # (the answer goes nowhere; this only ends the request quietly)
        raise Refused(HTTPStatus.BAD_REQUEST, "the client closed the connection before its request body arrived") from None
    return b"".join(chunks)


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(HTTPStatus.BAD_REQUEST, f"the {what} is not valid UTF-8") from None


def _form(data: bytes) -> dict[str, list[str]]:
    try:
        return urllib.parse.parse_qs(_text(data, "form").strip(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise Refused(HTTPStatus.BAD_REQUEST, "the form is not valid UTF-8 once decoded") from None


async def protocol_request(request: Request, policy: Policy) -> tuple[str | None, dict[str, list[str]]]:
    """The query text and the protocol parameters of a SPARQL 1.1 Protocol request; refusals as
    :class:`Refused`. ``None`` as the query: a GET with no query (the service description)."""
    try:
        params = urllib.parse.parse_qs(request.url.query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise Refused(HTTPStatus.BAD_REQUEST, "the query string is not valid UTF-8") from None
    if "update" in params:
        raise Refused(HTTPStatus.FORBIDDEN, "updates are refused: this endpoint is read-only")
    if request.method == "GET":
        return _sized(_one(params, "query"), policy), params
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind == "application/sparql-update":
        raise Refused(HTTPStatus.FORBIDDEN, "updates are refused: this endpoint is read-only")
    if kind not in ("application/x-www-form-urlencoded", "application/sparql-query"):
        raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                      "POST a query as application/x-www-form-urlencoded (query=…) or application/sparql-query")
    data = await _body(request, policy)
    if kind == "application/sparql-query":
        if _one(params, "query") is not None:
            raise Refused(HTTPStatus.BAD_REQUEST, "a query both in the body and in the URL")
        return _sized(_text(data, "query"), policy), params
    form = _form(data)
    if "update" in form:
        raise Refused(HTTPStatus.FORBIDDEN, "updates are refused: this endpoint is read-only")
    for name, values in form.items():
        params.setdefault(name, []).extend(values)
    query = _one(params, "query")
    if query is None:
        raise Refused(HTTPStatus.BAD_REQUEST, "missing query parameter")
    return _sized(query, policy), params


def _sized(query: str | None, policy: Policy) -> str | None:
    if query is not None and len(query.encode("utf-8")) > policy.max_query_bytes:
        raise _too_large(policy)
    return query


def service_description(base: str, policy: Policy) -> list[ox.Triple]:
    """The endpoint described with the SPARQL 1.1 Service Description vocabulary."""
    sd = "http://www.w3.org/ns/sparql-service-description#"
    rdf_type = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
    service = ox.NamedNode(base)

    def n(local: str) -> ox.NamedNode:
        return ox.NamedNode(sd + local)

    triples = [
        ox.Triple(service, rdf_type, n("Service")),
        ox.Triple(service, n("endpoint"), service),
        ox.Triple(service, n("supportedLanguage"), n("SPARQL11Query")),
        ox.Triple(service, n("feature"), n("UnionDefaultGraph")),
        ox.Triple(service, ox.NamedNode("http://purl.org/dc/terms/description"),
                  ox.Literal(f"b12kg: vitamin B12 after stroke, read-only; no SERVICE; at most {policy.limit} rows; "
                             f"timeout {policy.timeout} s")),
    ]
    formats = {
        "SPARQL_Results_JSON", "SPARQL_Results_XML", "SPARQL_Results_CSV", "SPARQL_Results_TSV",
    }
    for local in sorted(formats):
        triples.append(ox.Triple(service, n("resultFormat"), ox.NamedNode("http://www.w3.org/ns/formats/" + local)))
    for local in ("N-Triples", "Turtle", "RDF_XML", "JSON-LD", "N-Quads", "TriG"):
        triples.append(ox.Triple(service, n("resultFormat"), ox.NamedNode("http://www.w3.org/ns/formats/" + local)))
    return triples


def _respond(header: dict, body: bytes, extra: dict | None = None) -> Response:
    headers = {"X-B12KG-Truncated": "true" if header.get("truncated") else "false", **(extra or {})}
    if header["status"] == HTTPStatus.SERVICE_UNAVAILABLE:
        headers["Retry-After"] = "1"
    return Response(body, status_code=header["status"], media_type=header["content_type"], headers=headers)


def _plain(status: HTTPStatus, message: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=int(status))


def still_wanted(request: Request):
    async def wanted() -> bool:
        return not await request.is_disconnected()
    return wanted


async def answered(request: Request, job) -> Response:
    """The response of ``job`` (a pool run), or nothing when the client disconnects first: the job is
    then cancelled, which stops its query (an abandoned query costs no worker time)."""
    task = asyncio.ensure_future(job)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            header, body = task.result()
            return _respond(header, body)
        if await request.is_disconnected():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return Response(status_code=499)


def make_app(pool: Pool, policy: Policy, kb=None) -> Starlette:
    """The ASGI app: the protocol endpoint, the named-query API, the query page."""
    from b12kg import serve_api

    async def sparql(request: Request) -> Response:
        try:
            query, params = await protocol_request(request, policy)
            if query is None:
                accept = _accept(request.headers.get("accept"))
                chosen = query_worker.negotiate(accept, {"text/turtle": ox.RdfFormat.TURTLE,
                                                         **query_worker.GRAPH_FORMATS})
                if chosen is None:
                    return _plain(HTTPStatus.NOT_ACCEPTABLE, "no acceptable format for the service description")
                media, fmt = chosen
                body = ox.serialize(service_description(str(request.url.replace(query="")), policy), format=fmt)
                return Response(body, media_type=media)
            refuse_federation(query)
        except Refused as exc:
            return _plain(exc.status, str(exc))
        except FederationRefused as exc:
            return _plain(HTTPStatus.FORBIDDEN, str(exc))
        job = {
            "query": query,
            "accept": _accept(request.headers.get("accept")),
            "default_graphs": params.get("default-graph-uri"),
            "named_graphs": params.get("named-graph-uri"),
            "limit": policy.limit,
            "base": str(request.url.replace(query="")),  # relative IRIs in the query resolve against the endpoint
        }
        return await answered(request, pool.run(job, still_wanted(request)))

    async def update(request: Request) -> Response:
        return _plain(HTTPStatus.FORBIDDEN, "updates are refused: this endpoint is read-only")

    async def page(request: Request) -> Response:
        return HTMLResponse(serve_api.page(policy, kb))

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/query", sparql, methods=["GET", "POST"]),
        Route("/sparql", sparql, methods=["GET", "POST"]),
        Route("/update", update, methods=["GET", "POST"]),
        *serve_api.routes(pool, policy, kb),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(policy.allowed_hosts))]
    if policy.cors:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(policy.cors), allow_methods=["GET", "POST"],
                                     allow_headers=["Accept", "Content-Type"], expose_headers=["X-B12KG-Truncated"]))
    return Starlette(routes=routes, middleware=middleware)


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by SIGINT (Ctrl-C), SIGTERM (kill, systemd, a container stop) and SIGHUP
    alike, ending with exit 0 (uvicorn itself re-raises the signal once it has stopped); a second
    signal forces the exit."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {number: signal.signal(number, self._stop) for number in numbers}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _stop(self, signum, frame) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port); :class:`ServerError` when it
    cannot be had."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class HttpService:
    """An ASGI app on uvicorn with the guarded HTTP/1.1 protocol, on a socket of its own: run in the
    foreground (:meth:`serve_forever`) or, as a context manager, in a thread until :meth:`stop`."""

    server: uvicorn.Server | None = None
    _socket: socket.socket | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        raise NotImplementedError

    def run_app(self, app, sock: socket.socket, request_seconds: float) -> None:
        """Take ``sock`` and make the uvicorn server for ``app`` (call from :meth:`start`)."""
        self._socket = sock
        GuardedH11Protocol.request_seconds = request_seconds
        config = uvicorn.Config(app, http=GuardedH11Protocol, lifespan="off", timeout_keep_alive=5,
                                log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                                server_header=False, use_colors=False)
        self.server = _Server(config)

    def serve_forever(self) -> None:
        assert self.server is not None and self._socket is not None
        self.server.run(sockets=[self._socket])

    def stop(self) -> None:
        if self.server is not None and self._thread is not None:
            self.server.should_exit = True
            self._thread.join(30)
            self._thread = None
        self.server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self):
        self.start()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        assert self.server is not None
        while not self.server.started and self._thread.is_alive():
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Endpoint(HttpService):
    """The endpoint: its worker processes and the HTTP server, started together and stopped together."""

    def __init__(self, store_dir: Path, *, host: str = "127.0.0.1", port: int = 7878, timeout: int = 30,
                 limit: int = 10_000, workers: int = 2, max_query_bytes: int = 64 * 1024,
                 max_memory_mb: int = 4096, allowed_hosts: tuple[str, ...] = (), cors: tuple[str, ...] = (),
                 request_seconds: float = 10.0) -> None:
        from b12kg.store import current_generation

        current_generation(store_dir)  # a one-line error now when there is no store (or an old layout)
        self.store_dir, self.host, self.port = store_dir, host, port
        self.generation: Path | None = None
        self._lease: int | None = None
        self.policy = Policy(limit=limit, timeout=timeout, workers=workers, max_query_bytes=max_query_bytes,
                             max_memory_mb=max_memory_mb, request_seconds=request_seconds,
                             allowed_hosts=tuple(dict.fromkeys((*LOOPBACK_HOSTS, host, *allowed_hosts))),
                             cors=cors)
        self.pool: Pool | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/query"

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the live query workers."""
        return [w.process.pid for w in (self.pool.workers if self.pool else [])
                if w.process is not None and w.process.poll() is None]

    def start(self) -> None:
        from b12kg.kb import KnowledgeBase
        from b12kg.store import lease_current

        name, self._lease = lease_current(self.store_dir)
        self.generation = self.store_dir / name
        try:
            sock = listen(self.host, self.port)
        except ServerError:
            self.stop()
            raise
        self.port = sock.getsockname()[1]
        try:
            self.pool = Pool([Worker(self.generation, self._lease, self.policy) for _ in range(self.policy.workers)],
                             self.policy)
        except ServerError:
            self.stop()
            raise
        self.run_app(make_app(self.pool, self.policy, KnowledgeBase()), sock, self.policy.request_seconds)

    def stop(self) -> None:
        super().stop()
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self._lease is not None:
            os.close(self._lease)
            self._lease = None

__all__ = ["Endpoint", "HttpService", "listen", "InputError", "Policy", "ServerError", "free_port", "make_app", "network_isolated"]

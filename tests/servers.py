"""Real SPARQL servers for the remote-store tests: an Oxigraph server and a Virtuoso server, each
started on a free loopback port in a temporary directory and stopped when the test is done.

Use as context managers (the fixtures in the test modules wrap them)::

    with oxigraph_server(tmp) as store: ...   # RemoteStore on http://127.0.0.1:PORT/query
    with virtuoso_server(tmp) as store: ...   # RemoteStore on http://127.0.0.1:PORT/sparql
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from b12kg.store import RemoteStore

HOST = "127.0.0.1"
OXIGRAPH_HINT = "pip install oxigraph (the PyPI package ships the server binary)"
VIRTUOSO_HINT = "apt-get install virtuoso-opensource (Debian/Ubuntu: provides virtuoso-t and isql-vt)"


def oxigraph_binary() -> str | None:
    """The oxigraph server binary: on PATH, or beside the running Python (a virtualenv's bin/)."""
    beside = Path(sys.executable).parent / "oxigraph"
    return shutil.which("oxigraph") or (str(beside) if beside.is_file() else None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until ``url`` answers a SPARQL ASK (any HTTP answer counts), or fail with the server's log."""
    deadline = time.monotonic() + timeout
    probe = url + "?" + urllib.parse.urlencode({"query": "ASK {}"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(probe, timeout=2) as response:
                response.read()
                return
        except urllib.error.HTTPError:
            return  # it answers, if not to this probe
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@contextlib.contextmanager
def oxigraph_server(directory: Path) -> Iterator[RemoteStore]:
    """``oxigraph serve`` on a free port with a store in ``directory`` and the union default graph."""
    binary = oxigraph_binary()
    if binary is None:
        raise RuntimeError(f"oxigraph not found: {OXIGRAPH_HINT}")
    port = free_port()
    log = directory / "oxigraph.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [binary, "serve", "--location", str(directory / "store"), "--bind", f"{HOST}:{port}",
             "--union-default-graph"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_http(f"http://{HOST}:{port}/query", process, log, timeout=30)
        yield RemoteStore(f"http://{HOST}:{port}/query", update_endpoint=f"http://{HOST}:{port}/update")
    finally:
        _stop(process)


# NumberOfBuffers / MaxDirtyBuffers: Virtuoso's own setting for 2 GB of memory. With 20,000 buffers an
# update request of a few MB (derive --replace batches sends up to 8 MB) stalled now and then for
# 30 s to over 300 s at 3,000 patients; with these, no stall in the same runs.
VIRTUOSO_INI = """\
[Database]
DatabaseFile       = {dir}/virtuoso.db
ErrorLogFile       = {dir}/virtuoso.log
LockFile           = {dir}/virtuoso.lck
TransactionFile    = {dir}/virtuoso.trx
xa_persistent_file = {dir}/virtuoso.pxa
ErrorLogLevel      = 7
FileExtend         = 200
MaxCheckpointRemap = 2000
Striping           = 0
TempStorage        = TempDatabase

[TempDatabase]
DatabaseFile       = {dir}/virtuoso-temp.db
TransactionFile    = {dir}/virtuoso-temp.trx
MaxCheckpointRemap = 2000
Striping           = 0

[Parameters]
ServerPort               = {host}:{sql_port}
LiteMode                 = 0
DisableUnixSocket        = 1
DisableTcpSocket         = 0
MaxClientConnections     = 10
CheckpointInterval       = 0
O_DIRECT                 = 0
CaseMode                 = 2
MaxStaticCursorRows      = 5000
CheckpointAuditTrail     = 0
AllowOSCalls             = 0
SchedulerInterval        = 0
DirsAllowed              = ., {dir}
ThreadCleanupInterval    = 0
ThreadThreshold          = 10
ResourcesCleanupInterval = 0
FreeTextBatchSize        = 100000
SingleCPU                = 0
PrefixResultNames        = 0
RdfFreeTextRulesSize     = 100
IndexTreeMaps            = 64
MaxQueryMem              = 512M
VectorSize               = 1000
MaxVectorSize            = 1000000
AdjustVectorSize         = 0
ThreadsPerQuery          = 2
AsyncQueueMaxThreads     = 4
NumberOfBuffers          = 170000
MaxDirtyBuffers          = 130000

[HTTPServer]
ServerPort                  = {host}:{http_port}
ServerRoot                  = {dir}
MaxClientConnections        = 5
DavRoot                     = DAV
EnabledDavVSP               = 0
HTTPProxyEnabled            = 0
TempASPXDir                 = 0
ServerThreads               = 5
MaxKeepAlives               = 5
KeepAliveTimeout            = 10
HTTPThreadSize              = 280000
HttpPrintWarningsInOutput   = 0
Charset                     = UTF-8
EnabledGzipContent          = 0

[Client]
SQL_PREFETCH_ROWS  = 100
SQL_PREFETCH_BYTES = 16000
SQL_QUERY_TIMEOUT  = 0
SQL_TXN_TIMEOUT    = 0

[SPARQL]
ResultSetMaxRows           = 1000000
MaxQueryCostEstimationTime = 0
MaxQueryExecutionTime      = 0
MaxSortedTopRows           = 1000000
DeferInferenceRulesInit    = 0
"""


def virtuoso_binaries() -> tuple[str, str] | None:
    server, isql = shutil.which("virtuoso-t"), shutil.which("isql-vt") or shutil.which("isql")
    return (server, isql) if server and isql else None


def _isql(isql: str, port: int, statement: str) -> None:
    done = subprocess.run([isql, f"{HOST}:{port}", "dba", "dba", f"exec={statement}"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or "*** Error" in done.stdout + done.stderr:
        raise RuntimeError(f"isql {statement!r} failed:\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def virtuoso_server(directory: Path) -> Iterator[RemoteStore]:
    """``virtuoso-t`` in the foreground with its own ini and database in ``directory``; SPARQL Update
    is granted to the anonymous ``SPARQL`` user so ``/sparql`` takes queries and updates alike."""
    binaries = virtuoso_binaries()
    if binaries is None:
        raise RuntimeError(f"virtuoso-t / isql-vt not found: {VIRTUOSO_HINT}")
    server, isql = binaries
    sql_port, http_port = free_port(), free_port()
    while http_port == sql_port:
        http_port = free_port()
    ini = directory / "virtuoso.ini"
    ini.write_text(VIRTUOSO_INI.format(dir=directory, host=HOST, sql_port=sql_port, http_port=http_port))
    log = directory / "virtuoso.log"
    with open(directory / "virtuoso.out", "wb") as out:
        process = subprocess.Popen([server, "+foreground", "+configfile", str(ini)], cwd=directory,
                                   stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        _wait_http(f"http://{HOST}:{http_port}/sparql", process, log, timeout=90)
        _isql(isql, sql_port, 'grant SPARQL_UPDATE to "SPARQL";')
        yield RemoteStore(f"http://{HOST}:{http_port}/sparql")
    finally:
        _stop(process, timeout=30)


BACKENDS = ["embedded", "oxigraph", "virtuoso"]


@contextlib.contextmanager
def open_backend(kind: str, directory: Path) -> Iterator:
    """An empty store of one kind: the embedded store, or a server started on loopback for it
    (skipped locally with an install hint when its binary is missing; a failure in CI)."""
    from b12kg.store import EmbeddedStore
    from conftest import require_binary

    if kind == "embedded":
        store = EmbeddedStore(directory / "store")
        try:
            yield store
        finally:
            store.close()
        return
    if kind == "oxigraph":
        if oxigraph_binary() is None:
            require_binary("oxigraph", OXIGRAPH_HINT)
        server = oxigraph_server(directory)
    else:
        require_binary("virtuoso-t", VIRTUOSO_HINT)
        require_binary("isql-vt", VIRTUOSO_HINT)
        server = virtuoso_server(directory)
    with server as store:
        yield store

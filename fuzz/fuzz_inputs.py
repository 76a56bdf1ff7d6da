"""Fuzzing every input of b12kg in subprocesses with time and memory limits.

Targets (the inputs a user or a client hands b12kg):

* ``turtle``, ``jsonld`` — mutated patient files through ``b12kg recommend``;
* ``fhir``, ``ndjson``  — mutated FHIR bundles and bulk (NDJSON) files through ``b12kg import-fhir``
                         (and, for a share of them, ``recommend``);
* ``values``            — the seed case with a generated B12 value, unit and result date (Turtle and
                         FHIR) through ``recommend``: the generated value is asserted to be in the file;
* ``rq``                — mutated ``.rq`` files through ``b12kg query`` on a derived store;
* ``cli``               — generated command lines (recommend, query, export, import-fhir, synth, load,
                         derive) with generated option values, paths and parameters;
* ``http``              — mutated raw HTTP requests to a ``b12kg serve`` started here.

Seeds: the project's examples, every input of ``fuzz/defects.py`` (each once took b12kg down or made it
lie), and requests that once wedged or fooled the endpoint. Each seed runs once as it is, then the
mutator (a seeded byte-level one of our own: bit flips, token insertion, deletion, duplication,
truncation) and the generators take over.

Each command runs in a worker process (``--worker``: it runs ``b12kg.cli.main`` in-process, one input at
a time) with an address-space limit; the parent kills and replaces a worker that does not answer within
``--input-seconds``. An input fails as

* ``traceback`` — an exception b12kg did not turn into a documented error (exit 10), or a traceback on
  the server's stderr;
* ``crash``     — the worker or the server died (a signal: SIGSEGV, an abort);
* ``hang``      — no answer within the time limit (a request: no complete response and no close), or
  the endpoint not answering ``ASK {}`` within 1 s after a request;
* ``memory``    — a command's peak resident memory over ``--memory-mib`` (default 1,024), or a MemoryError;
* ``exit``      — an exit code the documentation does not list; a 500 from the endpoint other than its
  documented "the query stopped its evaluator".

    python fuzz/fuzz_inputs.py --budget 200000 --seed 7 --save findings/   # a long run (docs in fuzz/README.md)

prints a table of inputs and failures per target and exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import random
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AS_OF = "2025-10-31"
TARGETS = ("turtle", "jsonld", "fhir", "ndjson", "values", "rq", "cli", "http")
FAILURES = ("traceback", "crash", "hang", "memory", "exit")
DOCUMENTED_EXITS = {0, 1, 2, 3, 4, 5, 6, 7}  # docs/clinicians.md, "Exit codes" (10 is a bug)
MUTABLE_SEED_BYTES = 256 * 1024  # larger seeds run once, as they are
FRESH_WORKER_BYTES = 512 * 2**20  # a worker left holding more than this is replaced (so peaks stay per input)
WEIGHTS = {"turtle": 3, "jsonld": 1, "fhir": 3, "ndjson": 1, "values": 3, "rq": 2, "cli": 3, "http": 4}
TOKENS = [b'"', b"'", b'"""', b"<", b">", b"{", b"}", b"[", b"]", b",", b";", b".", b"\\", b"\\u0000", b"\x00",
          b"\xff", b"\xc3\x28", b"^^", b"@en", b"_:b", b"a", b"-1", b"0", b"1e999999999", b"NaN", b"-0.0", b"9" * 40,
          b"292.0000000000000000000000001", b"1e308", b"2025-02-30", b"2025-13-01", b"9999-12-31", b"0001-01-01",
          b"pg/mL", b"pmol/L", b"ng/L", b"mg/dL", b"null", b"true", b"[]", b"{}", b"[" * 150, b'"resourceType"',
          b'"Observation"', b'"valueQuantity"', b"\n", b"\r", b"#", b"PREFIX", b"@prefix", b"http://", b"urn:",
          b"file:///etc/passwd", b"\x1b[31m", b"\xe2\x80\xae", b"SERVICE", b"\\u0053ERVICE", b"LOAD", b"DROP ALL",
          b"Content-Length: -1\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: evil.example\r\n", b"%00", b"%0d%0a"]


def _defects():
    spec = importlib.util.spec_from_file_location("b12kg_fuzz_defects", REPO / "fuzz" / "defects.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------- mutation
class Mutator:
    """A seeded byte-level mutator: 1-8 operations per input."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self, data: bytes) -> bytes:
        buf = bytearray(data)
        for _ in range(self.rng.choice([1, 1, 2, 3, 5, 8])):
            op = self.rng.randrange(7)
            at = self.rng.randrange(len(buf) + 1)
            if op == 0 and buf:  # flip a bit
                i = self.rng.randrange(len(buf))
                buf[i] ^= 1 << self.rng.randrange(8)
            elif op == 1:  # insert a token
                buf[at:at] = self.rng.choice(TOKENS)
            elif op == 2 and buf:  # delete a span
                del buf[at : at + self.rng.randint(1, 16)]
            elif op == 3 and buf:  # duplicate a span
                span = bytes(buf[at : at + self.rng.randint(1, 64)])
                buf[self.rng.randrange(len(buf) + 1) : 0] = span
            elif op == 4 and buf:  # replace a byte
                buf[self.rng.randrange(len(buf))] = self.rng.randrange(256)
            elif op == 5:  # replace a digit with a token
                digits = [i for i, c in enumerate(buf[:4096]) if 48 <= c <= 57]
                if digits:
                    i = self.rng.choice(digits)
                    buf[i : i + 1] = self.rng.choice(TOKENS)
            else:  # truncate
                del buf[at:]
        return bytes(buf)


class Values:
    """Generated user values: numbers in every notation and size, dates in and out of the calendar,
    units, and text with control characters."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    def number(self) -> str:
        r, kind = self.rng, self.rng.randrange(9)
        sign = r.choice(["", "", "-", "+"])
        if kind == 0:
            return sign + str(r.randint(0, 2000))
        if kind == 1:
            return f"{sign}{r.randint(0, 2000)}.{self.digits(r.randint(1, 30))}"
        if kind == 2:
            return f"{sign}{r.randint(1, 9)}e{r.choice([r.randint(-400, 400), 999999999, -999999999, 308, 15, 20])}"
        if kind == 3:
            return sign + self.digits(r.randint(15, 60))
        if kind == 4:
            return r.choice(["NaN", "INF", "-INF", "Infinity", "-0", ".5", "5.", "0e999999", "1_000", "0x10", "١٢٣"])
        if kind == 5:
            return self.digits(r.randint(1000, 6000))
        if kind == 6:
            return f"{self.digits(r.randint(1, 16))}.{self.digits(r.randint(1, 20))}"
        if kind == 7:
            return str(r.choice([133, 147, 148, 149, 150, 221, 222, 292, 350, 738, 739, 1000]))
        return self.text(8)

    def date(self) -> str:
        r = self.rng
        year = r.choice([0, 1, 44, 1799, 1800, 1948, 2024, 2025, 2026, 2999, 3000, 9999, 10000, r.randint(1, 9999)])
        text = f"{'-' if r.random() < 0.05 else ''}{year:04d}-{r.randint(0, 13):02d}-{r.randint(0, 32):02d}"
        if r.random() < 0.5:
            text = f"{r.choice([2024, 2025])}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        if r.random() < 0.2:
            text += r.choice(["T10:00:00", "T10:00:00Z", "T23:59:59+14:00", "T24:00:00", "T10:00", "Z"])
        return text if r.random() < 0.95 else self.text(12)

    def unit(self) -> str:
        return self.rng.choice(["pg/mL", "pmol/L", "ng/L", "ng/mL", "mg/dL", "%", "", "pg/ml", self.text(6)])

    def text(self, size: int) -> str:
        alphabet = "abc XYZ09-_./:\"'\\{}<>#\x00\x1b\r\n\t\u202e\u00e9\U0001f600"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, size)))

    def any(self) -> str:
        return self.rng.choice([self.number, self.date, self.unit, lambda: self.text(20)])()


# ------------------------------------------------------------------------------------------ workers
def _die_with_parent(sig: int = 9) -> None:
    """In a child, before exec: the kernel sends ``sig`` when the fuzzer dies, so no worker or server
    outlives a run that was killed (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0)


class Worker:
    """A ``fuzz_inputs.py --worker`` process: ``b12kg`` commands run in it one at a time."""

    def __init__(self, folder: Path, memory_bytes: int) -> None:
        self.folder, self.memory_bytes = folder, memory_bytes
        self.log = folder / "worker-stderr.log"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        def limit() -> None:
            _die_with_parent()
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))

        with self.log.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            cwd=self.folder, preexec_fn=limit)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def run(self, argv: list[str], seconds: float) -> dict:
        """The outcome of ``b12kg ARGV``: {code, traceback, stderr, peak, seconds}, or {failure, detail}."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        if self.process.poll() is not None:
            self.start()
        try:
            self.process.stdin.write((json.dumps(argv) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        line = self.process.stdout.readline() if ready else b""
        if line:
            outcome = json.loads(line)
            if outcome.get("rss", 0) > FRESH_WORKER_BYTES:
                self.stop()
                self.start()
            return outcome
        hung = not ready  # ready with nothing to read: the worker's end of the pipe closed, it is dying
        if not hung:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.stop()
        code = self.process.returncode
        tail = self.log.read_bytes()[-1500:].decode("utf-8", "replace")
        self.start()
        if hung:
            return {"failure": "hang", "detail": f"no answer within {seconds:.0f} s"}
        return {"failure": "crash", "detail": f"worker exited {code}: {tail}"}


def _peak_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM (Linux)
            f.write("5")
    except OSError:
        pass


def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmHWM: peak resident, VmRSS: now), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def worker_main() -> None:
    """Read one JSON argv per line; run ``b12kg.cli.main`` on it; write one JSON outcome per line."""
    answers = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # (main() may point fd 1 at /dev/null itself: a reader that stopped)
    os.environ["B12KG_DEBUG"] = "1"  # an internal error raises, and is caught here with its traceback
    from b12kg import cli

    for line in sys.stdin:
        argv = json.loads(line)
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace")
        err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace")
        _peak_reset()
        started = time.monotonic()
        code, failure = None, None
        sys.argv = ["b12kg", *argv]
        sys.stdout, sys.stderr = out, err
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except MemoryError:
            failure = "memory: MemoryError\n" + traceback.format_exc()
        except BaseException:  # noqa: BLE001  (the finding itself)
            failure = "traceback: " + traceback.format_exc()
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        try:
            err.flush()
            text = err.buffer.getvalue().decode("utf-8", "replace")
        except ValueError:  # closed by the command
            text = ""
        answers.write(json.dumps({"code": code, "failure": failure, "stderr": text[-3000:], "peak": _status("VmHWM"),
                                  "rss": _status("VmRSS"), "seconds": time.monotonic() - started}) + "\n")
        answers.flush()


# ------------------------------------------------------------------------------------------ serve
class Server:
    """``b12kg serve`` on loopback (a subprocess, stderr to a file), with the checks of the http target."""

    def __init__(self, store: Path, folder: Path) -> None:
        from b12kg.serve import free_port

        self.port = free_port()
        self.log = folder / "serve-stderr.log"
        self.seen = 0
        self.lock = threading.Lock()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "b12kg.cli", "serve", "--store", str(store), "--port", str(self.port),
                 "--workers", "2", "--timeout", "5", "--limit", "200", "--max-memory", "2048"],
                stdout=subprocess.DEVNULL, stderr=log, preexec_fn=lambda: _die_with_parent(15))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"b12kg serve did not start: {self.log.read_text()[-1000:]}")
            try:
                if self.ask(5.0) is not None:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("b12kg serve did not answer within 60 s")

    def ask(self, seconds: float = 1.0) -> float | None:
        """Seconds ``ASK {}`` took, or None when it did not answer 200 in ``seconds``."""
        started = time.monotonic()
        request = (f"GET /query?query={urllib.parse.quote('ASK {}')} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                   "Accept: application/sparql-results+json\r\nConnection: close\r\n\r\n").encode()
        status, _ = exchange(self.port, request, seconds)
        return time.monotonic() - started if status == 200 else None

    def new_stderr(self) -> str:
        with self.lock:
            data = self.log.read_bytes()
            text, self.seen = data[self.seen:].decode("utf-8", "replace"), len(data)
        return text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _complete(answer: bytes, head_request: bool) -> bool:
    """True when ``answer`` holds one whole HTTP response (after any 1xx interim ones)."""
    while True:
        end = answer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head, rest = answer[:end].lower(), answer[end + 4:]
        if head.startswith(b"http/1.1 1") and not head.startswith(b"http/1.1 101"):
            answer = rest
            continue
        if head_request or head.split(b" ", 2)[1:2] in ([b"204"], [b"304"]):
            return True
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                try:
                    return len(rest) >= int(line.split(b":", 1)[1])
                except ValueError:
                    return False
            if line.startswith(b"transfer-encoding:") and b"chunked" in line:
                return rest.endswith(b"0\r\n\r\n")
        return False  # no length: the server closes at its end


def exchange(port: int, request: bytes, seconds: float, patience: float = 1.0) -> tuple[int | None, bytes]:
    """Send raw bytes and read one response: (its status or None, the bytes read). A server that has
    said nothing after ``patience`` seconds is told the request is over (the sending side closed), as a
    client that gives up would; it must then answer or close within ``seconds`` in all, or this raises
    TimeoutError."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        started = time.monotonic()
        try:
            s.sendall(request)
        except OSError:  # the server closed first (a refused request): read what it said
            pass
        chunks: list[bytes] = []
        half_closed = False
        while True:
            waited = time.monotonic() - started
            if not half_closed and not chunks and waited > patience:
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                half_closed = True
            limit = (patience - waited) if not half_closed and not chunks else (seconds - waited)
            if limit <= 0 and half_closed:
                raise TimeoutError
            s.settimeout(max(0.01, limit))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                if half_closed or chunks:
                    if time.monotonic() - started >= seconds:
                        raise TimeoutError from None
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if _complete(b"".join(chunks), request.startswith(b"HEAD")):
                break
    answer = b"".join(chunks)
    status = None
    if answer.startswith(b"HTTP/1."):
        try:
            status = int(answer.split(b" ", 2)[1])
        except (IndexError, ValueError):
            status = None
    return status, answer


def http_seeds(port: int) -> list[bytes]:
    host = f"Host: 127.0.0.1:{port}\r\n"
    ask = urllib.parse.quote("ASK {}")
    select_all = urllib.parse.quote("SELECT * WHERE { ?s ?p ?o }")
    form = "query=" + urllib.parse.quote_plus("SELECT ?s WHERE { ?s a <https://w3id.org/b12kg/ontology#Patient> }")
    nested = "SELECT * WHERE { ?s ?p ?o FILTER(" + " || ".join(f"?o = {i}" for i in range(3000)) + ") }"
    seeds = [
        f"GET /query?query={ask} HTTP/1.1\r\n{host}Accept: application/sparql-results+json\r\n\r\n",
        f"GET /query?query={select_all} HTTP/1.1\r\n{host}Accept: text/tab-separated-values\r\n\r\n",
        f"GET /query?query={urllib.parse.quote('CONSTRUCT WHERE { ?s ?p ?o }')} HTTP/1.1\r\n{host}Accept: text/turtle\r\n\r\n",
        f"POST /query HTTP/1.1\r\n{host}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n\r\n{form}",
        f"POST /query HTTP/1.1\r\n{host}Content-Type: application/sparql-query\r\nContent-Length: 6\r\n\r\nASK {{}}",
        f"GET /queries/due-in-window?start=2025-01-01&end=2026-01-01 HTTP/1.1\r\n{host}Accept: application/json\r\n\r\n",
        f"GET /queries/patient-evidence?patient=https%3A%2F%2Fexample.org%2Fx HTTP/1.1\r\n{host}\r\n",
        f"GET /openapi.json HTTP/1.1\r\n{host}\r\n",
        f"GET / HTTP/1.1\r\n{host}\r\n",
        f"GET /query HTTP/1.1\r\n{host}Accept: text/turtle\r\n\r\n",
        # requests that once fooled or wedged the endpoint
        f"GET /query?query={urllib.parse.quote('SELECT ?r WHERE { # c' + chr(13) + ' SERVICE <http://127.0.0.1:1/sparql> { ?x ?y ?r } }')} HTTP/1.1\r\n{host}\r\n",
        f"POST /query HTTP/1.1\r\n{host}Content-Type: application/sparql-query\r\nContent-Length: -1\r\n\r\nASK {{}}",
        f"POST /query HTTP/1.1\r\n{host}Content-Type: application/sparql-query\r\nContent-Length: {len(nested)}\r\n\r\n{nested}",
        f"GET /query?query={urllib.parse.quote('SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }')} HTTP/1.1\r\n{host}\r\n",
        f"GET /query?query={ask} HTTP/1.1\r\nHost: rebind.example\r\n\r\n",
        f"POST /update HTTP/1.1\r\n{host}Content-Type: application/sparql-update\r\nContent-Length: 8\r\n\r\nDROP ALL",
        f"GET /query?query={urllib.parse.quote('SELECT * WHERE { BIND(<file:///etc/passwd> AS ?x) }')} HTTP/1.1\r\n{host}\r\n",
        f"GET /query?query={urllib.parse.quote(chr(92) + 'u0053ERVICE')} HTTP/1.1\r\n{host}\r\n",
        "GET /query HTTP/1.1\r\n",  # an incomplete head
        "",  # a connection that sends nothing
    ]
    return [s.encode("utf-8", "surrogatepass") for s in seeds]


# --------------------------------------------------------------------------------------------- run
@dataclass
class Finding:
    target: str
    failure: str
    detail: str
    input: str  #: the command line or request
    file: bytes | None = None


@dataclass
class Results:
    inputs: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)  #: (target, failure) -> count
    findings: list[Finding] = field(default_factory=list)
    values: set = field(default_factory=set)  #: distinct generated B12 values that reached a file
    evaluator_restarts: int = 0  #: endpoint answers "the query stopped its evaluator" (recovered by design)
    peak: int = 0
    slowest: float = 0.0


class Fuzzer:
    def __init__(self, *, seed: int, workdir: Path, slots: int = 2, targets: tuple[str, ...] = TARGETS,
                 input_seconds: float = 60.0, memory_mib: int = 1024, address_space_mib: int = 4096) -> None:
        self.seed, self.work, self.slots, self.targets = seed, workdir, slots, targets
        self.input_seconds, self.memory = input_seconds, memory_mib * 2**20
        self.address_space = address_space_mib * 2**20
        self.results = Results()
        self.lock = threading.Lock()
        self.http_lock = threading.Lock()  # one request at a time: the server's log belongs to it
        self.defects = _defects()
        self.inputs = self.defects.build(workdir / "defects")
        self.store = self._research_store()
        self.seeds = self._seeds()
        self.server = Server(self.store, workdir) if "http" in targets else None
        self.http = http_seeds(self.server.port) if self.server else []
        self.pending = [(target, seed) for target in targets for seed in
                        (self.http if target == "http" else self.seeds.get(target, []))]

    # ---------------------------------------------------------------------------- set-up
    def _cli(self, *args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "b12kg.cli", *args], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"b12kg {' '.join(args)}: {done.stderr[-1000:]}")

    def _research_store(self) -> Path:
        store = self.work / "research-store"
        self._cli("load", "--store", str(store), *map(str, sorted((REPO / "examples" / "patients").glob("*.ttl"))))
        self._cli("derive", "--store", str(store), "--as-of", AS_OF, "--workers", "1")
        return store

    def _seeds(self) -> dict[str, list]:
        import pyoxigraph as ox

        patients = sorted((REPO / "examples" / "patients").glob("*.ttl"))
        fhir = sorted((REPO / "examples" / "fhir").glob("*.json"))
        jsonld = []
        for path in patients[:8]:
            triples = list(ox.parse(path=str(path), format=ox.RdfFormat.TURTLE))
            jsonld.append(ox.serialize(triples, format=ox.RdfFormat.JSON_LD))
        ndjson = []
        for path in fhir:
            bundle = json.loads(path.read_text(encoding="utf-8"))
            ndjson.append("".join(json.dumps(e["resource"]) + "\n" for e in bundle.get("entry", [])).encode())
        d = self.inputs
        queries = sorted((REPO / "queries" / "research").glob("*.rq"))
        return {
            "turtle": [p.read_bytes() for p in patients] + [(d / n).read_bytes() for n in (
                "value-27-digits.ttl", "value-2e20.ttl", "value-1e308.ttl", "date-9999.ttl", "empty.ttl",
                "prefixes-only.ttl", "literal-17mib.ttl")],
            "jsonld": jsonld + [(d / n).read_bytes() for n in ("deep-4000.jsonld", "deep-50000.jsonld")],
            "fhir": [p.read_bytes() for p in fhir] + [(d / n).read_bytes() for n in (
                "fhir-1e999999999.json", "fhir-1e308.json", "fhir-27-digits.json", "fhir-nan.json",
                "fhir-escape-status.json", "fhir-deep.json")],
            "ndjson": ndjson,
            "rq": [p.read_bytes() for p in queries] + [(d / n).read_bytes() for n in ("construct.rq", "latin1.rq", "count.rq")],
            "cli": [list(case.args) for case in self.defects.CASES],
            "values": [None],
        }

    # ---------------------------------------------------------------------------- one input
    def _record(self, target: str, failure: str | None, detail: str, described: str, file: bytes | None) -> None:
        with self.lock:
            self.results.inputs[target] += 1
            if failure:
                self.results.failures[(target, failure)] += 1
                if sum(1 for f in self.results.findings if (f.target, f.failure) == (target, failure)) < 5:
                    self.results.findings.append(Finding(target, failure, detail[-3000:], described[:2000], file))

    def _command(self, worker: Worker, target: str, argv: list[str], file: bytes | None = None) -> None:
        outcome = worker.run(argv, self.input_seconds)
        described = "b12kg " + " ".join(argv)
        if "failure" in outcome and outcome.get("code") is None and outcome["failure"]:
            kind = outcome["failure"].split(":", 1)[0]
            self._record(target, kind, outcome.get("detail") or outcome["failure"], described, file)
            return
        failure, detail = None, ""
        if outcome["code"] not in DOCUMENTED_EXITS:
            failure, detail = ("traceback" if outcome["code"] == 10 else "exit"), outcome["stderr"]
        elif "Traceback" in outcome["stderr"]:
            failure, detail = "traceback", outcome["stderr"]
        elif outcome["peak"] > self.memory:
            failure, detail = "memory", f"peak {outcome['peak'] / 2**20:.0f} MiB"
        with self.lock:
            self.results.peak = max(self.results.peak, outcome["peak"])
            self.results.slowest = max(self.results.slowest, outcome["seconds"])
        self._record(target, failure, detail, described, file)

    def _file(self, slot: Path, name: str, data: bytes) -> Path:
        path = slot / name
        path.write_bytes(data)
        return path

    def file_input(self, worker: Worker, slot: Path, rng: random.Random, target: str, data: bytes) -> None:
        if target == "turtle":
            path = self._file(slot, "input.ttl", data)
            self._command(worker, target, ["recommend", str(path), "--as-of", AS_OF, "-f", rng.choice(["text", "json"])], data)
        elif target == "jsonld":
            path = self._file(slot, "input.jsonld", data)
            self._command(worker, target, ["recommend", str(path), "--as-of", AS_OF], data)
        elif target in ("fhir", "ndjson"):
            path = self._file(slot, "input.json" if target == "fhir" else "input.ndjson", data)
            if rng.random() < 0.3:
                self._command(worker, target, ["recommend", str(path), "--as-of", AS_OF], data)
            else:
                self._command(worker, target, ["import-fhir", str(path), "-o", str(slot / "out.ttl")], data)
        elif target == "rq":
            path = self._file(slot, "input.rq", data)
            args = ["query", str(path), "--store", str(self.store), "-f", rng.choice(["table", "csv", "json"])]
            for name, kind in _declared(data):
                args += ["--param", f"{name}={_good_value(kind)}"]
            self._command(worker, target, args, data)

    def values_input(self, worker: Worker, slot: Path, rng: random.Random) -> None:
        values = Values(rng)
        number, unit, day = values.number(), values.unit(), values.date()
        if rng.random() < 0.6:
            seed = self.defects.SEED_TTL.read_text(encoding="utf-8")
            literal = number if rng.random() < 0.5 else f'"{_turtle_escape(number)}"^^xsd:{rng.choice(["decimal", "integer", "double"])}'
            text = seed.replace("b12:value 292 ;", f"b12:value {literal} ;", 1)
            text = text.replace('b12:unit "pg/mL"', f'b12:unit "{_turtle_escape(unit)}"', 1)
            text = text.replace('b12:effectiveDate "2025-10-24"^^xsd:date', f'b12:effectiveDate "{_turtle_escape(day)}"^^xsd:date', 1)
            assert f"b12:value {literal} ;" in text, "the values mutator did not vary the value"
            name = "values.ttl"
        else:
            seed = self.defects.SEED_FHIR.read_text(encoding="utf-8")
            literal = number if rng.random() < 0.7 else json.dumps(number)
            text = seed.replace('"value": 292,', f'"value": {literal},', 1)
            text = text.replace('"effectiveDateTime": "2025-10-24"', f'"effectiveDateTime": {json.dumps(day)}', 1)
            assert f'"value": {literal},' in text, "the values mutator did not vary the value"
            name = "values.json"
        with self.lock:
            self.results.values.add(literal)
        data = text.encode("utf-8", "surrogatepass")
        path = self._file(slot, name, data)
        self._command(worker, "values", ["recommend", str(path), "--as-of", AS_OF], data)

    def cli_input(self, worker: Worker, slot: Path, rng: random.Random, argv: list[str] | None = None) -> None:
        scratch = slot / "scratch-store"
        if argv is None:
            argv = self._generated_argv(slot, rng)
        argv = [a.replace("{dir}", str(self.inputs)).replace("{store}", str(scratch)) for a in argv]
        argv = [a for a in argv if a not in ("serve", "check")]  # (long-running and slow commands: tested elsewhere)
        self._command(worker, "cli", argv)

    def _generated_argv(self, slot: Path, rng: random.Random) -> list[str]:
        v = Values(rng)
        scratch = str(slot / "scratch-store")
        files = [str(self.defects.SEED_TTL), str(self.defects.SEED_FHIR), str(self.inputs / "value-27-digits.ttl"),
                 str(self.inputs / "empty.ttl"), str(slot), str(slot / "missing" / "x.ttl"), v.text(10)]
        outputs = [str(slot / "out.x"), str(slot), str(slot / "missing" / "o"), "/dev/null", v.text(8)]
        pick = rng.choice

        def value(good: list[str]) -> str:
            return pick(good) if rng.random() < 0.7 else v.any()

        command = pick(["recommend", "query", "export", "import-fhir", "synth", "load", "derive"])
        args: list[str] = [command]
        if command == "recommend":
            args += [pick(files), "--as-of", value([AS_OF, "2025-01-01", v.date()]), "-f", value(["text", "json", "turtle", "jsonld"])]
        elif command == "query":
            args += [pick(["due-in-window", "overdue-doses", "patient-evidence", "state-counts", v.text(10),
                           str(self.inputs / "construct.rq")]), "--store", pick([str(self.store), scratch, v.text(6)])]
            args += sum((["--param", f"{pick(['start', 'end', 'patient', 'asOf', v.text(4)])}={v.any()}"]
                         for _ in range(rng.randint(0, 3))), [])
            args += ["-f", value(["table", "csv", "json"])]
        elif command == "export":
            args += ["--store", pick([str(self.store), scratch]), "--graph", value(["derived", "ontology", "all", "dataset:seed"]),
                     "-f", value(["nq", "trig", "ttl", "nt"])]
            if rng.random() < 0.7:
                args += ["-o", pick(outputs)]
        elif command == "import-fhir":
            args += [pick(files + [str(self.inputs / "fhir-1e308.json")])]
            args += pick([["-o", pick(outputs)], ["--report", pick(outputs)], ["--store", scratch, "--dataset", value(["fhir", "seed"])], []])
        elif command == "synth":
            args += ["--patients", value(["1", "3", "0", "-1"]), "--seed", value(["1", "2"]), "--as-of", value([AS_OF, v.date()]),
                     "-o", pick(outputs)]
        elif command == "load":
            args += ["--store", scratch, pick(files)]
            if rng.random() < 0.5:
                args += ["--dataset", value(["seed", "x"])]
        else:
            args += ["--store", scratch, "--as-of", value([AS_OF, v.date()]), "--workers", "1",
                     "--batch-size", value(["1", "1000", "0"]), pick(["--shacl", "--no-shacl"])]
        for _ in range(rng.choice([0, 0, 0, 1, 2])):  # an argument dropped, repeated or replaced
            i = rng.randrange(len(args))
            op = rng.randrange(3)
            if op == 0 and len(args) > 1:
                del args[i]
            elif op == 1:
                args.insert(i, args[i])
            else:
                args[i] = v.any()
        for i, arg in enumerate(args[:-1]):  # a large cohort is work, not a hang: at most 50 patients
            if arg == "--patients" and args[i + 1].lstrip("+").isdecimal() and (len(args[i + 1]) > 6 or int(args[i + 1]) > 50):
                args[i + 1] = "50"
        return args

    def http_input(self, rng: random.Random, request: bytes) -> None:
        assert self.server is not None
        described = repr(request[:2000])
        failure, detail = None, ""
        try:
            status, answer = exchange(self.server.port, request, 30.0)
        except TimeoutError:
            status, answer, failure, detail = None, b"", "hang", "no complete answer and no close within 30 s"
        except OSError as exc:
            status, answer, failure, detail = None, b"", "crash", f"cannot connect: {exc}"
        if status == 500:
            if b"stopped its evaluator" in answer:
                with self.lock:
                    self.results.evaluator_restarts += 1
            else:
                failure, detail = "exit", answer[:1000].decode("utf-8", "replace")
        if failure is None and self.server.process.poll() is not None:
            failure, detail = "crash", f"b12kg serve exited {self.server.process.returncode}"
        log = self.server.new_stderr()
        if failure is None and ("Traceback" in log or "Exception" in log):
            failure, detail = "traceback", log[-3000:]
        if failure is None and rng.random() < 0.1 and self.server.ask(1.0) is None:
            failure, detail = "hang", "ASK {} took more than 1 s after this request"
        self._record("http", failure, detail, described, request)

    # ---------------------------------------------------------------------------- the run
    def _slot(self, n: int, budget: list[int], deadline: float | None) -> None:
        rng = random.Random(self.seed * 1009 + n)
        mutate = Mutator(rng)
        slot = self.work / f"slot-{n}"
        slot.mkdir(exist_ok=True)
        worker = Worker(slot, self.address_space)
        try:
            worker.run(["load", "--store", str(slot / "scratch-store"), str(self.inputs / "seed.ttl"),
                        "--dataset", "seed"], self.input_seconds)
            weights = [WEIGHTS[t] for t in self.targets]
            while True:
                with self.lock:
                    if budget[0] <= 0 or (deadline and time.monotonic() > deadline):
                        return
                    budget[0] -= 1
                    job = self.pending.pop(0) if self.pending else None
                if job is not None:  # a seed, as it is
                    target, seed = job
                else:
                    target = rng.choices(self.targets, weights)[0]
                    seed = None
                try:
                    self._one(worker, slot, rng, mutate, target, seed, job is not None)
                except AssertionError:
                    raise
                except Exception:  # noqa: BLE001  (a fault of this harness, reported as such)
                    self._record(target, "traceback", "in the fuzzer itself: " + traceback.format_exc(), target, None)
        finally:
            worker.stop()

    def _one(self, worker, slot, rng, mutate, target, seed, as_is: bool) -> None:
        if target == "http":
            request = seed if as_is else mutate(rng.choice(self.http))
            with self.http_lock:
                self.http_input(rng, request)
        elif target == "values":
            self.values_input(worker, slot, rng)
        elif target == "cli":
            self.cli_input(worker, slot, rng, seed if as_is else None)
        else:
            if as_is:
                data = seed
            else:
                small = [s for s in self.seeds[target] if len(s) <= MUTABLE_SEED_BYTES]
                data = mutate(rng.choice(small))
            self.file_input(worker, slot, rng, target, data)

    def run(self, budget: int, seconds: float | None = None) -> float:
        started = time.monotonic()
        remaining = [budget]
        deadline = started + seconds if seconds else None
        threads = [threading.Thread(target=self._slot, args=(n, remaining, deadline)) for n in range(self.slots)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.monotonic() - started

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            log = self.server.new_stderr()
            if "Traceback" in log:
                self._record("http", "traceback", log[-3000:], "(at shutdown)", None)


def _declared(query: bytes) -> list[tuple[str, str]]:
    import re

    text = query.decode("utf-8", "replace")
    return re.findall(r"^#\+\s*param(?:eter)?:\s*(\w+)\s+(\w+)", text, re.MULTILINE)


def _good_value(kind: str) -> str:
    return {"date": "2025-01-01", "integer": "3", "decimal": "1.5", "iri": "https://example.org/x"}.get(kind, "x")


def _turtle_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def report(fuzzer: Fuzzer, elapsed: float, out=sys.stdout) -> int:
    r = fuzzer.results
    print("| target | inputs | " + " | ".join(FAILURES) + " |", file=out)
    print("|---|---:|" + "---:|" * len(FAILURES), file=out)
    for target in fuzzer.targets:
        cells = " | ".join(str(r.failures[(target, f)]) for f in FAILURES)
        print(f"| {target} | {r.inputs[target]:,} | {cells} |", file=out)
    total = sum(r.inputs.values())
    failed = sum(r.failures.values())
    totals = " | ".join(str(sum(n for (t, f), n in r.failures.items() if f == failure)) for failure in FAILURES)
    print(f"| **all** | **{total:,}** | {totals} |", file=out)
    print(f"\n{total:,} inputs in {elapsed:.0f} s ({total / max(elapsed, 1e-9):.1f}/s), seed {fuzzer.seed}, "
          f"{fuzzer.slots} worker(s); {len(r.values):,} distinct B12 values; largest command peak "
          f"{r.peak / 2**20:.0f} MiB, slowest command {r.slowest:.1f} s; endpoint evaluator restarts "
          f"(a query that stopped its evaluator, answered 500 and recovered): {r.evaluator_restarts}", file=out)
    for finding in r.findings:
        print(f"\n## {finding.target}: {finding.failure}\ninput: {finding.input}\n{finding.detail}", file=out)
    return 1 if failed else 0


def save(fuzzer: Fuzzer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, finding in enumerate(fuzzer.results.findings, start=1):
        (folder / f"{n:03d}-{finding.target}-{finding.failure}.txt").write_text(
            f"{finding.input}\n\n{finding.detail}\n", encoding="utf-8")
        if finding.file is not None:
            (folder / f"{n:03d}-{finding.target}-{finding.failure}.input").write_bytes(finding.file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=20_000, help="how many inputs (default 20,000)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long as well")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slots", type=int, default=2, help="worker processes running inputs side by side")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of " + ",".join(TARGETS))
    parser.add_argument("--input-seconds", type=float, default=60.0, help="time limit of one input")
    parser.add_argument("--memory-mib", type=int, default=1024, help="peak memory of one command counted as a failure")
    parser.add_argument("--save", type=Path, default=None, help="write each finding (input and output) here")
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return 0
    targets = tuple(t for t in args.targets.split(",") if t)
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    workdir = Path(tempfile.mkdtemp(prefix="b12kg-fuzz-"))
    try:
        fuzzer = Fuzzer(seed=args.seed, workdir=workdir, slots=args.slots, targets=targets,
                        input_seconds=args.input_seconds, memory_mib=args.memory_mib)
        try:
            elapsed = fuzzer.run(args.budget, args.seconds)
        finally:
            fuzzer.close()
        if args.save:
            save(fuzzer, args.save)
        return report(fuzzer, elapsed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
